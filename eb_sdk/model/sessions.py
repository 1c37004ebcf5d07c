"""Requests, offer sets and execution sessions: the messages of the negotiation."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import AliasChoices, Field, SerializeAsAny

from .base import Dispatch, EBModel, Instant, MinMaxFloat, UnknownMixin, kind
from .components import (
    Phase,
    RequestedScheduleBlock,
    ScheduledExecutionSchedule,
)
from .costs import ComponentBase, ComponentFields, CostItem, MetricItem
from .executables import Executable
from .kinds import ivoa_kind
from .messages import MessageItem
from .resources import ComputeResource, DataResource, StorageResource


class Interactivity(EBModel):
    """Extension (``jeb:interactivity``): network needs between the user and the session.

    ``bandwidth`` in Mbit/s, ``latency`` in milliseconds (round trip).
    """

    bandwidth: MinMaxFloat | None = None
    latency: MinMaxFloat | None = None


class ExecutionRequest(EBModel):
    """What to run, on which resources, and when: the body of ``POST /requests``."""

    executable: Executable | None = None
    compute: ComputeResource | None = None
    storage: list[StorageResource] | None = None
    data: list[DataResource] | None = None
    schedule: RequestedScheduleBlock | None = None
    costs: list[CostItem] | None = None
    metrics: list[MetricItem] | None = None
    interactivity: Interactivity | None = Field(default=None, alias="jeb:interactivity")
    name: str | None = Field(
        default=None,
        alias="jeb:name",
        validation_alias=AliasChoices("jeb:name", "name"),
        description="Extension: a name for the session, shown with its offers and sessions "
        "(written as jeb:name; a plain 'name' from older clients is read too).",
    )


class ConnectorStatus(StrEnum):
    PREPARING = "PREPARING"
    AVAILABLE = "AVAILABLE"
    FINISHED = "FINISHED"


class SimpleSessionConnector(EBModel):
    """How to reach a running session (a server URL, an SSH endpoint)."""

    kind: str | None = None
    status: ConnectorStatus | None = None
    protocol: str | None = None
    location: str | None = None


class AbstractExecutionSession(ComponentBase):
    GROUP: ClassVar[str] = "session"


class UnknownExecutionSession(UnknownMixin, AbstractExecutionSession):
    """A session kind we do not know, kept verbatim."""


@kind
class SimpleExecutionSession(AbstractExecutionSession):
    """An offer, and once accepted the session it becomes."""

    KIND: ClassVar[str] = ivoa_kind("session", "simple-execution-session")
    phase: Phase | None = None
    expires: Instant | None = None
    executable: Executable | None = None
    compute: ComputeResource | None = None
    storage: list[StorageResource] | None = None
    data: list[DataResource] | None = None
    connectors: list[SimpleSessionConnector] | None = None

    @property
    def uuid(self) -> str | None:
        """The session's uuid from its metadata."""
        return str(self.meta.uuid) if self.meta and self.meta.uuid else None

    @property
    def messages(self) -> list[MessageItem]:
        return list(self.meta.messages or []) if self.meta else []


@kind
class ScheduledExecutionSession(SimpleExecutionSession):
    """A session with a schedule: when it prepares, is available and releases."""

    KIND: ClassVar[str] = ivoa_kind("session", "scheduled-execution-session")
    schedule: ScheduledExecutionSchedule | None = None


ExecutionSession = Annotated[
    SerializeAsAny[AbstractExecutionSession],
    Dispatch("session", AbstractExecutionSession, UnknownExecutionSession),
]


class OfferSetResult(StrEnum):
    YES = "YES"
    NO = "NO"


class OfferSetResponse(ComponentFields):
    """The answer to a request: YES with offers, or NO with messages saying why."""

    kind: str | None = None
    result: OfferSetResult
    description: str | None = None
    offers: list[ExecutionSession] | None = None

    @property
    def messages(self) -> list[MessageItem]:
        return list(self.meta.messages or []) if self.meta else []


class Capabilities(EBModel):
    """Our ``GET /capabilities``: what a form needs to know about a broker."""

    name: str
    platform: str
    version: str
    executables: list[str] = Field(description="Executable kind URIs this broker can run.")
    max_compute: dict[str, int] = Field(
        description="The largest session: cores, memory (GiB), storage (GiB)."
    )
    accelerators: dict[str, int] = Field(
        default_factory=dict, description="Accelerator pools, e.g. {'gpu:A100': 4}."
    )
    timezone: str
    offer_expiry: str = Field(description="How long offers stay valid (ISO-8601 duration).")
    max_offers: int
    max_duration: str
    policies: list[str] = Field(default_factory=list)
    data_kinds: list[str] = Field(default_factory=list)
    interactivity: dict[str, float] = Field(
        default_factory=dict,
        description="The network figures jeb:interactivity is checked against: bandwidth "
        "(Mbit/s), latency (ms); empty when the broker does not check it.",
    )
    extensions: list[str] = Field(default_factory=list)
