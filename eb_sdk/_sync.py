"""The sync API (``eb.request``, ``eb.sessions``, ...): :mod:`eb_sdk.aio` on the portal loop.

The request is built (and a bad phrase rejected) in the caller's thread, before anything is
handed to the background loop, so errors in what the user typed point at the user's line.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta, tzinfo
from typing import Any

from . import aio
from ._client import ClientSettings, forget_clients, settings
from ._config import BrokerSpec, resolve_brokers
from ._lists import BrokerList, SessionList
from ._portal import run_sync
from ._request import Executable, Start, build_request
from .model import (
    AbstractComputeResource,
    AbstractDataResource,
    AbstractStorageResource,
    Interactivity,
)
from .offers import Offer, Offers
from .sessions import PhaseSpec, Session

__all__ = ["brokers", "configure", "direct", "find_offer", "request", "session", "sessions"]


def request(
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
    timeout: float | None = None,
    tz: str | tzinfo | None = None,
) -> Offers:
    """Ask every broker at once when and where ``executable`` can run.

    ``start`` is a phrase ("now", "within 10 min", "this afternoon", "Mon-Wed 09:00-12:00"),
    ``duration`` one too ("2h", "90 min"); ``interactivity`` (``eb.Interactivity(bandwidth=100,
    latency=30)``) states network needs between you and the session. Brokers that fail or miss
    the ``timeout`` (seconds) become ``offers.warnings``; only when every broker fails is an
    error raised. A broker's NO is not an error either: the offers are then empty and
    ``offers.reasons`` says why.
    """
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
    asked = run_sync(aio.ask(req, brokers, timeout))
    offers = [Offer(wire, b, url) for b, wire, url in asked.offers()]
    return Offers(offers, answers=asked.answers, warnings=asked.warnings, request=req)


def direct(
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
) -> Session:
    """Book the earliest slot at once (``POST /direct``), trying the brokers in order.

    Raises :class:`RequestRejected` (with every broker's reasons) when none can run it.
    """
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
    broker, wire = run_sync(aio.book_direct(req, brokers))
    return Session(wire, broker)


def sessions(
    phases: PhaseSpec = None, *, brokers: BrokerSpec | None = None, timeout: float | None = None
) -> SessionList[Session]:
    """My sessions on every broker (optionally only in ``phases``), newest first."""
    found, warnings = run_sync(aio.list_sessions(phases, brokers, timeout))
    return SessionList([Session(w, b) for b, w in aio._newest_first(found)], warnings)


def session(ref: str, *, brokers: BrokerSpec | None = None) -> Session:
    """A session by uuid (every broker is asked) or by URL."""
    broker, wire = run_sync(aio.locate(ref, brokers))
    return Session(wire, broker)


def find_offer(ref: str, *, brokers: BrokerSpec | None = None) -> Offer:
    """An offer by uuid or URL, to ``accept()`` it later (e.g. in another process)."""
    broker, wire = run_sync(aio.locate(ref, brokers))
    return Offer(wire, broker)


def brokers(brokers: BrokerSpec | None = None, *, timeout: float | None = None) -> BrokerList:
    """The brokers ``request`` would ask, each with its health."""
    return run_sync(aio.check_brokers(brokers, timeout))


def configure(
    brokers: BrokerSpec | None = None,
    *,
    request_timeout: float | None = None,
    timeout: float | None = None,
    retries: int | None = None,
) -> None:
    """Set defaults for this process: the brokers to ask (instead of the environment's),
    the fan-out deadline, the per-call HTTP timeout and the number of retries."""
    if brokers is not None:
        resolve_brokers(brokers)  # fail now, not at the first request
        aio.defaults.brokers = brokers
    if request_timeout is not None:
        aio.defaults.request_timeout = request_timeout
    changed = ClientSettings(
        timeout=settings.timeout if timeout is None else timeout,
        retries=settings.retries if retries is None else retries,
        backoff=settings.backoff,
        backoff_max=settings.backoff_max,
    )
    if changed != settings:
        settings.timeout, settings.retries = changed.timeout, changed.retries
        forget_clients()


def reset() -> None:
    """Forget ``configure``'s choices (tests, or a notebook starting over)."""
    aio.defaults.brokers = None
    aio.defaults.request_timeout = aio.Defaults().request_timeout
    fresh = ClientSettings()
    settings.timeout, settings.retries = fresh.timeout, fresh.retries
    forget_clients()
