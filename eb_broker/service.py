"""The seam between the web layer and what answers the API: :class:`BrokerService`.

The handlers in :mod:`eb_broker.web` parse, authenticate and render; everything else is one
of the services behind this protocol:

* :class:`~eb_broker.core_service.CoreService`: a broker for one platform, answering from its
  own capacity (the ledger, the timeline, the platform plugin and the reconciler);
* :class:`~eb_broker.aggregate.service.AggregatorService`: an aggregator, answering from the
  brokers below it.

Every method is a coroutine with a typed answer: wire objects (the client's view, with the
URLs the request came in on, see :class:`Links`) or small dataclasses (:class:`Health`,
:class:`Gauges`, :class:`ArchivePage`). Refusals are raised as
:class:`~eb_broker.errors.BrokerError`, which the web layer answers with their status and a
MessageItem. So one answer goes one way: web → service → typed answer → web renders. (This
is dask-gateway's ``Backend`` with its database-backed base, for brokers.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from eb_sdk._version import __version__
from eb_sdk.model import (
    Capabilities,
    ExecutionRequest,
    OfferSetResponse,
    ScheduledExecutionSession,
)
from eb_sdk.model.times import format_duration

from .auth import Identity
from .ledger.archive import ArchiveFilter


@dataclass(frozen=True)
class Links:
    """Where the client reaches this service: ``base`` is scheme, host and URL prefix (no
    trailing slash), as the request came in or as configured (``EBBroker.public_url``)."""

    base: str

    def to(self, path: str) -> str:
        return self.base + path

    def session(self, uuid: str) -> str:
        return self.to(f"/sessions/{uuid}")

    def offerset(self, uuid: str) -> str:
        return self.to(f"/offersets/{uuid}")


@dataclass(frozen=True)
class OfferSetAnswer:
    """An offer set as the client sees it, and where the time went to make it."""

    offerset: OfferSetResponse
    #: A ``Server-Timing`` header value (an aggregator's fan-out); empty: none.
    server_timing: str = ""

    @property
    def url(self) -> str:
        return str(self.offerset.meta.url) if self.offerset.meta else ""


@dataclass(frozen=True)
class Health:
    """``GET /health``: up or degraded, and what a monitor wants to see at a glance."""

    status: str
    platform: str
    #: Bookings and holds on a broker's timeline (brokers only).
    bookings: int | None = None
    #: Each downstream broker's circuit (aggregators only).
    brokers: list[dict[str, Any]] | None = None
    version: str = __version__

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "version": self.version,
            "platform": self.platform,
        }
        if self.bookings is not None:
            out["bookings"] = self.bookings
        if self.brokers is not None:
            out["brokers"] = self.brokers
        return out


@dataclass(frozen=True)
class Gauges:
    """What ``GET /metrics`` reports besides the request counters."""

    #: Sessions by phase (phases not named have none).
    sessions: Mapping[str, int]
    #: Bookings and holds on a broker's timeline (brokers only).
    bookings: int | None = None
    #: Each downstream broker's circuit state: closed, half-open or open (aggregators only).
    circuits: Mapping[str, str] = field(default_factory=dict)


#: The archive's export formats (``GET /archive?format=``).
ARCHIVE_FORMATS = ("json", "csv", "parquet")


@dataclass(frozen=True)
class ArchiveQuery:
    """``GET /archive``: which records, whose (``user``: an admin's choice), in what format."""

    where: ArchiveFilter
    user: str | None = None
    format: str = "json"


@dataclass(frozen=True)
class ArchivePage:
    """One page of archive records: ``items`` as JSON objects, or ``data`` as an export file
    (CSV or Parquet); ``total`` counts every matching record."""

    total: int
    items: list[dict[str, Any]] = field(default_factory=list)
    data: bytes = b""


@dataclass(frozen=True)
class Profile:
    """What a service says of itself in ``/capabilities``, from its configuration."""

    name: str
    platform: str
    timezone: str
    offer_expiry: timedelta
    max_offers: int
    max_duration: timedelta

    def capabilities(self, **fields: Any) -> Capabilities:
        """Capabilities with this profile's fields and ``fields`` (extensions by their
        ``jeb:`` names)."""
        return Capabilities(
            name=self.name,
            platform=self.platform,
            version=__version__,
            timezone=self.timezone,
            offer_expiry=format_duration(self.offer_expiry),
            max_offers=self.max_offers,
            max_duration=format_duration(self.max_duration),
            **fields,
        )


class BrokerService(Protocol):
    """What the web layer asks; see the module docstring.

    Sessions and offer sets the caller may not see are "not found"
    (:class:`~eb_broker.ledger.NotFoundError`), like ones that do not exist.
    """

    async def request_offers(
        self, identity: Identity, request: ExecutionRequest, raw: dict[str, Any], links: Links
    ) -> OfferSetAnswer:
        """``POST /requests``: YES with offers, or NO with the reasons (both are answers)."""
        ...

    async def direct(
        self, identity: Identity, request: ExecutionRequest, raw: dict[str, Any], links: Links
    ) -> ScheduledExecutionSession:
        """``POST /direct``: request and accept the first offer at once
        (:class:`~eb_broker.errors.NothingOffered` when there is none)."""
        ...

    async def get_offerset(self, identity: Identity, uuid: str, links: Links) -> OfferSetAnswer:
        """``GET /offersets/{uuid}``."""
        ...

    async def get_session(
        self, identity: Identity, uuid: str, links: Links
    ) -> ScheduledExecutionSession:
        """``GET /sessions/{uuid}``."""
        ...

    async def list_sessions(
        self, identity: Identity, phases: Sequence[str] | None, links: Links
    ) -> list[ScheduledExecutionSession]:
        """``GET /sessions``: the caller's (an admin's: everyone's), newest first."""
        ...

    async def update_phase(
        self, identity: Identity, uuid: str, value: str, links: Links
    ) -> ScheduledExecutionSession:
        """``POST /sessions/{uuid}``: accept, reject or cancel
        (:func:`~eb_broker.translate.client_phase`)."""
        ...

    async def capabilities(self) -> Capabilities:
        """``GET /capabilities``."""
        ...

    async def health(self) -> Health:
        """``GET /health``."""
        ...

    async def archive(self, identity: Identity, query: ArchiveQuery) -> ArchivePage:
        """``GET /archive``: the caller's records (an admin's: anyone's)."""
        ...

    async def gauges(self) -> Gauges:
        """The figures ``GET /metrics`` reports."""
        ...

    async def start(self) -> None:
        """Start the background work (a reconciler, a refresh loop); in the serving loop."""
        ...

    async def close(self) -> None:
        """Stop the background work and release what the service holds (clients, plugins)."""
        ...


__all__ = [
    "ARCHIVE_FORMATS",
    "ArchivePage",
    "ArchiveQuery",
    "BrokerService",
    "Gauges",
    "Health",
    "Links",
    "OfferSetAnswer",
    "Profile",
]
