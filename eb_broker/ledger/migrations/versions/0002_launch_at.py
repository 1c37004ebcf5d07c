"""Sessions get ``launch_at`` (start - preparation), indexed with the phase.

The reconciler then reads only the sessions that need attention instead of every booking.
Existing rows are back-filled, so an upgrade keeps every booking.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

from eb_broker.ledger.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_sessions = sa.table(
    "sessions",
    sa.column("uuid", sa.String(36)),
    sa.column("start", UTCDateTime()),
    sa.column("preparation_s", sa.Integer()),
    sa.column("launch_at", UTCDateTime()),
)


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("launch_at", UTCDateTime(), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_sessions.c.uuid, _sessions.c.start, _sessions.c.preparation_s)
    ).all()
    for uuid, start, preparation in rows:
        conn.execute(
            _sessions.update()
            .where(_sessions.c.uuid == uuid)
            .values(launch_at=start - timedelta(seconds=preparation or 0))
        )
    op.create_index("ix_sessions_phase_launch", "sessions", ["phase", "launch_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_phase_launch", "sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("launch_at")
