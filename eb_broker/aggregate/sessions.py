"""An aggregator's sessions: the brokers' sessions under the aggregator's own ids.

Every offer the aggregator passed on is a row of its :class:`~eb_broker.ledger.proxies.ProxyLedger`
(our uuid, the broker, the broker's URL for it, its last known wire form). Reads ask the broker
for the current state and fall back to the last known one, with a WARN, when it cannot be
asked; updates are forwarded to the broker, and accepting one offer rejects its siblings on
every other broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eb_sdk._client import BrokerClient, on_behalf_of
from eb_sdk._errors import BrokerUnavailable, EBError
from eb_sdk._fanout import fanout
from eb_sdk.model import MessageItem, Phase, ScheduledExecutionSession
from eb_sdk.model import messages as msg

from ..auth import Identity
from ..errors import BrokerError
from ..ledger import NotFoundError
from ..ledger.proxies import ProxyDraft, ProxyLedger
from ..ledger.tables import OfferSetRow, ProxySessionRow
from . import routing
from .downstream import DownstreamError, Downstreams

log = logging.getLogger("eb_broker.aggregate")


@dataclass(frozen=True)
class Proxied:
    """One of our sessions: the ledger row and the downstream broker's wire form of it.

    ``stale`` is a warning when the broker could not be asked and ``wire`` is its last known
    answer.
    """

    row: ProxySessionRow
    stale: MessageItem | None = None

    @property
    def uuid(self) -> str:
        return self.row.uuid

    @property
    def wire(self) -> dict[str, Any]:
        return dict(self.row.wire or {})

    def to_wire(self, url: str) -> ScheduledExecutionSession:
        """The session as our client sees it: our uuid and URL, the route, any warning."""
        wire = routing.rewrite_session(
            self.wire,
            uuid=self.uuid,
            url=url,
            broker=self.row.broker,
            messages=[self.stale] if self.stale else (),
        )
        return ScheduledExecutionSession.model_validate(wire)


class ProxiedSessions:
    """Reads and updates of the aggregator's sessions (see the module docstring)."""

    def __init__(
        self,
        ledger: ProxyLedger,
        brokers: Downstreams,
        namespace: Any,
        admin_users: frozenset[str],
        clock: Callable[[], datetime],
    ) -> None:
        self.ledger = ledger
        self.brokers = brokers
        self.namespace = namespace
        self.admin_users = admin_users
        self.clock = clock

    # -- reading --------------------------------------------------------------------------------

    def visible(self, identity: Identity, owner: str) -> bool:
        return identity.user == owner or identity.user in self.admin_users

    def own(self, identity: Identity, uuid: str) -> ProxySessionRow:
        """The caller's session ``uuid`` (not found: someone else's, or none)."""
        row = self.ledger.get(uuid)
        if row is None or not self.visible(identity, row.owner):
            raise NotFoundError(f"no session {uuid}")
        return row

    def _stale(self, row: ProxySessionRow, why: str) -> Proxied:
        return Proxied(
            row,
            msg.warn(
                msg.PLATFORM_UNAVAILABLE,
                f"broker {row.broker} {why}; this is its state as of {row.modified.isoformat()}",
                broker=row.broker,
            ),
        )

    async def refresh(self, identity: Identity, row: ProxySessionRow) -> Proxied:
        """The downstream broker's current view of ``row`` (cached; the cache if it fails)."""
        d = self.brokers.by_name.get(row.broker)
        if d is None:
            return self._stale(row, "is no longer configured here")
        try:
            wire = await self.brokers.call(d, identity, lambda c: c.session(row.remote_url))
        except EBError as exc:
            return self._stale(row, f"cannot be asked ({exc.message})")
        return self._refreshed(row.uuid, wire)

    def _refreshed(self, uuid: str, wire: ScheduledExecutionSession) -> Proxied:
        phase = routing.phase_of(wire)
        return Proxied(self.ledger.refresh(uuid, wire.dump(), phase, self.clock()))

    async def offerset(self, identity: Identity, uuid: str) -> tuple[OfferSetRow, list[Proxied]]:
        """An offer set of the caller's, its offers as their brokers see them now."""
        found = self.ledger.get_offerset(uuid)
        if found is None or not self.visible(identity, found[0].owner):
            raise NotFoundError(f"no offer set {uuid}")
        offerset, rows = found
        proxied = list(await asyncio.gather(*(self.refresh(identity, r) for r in rows)))
        return offerset, proxied

    async def list_sessions(
        self, identity: Identity, phases: Iterable[str] | None
    ) -> list[Proxied]:
        """Every broker's list of the user's sessions, under our ids (cached for the silent)."""
        brokers = self.brokers
        wanted = list(phases) if phases else None
        now = brokers.monotonic()
        asked = [
            d
            for d in brokers.all
            if brokers.headers(identity, d) is not None and d.breaker.allow(now)
        ]
        by_name = {d.name: d for d in asked}

        async def call(client: BrokerClient) -> list[ScheduledExecutionSession]:
            with on_behalf_of(brokers.headers(identity, by_name[client.name]) or {}):
                return await client.sessions(wanted)

        result = await fanout(
            [d.broker for d in asked], call, brokers.budget, clients=brokers.client
        )
        out: list[Proxied] = []
        when = self.clock()
        for broker, sessions in result.results:
            brokers.record(by_name[broker.name], None)
            for wire in sessions:
                if not wire.uuid:
                    continue
                draft = ProxyDraft(
                    uuid=routing.proxy_uuid(self.namespace, broker.name, wire.uuid),
                    broker=broker.name,
                    remote_uuid=wire.uuid,
                    remote_url=routing.remote_ref(wire),
                    remote_offerset=None,
                    phase=routing.phase_of(wire),
                    wire=wire.dump(),
                )
                out.append(Proxied(self.ledger.adopt(draft, identity.user, when)))
        failed = {w.broker: w.error for w in result.warnings}
        for name, error in failed.items():
            brokers.record(by_name[name], error)
        answered = {b.name for b, _ in result.results}
        silent = [d.name for d in brokers.all if d.name not in answered]
        owner = None if identity.user in self.admin_users else identity.user
        for row in self.ledger.list(owner, wanted, brokers=silent):
            why = failed.get(row.broker)
            out.append(
                self._stale(row, f"did not answer ({why.message})" if why else "was not asked")
            )
        out.sort(key=lambda p: p.row.created, reverse=True)
        return out

    # -- updates --------------------------------------------------------------------------------

    async def forward(self, identity: Identity, row: ProxySessionRow, phase: Phase) -> Proxied:
        """Ask ``row``'s broker to move it to ``phase`` (its refusal is ours)."""
        d = self.brokers.by_name.get(row.broker)
        if d is None:
            raise DownstreamError(
                row.broker, BrokerUnavailable("this broker is no longer configured here")
            )
        try:
            wire = await self.brokers.call(
                d, identity, lambda c: c.set_phase(row.remote_url, phase)
            )
        except EBError as exc:
            raise DownstreamError(row.broker, exc) from None
        return self._refreshed(row.uuid, wire)

    async def accept(self, identity: Identity, row: ProxySessionRow) -> Proxied:
        """Accept on the offer's broker, then reject its siblings on every other broker."""
        accepted = await self.forward(identity, row, Phase.ACCEPTED)
        found = self.ledger.get_offerset(row.offerset) if row.offerset else None
        siblings = [
            r for r in (found[1] if found else []) if r.uuid != row.uuid and r.phase == "OFFERED"
        ]
        now = self.clock()
        for sibling in siblings:
            if sibling.broker == row.broker and sibling.remote_offerset == row.remote_offerset:
                # That broker rejected its own siblings when it accepted.
                self.ledger.refresh(
                    sibling.uuid, {**sibling.wire, "phase": "REJECTED"}, "REJECTED", now
                )
        others = [
            s
            for s in siblings
            if s.broker != row.broker or s.remote_offerset != row.remote_offerset
        ]
        await self._reject_rows(identity, others)
        return accepted

    async def _reject_rows(self, identity: Identity, rows: list[ProxySessionRow]) -> None:
        async def one(sibling: ProxySessionRow) -> None:
            try:
                await self.forward(identity, sibling, Phase.REJECTED)
            except BrokerError as exc:
                log.info("could not reject sibling %s on %s: %s", sibling.uuid, sibling.broker, exc)

        await asyncio.gather(*(one(r) for r in rows))


__all__ = ["Proxied", "ProxiedSessions"]
