"""MessageItem: the spec's log message, used for every error and warning we send."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from .base import EBModel, Instant, NameValueMap


class Level(StrEnum):
    """Message levels of the v1.0 schema."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"
    OTHER = "OTHER"


# Message kinds this project emits (documented in docs/errors.md).
NOT_SUPPORTED = "urn:not-supported"
RESOURCE_LIMIT = "urn:resource-limit"
NO_CAPACITY = "urn:no-capacity"
EARLIEST_FIT = "urn:earliest-fit"
OFFER_EXPIRED = "urn:offer-expired"
CONFLICT = "urn:conflict"
INVALID_REQUEST = "urn:invalid-request"
INVALID_UPDATE = "urn:invalid-update"
NOT_FOUND = "urn:not-found"
UNAUTHORIZED = "urn:unauthorized"
FORBIDDEN = "urn:forbidden"
POLICY = "urn:policy"
PLATFORM = "urn:platform"
PLATFORM_UNAVAILABLE = "urn:platform-unavailable"
EXECUTION_FAILED = "urn:execution-failed"
#: One finished input of a notebook batch (``urn:jeb:v1:executable:notebook-batch``).
BATCH_INPUT = "urn:jeb:v1:batch-input"
DATA_STAGING = "urn:data-staging"
DATA_UNAVAILABLE = "urn:data-unavailable"
PREDICTION = "urn:prediction"
INTERNAL = "urn:internal-error"


class MessageItem(EBModel):
    """A message based on the Message Templates standard (messagetemplates.org)."""

    kind: str | None = Field(default=None, description="Message type URI.")
    time: Instant | None = None
    level: Level | None = None
    template: str | None = None
    values: NameValueMap | None = None
    message: str | None = None

    @classmethod
    def make(
        cls,
        kind: str,
        message: str,
        level: Level = Level.ERROR,
        template: str | None = None,
        **values: Any,
    ) -> MessageItem:
        """A message stamped now, with ``values`` stringified as the schema requires."""
        return cls(
            kind=kind,
            time=datetime.now(UTC),
            level=level,
            template=template,
            values={k: str(v) for k, v in values.items()} or None,
            message=message,
        )

    def __str__(self) -> str:
        return self.message or self.template or self.kind or "message"


def error(kind: str, message: str, **values: Any) -> MessageItem:
    """An ERROR MessageItem."""
    return MessageItem.make(kind, message, Level.ERROR, **values)


def warn(kind: str, message: str, **values: Any) -> MessageItem:
    """A WARN MessageItem."""
    return MessageItem.make(kind, message, Level.WARN, **values)


def info(kind: str, message: str, **values: Any) -> MessageItem:
    """An INFO MessageItem."""
    return MessageItem.make(kind, message, Level.INFO, **values)
