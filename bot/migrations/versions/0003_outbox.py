"""The durable outbox: one row per delivery, a send ledger for rate limits shared by replicas, lane state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.Float(precision=53)  # epoch seconds: rate windows and leases compare numbers, on every backend alike


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("ref", sa.String(512), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.String(512), nullable=True),
        sa.Column("activity_id", sa.String(512), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", _TIME, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", _TIME, nullable=True),
        sa.Column("waiting", sa.String(200), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("sent_at", _TIME, nullable=True),
        sa.UniqueConstraint("ref", "part", name="uq_outbox_ref_part"),
    )
    op.create_index("ix_outbox_due", "outbox", ["state", "priority", "not_before", "id"])
    op.create_index("ix_outbox_lease_owner", "outbox", ["lease_owner"])
    op.create_table(
        "outbox_sends",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("lane", sa.String(512), nullable=False),
        sa.Column("at", _TIME, nullable=False),
    )
    op.create_index("ix_outbox_sends_lane_at", "outbox_sends", ["lane", "at"])
    op.create_table(
        "outbox_lanes",
        sa.Column("lane", sa.String(512), primary_key=True),
        sa.Column("blocked_until", _TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outbox_lanes")
    op.drop_index("ix_outbox_sends_lane_at", table_name="outbox_sends")
    op.drop_table("outbox_sends")
    op.drop_index("ix_outbox_lease_owner", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")
