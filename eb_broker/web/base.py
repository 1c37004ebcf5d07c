"""The base of every handler: content negotiation, identity, bodies, and errors as MessageItems.

Handlers parse, authenticate, ask the service (:class:`~eb_broker.service.BrokerService`) and
render its typed answer; every :class:`~eb_broker.errors.BrokerError` a handler or the service
raises is answered here, in one place, with its status and a MessageItem body.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from tornado import web

from eb_sdk.model import Phase, parse_body, render
from eb_sdk.model import messages as msg
from eb_sdk.model.base import KindModel
from eb_sdk.model.serialization import BodyParseError, UnsupportedMediaType, negotiate

from ..auth import AuthError, Identity, authenticator_name
from ..errors import BrokerError
from ..service import BrokerService, Links
from .errors import ApiError, validation_details
from .metrics import Metrics

log = logging.getLogger("eb_broker.web")
M = TypeVar("M", bound=BaseModel)


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
    def service(self) -> BrokerService:
        """What answers the API (a broker's core or an aggregator)."""
        service: BrokerService = self.settings["eb_service"]
        return service

    @property
    def metrics(self) -> Metrics:
        metrics: Metrics = self.settings["eb_metrics"]
        return metrics

    @property
    def links(self) -> Links:
        """Where the client reaches us (for URLs in answers and Location headers)."""
        return Links(self.url_for(""))

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:
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
        self.metrics.request_finished(
            self.request.method or "", type(self).__name__, self.get_status()
        )

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

    # -- errors ---------------------------------------------------------------------------------

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, BrokerError):  # every refusal, wherever it was raised
            self._send_error(e.status, e.item())
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


def uuid_argument(value: str) -> str:
    """A uuid from the URL path, canonical (404 for anything else: no such resource)."""
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise ApiError(404, msg.NOT_FOUND, f"{value!r} is not a uuid") from None


def phases_argument(handler: web.RequestHandler) -> list[str] | None:
    """The ``phase`` query parameter (repeated or comma-separated); None when not given."""
    raw = ",".join(handler.get_arguments("phase"))
    if not raw.strip():
        return None
    try:
        return [Phase.parse(p).value for p in raw.split(",") if p.strip()] or None
    except ValueError:
        raise ApiError(400, msg.INVALID_REQUEST, f"unknown phase in {raw!r}") from None
