"""The aggregator: one broker API over many brokers (which may be aggregators themselves).

An aggregator is one more source of offers. It asks the brokers below it with ``eb_sdk``'s own
async client (one HTTP client in the project), each call bounded by a deadline, and answers
with the merged, ranked offers under its own uuids. Accepts, rejects, cancels and status reads
are forwarded to the broker that made the offer; accepting one offer rejects its siblings on
every other broker. A broker that is down or slow becomes a WARN message on the answer, and a
circuit breaker stops asking one that keeps failing.

The web handlers are the broker's own: this class offers the same methods as
:class:`~eb_broker.core.BrokerCore` (as coroutines), and :class:`Proxied` rows render through
:meth:`AggregatorCore.session_wire`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from eb_sdk._client import Answer, BrokerClient, ClientSettings, on_behalf_of
from eb_sdk._config import Broker
from eb_sdk._errors import BrokerUnavailable, EBError, Timeout
from eb_sdk._fanout import fanout
from eb_sdk._version import __version__
from eb_sdk.model import (
    Capabilities,
    ExecutionRequest,
    MessageItem,
    Phase,
    ScheduledExecutionSession,
)
from eb_sdk.model import messages as msg

from ..auth import Identity, identity_headers
from ..core import client_phase
from ..ledger import LedgerError, NotFoundError
from ..ledger.proxies import ProxyDraft, ProxyLedger
from ..ledger.tables import OfferSetRow, ProxySessionRow
from ..policies import AcceptQuery, Decision, PolicyChain, PolicyDenied, PolicyQuery
from ..translate import requested_duration, utcnow
from . import routing
from .breaker import CircuitBreaker, State

log = logging.getLogger("eb_broker.aggregate")
T = TypeVar("T")


@dataclass(frozen=True)
class AggregatorSettings:
    """The aggregator's knobs (filled from the traitlets configuration)."""

    name: str = "aggregator"
    deadline: float = 5.0
    failure_threshold: int = 3
    cooldown: float = 30.0
    capabilities_ttl: float = 60.0
    max_offers: int = 4
    offer_expiry: timedelta = timedelta(minutes=5)
    admin_users: frozenset[str] = frozenset()
    default_duration: timedelta = timedelta(hours=1)
    default_cores: int = 1
    default_memory_gib: int = 1
    user_header: str = "X-EB-User"
    groups_header: str = "X-EB-Groups"
    #: The aggregator's own capabilities (time zone, expiry...); merged with the brokers'.
    capabilities: Capabilities | None = None


@dataclass
class Downstream:
    """One broker below: how to reach it, its circuit and its cached capabilities."""

    broker: Broker
    mode: str
    breaker: CircuitBreaker
    caps: Capabilities | None = None
    caps_at: float = float("-inf")
    #: Recent answer time (seconds, moving average); None until it answered once.
    latency: float | None = None

    def observe(self, seconds: float) -> None:
        self.latency = seconds if self.latency is None else 0.7 * self.latency + 0.3 * seconds

    @property
    def name(self) -> str:
        return self.broker.name


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


class DownstreamError(LedgerError):
    """A downstream broker refused or failed a forwarded call (its status, or 502/504)."""

    def __init__(self, broker: str, error: EBError) -> None:
        super().__init__(f"{broker}: {error.message}")
        if isinstance(error, Timeout):
            self.status = 504
        elif error.status is not None and 400 <= error.status < 500:
            self.status = error.status
        else:
            self.status = 502
        first = error.messages[0].kind if error.messages else None
        self.kind = first or (msg.PLATFORM_UNAVAILABLE if self.status >= 500 else msg.CONFLICT)


class CannotForward(EBError):
    """The user's identity cannot be passed on to this broker (HTTP 403)."""


def is_fault(error: EBError) -> bool:
    """Is ``error`` the broker's fault (counts for its circuit), or an answer (a 4xx)?"""
    if isinstance(error, BrokerUnavailable | Timeout):
        return True
    return error.status is None or error.status >= 500


def _phase(wire: ScheduledExecutionSession) -> str:
    return (wire.phase or Phase.OFFERED).value


class AggregatorCore:
    """Fans requests out to the brokers below and keeps the id mapping in its ledger."""

    def __init__(
        self,
        *,
        ledger: ProxyLedger,
        brokers: Iterable[tuple[Broker, str]],
        settings: AggregatorSettings,
        policies: PolicyChain | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.settings = settings
        self.policies = policies or PolicyChain([])
        if self.policies.allocations is not None:
            raise ValueError(
                "group-allocation divides a broker's own capacity and an aggregator has none: "
                "configure it on the brokers below"
            )
        self.clock = clock
        self.monotonic = monotonic
        self.downstream = [
            Downstream(broker, mode, CircuitBreaker(settings.failure_threshold, settings.cooldown))
            for broker, mode in brokers
        ]
        self.by_name = {d.name: d for d in self.downstream}
        self.namespace = routing.namespace(settings.name)
        self._client_options = ClientSettings(timeout=settings.deadline, retries=0)
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, BrokerClient]
        ] = weakref.WeakKeyDictionary()
        self._background: set[asyncio.Task[Any]] = set()
        self._refreshing: asyncio.Future[None] | None = None

    # -- clients, identity, deadlines ---------------------------------------------------------

    def _client(self, broker: Broker) -> BrokerClient:
        """This loop's client for ``broker`` (no retries: the deadline is what counts)."""
        clients = self._clients.setdefault(asyncio.get_running_loop(), {})
        client = clients.get(broker.name)
        if client is None:
            client = clients[broker.name] = BrokerClient(broker, options=self._client_options)
        return client

    async def aclose(self) -> None:
        """Finish background work and close this loop's clients."""
        if self._refreshing is not None:
            await asyncio.gather(self._refreshing, return_exceptions=True)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        clients = self._clients.pop(asyncio.get_running_loop(), {})
        await asyncio.gather(*(c.aclose() for c in clients.values()), return_exceptions=True)

    def headers(self, identity: Identity | None, d: Downstream) -> dict[str, str] | None:
        """What tells ``d`` who the user is; None when nothing can (see docs/aggregator.md)."""
        if identity is None:
            return {}
        if d.mode == "pass-through" and identity.authorization:
            return {"Authorization": identity.authorization}
        if d.broker.token:
            return identity_headers(
                identity, self.settings.user_header, self.settings.groups_header
            )
        return None

    def _record(self, d: Downstream, error: EBError | None) -> None:
        if error is None:
            d.breaker.success()
        elif is_fault(error):
            d.breaker.failure(self.monotonic(), error.message)
            log.info("broker %s failed: %s", d.name, error.message)
            if d.breaker.state(self.monotonic()) == State.OPEN:
                log.warning("broker %s: circuit open after %d failures", d.name, d.breaker.failures)
        else:
            d.breaker.success()  # a 4xx is an answer: the broker is up

    async def _call(
        self,
        d: Downstream,
        identity: Identity | None,
        call: Callable[[BrokerClient], Awaitable[T]],
    ) -> T:
        """One call to ``d`` as the user, within the deadline; the circuit learns the outcome."""
        headers = self.headers(identity, d)
        if headers is None:
            raise CannotForward(
                "cannot pass your identity on: this aggregator holds no token of yours for it "
                "and has no service token",
                broker=d.name,
                status=403,
            )

        async def run() -> T:
            with on_behalf_of(headers):
                return await call(self._client(d.broker))

        try:
            result = await asyncio.wait_for(run(), self.budget)
        except EBError as exc:
            self._record(d, exc)
            raise
        except TimeoutError:
            error = Timeout(f"no answer within {self.settings.deadline:g} s", broker=d.name)
            self._record(d, error)
            raise error from None
        self._record(d, None)
        return result

    @property
    def budget(self) -> float:
        """Seconds a fan-out may wait: the deadline less a margin to merge, store and answer
        (20%, at most 250 ms), so the aggregator's own answer comes within the deadline even
        on a busy machine."""
        deadline = self.settings.deadline
        return deadline - min(0.25, 0.2 * deadline)

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- capabilities ---------------------------------------------------------------------------

    def _fresh(self, d: Downstream) -> bool:
        return d.caps is not None and self.monotonic() - d.caps_at < self.settings.capabilities_ttl

    async def _capabilities(self, d: Downstream, client: BrokerClient) -> Capabilities | None:
        """``d``'s capabilities, cached for ``capabilities_ttl`` (None: it publishes none)."""
        if self._fresh(d):
            return d.caps
        try:
            caps = await client.capabilities()
        except EBError as exc:
            if is_fault(exc):
                raise
            return d.caps  # e.g. 404: a broker without /capabilities is asked anyway
        d.caps, d.caps_at = caps, self.monotonic()
        return caps

    async def refresh_capabilities(self) -> None:
        """Re-read stale capabilities of every broker whose circuit lets us ask."""
        stale = [d for d in self.downstream if not self._fresh(d)]
        asked = [d for d in stale if d.breaker.allow(self.monotonic())]
        if not asked:
            return

        async def one(d: Downstream) -> None:
            with contextlib.suppress(EBError):
                await self._call(d, None, lambda c: self._capabilities(d, c))

        await asyncio.gather(*(one(d) for d in asked))

    def _known_pools(self) -> tuple[str, ...]:
        return tuple(sorted({p for d in self.downstream if d.caps for p in d.caps.accelerators}))

    def broker_status(self) -> list[dict[str, Any]]:
        """Each broker's circuit and what it publishes, for ``/health`` and ``/capabilities``."""
        now = self.monotonic()
        out = []
        for d in self.downstream:
            item: dict[str, Any] = {"name": d.name, "url": d.broker.url, "identity": d.mode}
            item.update(d.breaker.status(now))
            if d.caps is not None:
                item["platform"] = d.caps.platform
            out.append(item)
        return out

    def _refresh_soon(self) -> None:
        """Start one background refresh of stale capabilities (if none is running)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self.refresh_capabilities())

    async def capabilities(self) -> Capabilities:
        """What the brokers below can do together, from the cache (refreshed in the
        background: an aggregator above must not wait for a slow broker here).

        ``jeb:partial`` is true while some broker's capabilities are unknown, so an aggregator
        above does not skip us on incomplete hints.
        """
        self._refresh_soon()
        own = self.settings.capabilities or Capabilities(
            name=self.settings.name,
            platform="aggregate",
            version=__version__,
            executables=[],
            max_compute={},
            timezone="UTC",
            offer_expiry="PT5M",
            max_offers=self.settings.max_offers,
            max_duration="P7D",
        )
        merged = routing.merge_capabilities(
            own, [(d.name, d.caps) for d in self.downstream if d.caps is not None]
        )
        partial = any(d.caps is None for d in self.downstream)
        return Capabilities.model_validate(
            {**merged.dump(), "jeb:brokers": self.broker_status(), routing.PARTIAL: partial}
        )

    def health(self) -> dict[str, Any]:
        brokers = self.broker_status()
        up = [b for b in brokers if b["state"] != State.OPEN.value]
        return {
            "status": "ok" if len(up) == len(brokers) else "degraded",
            "version": __version__,
            "platform": "aggregate",
            "brokers": brokers,
        }

    # -- offers ---------------------------------------------------------------------------------

    def _policy_query(self, identity: Identity, request: ExecutionRequest) -> PolicyQuery:
        return PolicyQuery(
            identity=identity,
            request=request,
            now=self.clock(),
            broker=self.settings.name,
            duration=requested_duration(request, self.settings.default_duration),
            accelerator_pools=self._known_pools(),
            active_sessions=self.ledger.count_active,
        )

    async def _ask(
        self,
        identity: Identity,
        request: ExecutionRequest,
        decision: Decision,
        started: float,
    ) -> tuple[list[tuple[Downstream, Answer]], list[MessageItem], dict[str, float]]:
        """Every suitable broker's answer; WARN/INFO messages for the ones not heard from;
        how long each broker that answered took (seconds).

        The slowest brokers (by their recent answer times) are asked first: sending 50
        requests takes a while, and the last one sent should not be the one everybody waits
        for. The fan-out ends ``budget`` seconds after ``started``.
        """
        notes: list[MessageItem] = []
        asked: list[Downstream] = []
        now = self.monotonic()
        for d in self.downstream:
            if self.headers(identity, d) is None:
                notes.append(
                    msg.warn(
                        msg.UNAUTHORIZED,
                        f"broker {d.name} not asked: this aggregator cannot pass your identity "
                        "on to it (no token of yours, no service token)",
                        broker=d.name,
                    )
                )
            elif not d.breaker.allow(now):
                notes.append(
                    msg.warn(
                        msg.PLATFORM_UNAVAILABLE,
                        f"broker {d.name} not asked: it failed {d.breaker.failures} times in a "
                        f"row (last: {d.breaker.last_error or 'unknown'}); next try in "
                        f"{d.breaker.retry_in(now):.0f} s",
                        broker=d.name,
                    )
                )
            else:
                asked.append(d)
        asked.sort(key=lambda d: -(d.latency if d.latency is not None else float("inf")))
        by_name = {d.name: d for d in asked}
        took: dict[str, float] = {}

        async def call(client: BrokerClient) -> Answer | str:
            d = by_name[client.name]
            sent = self.monotonic()
            with on_behalf_of(self.headers(identity, d) or {}):
                reason = routing.unsuitable(
                    await self._capabilities(d, client),
                    request,
                    default_duration=self.settings.default_duration,
                    allowed_accelerators=decision.accelerators,
                )
                if reason:
                    return reason
                answer = await client.request(request)
            took[d.name] = self.monotonic() - sent
            d.observe(took[d.name])
            return answer

        wait = max(0.01, self.budget - (self.monotonic() - started))
        result = await fanout([d.broker for d in asked], call, wait, clients=self._client)
        answers: list[tuple[Downstream, Answer]] = []
        for broker, value in result.results:
            d = by_name[broker.name]
            self._record(d, None)
            if isinstance(value, str):
                notes.append(
                    msg.info(
                        msg.NOT_SUPPORTED, f"broker {d.name} not asked: {value}", broker=d.name
                    )
                )
            else:
                answers.append((d, value))
        for warning in result.warnings:
            d = by_name[warning.broker]
            self._record(d, warning.error)
            why = warning.error.message
            if isinstance(warning.error, Timeout):
                d.observe(self.settings.deadline)
                why = f"no answer within the deadline ({self.settings.deadline:g} s)"
            if is_fault(warning.error):
                text, kind = f"broker {d.name} did not answer: {why}", msg.PLATFORM_UNAVAILABLE
            else:  # it answered, with an error (e.g. 401: it does not accept who you are)
                text, kind = f"broker {d.name} refused the request: {why}", msg.CONFLICT
            notes.append(msg.warn(kind, text, broker=d.name))
        return answers, notes, took

    async def request_offers(
        self, identity: Identity, request: ExecutionRequest, raw: dict[str, Any]
    ) -> tuple[OfferSetRow, list[Proxied]]:
        """Ask every suitable broker at once; YES with the best offers of all, or NO."""
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
        if not problems:
            answers, heard, took = await self._ask(identity, request, decision, started)
            fanned = self.monotonic() - started
            notes += heard
            candidates = []
            for position, (d, answer) in enumerate(answers):
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
                refs = [(c.data[0].name, _ref(c.offer)) for c in dropped]
                self._spawn(self._reject(identity, refs))
            if not chosen:
                problems.append(self._nothing(len(answers)))
        now = self.clock()
        drafts = [
            ProxyDraft(
                uuid=routing.proxy_uuid(self.namespace, c.data[0].name, str(c.offer.uuid)),
                broker=c.data[0].name,
                remote_uuid=str(c.offer.uuid),
                remote_url=_ref(c.offer),
                remote_offerset=c.data[1].url,
                phase=_phase(c.offer),
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
        if took:
            slowest = max(took, key=lambda name: took[name])
            # For the Server-Timing header (see EBBroker.offerset_wire): where the time went.
            offerset.server_timing = routing.server_timing(  # type: ignore[attr-defined]
                [
                    ("fanout", fanned, f"{len(took)} brokers answered"),
                    ("slowest", took[slowest], slowest),
                    ("total", self.monotonic() - started, ""),
                ]
            )
        return offerset, [Proxied(row) for row in rows]

    def _nothing(self, answered: int) -> MessageItem:
        if not self.downstream:
            return msg.error(msg.NOT_SUPPORTED, "this aggregator has no brokers configured")
        if not answered:
            return msg.error(
                msg.PLATFORM_UNAVAILABLE,
                "no broker could be asked or answered in time (see the warnings)",
            )
        return msg.error(
            msg.NO_CAPACITY,
            f"none of the {answered} broker{'s' if answered != 1 else ''} that answered can "
            "run this (their reasons follow)",
        )

    async def _reject(self, identity: Identity, refs: list[tuple[str, str]]) -> None:
        """Reject offers on their brokers (best effort: they expire anyway), a few at a time
        so that a burst of them does not slow down the next request."""
        gate = asyncio.Semaphore(8)

        async def one(broker: str, ref: str) -> None:
            d = self.by_name.get(broker)
            if d is None:
                return
            async with gate:
                try:
                    await self._call(d, identity, lambda c: c.set_phase(ref, Phase.REJECTED))
                except EBError as exc:
                    log.info("could not reject %s on %s: %s", ref, broker, exc)

        await asyncio.gather(*(one(b, r) for b, r in refs))

    # -- reading --------------------------------------------------------------------------------

    def _visible(self, identity: Identity, owner: str) -> bool:
        return identity.user == owner or identity.user in self.settings.admin_users

    def _own(self, identity: Identity, uuid: str) -> ProxySessionRow:
        row = self.ledger.get(uuid)
        if row is None or not self._visible(identity, row.owner):
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

    async def _refresh(self, identity: Identity, row: ProxySessionRow) -> Proxied:
        """The downstream broker's current view of ``row`` (cached; the cache if it fails)."""
        d = self.by_name.get(row.broker)
        if d is None:
            return self._stale(row, "is no longer configured here")
        try:
            wire = await self._call(d, identity, lambda c: c.session(row.remote_url))
        except EBError as exc:
            return self._stale(row, f"cannot be asked ({exc.message})")
        return Proxied(self.ledger.refresh(row.uuid, wire.dump(), _phase(wire), self.clock()))

    async def get_offerset(
        self, identity: Identity, uuid: str
    ) -> tuple[OfferSetRow, list[Proxied]]:
        found = self.ledger.get_offerset(uuid)
        if found is None or not self._visible(identity, found[0].owner):
            raise NotFoundError(f"no offer set {uuid}")
        offerset, rows = found
        proxied = list(await asyncio.gather(*(self._refresh(identity, r) for r in rows)))
        return offerset, proxied

    async def get_session(self, identity: Identity, uuid: str) -> Proxied:
        return await self._refresh(identity, self._own(identity, uuid))

    async def list_sessions(
        self, identity: Identity, phases: Iterable[str] | None
    ) -> list[Proxied]:
        """Every broker's list of the user's sessions, under our ids (cached for the silent)."""
        wanted = list(phases) if phases else None
        now = self.monotonic()
        asked = [
            d
            for d in self.downstream
            if self.headers(identity, d) is not None and d.breaker.allow(now)
        ]
        by_name = {d.name: d for d in asked}

        async def call(client: BrokerClient) -> list[ScheduledExecutionSession]:
            with on_behalf_of(self.headers(identity, by_name[client.name]) or {}):
                return await client.sessions(wanted)

        result = await fanout([d.broker for d in asked], call, self.budget, clients=self._client)
        out: list[Proxied] = []
        when = self.clock()
        for broker, sessions in result.results:
            self._record(by_name[broker.name], None)
            for wire in sessions:
                if not wire.uuid:
                    continue
                draft = ProxyDraft(
                    uuid=routing.proxy_uuid(self.namespace, broker.name, wire.uuid),
                    broker=broker.name,
                    remote_uuid=wire.uuid,
                    remote_url=_ref(wire),
                    remote_offerset=None,
                    phase=_phase(wire),
                    wire=wire.dump(),
                )
                out.append(Proxied(self.ledger.adopt(draft, identity.user, when)))
        failed = {w.broker: w.error for w in result.warnings}
        for name, error in failed.items():
            self._record(by_name[name], error)
        silent = [
            d.name for d in self.downstream if d.name not in {b.name for b, _ in result.results}
        ]
        owner = None if identity.user in self.settings.admin_users else identity.user
        for row in self.ledger.list(owner, wanted, brokers=silent):
            why = failed.get(row.broker)
            out.append(
                self._stale(row, f"did not answer ({why.message})" if why else "was not asked")
            )
        out.sort(key=lambda p: p.row.created, reverse=True)
        return out

    # -- updates --------------------------------------------------------------------------------

    async def _forward(self, identity: Identity, row: ProxySessionRow, phase: Phase) -> Proxied:
        d = self.by_name.get(row.broker)
        if d is None:
            raise DownstreamError(
                row.broker, BrokerUnavailable("this broker is no longer configured here")
            )
        try:
            wire = await self._call(d, identity, lambda c: c.set_phase(row.remote_url, phase))
        except EBError as exc:
            raise DownstreamError(row.broker, exc) from None
        return Proxied(self.ledger.refresh(row.uuid, wire.dump(), _phase(wire), self.clock()))

    async def accept(self, identity: Identity, uuid: str) -> Proxied:
        """Accept on the offer's broker, then reject its siblings on every other broker."""
        row = self._own(identity, uuid)
        if self.policies.policies:
            active = self.ledger.count_active(identity.user)
            refusals = self.policies.check_accept(AcceptQuery(identity, active))
            if refusals:
                raise PolicyDenied(refusals)
        accepted = await self._forward(identity, row, Phase.ACCEPTED)
        found = self.ledger.get_offerset(row.offerset) if row.offerset else None
        siblings = [
            r for r in (found[1] if found else []) if r.uuid != uuid and r.phase == "OFFERED"
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
                await self._forward(identity, sibling, Phase.REJECTED)
            except LedgerError as exc:
                log.info("could not reject sibling %s on %s: %s", sibling.uuid, sibling.broker, exc)

        await asyncio.gather(*(one(r) for r in rows))

    async def update_phase(self, identity: Identity, uuid: str, value: str) -> Proxied:
        target = client_phase(value)
        if target == Phase.ACCEPTED:
            return await self.accept(identity, uuid)
        return await self._forward(identity, self._own(identity, uuid), target)

    # -- rendering ------------------------------------------------------------------------------

    def session_wire(self, url: str, proxied: Proxied) -> ScheduledExecutionSession:
        """The session as our client sees it: our uuid and URL, the route, any warning."""
        wire = routing.rewrite_session(
            proxied.wire,
            uuid=proxied.uuid,
            url=url,
            broker=proxied.row.broker,
            messages=[proxied.stale] if proxied.stale else (),
        )
        return ScheduledExecutionSession.model_validate(wire)


def _ref(wire: ScheduledExecutionSession) -> str:
    """How to address a downstream session: its URL, else its uuid."""
    return (wire.meta.url if wire.meta and wire.meta.url else None) or str(wire.uuid)


class Refresher:
    """The aggregator's background work (in place of a reconciler): keeps the brokers'
    capabilities and circuits current, so ``/health`` shows a dead broker without traffic."""

    def __init__(self, core: AggregatorCore) -> None:
        self.core = core
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def wake(self) -> None:
        """Nothing to reconcile: sessions live on the brokers below."""

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.core.refresh_capabilities()
            except Exception:
                log.exception("refreshing the brokers' capabilities failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.core.settings.capabilities_ttl)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.core.aclose()


__all__ = [
    "AggregatorCore",
    "AggregatorSettings",
    "Downstream",
    "DownstreamError",
    "Proxied",
    "Refresher",
]
