"""Alembic environment: runs on the connection `bot.storage.SqlStore.open()` hands over (sync, inside async)."""

from __future__ import annotations

from alembic import context

from bot.storage import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through SqlStore.open() or `wardline db upgrade`, which pass a connection")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
