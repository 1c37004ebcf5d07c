"""The booking ledger: every read and write of offers, sessions and events.

All writes happen in short transactions. ``accept`` is the one that matters: it takes the
ledger's write lock (``BEGIN IMMEDIATE`` on SQLite, an advisory transaction lock on PostgreSQL),
re-checks the offer's phase, expiry and capacity against the bookings *in the database*, then
accepts it and rejects its siblings — so two accepts that together exceed capacity can never
both win, even with several broker processes on one database.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from eb_sdk.model import ACTIVE_PHASES, Phase
from eb_sdk.model import messages as msg

from ..errors import BrokerError
from ..scheduling import Resources
from .tables import EventRow, OfferSetRow, SessionRow

#: Phases whose rows hold capacity (OFFERED only until ``expires``).
HOLDING = tuple(p.value for p in ACTIVE_PHASES)
_ADVISORY_LOCK = 0x45_42_4C_44  # "EBLD"


class LedgerError(BrokerError):
    """Base of the ledger's refusals (HTTP 409 unless a subclass says otherwise)."""

    kind = msg.CONFLICT
    status = 409


class NotFoundError(LedgerError):
    """No such offer set or session, or not the caller's (HTTP 404: the same answer)."""

    kind = msg.NOT_FOUND
    status = 404


class OfferExpiredError(LedgerError):
    kind = msg.OFFER_EXPIRED


class InvalidTransitionError(LedgerError):
    kind = msg.INVALID_UPDATE


class CapacityError(LedgerError):
    kind = msg.NO_CAPACITY


@dataclass(frozen=True)
class OfferDraft:
    """An offer to write: the slot and what it gives."""

    start: datetime
    end: datetime
    resources: Resources
    preparation: timedelta
    name: str | None = None
    #: A queue estimate's interval (see ``SessionRow.estimate``); None for precise slots.
    estimate: dict[str, Any] | None = None
    #: The allocation pools the offer draws on (see ``SessionRow.pools``); None: no allocations.
    pools: tuple[str, ...] | None = None
    #: The data staging plan (``SessionRow.staging``), the run-time prediction shown with the
    #: offer, and the key of what runs (``SessionRow.executable_hash``).
    staging: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    executable_hash: str | None = None


@dataclass(frozen=True)
class Booked:
    """A slot that holds capacity, as the accept check reads it (no JSON columns).

    ``amounts`` is a plain dimension → amount dict: the accept may read hundreds of these, and
    building ``Resources`` objects for each was a measurable part of its time.
    """

    uuid: str
    start: datetime
    end: datetime
    amounts: dict[str, int]
    #: The allocation pools it draws on (None: the broker had no allocations then).
    pools: tuple[str, ...] | None = None

    @property
    def resources(self) -> Resources:
        return Resources.from_dimensions(self.amounts)


def _booked(
    uuid: str,
    start: datetime,
    end: datetime,
    cores: int,
    memory: int,
    storage: int,
    accel: dict[str, int] | None,
    pools: list[str] | None = None,
) -> Booked:
    amounts = {"cores": cores, "memory_gib": memory, "storage_gib": storage}
    if accel:
        amounts.update(accel)
    return Booked(uuid, start, end, amounts, None if pools is None else tuple(pools))


_BOOKED_COLUMNS = (
    SessionRow.uuid,
    SessionRow.start,
    SessionRow.end,
    SessionRow.cores,
    SessionRow.memory_gib,
    SessionRow.storage_gib,
    SessionRow.accelerators,
    SessionRow.phase,
    SessionRow.expires,
    SessionRow.pools,
)


def new_offerset(
    owner: str,
    request: dict[str, Any],
    result: str,
    messages: list[dict[str, Any]],
    now: datetime,
    expires: datetime,
) -> OfferSetRow:
    """A new offer set row (a broker's, or an aggregator's merged one)."""
    return OfferSetRow(
        uuid=str(uuidlib.uuid4()),
        owner=owner,
        created=now,
        expires=expires,
        result=result,
        request=request,
        messages=messages,
    )


def row_resources(row: SessionRow) -> Resources:
    """The resources a session row books."""
    return Resources(
        cores=row.cores,
        memory_gib=row.memory_gib,
        storage_gib=row.storage_gib,
        accelerators=dict(row.accelerators or {}),
    )


class Ledger:
    """Repository over the ledger tables. Methods are synchronous and short."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- locking -------------------------------------------------------------------------------

    def _lock(self, db: Session) -> None:
        """Serialise writers that check capacity (SQLite's BEGIN IMMEDIATE already does)."""
        if self.engine.dialect.name == "postgresql":
            db.execute(select(_pg_lock(_ADVISORY_LOCK)))

    # -- offers -------------------------------------------------------------------------------

    def create_offerset(
        self,
        *,
        owner: str,
        groups: Sequence[str],
        request: dict[str, Any],
        result: str,
        messages: list[dict[str, Any]],
        offers: Sequence[OfferDraft],
        now: datetime,
        expires: datetime,
        name: str | None = None,
    ) -> tuple[OfferSetRow, list[SessionRow]]:
        """Write an offer set and its offers (phase OFFERED, holding until ``expires``)."""
        offerset = new_offerset(owner, request, result, messages, now, expires)
        rows = [
            SessionRow(
                uuid=str(uuidlib.uuid4()),
                offerset=offerset.uuid,
                owner=owner,
                groups=list(groups),
                name=draft.name or name,
                phase=Phase.OFFERED.value,
                created=now,
                modified=now,
                expires=expires,
                start=draft.start,
                end=draft.end,
                preparation_s=int(draft.preparation.total_seconds()),
                launch_at=draft.start - draft.preparation,
                cores=draft.resources.cores,
                memory_gib=draft.resources.memory_gib,
                storage_gib=draft.resources.storage_gib,
                accelerators=dict(draft.resources.accelerators),
                request=request,
                messages=[],
                connectors=[],
                outputs={},
                handle={},
                estimate=draft.estimate,
                pools=None if draft.pools is None else list(draft.pools),
                staging=draft.staging,
                prediction=draft.prediction,
                executable_hash=draft.executable_hash,
            )
            for draft in offers
        ]
        with self._sessions.begin() as db:
            db.add(offerset)
            db.flush()
            db.add_all(rows)
            db.flush()
            db.add_all(
                EventRow(session=row.uuid, time=now, phase=row.phase, message=None) for row in rows
            )
        return offerset, rows

    def get_offerset(self, uuid: str) -> tuple[OfferSetRow, list[SessionRow]] | None:
        with self._sessions() as db:
            offerset = db.get(OfferSetRow, uuid)
            if offerset is None:
                return None
            rows = db.scalars(
                select(SessionRow).where(SessionRow.offerset == uuid).order_by(SessionRow.start)
            ).all()
            return offerset, list(rows)

    # -- sessions -------------------------------------------------------------------------------

    def get_session(self, uuid: str) -> SessionRow | None:
        with self._sessions() as db:
            return db.get(SessionRow, uuid)

    def list_sessions(
        self, owner: str | None = None, phases: Iterable[str] | None = None, limit: int = 1000
    ) -> list[SessionRow]:
        """Sessions (not plain offers unless asked for), newest first."""
        query = select(SessionRow)
        if owner is not None:
            query = query.where(SessionRow.owner == owner)
        wanted = list(phases) if phases else None
        if wanted:
            query = query.where(SessionRow.phase.in_(wanted))
        else:
            query = query.where(
                SessionRow.phase.not_in(
                    [Phase.OFFERED.value, Phase.REJECTED.value, Phase.EXPIRED.value]
                )
            )
        query = query.order_by(SessionRow.created.desc()).limit(limit)
        with self._sessions() as db:
            return list(db.scalars(query).all())

    def active_sessions(self) -> list[SessionRow]:
        """Accepted sessions that are not finished (the reconciler's work list)."""
        with self._sessions() as db:
            return list(db.scalars(select(SessionRow).where(SessionRow.phase.in_(HOLDING))).all())

    def work_list(self, now: datetime) -> list[SessionRow]:
        """Sessions the reconciler must look at now: everything past WAITING, plus waiting
        sessions whose launch time has come.

        Two index lookups (phase; phase + launch_at), never a scan of all bookings: with 100k
        bookings an OR-ed query scanned the table on every pass and stalled the loop.
        (Sessions cancelled before launch are finished by the core at once.)
        """
        busy = [p for p in HOLDING if p != Phase.WAITING.value]
        with self._sessions() as db:
            rows = list(db.scalars(select(SessionRow).where(SessionRow.phase.in_(busy))).all())
            rows += db.scalars(
                select(SessionRow).where(
                    SessionRow.phase == Phase.WAITING.value, SessionRow.launch_at <= now
                )
            ).all()
        return rows

    def count_active(self, owner: str) -> int:
        """How many accepted, unfinished sessions ``owner`` has (per-user concurrency limits)."""
        query = select(func.count()).where(SessionRow.owner == owner, SessionRow.phase.in_(HOLDING))
        with self._sessions() as db:
            return int(db.execute(query).scalar() or 0)

    def count_by_phase(self) -> dict[str, int]:
        """How many sessions are in each phase (for metrics)."""
        query = select(SessionRow.phase, func.count()).group_by(SessionRow.phase)
        with self._sessions() as db:
            return {phase: int(count) for phase, count in db.execute(query).all()}

    def holding(self, now: datetime) -> list[Booked]:
        """Slots that hold capacity now (active sessions, unexpired offers), in start order.

        Only the columns the timeline needs, sorted by start: loading 100k full rows took
        seconds and hundreds of MB, and time-ordered inserts build the timeline ~10x faster.
        """
        query = (
            select(*_BOOKED_COLUMNS)
            .where(
                or_(
                    SessionRow.phase.in_(HOLDING),
                    (SessionRow.phase == Phase.OFFERED.value) & (SessionRow.expires > now),
                )
            )
            .order_by(SessionRow.start)
        )
        with self._sessions() as db:
            return [
                _booked(uuid, start, end, cores, memory, storage, accel, pools)
                for uuid, start, end, cores, memory, storage, accel, _, _, pools in db.execute(
                    query
                )
            ]

    def events(self, uuid: str, after_id: int = 0) -> list[EventRow]:
        with self._sessions() as db:
            query = (
                select(EventRow)
                .where(EventRow.session == uuid, EventRow.id > after_id)
                .order_by(EventRow.id)
            )
            return list(db.scalars(query).all())

    # -- transitions ----------------------------------------------------------------------------

    def accept(
        self,
        uuid: str,
        now: datetime,
        fits: Callable[[SessionRow, list[Booked]], list[str]],
        *,
        count_offers: bool = True,
    ) -> tuple[SessionRow, list[str]]:
        """Accept an offer atomically; returns the session and the rejected siblings' uuids.

        ``fits(row, overlapping)`` gets the offer and every other row that holds capacity in its
        slot (read inside the locked transaction) and returns why it does not fit (empty: fits).
        """
        expired_at: datetime | None = None
        with self._sessions.begin() as db:
            self._lock(db)
            row = db.get(SessionRow, uuid, with_for_update=False, populate_existing=True)
            if row is None:
                raise NotFoundError(f"no session {uuid}")
            if row.phase == Phase.OFFERED.value and row.expires is not None and row.expires <= now:
                # Recorded (committed when the block ends), then refused below: raising here
                # would roll the EXPIRED mark back.
                self._set_phase(db, row, Phase.EXPIRED, now, "the offer expired")
                expired_at = row.expires
            elif row.phase == Phase.EXPIRED.value:
                raise OfferExpiredError(f"offer {uuid} has expired")
            elif row.phase != Phase.OFFERED.value:
                raise InvalidTransitionError(
                    f"offer {uuid} is {row.phase}: only an OFFERED offer can be accepted"
                )
            if expired_at is None:
                return self._accept_locked(db, row, now, fits, count_offers)
        raise OfferExpiredError(f"offer {uuid} expired at {expired_at.isoformat()}")

    def _accept_locked(
        self,
        db: Session,
        row: SessionRow,
        now: datetime,
        fits: Callable[[SessionRow, list[Booked]], list[str]],
        count_offers: bool,
    ) -> tuple[SessionRow, list[str]]:
        """The capacity check and the accept itself, inside accept's locked transaction."""
        holding = [Phase.OFFERED.value, *HOLDING] if count_offers else list(HOLDING)
        # Only the columns the capacity check needs: loading whole rows (with their JSON)
        # made a busy slot's accept ten times slower.
        overlapping_query = select(*_BOOKED_COLUMNS).where(
            SessionRow.uuid != row.uuid,
            SessionRow.start < row.end,
            SessionRow.end > row.start,
            SessionRow.phase.in_(holding),
        )
        if row.offerset is not None:
            overlapping_query = overlapping_query.where(
                or_(SessionRow.offerset.is_(None), SessionRow.offerset != row.offerset)
            )
        overlapping = [
            _booked(uuid, start, end, cores, memory, storage, accel, pools)
            for (
                uuid,
                start,
                end,
                cores,
                memory,
                storage,
                accel,
                phase,
                expires,
                pools,
            ) in db.execute(overlapping_query)
            if phase != Phase.OFFERED.value or (expires is not None and expires > now)
        ]
        reasons = fits(row, overlapping)
        if reasons:
            raise CapacityError("; ".join(reasons))
        self._set_phase(db, row, Phase.ACCEPTED, now, "offer accepted")
        row.expires = None
        rejected: list[str] = []
        if row.offerset is not None:
            siblings = db.scalars(
                select(SessionRow).where(
                    SessionRow.offerset == row.offerset,
                    SessionRow.uuid != row.uuid,
                    SessionRow.phase == Phase.OFFERED.value,
                )
            ).all()
            for sibling in siblings:
                self._set_phase(db, sibling, Phase.REJECTED, now, "a sibling offer was accepted")
                rejected.append(sibling.uuid)
        return row, rejected

    def transition(
        self,
        uuid: str,
        new: Phase,
        now: datetime,
        *,
        allowed_from: Iterable[Phase] | None = None,
        message: str | None = None,
        messages: list[dict[str, Any]] | None = None,
        **fields: Any,
    ) -> SessionRow:
        """Move a session to ``new`` (if it is in one of ``allowed_from``), with extra fields."""
        with self._sessions.begin() as db:
            row = db.get(SessionRow, uuid, populate_existing=True)
            if row is None:
                raise NotFoundError(f"no session {uuid}")
            if allowed_from is not None and Phase(row.phase) not in set(allowed_from):
                raise InvalidTransitionError(
                    f"session {uuid} is {row.phase}: it cannot become {new.value}"
                )
            for key, value in fields.items():
                setattr(row, key, value)
            if messages:
                row.messages = [*(row.messages or []), *messages]
            if row.phase != new.value:
                self._set_phase(db, row, new, now, message)
            else:
                row.modified = now
            return row

    def update_fields(self, uuid: str, now: datetime, **fields: Any) -> SessionRow:
        """Change fields without a phase change (handle, connectors, outputs, messages)."""
        with self._sessions.begin() as db:
            row = db.get(SessionRow, uuid, populate_existing=True)
            if row is None:
                raise NotFoundError(f"no session {uuid}")
            for key, value in fields.items():
                setattr(row, key, value)
            row.modified = now
            return row

    def next_offer_expiry(self) -> datetime | None:
        """When the next OFFERED row expires (None: no open offers)."""
        query = select(func.min(SessionRow.expires)).where(SessionRow.phase == Phase.OFFERED.value)
        with self._sessions() as db:
            value = db.execute(query).scalar()
        return _aware(value)

    def expire_due(self, now: datetime) -> list[str]:
        """Mark every OFFERED row whose time is up as EXPIRED; returns their uuids."""
        with self._sessions.begin() as db:
            due = list(
                db.scalars(
                    select(SessionRow.uuid).where(
                        SessionRow.phase == Phase.OFFERED.value, SessionRow.expires <= now
                    )
                ).all()
            )
            if due:
                db.execute(
                    update(SessionRow)
                    .where(SessionRow.uuid.in_(due))
                    .values(phase=Phase.EXPIRED.value, modified=now)
                )
                db.add_all(
                    EventRow(session=u, time=now, phase=Phase.EXPIRED.value, message="expired")
                    for u in due
                )
            return due

    @staticmethod
    def _set_phase(
        db: Session, row: SessionRow, phase: Phase, now: datetime, message: str | None
    ) -> None:
        row.phase = phase.value
        row.modified = now
        _stamp(row, phase, now)
        db.add(EventRow(session=row.uuid, time=now, phase=phase.value, message=message))


#: Final phases of an accepted session (its record in the archive is complete then).
FINAL_SESSION_PHASES = (Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED)


def _stamp(row: SessionRow, phase: Phase, now: datetime) -> None:
    """Record when a session reached the phases the archive times (first time only)."""
    if phase == Phase.ACCEPTED:
        row.accepted_at = now
    elif phase in (Phase.RUNNING, Phase.AVAILABLE) and row.running_at is None:
        row.running_at = now
    elif phase == Phase.RELEASING and row.ended_at is None:
        row.ended_at = now
    elif phase in FINAL_SESSION_PHASES:
        row.finished_at = now
        if row.ended_at is None:
            row.ended_at = now


def _aware(value: datetime | None) -> datetime | None:
    # Aggregates bypass the column type, so SQLite hands back a naive UTC datetime (or text).
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _pg_lock(key: int) -> Any:
    return func.pg_advisory_xact_lock(key)
