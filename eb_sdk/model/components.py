"""Shared component pieces: metadata, phases, schedules, options and updates."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import Field, SerializeAsAny, model_validator

from .base import Dispatch, Duration, EBModel, Instant, IntervalField, KindModel, UnknownMixin, kind
from .messages import MessageItem


def _ready_is_available(value: Any) -> Any:
    # The spec text calls AVAILABLE "READY"; older brokers still send it.
    if isinstance(value, str) and value.strip().upper() == "READY":
        return "AVAILABLE"
    return value.strip().upper() if isinstance(value, str) else value


class Phase(StrEnum):
    """The phase of an execution session (``SimpleExecutionSessionPhase``)."""

    INITIAL = "INITIAL"
    OFFERED = "OFFERED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    WAITING = "WAITING"
    PREPARING = "PREPARING"
    AVAILABLE = "AVAILABLE"
    RUNNING = "RUNNING"
    RELEASING = "RELEASING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @classmethod
    def parse(cls, value: str) -> Phase:
        """Parse a phase name, accepting ``READY`` for ``AVAILABLE`` and any case."""
        return cls(_ready_is_available(value))

    @property
    def is_final(self) -> bool:
        """No further change will happen."""
        return self in FINAL_PHASES

    @property
    def is_active(self) -> bool:
        """Accepted and not yet finished: the session holds (or will hold) resources."""
        return self in ACTIVE_PHASES

    @classmethod
    def _missing_(cls, value: object) -> Phase | None:
        fixed = _ready_is_available(value)
        return cls.__members__.get(fixed) if isinstance(fixed, str) else None


FINAL_PHASES = frozenset(
    {Phase.REJECTED, Phase.EXPIRED, Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED}
)
ACTIVE_PHASES = frozenset(
    {
        Phase.ACCEPTED,
        Phase.WAITING,
        Phase.PREPARING,
        Phase.AVAILABLE,
        Phase.RUNNING,
        Phase.RELEASING,
    }
)


class LifecyclePhase(StrEnum):
    """The phase of one component (executable, resource) within a session."""

    INITIALIZING = "INITIALIZING"
    WAITING = "WAITING"
    PREPARING = "PREPARING"
    AVAILABLE = "AVAILABLE"
    RUNNING = "RUNNING"
    RELEASING = "RELEASING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @classmethod
    def _missing_(cls, value: object) -> LifecyclePhase | None:
        fixed = _ready_is_available(value)
        return cls.__members__.get(fixed) if isinstance(fixed, str) else None


# ---------------------------------------------------------------------------------------------
# Options (what a client may change) and updates (the change itself).


class AbstractOption(KindModel):
    """An option the client can apply to a component: the ``kind`` says how."""

    GROUP: ClassVar[str] = "option"
    path: str


class UnknownOption(UnknownMixin, AbstractOption):
    """An option kind we do not know, kept verbatim."""


@kind
class StringValueOption(AbstractOption):
    KIND: ClassVar[str] = "uri:string-value-option"
    pattern: str | None = None


@kind
class EnumValueOption(AbstractOption):
    KIND: ClassVar[str] = "uri:enum-value-option"
    values: list[str] = Field(default_factory=list)


@kind
class IntegerValueOption(AbstractOption):
    KIND: ClassVar[str] = "uri:integer-value-option"
    min: int | None = None
    max: int | None = None
    units: str | None = None


@kind
class IntegerDeltaOption(AbstractOption):
    KIND: ClassVar[str] = "uri:integer-delta-option"
    min: int | None = None
    max: int | None = None
    units: str | None = None


Option = Annotated[
    SerializeAsAny[AbstractOption], Dispatch("option", AbstractOption, UnknownOption)
]


class AbstractUpdate(KindModel):
    """An update request: ``POST /sessions/{uuid}`` with one of these."""

    GROUP: ClassVar[str] = "update"
    path: str

    @property
    def normalized_path(self) -> str:
        """The path without a leading slash (``/phase`` and ``phase`` mean the same)."""
        return self.path.strip().lstrip("/")


class UnknownUpdate(UnknownMixin, AbstractUpdate):
    """An update kind we do not know, kept verbatim (the broker answers 4xx)."""


@kind
class StringValueUpdate(AbstractUpdate):
    KIND: ClassVar[str] = "uri:string-value-update"
    value: str


@kind
class EnumValueUpdate(AbstractUpdate):
    KIND: ClassVar[str] = "uri:enum-value-update"
    value: str


@kind
class IntegerValueUpdate(AbstractUpdate):
    KIND: ClassVar[str] = "uri:integer-value-update"
    value: int
    units: str | None = None


@kind
class IntegerDeltaUpdate(AbstractUpdate):
    KIND: ClassVar[str] = "uri:integer-delta-update"
    delta: int
    units: str | None = None


Update = Annotated[
    SerializeAsAny[AbstractUpdate], Dispatch("update", AbstractUpdate, UnknownUpdate)
]


class ComponentMetadata(EBModel):
    """Metadata block: identity, links, messages and the options a client may apply."""

    uuid: UUID | None = None
    name: str | None = None
    url: str | None = None
    description: str | None = None
    created: Instant | None = None
    modified: Instant | None = None
    messages: list[MessageItem] | None = None
    options: list[Option] | None = None


# ---------------------------------------------------------------------------------------------
# Schedules.


class ScheduleStartDurationInstant(EBModel):
    """A phase that starts at an instant and lasts a duration."""

    start: Instant | None = None
    duration: Duration | None = None


class ScheduleStartDurationInterval(EBModel):
    """A phase whose start lies within an interval, lasting a duration."""

    start: IntervalField | None = None
    duration: Duration | None = None


class ScheduledExecutionSchedule(EBModel):
    """When a session prepares, is available and releases its resources."""

    preparing: ScheduleStartDurationInstant | None = None
    available: ScheduleStartDurationInterval | None = None
    releasing: ScheduleStartDurationInstant | None = None


class RequestedScheduleItem(EBModel):
    """What the client asks for: a start interval and a duration.

    Extension (``jeb:starts``): several start windows in one request. ``start`` then holds the
    first window so a v1.0 broker that ignores the extension still sees a sensible request.
    """

    start: IntervalField | None = None
    duration: Duration | None = None
    starts: list[IntervalField] | None = Field(default=None, alias="jeb:starts")

    @model_validator(mode="after")
    def _first_window(self) -> RequestedScheduleItem:
        if self.starts and self.start is None:
            self.start = min(self.starts, key=lambda iv: iv.start)
        return self

    @property
    def windows(self) -> list[Any]:
        """All requested start windows (the extension list, else ``start``), in time order."""
        if self.starts:
            return sorted(self.starts, key=lambda iv: iv.start)
        return [self.start] if self.start is not None else []


class RequestedScheduleBlock(EBModel):
    """The ``schedule`` block of a request."""

    requested: RequestedScheduleItem | None = None


class LifecycleMixin(EBModel):
    """Components that have their own phase and schedule."""

    phase: LifecyclePhase | None = None
    schedule: ScheduledExecutionSchedule | None = None
