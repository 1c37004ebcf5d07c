"""The job archive: every accepted session's record, read back for users, exports and
predictions.

Nothing is ever deleted from the ledger, so the archive is the ``sessions`` table itself
(phase times are stamped by the ledger as the phases change, see ``repository._stamp``) plus
the ``transfers`` table (one row per staged object). This module only reads and appends; the
run-time and transfer-time predictions (:mod:`eb_broker.prediction`) are made from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from eb_sdk.model import ACTIVE_PHASES, Phase

from .repository import Ledger
from .tables import SessionRow, TransferRow

#: Phases of rows that never became sessions (plain offers): not in the archive by default.
OFFER_PHASES = (Phase.OFFERED.value, Phase.REJECTED.value, Phase.EXPIRED.value)
_ACTIVE = tuple(p.value for p in ACTIVE_PHASES)


@dataclass(frozen=True)
class ArchiveFilter:
    """Which archive records to read; ``owner`` None reads everyone's (admins)."""

    owner: str | None = None
    phases: tuple[str, ...] = ()
    executable: str | None = None
    #: The booked start lies in ``[since, until)``.
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class Transfer:
    """One staged object, as the staging service reports it (a ``transfers`` row to write)."""

    source: str
    host: str
    key: str
    bytes: int
    size: int
    seconds: float
    started: datetime
    finished: datetime
    cached: bool = False
    ok: bool = True
    error: str | None = None


class Archive:
    """Reads and appends archive data through a :class:`Ledger`'s database."""

    def __init__(self, ledger: Ledger) -> None:
        self._sessions = ledger._sessions

    # -- sessions -------------------------------------------------------------------------------

    def page(self, where: ArchiveFilter) -> tuple[list[SessionRow], int]:
        """One page of records (newest first) and how many match in all."""
        conditions: list[Any] = []
        if where.owner is not None:
            conditions.append(SessionRow.owner == where.owner)
        if where.phases:
            conditions.append(SessionRow.phase.in_(where.phases))
        else:
            conditions.append(SessionRow.phase.not_in(OFFER_PHASES))
        if where.executable:
            conditions.append(SessionRow.executable_hash == where.executable)
        if where.since is not None:
            conditions.append(SessionRow.start >= where.since)
        if where.until is not None:
            conditions.append(SessionRow.start < where.until)
        rows_query = (
            select(SessionRow)
            .where(*conditions)
            .order_by(SessionRow.created.desc(), SessionRow.uuid)
            .limit(where.limit)
            .offset(where.offset)
        )
        count_query = select(func.count()).select_from(SessionRow).where(*conditions)
        with self._sessions() as db:
            total = int(db.execute(count_query).scalar() or 0)
            rows = list(db.scalars(rows_query).all()) if total > where.offset else []
        return rows, total

    def run_times(self, executable_hash: str, limit: int) -> list[float]:
        """Seconds the last ``limit`` successful runs of an executable ran (newest first).

        Only runs that ended by themselves count: a session stopped at the end of its booked
        slot (an interactive server, a run that overran) tells nothing about the run time.
        """
        query = (
            select(SessionRow.running_at, SessionRow.ended_at, SessionRow.end)
            .where(
                SessionRow.executable_hash == executable_hash,
                SessionRow.phase == Phase.COMPLETED.value,
                SessionRow.running_at.is_not(None),
                SessionRow.ended_at.is_not(None),
            )
            .order_by(SessionRow.finished_at.desc())
            .limit(limit)
        )
        with self._sessions() as db:
            rows = db.execute(query).all()
        return [
            (ended - running).total_seconds()
            for running, ended, end in rows
            if running is not None and ended is not None and running <= ended < end
        ]

    def staging_in_use(self) -> list[dict[str, Any]]:
        """The staging plans of the sessions that are accepted and not finished."""
        query = select(SessionRow.staging).where(
            SessionRow.phase.in_(_ACTIVE), SessionRow.staging.is_not(None)
        )
        with self._sessions() as db:
            return [plan for plan in db.scalars(query).all() if isinstance(plan, dict)]

    # -- transfers ------------------------------------------------------------------------------

    def record_transfers(self, session: str, transfers: Iterable[Transfer]) -> None:
        """Append the transfers of one staging run of ``session``."""
        rows = [
            TransferRow(
                session=session,
                source=t.source,
                host=t.host,
                key=t.key[:255],
                bytes=t.bytes,
                size=t.size,
                seconds=t.seconds,
                started=t.started,
                finished=t.finished,
                cached=t.cached,
                ok=t.ok,
                error=t.error,
            )
            for t in transfers
        ]
        if rows:
            with self._sessions.begin() as db:
                db.add_all(rows)

    def transfers_of(self, sessions: Sequence[str]) -> dict[str, list[TransferRow]]:
        """The transfers of each of ``sessions`` (in the order they happened)."""
        out: dict[str, list[TransferRow]] = {uuid: [] for uuid in sessions}
        with self._sessions() as db:
            for first in range(0, len(sessions), 1000):  # bound the query's parameters
                chunk = list(sessions[first : first + 1000])
                query = (
                    select(TransferRow)
                    .where(TransferRow.session.in_(chunk))
                    .order_by(TransferRow.id)
                )
                for row in db.scalars(query).all():
                    out.setdefault(row.session, []).append(row)
        return out

    def host_history(self, host: str, limit: int) -> list[tuple[int, float]]:
        """``(bytes, seconds)`` of the last ``limit`` real (not cached, successful) transfers
        from ``host``, newest first."""
        query = (
            select(TransferRow.bytes, TransferRow.seconds)
            .where(
                TransferRow.host == host,
                TransferRow.ok.is_(True),
                TransferRow.cached.is_(False),
                TransferRow.bytes > 0,
            )
            .order_by(TransferRow.id.desc())
            .limit(limit)
        )
        with self._sessions() as db:
            return [(int(b), float(s)) for b, s in db.execute(query).all()]
