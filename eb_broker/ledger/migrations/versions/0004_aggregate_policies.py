"""Aggregators and policies: ``sessions.pools`` and the aggregator's ``proxy_sessions``.

``sessions.pools`` (nullable JSON) records the allocation pools a booking draws on; existing
rows keep NULL (no allocation), so an upgrade keeps every booking unchanged.
``proxy_sessions`` maps an aggregator's own session uuids to the downstream brokers' ones.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from eb_broker.ledger.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("pools", sa.JSON(), nullable=True))
    op.create_table(
        "proxy_sessions",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("offerset", sa.String(36), sa.ForeignKey("offersets.uuid"), nullable=True),
        sa.Column("broker", sa.String(255), nullable=False),
        sa.Column("remote_uuid", sa.String(255), nullable=False),
        sa.Column("remote_url", sa.Text(), nullable=False),
        sa.Column("remote_offerset", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.Column("modified", UTCDateTime(), nullable=False),
        sa.Column("wire", sa.JSON(), nullable=False),
    )
    op.create_index("ix_proxy_sessions_offerset", "proxy_sessions", ["offerset"])
    op.create_index(
        "ix_proxy_sessions_remote", "proxy_sessions", ["broker", "remote_uuid"], unique=True
    )
    op.create_index("ix_proxy_sessions_owner_phase", "proxy_sessions", ["owner", "phase"])


def downgrade() -> None:
    op.drop_table("proxy_sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("pools")
