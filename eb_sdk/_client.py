"""The async HTTP client for ONE broker: typed errors, retries, the reference broker's quirks.

Retries (exponential backoff with jitter) happen only where repeating cannot do harm: every
GET, and any call whose connection could not even be opened (nothing was sent). A POST that
reached the broker is never repeated, because accepting or booking twice is not harmless.

Interoperability with the reference broker: ``POST /requests`` may answer 303 with the body
(we read it; httpx does not follow 303 by default) or 303 with an empty body (we GET the
``Location``); a URL the broker gives us is only followed with our credentials when it is on
the broker's own origin. Unknown fields and kind spellings are the wire model's business.

One ``httpx.AsyncClient`` is bound to the event loop that created it, so :func:`client_for`
keeps one client per (event loop, broker): the sync facade's background loop and a user's own
loop (``eb_sdk.aio``) each get theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import random
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from ._config import Broker
from ._errors import (
    BrokerUnavailable,
    ConfigError,
    EBError,
    InvalidRequest,
    RequestRejected,
    error_from_response,
)
from ._version import __version__
from .model import (
    Capabilities,
    EnumValueUpdate,
    ExecutionRequest,
    MessageItem,
    OfferSetResponse,
    Phase,
    ScheduledExecutionSession,
)

__all__ = [
    "Answer",
    "BrokerClient",
    "ClientSettings",
    "aclose_clients",
    "client_for",
    "on_behalf_of",
    "settings",
]


@dataclass
class ClientSettings:
    """Knobs shared by every client (``eb.configure`` changes them)."""

    timeout: float = 30.0
    """Seconds for one HTTP exchange (connect, send, read)."""
    retries: int = 3
    """Extra attempts of a retryable call."""
    backoff: float = 0.2
    """First pause between attempts; doubles each time, with jitter, at most ``backoff_max``."""
    backoff_max: float = 5.0


settings = ClientSettings()

# Extra headers for every call made in this context (see on_behalf_of).
_ON_BEHALF: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "eb_on_behalf", default=None
)


@contextlib.contextmanager
def on_behalf_of(headers: Mapping[str, str]) -> Iterator[None]:
    """Send ``headers`` with every call made in this context (and tasks started in it).

    An aggregator asks its downstream brokers for its users: the user's own
    ``Authorization`` (token pass-through), or ``X-EB-User``/``X-EB-Groups`` next to the
    aggregator's service token. One shared client per broker serves every user that way.
    Headers given here replace the broker's own of the same name; like those, they are only
    sent to the broker's own origin.
    """
    token = _ON_BEHALF.set(dict(headers))
    try:
        yield
    finally:
        _ON_BEHALF.reset(token)


_RETRY_STATUS = frozenset({502, 503, 504})
# Errors raised before any byte of the request left: always safe to repeat.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass
class Answer:
    """A broker's answer to a request: the offer set, its offers and where it lives."""

    offerset: OfferSetResponse
    offers: list[ScheduledExecutionSession]
    url: str | None

    @property
    def messages(self) -> list[MessageItem]:
        return self.offerset.messages


def _session(data: Any, broker: str) -> ScheduledExecutionSession:
    if not isinstance(data, dict):
        raise EBError(f"expected a session object, got {type(data).__name__}", broker=broker)
    try:
        return ScheduledExecutionSession.model_validate(data)
    except ValueError as exc:
        raise EBError(f"the broker sent a session we cannot read: {exc}", broker=broker) from None


class BrokerClient:
    """Typed calls to one broker's HTTP API. Use :func:`client_for` to share connections."""

    def __init__(
        self,
        broker: Broker,
        *,
        options: ClientSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.broker = broker
        self.options = options or settings
        self._http = httpx.AsyncClient(
            timeout=self.options.timeout,
            follow_redirects=False,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": f"eb-sdk/{__version__}"},
        )
        self._base: str | None = None if broker.hub_service else broker.url

    @property
    def name(self) -> str:
        return self.broker.name

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> BrokerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- URLs -------------------------------------------------------------------------------

    async def base_url(self) -> str:
        """The broker's base URL (looked up through the JupyterHub API the first time)."""
        if self._base is None:
            self._base = await self._resolve_hub(self.broker.hub_service or "eb-broker")
        return self._base

    async def _resolve_hub(self, service: str) -> str:
        api = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not api or not token:
            raise ConfigError("JUPYTERHUB_API_URL/JUPYTERHUB_API_TOKEN are not set", broker="hub")
        url = f"{api}/services/{quote(service)}"
        try:
            resp = await self._http.get(url, headers={"Authorization": f"token {token}"})
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(f"cannot ask JupyterHub for {service}: {exc}") from None
        if resp.status_code != 200:
            raise ConfigError(
                f"JupyterHub answered {resp.status_code} for service {service!r} (the token "
                "needs the read:services scope, or set EB_BROKERS)",
                broker="hub",
            )
        model = resp.json()
        if not model.get("url"):
            raise ConfigError(f"JupyterHub service {service!r} has no URL", broker="hub")
        # The proxy forwards the whole path, so a hub service answers under its prefix.
        prefix = str(model.get("prefix") or "/").rstrip("/")
        return str(model["url"]).rstrip("/") + prefix

    async def _url(self, ref: str, collection: str) -> str:
        """The URL of ``ref`` (a uuid, or a URL given by this broker) under ``collection``.

        A URL on another origin is reduced to its last path segment, the uuid, so that our
        credentials only ever go to the broker they belong to.
        """
        base = await self.base_url()
        if ref.startswith(("http://", "https://")):
            if _same_origin(ref, base):
                return ref
            ref = urlsplit(ref).path.rstrip("/").rsplit("/", 1)[-1]
        return f"{base}/{collection}/{quote(ref.strip(), safe='')}"

    # -- transport --------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        auth: bool = True,
    ) -> httpx.Response:
        idempotent = method in ("GET", "HEAD")
        headers = {**self.broker.auth_headers(), **(_ON_BEHALF.get() or {})} if auth else {}
        attempt = 0
        while True:
            try:
                resp = await self._http.request(
                    method, url, json=body, params=params, headers=headers
                )
            except _NOT_SENT as exc:
                error: EBError = BrokerUnavailable(
                    f"{what}: cannot connect to {self.broker.url} ({_reason(exc)})",
                    broker=self.name,
                )
            except httpx.HTTPError as exc:
                error = BrokerUnavailable(f"{what}: {_reason(exc)}", broker=self.name)
                if not idempotent:
                    raise error from None
            else:
                if not (idempotent and resp.status_code in _RETRY_STATUS):
                    return resp
                error = self._error(resp, what)
            if attempt >= self.options.retries:
                raise error
            pause = min(self.options.backoff * 2**attempt, self.options.backoff_max)
            await asyncio.sleep(pause * random.uniform(0.75, 1.25))
            attempt += 1

    async def _call(
        self,
        method: str,
        url: str,
        *,
        what: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        resp = await self._send(method, url, what=what, body=body, params=params)
        if resp.status_code >= 400:
            raise self._error(resp, what)
        return resp

    def _error(self, resp: httpx.Response, what: str) -> EBError:
        content_type = resp.headers.get("Content-Type")
        error = error_from_response(
            resp.status_code, resp.content, content_type, broker=self.name, what=what
        )
        if resp.status_code == 401 and not self.broker.has_credentials:
            error.message += (
                " (no credentials were sent: the environment's tokens only go to the brokers "
                "they are configured for; pass eb.Broker(url, token=...) or list the broker in "
                "EB_BROKERS or the config file)"
            )
            error.args = (error.message,)
        return error

    def _json(self, resp: httpx.Response, what: str) -> Any:
        try:
            return resp.json()
        except ValueError:
            raise EBError(f"{what}: the answer is not JSON", broker=self.name) from None

    async def _follow(self, resp: httpx.Response, what: str) -> tuple[Any, str | None]:
        """The body of a 303 (or 200/201) answer; GET the Location when the body is empty."""
        location = resp.headers.get("Location")
        if location:
            location = str(resp.url.join(location))
        if resp.content.strip():
            return self._json(resp, what), location
        if not location:
            raise EBError(f"{what}: empty answer without a Location", broker=self.name)
        base = await self.base_url()
        follow = await self._send("GET", location, what=what, auth=_same_origin(location, base))
        if follow.status_code >= 400:
            raise self._error(follow, what)
        return self._json(follow, what), location

    # -- API --------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """``GET /health`` (or, for brokers without it, ``GET /capabilities``)."""
        base = await self.base_url()
        resp = await self._send("GET", f"{base}/health", what="health")
        if resp.status_code == 404:
            resp = await self._call("GET", f"{base}/capabilities", what="capabilities")
            caps = self._json(resp, "capabilities")
            return {"status": "ok", **({} if not isinstance(caps, dict) else caps)}
        if resp.status_code >= 400:
            raise self._error(resp, "health")
        data = self._json(resp, "health")
        return data if isinstance(data, dict) else {"status": str(data)}

    async def capabilities(self) -> Capabilities:
        base = await self.base_url()
        resp = await self._call("GET", f"{base}/capabilities", what="capabilities")
        return Capabilities.model_validate(self._json(resp, "capabilities"))

    async def request(self, request: ExecutionRequest) -> Answer:
        """``POST /requests``: the offer set (YES with offers, or NO with reasons)."""
        base = await self.base_url()
        what = "asking for offers"
        resp = await self._call("POST", f"{base}/requests", what=what, body=request.dump())
        data, location = await self._follow(resp, what)
        return self._answer(data, location, what)

    async def offerset(self, ref: str) -> Answer:
        url = await self._url(ref, "offersets")
        what = f"reading offer set {_short(ref)}"
        resp = await self._call("GET", url, what=what)
        return self._answer(self._json(resp, what), url, what)

    def _answer(self, data: Any, location: str | None, what: str) -> Answer:
        if not isinstance(data, dict):
            raise EBError(f"{what}: expected an offer set", broker=self.name)
        try:
            raw_offers = data.get("offers") or []
            offerset = OfferSetResponse.model_validate({**data, "offers": None})
        except ValueError as exc:
            raise EBError(f"{what}: unreadable offer set: {exc}", broker=self.name) from None
        offers = [_session(o, self.name) for o in raw_offers]
        url = offerset.meta.url if offerset.meta and offerset.meta.url else location
        return Answer(offerset, offers, url)

    async def session(self, ref: str) -> ScheduledExecutionSession:
        """``GET /sessions/{uuid}``."""
        url = await self._url(ref, "sessions")
        what = f"reading session {_short(ref)}"
        resp = await self._call("GET", url, what=what)
        return _session(self._json(resp, what), self.name)

    async def set_phase(self, ref: str, phase: Phase | str) -> ScheduledExecutionSession:
        """``POST /sessions/{uuid}`` with an enum-value update of ``phase``."""
        value = Phase.parse(str(phase)).value
        url = await self._url(ref, "sessions")
        verb = {"ACCEPTED": "accepting", "REJECTED": "rejecting", "CANCELLED": "cancelling"}
        what = f"{verb.get(value, 'updating')} {_short(ref)}"
        update = EnumValueUpdate(path="phase", value=value)
        resp = await self._call("POST", url, what=what, body=update.dump())
        if resp.content.strip() or resp.headers.get("Location"):
            data, _ = await self._follow(resp, what)
            return _session(data, self.name)
        return await self.session(ref)  # some brokers answer 204: read the session back

    async def sessions(self, phases: list[str] | None = None) -> list[ScheduledExecutionSession]:
        """``GET /sessions`` (mine), optionally only in ``phases``."""
        base = await self.base_url()
        params = {"phase": ",".join(phases)} if phases else None
        resp = await self._call("GET", f"{base}/sessions", what="listing sessions", params=params)
        data = self._json(resp, "listing sessions")
        if isinstance(data, dict):  # some brokers wrap lists
            data = data.get("sessions") or data.get("items") or []
        if not isinstance(data, list):
            raise EBError("listing sessions: expected a list", broker=self.name)
        return [_session(item, self.name) for item in data]

    async def direct(self, request: ExecutionRequest) -> ScheduledExecutionSession:
        """``POST /direct``: book the earliest slot at once (409 means nothing fits)."""
        base = await self.base_url()
        what = "booking directly"
        resp = await self._send("POST", f"{base}/direct", what=what, body=request.dump())
        if resp.status_code == 409:
            err = self._error(resp, what)
            raise RequestRejected(err.message, broker=self.name, status=409, messages=err.messages)
        if resp.status_code >= 400:
            raise self._error(resp, what)
        data, _ = await self._follow(resp, what)
        return _session(data, self.name)


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _short(ref: str) -> str:
    tail = ref.rstrip("/").rsplit("/", 1)[-1]
    return tail[:8] if len(tail) > 8 else tail


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


# -- one client per (event loop, broker) ------------------------------------------------------

_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Broker, BrokerClient]] = (
    weakref.WeakKeyDictionary()
)


def client_for(broker: Broker) -> BrokerClient:
    """The shared client for ``broker`` in the running event loop."""
    loop = asyncio.get_running_loop()
    clients = _CLIENTS.setdefault(loop, {})
    client = clients.get(broker)
    if client is None:
        client = clients[broker] = BrokerClient(broker)
    return client


async def aclose_clients() -> None:
    """Close the running loop's shared clients (``eb_sdk.aio.aclose``)."""
    clients = _CLIENTS.pop(asyncio.get_running_loop(), {})
    await asyncio.gather(*(c.aclose() for c in clients.values()), return_exceptions=True)


_CLOSING: set[asyncio.Task[Any]] = set()


async def _close_all(clients: list[BrokerClient]) -> None:
    await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)


def forget_clients() -> None:
    """Drop every shared client (after ``configure`` changed the settings), closing each on
    the event loop it belongs to, so that its connections do not stay open until collected.

    A client of the loop running in this thread is closed by a task (we cannot wait here);
    one of a loop running in another thread (the sync facade's) is closed there, waiting at
    most a few seconds; a loop that is not running cannot close anything, and its clients
    are only dropped.
    """
    found = list(_CLIENTS.items())
    _CLIENTS.clear()
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for loop, clients in found:
        if not clients or loop.is_closed() or not loop.is_running():
            continue
        closing = _close_all(list(clients.values()))
        if loop is running:
            task = loop.create_task(closing)
            _CLOSING.add(task)  # keep a reference until it is done
            task.add_done_callback(_CLOSING.discard)
        else:
            future = asyncio.run_coroutine_threadsafe(closing, loop)
            with contextlib.suppress(Exception):
                future.result(timeout=5)


def check_request(request: Any) -> ExecutionRequest:
    """``request`` as an ExecutionRequest, or :class:`InvalidRequest` before any HTTP."""
    if isinstance(request, ExecutionRequest):
        return request
    try:
        return ExecutionRequest.model_validate(request)
    except ValueError as exc:
        raise InvalidRequest(f"invalid request: {exc}") from None
