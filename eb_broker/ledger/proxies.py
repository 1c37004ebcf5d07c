"""An aggregator's ledger: its offer sets and the downstream sessions behind its own ids.

The aggregator holds no capacity; what must survive a restart is which of its uuids stands
for which downstream broker's session, and the last state each broker reported (served, with a
warning, while that broker cannot be reached).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from eb_sdk.model import Phase

from .repository import HOLDING, new_offerset
from .tables import OfferSetRow, ProxySessionRow

#: Phases hidden from session lists unless asked for (as in the broker's own ledger).
_OFFER_PHASES = (Phase.OFFERED.value, Phase.REJECTED.value, Phase.EXPIRED.value)


@dataclass(frozen=True)
class ProxyDraft:
    """One downstream offer to record under our uuid."""

    uuid: str
    broker: str
    remote_uuid: str
    remote_url: str
    remote_offerset: str | None
    phase: str
    wire: dict[str, Any]


class ProxyLedger:
    """Repository over ``offersets`` and ``proxy_sessions``. Short synchronous calls."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def create_offerset(
        self,
        *,
        owner: str,
        request: dict[str, Any],
        result: str,
        messages: list[dict[str, Any]],
        drafts: Sequence[ProxyDraft],
        now: datetime,
        expires: datetime,
    ) -> tuple[OfferSetRow, list[ProxySessionRow]]:
        offerset = new_offerset(owner, request, result, messages, now, expires)
        # ``created`` one microsecond apart keeps the ranked order for later reads.
        rows = [
            _row(d, owner, offerset.uuid, now + timedelta(microseconds=i), now)
            for i, d in enumerate(drafts)
        ]
        with self._sessions.begin() as db:
            db.add(offerset)
            db.flush()
            db.add_all(rows)
        return offerset, rows

    def get_offerset(self, uuid: str) -> tuple[OfferSetRow, list[ProxySessionRow]] | None:
        with self._sessions() as db:
            offerset = db.get(OfferSetRow, uuid)
            if offerset is None:
                return None
            rows = db.scalars(
                select(ProxySessionRow)
                .where(ProxySessionRow.offerset == uuid)
                .order_by(ProxySessionRow.created, ProxySessionRow.uuid)
            ).all()
            return offerset, list(rows)

    def get(self, uuid: str) -> ProxySessionRow | None:
        with self._sessions() as db:
            return db.get(ProxySessionRow, uuid)

    def adopt(self, draft: ProxyDraft, owner: str, now: datetime) -> ProxySessionRow:
        """Record a downstream session we did not create (listed by its broker), or refresh
        the one we have."""
        existing = self.get(draft.uuid)
        if existing is not None:
            return self.refresh(draft.uuid, draft.wire, draft.phase, now)
        row = _row(draft, owner, None, now, now)
        try:
            with self._sessions.begin() as db:
                db.add(row)
        except IntegrityError:  # listed by two requests at once: the other one won
            return self.refresh(draft.uuid, draft.wire, draft.phase, now)
        return row

    def refresh(
        self, uuid: str, wire: dict[str, Any], phase: str, now: datetime
    ) -> ProxySessionRow:
        """Cache the downstream broker's latest answer."""
        with self._sessions.begin() as db:
            row = db.get(ProxySessionRow, uuid, populate_existing=True)
            if row is None:
                raise KeyError(uuid)
            row.wire = wire
            row.phase = phase
            row.modified = now
            return row

    def list(
        self,
        owner: str | None,
        phases: Iterable[str] | None = None,
        brokers: Iterable[str] | None = None,
        limit: int = 1000,
    ) -> list[ProxySessionRow]:
        """Cached sessions (not plain offers unless asked for by phase), newest first."""
        query = select(ProxySessionRow)
        if owner is not None:
            query = query.where(ProxySessionRow.owner == owner)
        wanted = list(phases) if phases else None
        if wanted:
            query = query.where(ProxySessionRow.phase.in_(wanted))
        else:
            query = query.where(ProxySessionRow.phase.not_in(_OFFER_PHASES))
        if brokers is not None:
            query = query.where(ProxySessionRow.broker.in_(list(brokers)))
        query = query.order_by(ProxySessionRow.created.desc()).limit(limit)
        with self._sessions() as db:
            return list(db.scalars(query).all())

    def count_active(self, owner: str) -> int:
        """Accepted, unfinished sessions of ``owner`` as last reported by the brokers."""
        query = select(func.count()).where(
            ProxySessionRow.owner == owner, ProxySessionRow.phase.in_(HOLDING)
        )
        with self._sessions() as db:
            return int(db.execute(query).scalar() or 0)

    def count_by_phase(self) -> dict[str, int]:
        query = select(ProxySessionRow.phase, func.count()).group_by(ProxySessionRow.phase)
        with self._sessions() as db:
            return {phase: int(count) for phase, count in db.execute(query).all()}


def _row(
    draft: ProxyDraft, owner: str, offerset: str | None, created: datetime, now: datetime
) -> ProxySessionRow:
    return ProxySessionRow(
        uuid=draft.uuid,
        offerset=offerset,
        broker=draft.broker,
        remote_uuid=draft.remote_uuid,
        remote_url=draft.remote_url,
        remote_offerset=draft.remote_offerset,
        owner=owner,
        phase=draft.phase,
        created=created,
        modified=now,
        wire=draft.wire,
    )
