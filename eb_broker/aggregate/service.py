"""The aggregator behind the :class:`~eb_broker.service.BrokerService` seam.

An aggregator is one more source of offers: it asks the brokers below it (which may be
aggregators themselves) and answers with the merged, ranked offers under its own uuids.
Accepts, rejects, cancels and status reads are forwarded to the broker that made the offer. A
broker that is down or slow becomes a WARN message on the answer, and a circuit breaker stops
asking one that keeps failing. The parts: :mod:`.downstream` (every call to a broker below),
:mod:`.fanout` (one request to all of them), :mod:`.sessions` (our ids for their sessions),
:mod:`.routing` (the pure rules: whom to ask, how to rank, how to rewrite).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eb_sdk._client import Answer
from eb_sdk._config import Broker
from eb_sdk.model import Capabilities, ExecutionRequest, Phase, ScheduledExecutionSession
from eb_sdk.model import messages as msg

from ..auth import Identity
from ..clock import utcnow
from ..errors import BrokerError, NothingOffered
from ..ledger.proxies import ProxyDraft, ProxyLedger
from ..ledger.tables import OfferSetRow
from ..policies import AcceptQuery, PolicyChain, PolicyDenied, PolicyQuery
from ..service import ArchivePage, ArchiveQuery, Gauges, Health, Links, OfferSetAnswer, Profile
from ..translate import client_phase, offerset_to_wire, requested_duration
from . import routing
from .breaker import State
from .downstream import Downstream, Downstreams, Patience
from .fanout import ask, nothing_offered, reject_offers
from .sessions import Proxied, ProxiedSessions

log = logging.getLogger("eb_broker.aggregate")


@dataclass(frozen=True)
class AggregatorSettings:
    """The aggregator's own knobs (filled from the traitlets configuration)."""

    name: str = "aggregator"
    max_offers: int = 4
    offer_expiry: timedelta = timedelta(minutes=5)
    admin_users: frozenset[str] = frozenset()
    default_duration: timedelta = timedelta(hours=1)
    default_cores: int = 1
    default_memory_gib: int = 1


class AggregatorService:
    """The :class:`~eb_broker.service.BrokerService` of an aggregator (module docstring)."""

    def __init__(
        self,
        *,
        ledger: ProxyLedger,
        brokers: Iterable[tuple[Broker, str]],
        settings: AggregatorSettings,
        profile: Profile,
        patience: Patience | None = None,
        policies: PolicyChain | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.settings = settings
        self.profile = profile
        self.policies = policies or PolicyChain([])
        if self.policies.allocations is not None:
            raise ValueError(
                "group-allocation divides a broker's own capacity and an aggregator has none: "
                "configure it on the brokers below"
            )
        self.clock = clock
        self.monotonic = monotonic
        self.brokers = Downstreams(brokers, patience or Patience(), monotonic)
        self.namespace = routing.namespace(settings.name)
        self.sessions = ProxiedSessions(
            ledger, self.brokers, self.namespace, settings.admin_users, clock
        )
        self._background: set[asyncio.Task[Any]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- offers ---------------------------------------------------------------------------------

    def _policy_query(self, identity: Identity, request: ExecutionRequest) -> PolicyQuery:
        return PolicyQuery(
            identity=identity,
            request=request,
            now=self.clock(),
            broker=self.settings.name,
            duration=requested_duration(request, self.settings.default_duration),
            accelerator_pools=self.brokers.known_pools(),
            active_sessions=self.ledger.count_active,
        )

    async def _offers(
        self, identity: Identity, request: ExecutionRequest, raw: dict[str, Any]
    ) -> tuple[OfferSetRow, list[Proxied], str]:
        """Ask every suitable broker at once; YES with the best offers of all, or NO; and the
        ``Server-Timing`` of the fan-out."""
        started = self.monotonic()
        applied = await self.policies.apply(
            self._policy_query(identity, request),
            default_cores=self.settings.default_cores,
            default_memory_gib=self.settings.default_memory_gib,
        )
        request, decision = applied.request, applied.decision
        notes, problems = applied.notes, applied.refusals
        chosen: list[routing.Candidate[tuple[Downstream, Answer]]] = []
        took: dict[str, float] = {}
        fanned = 0.0
        if not problems:
            asked = await ask(
                self.brokers, identity, request, decision, started, self.settings.default_duration
            )
            fanned, took = self.monotonic() - started, asked.took
            notes += asked.notes
            candidates = []
            for position, (d, answer) in enumerate(asked.answers):
                notes += [routing.from_broker(m, d.name) for m in answer.messages]
                candidates += [
                    routing.Candidate(routing.origin(offer, d.name), position, offer, (d, answer))
                    for offer in answer.offers
                    if offer.uuid
                ]
            chosen, dropped = routing.choose(
                routing.rank(candidates, request), self.settings.max_offers
            )
            if dropped:
                refs = [(c.data[0].name, routing.remote_ref(c.offer)) for c in dropped]
                self._spawn(reject_offers(self.brokers, identity, refs))
            if not chosen:
                problems.append(nothing_offered(self.brokers, len(asked.answers)))
        now = self.clock()
        drafts = [
            ProxyDraft(
                uuid=routing.proxy_uuid(self.namespace, c.data[0].name, str(c.offer.uuid)),
                broker=c.data[0].name,
                remote_uuid=str(c.offer.uuid),
                remote_url=routing.remote_ref(c.offer),
                remote_offerset=c.data[1].url,
                phase=routing.phase_of(c.offer),
                wire=c.offer.dump(),
            )
            for c in chosen
        ]
        expiries = [c.offer.expires for c in chosen if c.offer.expires is not None]
        offerset, rows = self.ledger.create_offerset(
            owner=identity.user,
            request=raw,
            result="YES" if drafts else "NO",
            messages=[m.dump() for m in [*notes, *problems]],
            drafts=drafts,
            now=now,
            expires=max(expiries) if expiries else now + self.settings.offer_expiry,
        )
        timing = ""
        if took:
            slowest = max(took, key=lambda name: took[name])
            timing = routing.server_timing(
                [
                    ("fanout", fanned, f"{len(took)} brokers answered"),
                    ("slowest", took[slowest], slowest),
                    ("total", self.monotonic() - started, ""),
                ]
            )
        return offerset, [Proxied(row) for row in rows], timing

    def _offerset(
        self, offerset: OfferSetRow, offers: Sequence[Proxied], links: Links, timing: str = ""
    ) -> OfferSetAnswer:
        wire = offerset_to_wire(
            uuid=offerset.uuid,
            url=links.offerset(offerset.uuid),
            created=offerset.created,
            result=offerset.result,
            messages=offerset.messages or [],
            offers=[p.to_wire(links.session(p.uuid)) for p in offers],
        )
        return OfferSetAnswer(wire, timing)

    async def request_offers(
        self, identity: Identity, request: ExecutionRequest, raw: dict[str, Any], links: Links
    ) -> OfferSetAnswer:
        offerset, offers, timing = await self._offers(identity, request, raw)
        return self._offerset(offerset, offers, links, timing)

    async def direct(
        self, identity: Identity, request: ExecutionRequest, raw: dict[str, Any], links: Links
    ) -> ScheduledExecutionSession:
        offerset, offers, _ = await self._offers(identity, request, raw)
        if not offers:
            raise NothingOffered(self._offerset(offerset, offers, links).offerset.messages or [])
        return await self.update_phase(identity, offers[0].uuid, Phase.ACCEPTED.value, links)

    # -- sessions -------------------------------------------------------------------------------

    async def get_offerset(self, identity: Identity, uuid: str, links: Links) -> OfferSetAnswer:
        offerset, offers = await self.sessions.offerset(identity, uuid)
        return self._offerset(offerset, offers, links)

    async def get_session(
        self, identity: Identity, uuid: str, links: Links
    ) -> ScheduledExecutionSession:
        proxied = await self.sessions.refresh(identity, self.sessions.own(identity, uuid))
        return proxied.to_wire(links.session(uuid))

    async def list_sessions(
        self, identity: Identity, phases: Sequence[str] | None, links: Links
    ) -> list[ScheduledExecutionSession]:
        found = await self.sessions.list_sessions(identity, phases)
        return [p.to_wire(links.session(p.uuid)) for p in found]

    async def update_phase(
        self, identity: Identity, uuid: str, value: str, links: Links
    ) -> ScheduledExecutionSession:
        target = client_phase(value)
        row = self.sessions.own(identity, uuid)
        if target == Phase.ACCEPTED:
            if self.policies.policies:
                active = self.ledger.count_active(identity.user)
                refusals = self.policies.check_accept(AcceptQuery(identity, active))
                if refusals:
                    raise PolicyDenied(refusals)
            proxied = await self.sessions.accept(identity, row)
        else:
            proxied = await self.sessions.forward(identity, row, target)
        return proxied.to_wire(links.session(uuid))

    # -- what the aggregator says of itself -----------------------------------------------------

    async def capabilities(self) -> Capabilities:
        """What the brokers below can do together, from the cache (refreshed in the
        background: an aggregator above must not wait for a slow broker here).

        ``jeb:partial`` is true while some broker's capabilities are unknown, so an aggregator
        above does not skip us on incomplete hints.
        """
        self.brokers.refresh_soon()
        own = self.profile.capabilities(
            executables=[],
            max_compute={},
            policies=self.policies.names,
            extensions=["jeb:starts", "jeb:accelerators", "jeb:route"],
            **{"jeb:policies": self.policies.summaries()},
        )
        merged = routing.merge_capabilities(own, self.brokers.known())
        return Capabilities.model_validate(
            {
                **merged.dump(),
                "jeb:brokers": self.brokers.status(),
                routing.PARTIAL: self.brokers.partial,
            }
        )

    async def health(self) -> Health:
        brokers = self.brokers.status()
        up = [b for b in brokers if b["state"] != State.OPEN.value]
        status = "ok" if len(up) == len(brokers) else "degraded"
        return Health(status=status, platform=self.profile.platform, brokers=brokers)

    async def gauges(self) -> Gauges:
        return Gauges(
            sessions=self.ledger.count_by_phase(),
            circuits={b["name"]: b["state"] for b in self.brokers.status()},
        )

    async def archive(self, identity: Identity, query: ArchiveQuery) -> ArchivePage:
        raise BrokerError(
            "an aggregator keeps no archive: ask the brokers below it",
            kind=msg.NOT_FOUND,
            status=404,
        )

    # -- life cycle: keep the brokers' capabilities and circuits current ----------------------

    async def start(self) -> None:
        """Refresh the brokers' capabilities in the background, so ``/health`` shows a dead
        broker without traffic."""
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.brokers.refresh_capabilities()
            except Exception:
                log.exception("refreshing the brokers' capabilities failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.brokers.patience.capabilities_ttl)

    async def close(self) -> None:
        """Stop refreshing, finish background work, close this loop's clients and policies."""
        self._stop.set()
        if self._refresher is not None:
            await self._refresher
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.brokers.aclose()
        await self.policies.close()


__all__ = ["AggregatorService", "AggregatorSettings"]
