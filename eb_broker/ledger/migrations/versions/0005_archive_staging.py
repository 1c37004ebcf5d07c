"""The job archive and data staging: phase times, executable keys, staging plans, transfers.

``sessions`` gets nullable columns: ``accepted_at``, ``running_at``, ``ended_at``,
``finished_at`` (back-filled from each session's events, so the archive covers sessions from
before the upgrade), ``executable_hash`` (left NULL for old rows: they predate the keys),
``staging`` and ``prediction`` (NULL: no data, no prediction). The new ``transfers`` table
records every object staged. Existing bookings are kept unchanged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from eb_broker.ledger.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: column → the event phases whose first time it takes (back-fill)
_BACKFILL = {
    "accepted_at": ("ACCEPTED",),
    "running_at": ("RUNNING", "AVAILABLE"),
    "ended_at": ("RELEASING",),
    "finished_at": ("COMPLETED", "FAILED", "CANCELLED"),
}


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for column in _BACKFILL:
            batch.add_column(sa.Column(column, UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("executable_hash", sa.String(160), nullable=True))
        batch.add_column(sa.Column("staging", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("prediction", sa.JSON(), nullable=True))
    op.create_index(
        "ix_sessions_executable_phase", "sessions", ["executable_hash", "phase"], unique=False
    )
    op.create_index("ix_sessions_owner_created", "sessions", ["owner", "created"], unique=False)
    for column, phases in _BACKFILL.items():
        names = ", ".join(f"'{p}'" for p in phases)
        op.execute(
            sa.text(
                f"UPDATE sessions SET {column} = (SELECT MIN(events.time) FROM events "
                f"WHERE events.session = sessions.uuid AND events.phase IN ({names}))"
            )
        )
    op.create_table(
        "transfers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("session", sa.String(36), sa.ForeignKey("sessions.uuid"), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("started", UTCDateTime(), nullable=False),
        sa.Column("finished", UTCDateTime(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_transfers_session", "transfers", ["session"])
    op.create_index("ix_transfers_host_id", "transfers", ["host", "id"])


def downgrade() -> None:
    op.drop_table("transfers")
    op.drop_index("ix_sessions_owner_created", "sessions")
    op.drop_index("ix_sessions_executable_phase", "sessions")
    with op.batch_alter_table("sessions") as batch:
        for column in ("prediction", "staging", "executable_hash", *reversed(_BACKFILL)):
            batch.drop_column(column)
