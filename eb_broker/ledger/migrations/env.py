"""Alembic environment: migrations run from the broker at start-up (see ledger.db)."""

from __future__ import annotations

from alembic import context

from eb_broker.ledger.tables import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through eb_broker.ledger.db.migrate()")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
