"""Alembic migrations for Wardline's database; `SqlStore.open()` upgrades to head on start."""
