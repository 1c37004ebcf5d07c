"""Tornado handlers: parse, authenticate, call the core, render. Nothing else."""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from prometheus_client import generate_latest
from pydantic import BaseModel, ValidationError
from tornado import web

from eb_sdk.model import (
    EnumValueUpdate,
    ExecutionRequest,
    OfferSetResponse,
    Phase,
    ScheduledExecutionSession,
    parse_body,
    render,
)
from eb_sdk.model import messages as msg
from eb_sdk.model.base import KindModel
from eb_sdk.model.components import AbstractUpdate
from eb_sdk.model.serialization import BodyParseError, UnsupportedMediaType, negotiate
from eb_sdk.model.sessions import AbstractExecutionSession

from ..auth import AuthError, Identity, authenticator_name
from ..ledger import (
    CapacityError,
    InvalidTransitionError,
    LedgerError,
    NotFoundError,
    OfferExpiredError,
    SessionRow,
)
from .errors import ApiError, validation_details

log = logging.getLogger("eb_broker.web")
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_LEDGER_STATUS = {
    NotFoundError: 404,
    OfferExpiredError: 409,
    InvalidTransitionError: 409,
    CapacityError: 409,
}


async def resolved(value: T | Awaitable[T]) -> T:
    """A core's answer: brokers answer at once, aggregators with a coroutine (they ask)."""
    if inspect.isawaitable(value):
        return await value
    return value


#: Bodies declared (Content-Length) larger than this many times ``max_body_size`` are refused
#: before a byte of them is read; smaller oversize bodies are read and dropped first, so that
#: clients that send the whole body before reading the answer still see the 413 MessageItem.
DRAIN_FACTOR = 16


@web.stream_request_body
class BaseHandler(web.RequestHandler):
    """Content negotiation, identity and MessageItem errors for every endpoint.

    Bodies are streamed (``data_received``) so that an oversize body is answered with a 413
    MessageItem instead of tornado's bare 400 and a closed connection.
    """

    identity: Identity | None = None
    _body_parts: list[bytes]
    _body_size: int = 0

    @property
    def broker(self) -> Any:
        return self.settings["eb_broker"]

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:
        self.broker.metrics_started(self)
        self._body_parts = []
        self._check_declared_size()
        await self.authenticate()

    def _check_declared_size(self) -> None:
        limit = self.settings["eb_max_body_size"]
        declared = self.request.headers.get("Content-Length")
        if declared is None:
            return
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, msg.INVALID_REQUEST, "Content-Length is not a number") from None
        if size > DRAIN_FACTOR * limit:
            # Answered at once; the connection is closed without reading the body.
            raise ApiError(413, msg.INVALID_REQUEST, f"the body is larger than {limit} bytes")

    def data_received(self, chunk: bytes) -> None:
        self._body_size += len(chunk)
        if self._body_size <= self.settings["eb_max_body_size"]:
            self._body_parts.append(chunk)
        else:
            self._body_parts = []  # read on to the end and dropped; read_model answers 413

    @property
    def body(self) -> bytes:
        """The request body (streamed in by :meth:`data_received`)."""
        return b"".join(getattr(self, "_body_parts", ()))

    async def authenticate(self) -> None:
        """Try every authenticator in order: the first that recognises the caller wins.

        An authenticator returns None for credentials it does not understand and raises
        AuthError for credentials of its kind it rejects (for example a token-file
        authenticator and a Bearer token it does not list, which may be a valid JWT for the
        next one). So 401 only when none accepted the caller and at least one refused them;
        no credentials at all leave the request anonymous (endpoints that need an identity
        answer 401 themselves).
        """
        refusals: list[str] = []
        for authenticator in self.settings["eb_authenticators"]:
            try:
                identity = await authenticator.authenticate(self.request.headers)
            except AuthError as exc:
                refusals.append(f"{authenticator_name(authenticator)}: {exc}")
                continue
            if identity is not None:
                self.identity = identity
                return
        if refusals:
            raise ApiError(
                401, msg.UNAUTHORIZED, "authentication failed (" + "; ".join(refusals) + ")"
            )

    def require_identity(self) -> Identity:
        if self.identity is None:
            raise ApiError(
                401, msg.UNAUTHORIZED, "this needs credentials (Authorization: Bearer <token>)"
            )
        return self.identity

    def on_finish(self) -> None:
        self.broker.metrics_finished(self)

    # -- bodies -------------------------------------------------------------------------------

    def read_model(self, cls: type[M]) -> tuple[M, dict[str, Any]]:
        """Parse and validate the body as ``cls``; 4xx with MessageItems on any problem."""
        limit = self.settings["eb_max_body_size"]
        if self._body_size > limit:
            raise ApiError(413, msg.INVALID_REQUEST, f"the body is larger than {limit} bytes")
        body = self.body
        if not body.strip():
            raise ApiError(400, msg.INVALID_REQUEST, "the request has no body")
        try:
            data = parse_body(body, self.request.headers.get("Content-Type"))
        except UnsupportedMediaType as exc:
            raise ApiError(415, msg.INVALID_REQUEST, str(exc)) from None
        except (BodyParseError, UnicodeDecodeError) as exc:
            raise ApiError(400, msg.INVALID_REQUEST, str(exc)) from None
        if not isinstance(data, dict):
            raise ApiError(400, msg.INVALID_REQUEST, "the body must be an object (a mapping)")
        try:
            if issubclass(cls, KindModel):
                return cls.dispatch(data), data
            return cls.model_validate(data), data
        except ValidationError as exc:
            details = validation_details(exc)
            summary = "; ".join(str(d) for d in details[:3])
            raise ApiError(
                400, msg.INVALID_REQUEST, f"invalid {cls.__name__}: {summary}", details
            ) from None
        except (ValueError, TypeError, RecursionError) as exc:
            raise ApiError(400, msg.INVALID_REQUEST, f"invalid {cls.__name__}: {exc}") from None

    def respond(self, obj: Any, status: int = 200) -> None:
        media = negotiate(self.request.headers.get("Accept"))
        self.set_status(status)
        self.set_header("Content-Type", f"{media}; charset=utf-8")
        self.finish(render(obj, media))

    def url_for(self, path: str) -> str:
        base = self.settings["eb_public_url"] or f"{self.request.protocol}://{self.request.host}"
        return base.rstrip("/") + self.settings["eb_base_url"].rstrip("/") + path

    def session_wire(self, row: SessionRow) -> ScheduledExecutionSession:
        session: ScheduledExecutionSession = self.broker.session_wire(self, row)
        return session

    # -- errors ---------------------------------------------------------------------------------

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ApiError):
            self._send_error(e.status, e.item)
            return
        if isinstance(e, LedgerError):
            status = getattr(e, "status", None) or _LEDGER_STATUS.get(type(e), 409)
            self._send_error(status, msg.error(e.kind, str(e)))
            return
        if isinstance(e, web.HTTPError) and e.status_code < 500:
            self._send_error(
                e.status_code,
                msg.error(msg.INVALID_REQUEST, e.log_message or e.reason or "bad request"),
            )
            return
        super()._handle_request_exception(e)

    def _send_error(self, status: int, item: msg.MessageItem) -> None:
        if self._finished:
            return
        self.clear()
        self.set_default_headers()
        media = negotiate(self.request.headers.get("Accept"))
        self.set_status(status)
        self.set_header("Content-Type", f"{media}; charset=utf-8")
        self.finish(render(item, media))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        text = "internal error" if status_code >= 500 else str(exc or self._reason)
        kind = msg.INTERNAL if status_code >= 500 else msg.INVALID_REQUEST
        media = negotiate(self.request.headers.get("Accept"))
        self.set_header("Content-Type", f"{media}; charset=utf-8")
        self.finish(render(msg.error(kind, text), media))


def _uuid(value: str) -> str:
    import uuid as uuidlib

    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise ApiError(404, msg.NOT_FOUND, f"{value!r} is not a uuid") from None


class RequestsHandler(BaseHandler):
    """``POST /requests``: offers for a request (303 + Location + body, YES or NO)."""

    async def post(self) -> None:
        identity = self.require_identity()
        request, raw = self.read_model(ExecutionRequest)
        started = time.perf_counter()
        offerset, rows = await self.broker.core.request_offers(identity, request, raw)
        self.broker.observe_offer_latency(time.perf_counter() - started)
        url = self.url_for(f"/offersets/{offerset.uuid}")
        self.set_header("Location", url)
        self.respond(self.broker.offerset_wire(self, offerset, rows), 303)


class OfferSetHandler(BaseHandler):
    async def get(self, uuid: str) -> None:
        identity = self.require_identity()
        offerset, rows = await resolved(self.broker.core.get_offerset(identity, _uuid(uuid)))
        self.respond(self.broker.offerset_wire(self, offerset, rows))


class SessionHandler(BaseHandler):
    async def get(self, uuid: str) -> None:
        identity = self.require_identity()
        row = await resolved(self.broker.core.get_session(identity, _uuid(uuid)))
        self.respond(self.session_wire(row))

    async def post(self, uuid: str) -> None:
        identity = self.require_identity()
        uuid = _uuid(uuid)
        # 404 before body errors for others' ids
        await resolved(self.broker.core.get_session(identity, uuid))
        update, _ = self.read_model(AbstractUpdate)
        if not isinstance(update, EnumValueUpdate):
            raise ApiError(
                400,
                msg.INVALID_UPDATE,
                f"unsupported update kind {update.kind}: use uri:enum-value-update on phase",
            )
        if update.normalized_path not in ("phase", "state"):
            raise ApiError(
                400, msg.INVALID_UPDATE, f"path {update.path!r} cannot be updated; use 'phase'"
            )
        row = await resolved(self.broker.core.update_phase(identity, uuid, update.value))
        self.broker.reconciler_wake()
        self.respond(self.session_wire(row))


def phases_argument(handler: web.RequestHandler) -> list[str] | None:
    """The ``phase`` query parameter (repeated or comma-separated); None when not given."""
    raw = ",".join(handler.get_arguments("phase"))
    if not raw.strip():
        return None
    try:
        return [Phase.parse(p).value for p in raw.split(",") if p.strip()] or None
    except ValueError:
        raise ApiError(400, msg.INVALID_REQUEST, f"unknown phase in {raw!r}") from None


class SessionListHandler(BaseHandler):
    async def get(self) -> None:
        identity = self.require_identity()
        phases = phases_argument(self)
        rows = await resolved(self.broker.core.list_sessions(identity, phases))
        self.respond([self.session_wire(row) for row in rows])


class DirectHandler(BaseHandler):
    """``POST /direct``: book the earliest offer at once (303 to the session)."""

    async def post(self) -> None:
        identity = self.require_identity()
        request, raw = self.read_model(ExecutionRequest)
        offerset, rows = await self.broker.core.request_offers(identity, request, raw)
        if not rows:
            answer = self.broker.offerset_wire(self, offerset, rows)
            details = answer.messages
            summary = "; ".join(str(m) for m in details[:3]) or "no offer"
            raise ApiError(409, msg.NO_CAPACITY, f"cannot run this: {summary}", details)
        row = await resolved(self.broker.core.accept(identity, rows[0].uuid))
        self.broker.reconciler_wake()
        self.set_header("Location", self.url_for(f"/sessions/{row.uuid}"))
        self.respond(self.session_wire(row), 303)


class CapabilitiesHandler(BaseHandler):
    async def get(self) -> None:
        self.respond(await resolved(self.broker.capabilities()))


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.broker.health()))


class OpenAPIHandler(BaseHandler):
    async def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.broker.openapi(self)))


class MetricsHandler(BaseHandler):
    async def get(self) -> None:
        self.broker.update_gauges()
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(generate_latest(self.broker.registry))


class NotFoundHandler(BaseHandler):
    async def prepare(self) -> None:
        raise ApiError(404, msg.NOT_FOUND, f"no such endpoint: {self.request.path}")


def offerset_wire(handler: BaseHandler, offerset: Any, rows: list[SessionRow]) -> OfferSetResponse:
    """The OfferSetResponse of a ledger offer set (its offers as sessions)."""
    from eb_sdk.model import ComponentMetadata, MessageItem

    return OfferSetResponse(
        meta=ComponentMetadata(
            uuid=offerset.uuid,
            url=handler.url_for(f"/offersets/{offerset.uuid}"),
            created=offerset.created,
            messages=[MessageItem.model_validate(m) for m in offerset.messages] or None,
        ),
        result=offerset.result,
        offers=[handler.session_wire(row) for row in rows] or None,
    )


def routes(base_url: str) -> list[tuple[str, type[BaseHandler]]]:
    """URL patterns under ``base_url``."""
    from .archive import ArchiveHandler

    prefix = "/" + base_url.strip("/") if base_url.strip("/") else ""
    table: list[tuple[str, type[BaseHandler]]] = [
        (r"/archive/?", ArchiveHandler),
        (r"/requests/?", RequestsHandler),
        (r"/offersets/([^/]+)/?", OfferSetHandler),
        (r"/direct/?", DirectHandler),
        (r"/sessions/?", SessionListHandler),
        (r"/sessions/([^/]+)/?", SessionHandler),
        (r"/capabilities/?", CapabilitiesHandler),
        (r"/health/?", HealthHandler),
        (r"/openapi.json", OpenAPIHandler),
        (r"/metrics/?", MetricsHandler),
    ]
    return [(prefix + pattern, handler) for pattern, handler in table]


__all__ = ["AbstractExecutionSession", "offerset_wire", "routes"]
