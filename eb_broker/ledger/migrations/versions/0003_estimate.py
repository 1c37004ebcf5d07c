"""Sessions get ``estimate``: the start interval of offers made from a queue estimate.

A nullable JSON column (``{"earliest", "expected", "latest", "basis"}``); existing rows are
precise slots and keep NULL, so an upgrade keeps every booking unchanged.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("estimate", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("estimate")
