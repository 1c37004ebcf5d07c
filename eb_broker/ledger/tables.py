"""The ledger's tables (SQLAlchemy 2). Changes here need an alembic migration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class OfferSetRow(Base):
    """One answer to ``POST /requests``."""

    __tablename__ = "offersets"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    expires: Mapped[datetime] = mapped_column(UTCDateTime())
    result: Mapped[str] = mapped_column(String(8))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    messages: Mapped[list[Any]] = mapped_column(JSON, default=list)


class SessionRow(Base):
    """An offer, and once accepted the session it becomes: the booking itself.

    ``start``/``end`` are the booked slot; ``cores``... the booked resources. Rows in OFFERED
    (until ``expires``) and in the active phases hold capacity.
    """

    __tablename__ = "sessions"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    offerset: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("offersets.uuid"), index=True, nullable=True
    )
    owner: Mapped[str] = mapped_column(String(255))
    groups: Mapped[list[Any]] = mapped_column(JSON, default=list)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    phase: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    modified: Mapped[datetime] = mapped_column(UTCDateTime())
    expires: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    preparation_s: Mapped[int] = mapped_column(Integer, default=0)
    #: ``start - preparation``: when the reconciler must launch it (indexed, so a pass only
    #: reads the sessions that need attention, not every booking).
    launch_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cores: Mapped[int] = mapped_column(Integer, default=0)
    memory_gib: Mapped[int] = mapped_column(Integer, default=0)
    storage_gib: Mapped[int] = mapped_column(Integer, default=0)
    accelerators: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    messages: Mapped[list[Any]] = mapped_column(JSON, default=list)
    connectors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    handle: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    launched: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: Offers made from a queue estimate: {"earliest", "expected", "latest", "basis"} (ISO
    #: instants); ``start``/``end`` are then the expected slot. None for precise slots.
    estimate: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    stop_requested: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: The allocation pools this booking draws on (group-allocation policy); None when the
    #: broker has no allocations. Fixed at offer time, so a later change of the user's groups
    #: does not move an existing booking to another pool.
    pools: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # -- the archive (0005): phase times, what ran, what was staged ----------------------------
    #: When the offer was accepted, the session first ran (RUNNING or AVAILABLE), its run ended
    #: (RELEASING) and it reached its final phase; set by the ledger as the phases change.
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    running_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: What ran, as a key shared by repeated runs (``notebook:sha256:...``, ``image:sha256:...``):
    #: the run-time prediction and the archive's ``executable`` filter use it.
    executable_hash: Mapped[str | None] = mapped_column(String(160), nullable=True)
    #: The data staging plan of the offer and, once staged, what was staged where (see
    #: :mod:`eb_broker.staging`); None when the request has no data.
    staging: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: The run-time prediction shown with the offer (``jeb:prediction``), if there was one.
    prediction: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        Index("ix_sessions_owner_phase", "owner", "phase"),
        Index("ix_sessions_phase_start", "phase", "start"),
        Index("ix_sessions_start_end", "start", "end"),
        Index("ix_sessions_phase_launch", "phase", "launch_at"),
        Index("ix_sessions_executable_phase", "executable_hash", "phase"),
        Index("ix_sessions_owner_created", "owner", "created"),
    )


class EventRow(Base):
    """Every phase change and message of a session, in order (the session's history)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session: Mapped[str] = mapped_column(String(36), ForeignKey("sessions.uuid"), index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    phase: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text, nullable=True)


class TransferRow(Base):
    """One object staged for a session: where from, how much, how long (the archive's "data
    moved", and the history the transfer-time predictions are made from)."""

    __tablename__ = "transfers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session: Mapped[str] = mapped_column(String(36), ForeignKey("sessions.uuid"), index=True)
    #: The URL the bytes came from (after resolving ``ivo://`` identifiers).
    source: Mapped[str] = mapped_column(Text)
    #: ``host[:port]`` of ``source``: bandwidth is measured per source host.
    host: Mapped[str] = mapped_column(String(255))
    #: The staging cache key (checksum or identifier) of the object.
    key: Mapped[str] = mapped_column(String(255))
    #: Bytes moved over the network (0 for a cache hit) and the object's size.
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    started: Mapped[datetime] = mapped_column(UTCDateTime())
    finished: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Served from the staging cache (nothing fetched).
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    ok: Mapped[bool] = mapped_column(Boolean, default=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_transfers_host_id", "host", "id"),)


class ProxySessionRow(Base):
    """An aggregator's mapping of one downstream offer/session to its own uuid.

    ``uuid`` is derived from (``broker``, ``remote_uuid``) and stored, so the ids a client
    holds survive restarts; ``wire`` caches the downstream broker's last answer, served (with a
    warning) while that broker cannot be reached.
    """

    __tablename__ = "proxy_sessions"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    offerset: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("offersets.uuid"), index=True, nullable=True
    )
    broker: Mapped[str] = mapped_column(String(255))
    remote_uuid: Mapped[str] = mapped_column(String(255))
    remote_url: Mapped[str] = mapped_column(Text)
    remote_offerset: Mapped[str | None] = mapped_column(Text, nullable=True)
    owner: Mapped[str] = mapped_column(String(255))
    phase: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    modified: Mapped[datetime] = mapped_column(UTCDateTime())
    wire: Mapped[dict[str, Any]] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_proxy_sessions_remote", "broker", "remote_uuid", unique=True),
        Index("ix_proxy_sessions_owner_phase", "owner", "phase"),
    )
