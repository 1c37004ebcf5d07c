"""The first ledger schema: offer sets, sessions (bookings) and their events.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from eb_broker.ledger.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "offersets",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.Column("expires", UTCDateTime(), nullable=False),
        sa.Column("result", sa.String(8), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
    )
    op.create_index("ix_offersets_owner", "offersets", ["owner"])
    op.create_table(
        "sessions",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("offerset", sa.String(36), sa.ForeignKey("offersets.uuid"), nullable=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.Column("modified", UTCDateTime(), nullable=False),
        sa.Column("expires", UTCDateTime(), nullable=True),
        sa.Column("start", UTCDateTime(), nullable=False),
        sa.Column("end", UTCDateTime(), nullable=False),
        sa.Column("preparation_s", sa.Integer(), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("memory_gib", sa.Integer(), nullable=False),
        sa.Column("storage_gib", sa.Integer(), nullable=False),
        sa.Column("accelerators", sa.JSON(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("connectors", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("handle", sa.JSON(), nullable=False),
        sa.Column("launched", UTCDateTime(), nullable=True),
        sa.Column("stop_requested", sa.String(16), nullable=True),
    )
    op.create_index("ix_sessions_offerset", "sessions", ["offerset"])
    op.create_index("ix_sessions_owner_phase", "sessions", ["owner", "phase"])
    op.create_index("ix_sessions_phase_start", "sessions", ["phase", "start"])
    op.create_index("ix_sessions_start_end", "sessions", ["start", "end"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("session", sa.String(36), sa.ForeignKey("sessions.uuid"), nullable=False),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
    )
    op.create_index("ix_events_session", "events", ["session"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("sessions")
    op.drop_table("offersets")
