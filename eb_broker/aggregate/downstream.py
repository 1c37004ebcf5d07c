"""The brokers below an aggregator: how to reach each, as whom, how patiently, how healthy.

:class:`Downstreams` holds one :class:`Downstream` per configured broker (its circuit breaker,
its cached capabilities, its recent answer time) and makes every call to them: with
``eb_sdk``'s own async client (one HTTP client in the project, one per event loop and broker),
as the user (:meth:`Downstreams.headers`), bounded by the deadline; each outcome teaches the
circuit. The fan-out of a request (:mod:`.fanout`) and the proxied sessions (:mod:`.sessions`)
both call through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from eb_sdk._client import BrokerClient, ClientSettings, on_behalf_of
from eb_sdk._config import Broker
from eb_sdk._errors import BrokerUnavailable, EBError, Timeout
from eb_sdk.model import Capabilities
from eb_sdk.model import messages as msg

from ..auth import Identity, identity_headers
from ..errors import BrokerError
from .breaker import CircuitBreaker, State

log = logging.getLogger("eb_broker.aggregate")
T = TypeVar("T")


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


class DownstreamError(BrokerError):
    """A downstream broker refused or failed a forwarded call (its status, or 502/504)."""

    def __init__(self, broker: str, error: EBError) -> None:
        if isinstance(error, Timeout):
            status = 504
        elif error.status is not None and 400 <= error.status < 500:
            status = error.status
        else:
            status = 502
        first = error.messages[0].kind if error.messages else None
        kind = first or (msg.PLATFORM_UNAVAILABLE if status >= 500 else msg.CONFLICT)
        super().__init__(f"{broker}: {error.message}", kind=kind, status=status)


class CannotForward(EBError):
    """The user's identity cannot be passed on to this broker (HTTP 403)."""


def is_fault(error: EBError) -> bool:
    """Is ``error`` the broker's fault (counts for its circuit), or an answer (a 4xx)?"""
    if isinstance(error, BrokerUnavailable | Timeout):
        return True
    return error.status is None or error.status >= 500


@dataclass(frozen=True)
class Patience:
    """How long and how often the brokers below are asked (the aggregator's settings)."""

    deadline: float = 5.0
    failure_threshold: int = 3
    cooldown: float = 30.0
    capabilities_ttl: float = 60.0
    user_header: str = "X-EB-User"
    groups_header: str = "X-EB-Groups"


class Downstreams:
    """Every broker below, and every call to them (see the module docstring)."""

    def __init__(
        self,
        brokers: Iterable[tuple[Broker, str]],
        patience: Patience,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.patience = patience
        self.monotonic = monotonic
        self.all = [
            Downstream(broker, mode, CircuitBreaker(patience.failure_threshold, patience.cooldown))
            for broker, mode in brokers
        ]
        self.by_name = {d.name: d for d in self.all}
        self._client_options = ClientSettings(timeout=patience.deadline, retries=0)
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, BrokerClient]
        ] = weakref.WeakKeyDictionary()
        self._refreshing: asyncio.Future[None] | None = None

    # -- clients, identity, deadlines ---------------------------------------------------------

    def client(self, broker: Broker) -> BrokerClient:
        """This loop's client for ``broker`` (no retries: the deadline is what counts)."""
        clients = self._clients.setdefault(asyncio.get_running_loop(), {})
        client = clients.get(broker.name)
        if client is None:
            client = clients[broker.name] = BrokerClient(broker, options=self._client_options)
        return client

    async def aclose(self) -> None:
        """Finish a running refresh and close this loop's clients."""
        if self._refreshing is not None:
            await asyncio.gather(self._refreshing, return_exceptions=True)
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
                identity, self.patience.user_header, self.patience.groups_header
            )
        return None

    def record(self, d: Downstream, error: EBError | None) -> None:
        """Teach ``d``'s circuit the outcome of one call (None: it answered)."""
        if error is None:
            d.breaker.success()
        elif is_fault(error):
            d.breaker.failure(self.monotonic(), error.message)
            log.info("broker %s failed: %s", d.name, error.message)
            if d.breaker.state(self.monotonic()) == State.OPEN:
                log.warning("broker %s: circuit open after %d failures", d.name, d.breaker.failures)
        else:
            d.breaker.success()  # a 4xx is an answer: the broker is up

    async def call(
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
                return await call(self.client(d.broker))

        try:
            result = await asyncio.wait_for(run(), self.budget)
        except EBError as exc:
            self.record(d, exc)
            raise
        except TimeoutError:
            error = Timeout(f"no answer within {self.patience.deadline:g} s", broker=d.name)
            self.record(d, error)
            raise error from None
        self.record(d, None)
        return result

    @property
    def budget(self) -> float:
        """Seconds a fan-out may wait: the deadline less a margin to merge, store and answer
        (20%, at most 250 ms), so the aggregator's own answer comes within the deadline even
        on a busy machine."""
        deadline = self.patience.deadline
        return deadline - min(0.25, 0.2 * deadline)

    # -- capabilities (routing hints) -----------------------------------------------------------

    def _fresh(self, d: Downstream) -> bool:
        return d.caps is not None and self.monotonic() - d.caps_at < self.patience.capabilities_ttl

    async def capabilities_of(self, d: Downstream, client: BrokerClient) -> Capabilities | None:
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
        stale = [d for d in self.all if not self._fresh(d)]
        asked = [d for d in stale if d.breaker.allow(self.monotonic())]
        if not asked:
            return

        async def one(d: Downstream) -> None:
            with contextlib.suppress(EBError):
                await self.call(d, None, lambda c: self.capabilities_of(d, c))

        await asyncio.gather(*(one(d) for d in asked))

    def refresh_soon(self) -> None:
        """Start one background refresh of stale capabilities (if none is running)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self.refresh_capabilities())

    def known_pools(self) -> tuple[str, ...]:
        """The accelerator pools the brokers below publish."""
        return tuple(sorted({p for d in self.all if d.caps for p in d.caps.accelerators}))

    def known(self) -> list[tuple[str, Capabilities]]:
        """The capabilities known so far, by broker name."""
        return [(d.name, d.caps) for d in self.all if d.caps is not None]

    @property
    def partial(self) -> bool:
        """Are some brokers' capabilities unknown (not fetched yet, or unreadable)?"""
        return any(d.caps is None for d in self.all)

    def status(self) -> list[dict[str, Any]]:
        """Each broker's circuit and what it publishes, for ``/health`` and ``/capabilities``."""
        now = self.monotonic()
        out = []
        for d in self.all:
            item: dict[str, Any] = {"name": d.name, "url": d.broker.url, "identity": d.mode}
            item.update(d.breaker.status(now))
            if d.caps is not None:
                item["platform"] = d.caps.platform
            out.append(item)
        return out


__all__ = [
    "CannotForward",
    "Downstream",
    "DownstreamError",
    "Downstreams",
    "Patience",
    "is_fault",
]
