"""One small, typed error hierarchy for everything the client can go wrong with.

Why a hierarchy rather than ``httpx.HTTPStatusError``: a notebook user wants to catch "the offer
expired" or "nobody can run this", not "HTTP 409"; the CLI wants one exit code per class. Every
error names the broker it came from and keeps the broker's MessageItems, so nothing the broker
said is lost, and ``str(error)`` is one readable line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from .model import MessageItem
from .model import messages as kinds

__all__ = [
    "AuthenticationError",
    "BrokerUnavailable",
    "ConfigError",
    "Conflict",
    "EBError",
    "InvalidRequest",
    "NoCapacity",
    "NotFound",
    "OfferExpired",
    "PermissionDenied",
    "RequestRejected",
    "SessionFailed",
    "Timeout",
    "error_from_response",
]


class EBError(Exception):
    """Base of every error this package raises.

    ``broker`` is the broker's name (when one broker is concerned), ``status`` the HTTP status
    (when there was an answer) and ``messages`` the MessageItems the broker sent.
    """

    #: The ``eb`` command's exit code for this kind of error (see docs/sdk.md).
    exit_code: int = 1

    def __init__(
        self,
        message: str,
        *,
        broker: str | None = None,
        status: int | None = None,
        messages: Iterable[MessageItem] = (),
    ) -> None:
        self.message = message
        self.broker = broker
        self.status = status
        self.messages: list[MessageItem] = list(messages)
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.broker}: {self.message}" if self.broker else self.message


class ConfigError(EBError):
    """The broker configuration (argument, ``EB_BROKERS``, config file) is wrong."""

    exit_code = 2


class InvalidRequest(EBError, ValueError):
    """The request cannot be sent or was refused as malformed (400, a bad "when" phrase).

    Also a ``ValueError``, so code that validates input generically still catches it.
    """

    exit_code = 2


class BrokerUnavailable(EBError):
    """The broker cannot be reached, timed out at the network level or answered 5xx."""


class AuthenticationError(EBError):
    """The broker does not accept our credentials (401)."""

    exit_code = 5


class PermissionDenied(EBError):
    """The broker knows who we are but does not allow this (403)."""

    exit_code = 5


class NotFound(EBError):
    """No such offer set or session on this broker, or it belongs to someone else (404)."""

    exit_code = 4


class Conflict(EBError):
    """The update is not possible in the session's current phase (409)."""

    exit_code = 6


class OfferExpired(Conflict):
    """The offer's time to accept it is over: ask again."""


class NoCapacity(Conflict):
    """The offered slot was taken between the offer and the accept: ask again."""


class RequestRejected(EBError):
    """Nobody can run this (every broker answered NO, or ``direct`` found no slot).

    ``messages`` says why, broker by broker (``urn:no-capacity``, ``urn:earliest-fit``, ...).
    """

    exit_code = 3


class SessionFailed(EBError):
    """The session ended FAILED; ``messages`` holds what the platform reported."""


class Timeout(EBError, TimeoutError):
    """Waiting took longer than the caller allowed (also a builtin ``TimeoutError``)."""

    exit_code = 7


_BY_STATUS: dict[int, type[EBError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    410: NotFound,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
}

_BY_KIND: dict[str, type[EBError]] = {
    kinds.OFFER_EXPIRED: OfferExpired,
    kinds.NO_CAPACITY: NoCapacity,
    kinds.NOT_FOUND: NotFound,
    kinds.UNAUTHORIZED: AuthenticationError,
    kinds.FORBIDDEN: PermissionDenied,
}


def _message_item(body: bytes, content_type: str | None) -> MessageItem | None:
    """The MessageItem of an error body, if it is one (other brokers may send HTML or text)."""
    if not body:
        return None
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        try:
            from .model import parse_body

            data = parse_body(body, content_type)
        except Exception:
            return None
    if not isinstance(data, dict) or not (data.get("message") or data.get("kind")):
        return None
    try:
        return MessageItem.model_validate(data)
    except Exception:
        return None


def _details(item: MessageItem | None) -> list[MessageItem]:
    raw = (item.model_extra or {}).get("jeb:details") if item is not None else None
    if not isinstance(raw, list):
        return []
    out: list[MessageItem] = []
    for entry in raw:
        try:
            out.append(MessageItem.model_validate(entry))
        except Exception:
            continue
    return out


def error_from_response(
    status: int,
    body: bytes,
    content_type: str | None = None,
    *,
    broker: str | None = None,
    what: str = "",
) -> EBError:
    """The typed error for an HTTP error answer: by MessageItem ``kind`` first, then status.

    ``what`` names what we were doing ("accepting offer 1234"), for the readable message.
    """
    item = _message_item(body, content_type)
    cls: type[EBError]
    if item is not None and item.kind in _BY_KIND and status < 500:
        cls = _BY_KIND[item.kind]
    elif status >= 500:
        cls = BrokerUnavailable
    else:
        cls = _BY_STATUS.get(status, EBError)
    if item is not None and item.message:
        text = item.message
    else:
        snippet = body[:200].decode("utf-8", "replace").strip() if body else ""
        text = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if what:
        text = f"{what}: {text}"
    messages = ([item] if item is not None else []) + _details(item)
    return cls(text, broker=broker, status=status, messages=messages)


def summarize(errors: Sequence[EBError]) -> EBError:
    """One error standing for several (every broker failed): same class if they agree."""
    if len(errors) == 1:
        return errors[0]
    classes = {type(e) for e in errors}
    cls = classes.pop() if len(classes) == 1 else EBError
    text = "; ".join(str(e) for e in errors)
    return cls(text, messages=[m for e in errors for m in e.messages])
