"""The public async API: ``from eb_sdk import aio`` and ``await aio.request(...)``.

Everything the sync API does, as coroutines, for code that has its own event loop (a web
service, a JupyterLab extension, a spawner). The sync functions in :mod:`eb_sdk` are these
coroutines run on the background loop of :mod:`eb_sdk._portal`.

HTTP clients are shared per event loop; ``await aio.aclose()`` closes the running loop's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit

from ._client import Answer, BrokerClient, aclose_clients, client_for
from ._config import Broker, BrokerSpec, resolve_brokers
from ._errors import EBError, NotFound, RequestRejected, summarize
from ._fanout import BrokerWarning, fanout
from ._lists import BrokerList, BrokerStatus, SessionList
from ._request import Executable, Start, build_request
from ._wireview import available_start
from .model import (
    AbstractComputeResource,
    AbstractDataResource,
    AbstractStorageResource,
    ExecutionRequest,
    Interactivity,
    Phase,
    ScheduledExecutionSession,
)
from .offers import AsyncOffer, AsyncOffers
from .sessions import AsyncSession, PhaseSpec, phases_of

__all__ = [
    "Batch",
    "Broker",
    "Offer",
    "Offers",
    "Phase",
    "Session",
    "aclose",
    "brokers",
    "direct",
    "find_offer",
    "load_batch",
    "map",
    "request",
    "session",
    "sessions",
]

Offer = AsyncOffer
Offers = AsyncOffers
Session = AsyncSession


@dataclass
class Defaults:
    """What ``eb.configure`` sets: brokers to ask and the fan-out deadline."""

    brokers: BrokerSpec | None = None
    request_timeout: float = 20.0


defaults = Defaults()


def _brokers(spec: BrokerSpec | None) -> list[Broker]:
    return resolve_brokers(spec if spec is not None else defaults.brokers)


def _deadline(timeout: float | None) -> float:
    return defaults.request_timeout if timeout is None else timeout


# -- request -----------------------------------------------------------------------------------


@dataclass
class Asked:
    """Every broker's answer to one request, before it is wrapped as (a)sync Offers."""

    request: ExecutionRequest
    answers: list[tuple[Broker, Answer]]
    warnings: list[BrokerWarning]

    def offers(self) -> list[tuple[Broker, ScheduledExecutionSession, str | None]]:
        found = [(b, offer, a.url) for b, a in self.answers for offer in a.offers]
        latest = datetime.max.replace(tzinfo=UTC)

        def start(item: tuple[Broker, ScheduledExecutionSession, str | None]) -> datetime:
            return available_start(item[1]) or latest

        return sorted(found, key=start)  # stable: brokers' own order breaks ties


async def ask(
    request: ExecutionRequest, brokers: BrokerSpec | None, deadline: float | None
) -> Asked:
    """Send ``request`` to every broker at once; failures become warnings."""
    chosen = _brokers(brokers)

    async def call(client: BrokerClient) -> Answer:
        return await client.request(request)

    result = await fanout(chosen, call, _deadline(deadline))
    result.raise_if_all_failed()
    return Asked(request, result.results, result.warnings)


async def request(
    executable: Executable,
    *,
    compute: AbstractComputeResource | dict[str, Any] | None = None,
    storage: AbstractStorageResource | Sequence[AbstractStorageResource] | None = None,
    data: AbstractDataResource | str | Sequence[AbstractDataResource | str] | None = None,
    duration: str | timedelta | None = None,
    start: Start | None = None,
    name: str | None = None,
    interactivity: Interactivity | dict[str, Any] | None = None,
    brokers: BrokerSpec | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - the fan-out deadline, as in eb.request
    tz: str | tzinfo | None = None,
) -> AsyncOffers:
    """Ask every broker when and where ``executable`` can run; see :func:`eb_sdk.request`."""
    req = build_request(
        executable,
        compute=compute,
        storage=storage,
        data=data,
        duration=duration,
        start=start,
        name=name,
        interactivity=interactivity,
        tz=tz,
    )
    asked = await ask(req, brokers, timeout)
    offers = [AsyncOffer(wire, b, url) for b, wire, url in asked.offers()]
    return AsyncOffers(offers, answers=asked.answers, warnings=asked.warnings, request=req)


# -- direct ------------------------------------------------------------------------------------


async def book_direct(
    request: ExecutionRequest, brokers: BrokerSpec | None
) -> tuple[Broker, ScheduledExecutionSession]:
    """``POST /direct`` to each broker in turn until one books it."""
    errors: list[EBError] = []
    for broker in _brokers(brokers):
        try:
            return broker, await client_for(broker).direct(request)
        except EBError as exc:
            errors.append(exc)
    rejected = [e for e in errors if isinstance(e, RequestRejected)]
    if rejected:
        text = "; ".join(str(e) for e in errors)
        raise RequestRejected(text, messages=[m for e in rejected for m in e.messages])
    raise summarize(errors)


async def direct(
    executable: Executable,
    *,
    compute: AbstractComputeResource | dict[str, Any] | None = None,
    storage: AbstractStorageResource | Sequence[AbstractStorageResource] | None = None,
    data: AbstractDataResource | str | Sequence[AbstractDataResource | str] | None = None,
    duration: str | timedelta | None = None,
    start: Start | None = None,
    name: str | None = None,
    interactivity: Interactivity | dict[str, Any] | None = None,
    brokers: BrokerSpec | None = None,
    tz: str | tzinfo | None = None,
) -> AsyncSession:
    """Book the earliest slot at once (``POST /direct``), broker by broker in order."""
    req = build_request(
        executable,
        compute=compute,
        storage=storage,
        data=data,
        duration=duration,
        start=start,
        name=name,
        interactivity=interactivity,
        tz=tz,
    )
    broker, wire = await book_direct(req, brokers)
    return AsyncSession(wire, broker)


# -- sessions ----------------------------------------------------------------------------------


async def list_sessions(
    phases: PhaseSpec, brokers: BrokerSpec | None, deadline: float | None
) -> tuple[list[tuple[Broker, ScheduledExecutionSession]], list[BrokerWarning]]:
    wanted = sorted(p.value for p in phases_of(phases)) if phases is not None else None

    async def call(client: BrokerClient) -> list[ScheduledExecutionSession]:
        return await client.sessions(wanted)

    result = await fanout(_brokers(brokers), call, _deadline(deadline))
    result.raise_if_all_failed()
    found = [(b, s) for b, items in result.results for s in items]
    return found, result.warnings


async def sessions(
    phases: PhaseSpec = None,
    *,
    brokers: BrokerSpec | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - the fan-out deadline
) -> SessionList[AsyncSession]:
    """My sessions on every broker (optionally only in ``phases``), newest first."""
    found, warnings = await list_sessions(phases, brokers, timeout)
    return SessionList([AsyncSession(w, b) for b, w in _newest_first(found)], warnings)


def _newest_first(
    found: list[tuple[Broker, ScheduledExecutionSession]],
) -> list[tuple[Broker, ScheduledExecutionSession]]:
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(
        found, key=lambda bw: (bw[1].meta.created if bw[1].meta else None) or oldest, reverse=True
    )


def _broker_of_url(url: str, configured: list[Broker]) -> Broker:
    """The configured broker a session/offer URL belongs to, else one made from the URL."""
    for broker in configured:
        if url.startswith(broker.url + "/"):
            return broker
    path = urlsplit(url).path.rstrip("/")
    for marker in ("/sessions/", "/offersets/"):
        if marker in path:
            base = url[: url.rindex(marker)]
            return Broker(base).with_defaults(os.environ)
    raise NotFound(f"{url} is not a session URL (…/sessions/<uuid>)")


async def locate(
    ref: str, brokers: BrokerSpec | None = None
) -> tuple[Broker, ScheduledExecutionSession]:
    """Find a session or offer by uuid (asking every broker) or by its URL."""
    ref = ref.strip()
    if ref.startswith(("http://", "https://")):
        try:
            configured = _brokers(brokers)
        except EBError:
            configured = []
        broker = _broker_of_url(ref, configured)
        return broker, await client_for(broker).session(ref)

    async def call(client: BrokerClient) -> ScheduledExecutionSession:
        return await client.session(ref)

    result = await fanout(_brokers(brokers), call, _deadline(None))
    if result.results:
        return result.results[0]
    if all(isinstance(w.error, NotFound) for w in result.warnings):
        asked = ", ".join(w.broker for w in result.warnings)
        raise NotFound(f"no broker knows {ref} (asked {asked})")
    raise summarize([w.error for w in result.warnings])


async def session(ref: str, *, brokers: BrokerSpec | None = None) -> AsyncSession:
    """A session by uuid or URL (``eb show``)."""
    broker, wire = await locate(ref, brokers)
    return AsyncSession(wire, broker)


async def find_offer(ref: str, *, brokers: BrokerSpec | None = None) -> AsyncOffer:
    """An offer by uuid or URL, to accept or reject it later (``eb accept``)."""
    broker, wire = await locate(ref, brokers)
    return AsyncOffer(wire, broker)


# -- brokers -----------------------------------------------------------------------------------


async def check_brokers(brokers: BrokerSpec | None, deadline: float | None) -> BrokerList:
    chosen = _brokers(brokers)

    async def call(client: BrokerClient) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        health = await client.health()
        return health, (time.perf_counter() - started) * 1000

    result = await fanout(chosen, call, _deadline(deadline))
    answered = {b.url: value for b, value in result.results}
    failed = {w.broker: w.error for w in result.warnings}
    out = BrokerList()
    for b in chosen:
        if b.url in answered:
            health, ms = answered[b.url]
            status = str(health.get("status", "ok")).lower()
            out.append(
                BrokerStatus(
                    b.name,
                    b.url,
                    b.source,
                    ok=status in ("ok", "pass", "healthy", "up"),
                    platform=str(health.get("platform", "")),
                    version=str(health.get("version", "")),
                    latency_ms=ms,
                    error="" if status == "ok" else status,
                    health=health,
                )
            )
        else:
            error = failed.get(b.name)
            text = error.message if error is not None else "no answer"
            out.append(BrokerStatus(b.name, b.url, b.source, ok=False, error=text))
    return out


async def brokers(
    brokers: BrokerSpec | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - the fan-out deadline
) -> BrokerList:
    """The brokers that would be asked, each with its health (``GET /health``)."""
    return await check_brokers(brokers, timeout)


async def aclose() -> None:
    """Close the HTTP clients of the running event loop."""
    await aclose_clients()


# -- batches (imported last: the batch engine uses the functions above) --------------------------

from .batch import AsyncBatch as Batch  # noqa: E402
from .batch import amap as map  # noqa: E402


async def load_batch(ref: str, *, brokers: BrokerSpec | None = None) -> Batch:
    """A saved batch by id or directory, followed on the running loop (``eb.Batch.load``)."""
    return await Batch.load(ref, brokers=brokers)
