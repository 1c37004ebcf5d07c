"""The platform plugin interface: one small class per compute platform.

A platform knows its platform (processes, Slurm, Kubernetes, OpenStack) — not HTTP, not the
ledger's tables, not policies. The broker's reconciler calls it with :class:`SessionSpec`
snapshots and stores whatever :class:`PlatformStatus` and ``handle`` it returns, so after a
restart the platform can find its work again from the ledger alone.

Life of a session on a platform::

    check(request)        pure: can this platform run it at all? (else NO, urn:not-supported)
    preparation(request)  pure: how long before the start must preparing begin
    staging_dir()         where staged data goes (None: requests with data get NO)
    shape(request, demands)  optional: the demands in the platform's own sizes (VM flavors)
    estimate(...)         optional: queue estimates for flexible requests (offers whose start
                          is an interval, labelled ``jeb:estimate``)
    book(spec)            accepted: hold the slot on the platform itself (e.g. a Slurm
                          reservation); returns a handle (persisted at once)
    launch(spec)          start preparing + running; returns a handle (persisted at once)
    poll([specs])         batched status of many sessions (one squeue/list call, not N)
    stop(spec)            cancel / end of slot: stop whatever runs
    release(spec)         clean up what was created (reservations, pods, servers)

Plugins are found through the entry point group ``eb_broker.platforms``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from traitlets.config import LoggingConfigurable

from eb_sdk.model import ExecutionRequest, MessageItem, SimpleSessionConnector
from eb_sdk.model import messages as msg

from ..errors import BrokerError
from ..scheduling import Capacity, Demand, Resources

#: Connector kind of a Jupyter server session (the same on every platform that runs one).
JUPYTER_SERVER_CONNECTOR = "urn:jeb:v1:connector:jupyter-server"


class PlatformState(enum.StrEnum):
    """What a platform says about one session; the reconciler maps it to a session phase."""

    PREPARING = "PREPARING"  # staging, pulling, queued, starting
    AVAILABLE = "AVAILABLE"  # interactive service up and answering
    RUNNING = "RUNNING"  # executing
    SUCCEEDED = "SUCCEEDED"  # finished well
    FAILED = "FAILED"  # finished badly: messages say why
    GONE = "GONE"  # the platform has no trace of it (lost)
    UNKNOWN = "UNKNOWN"  # the platform cannot be asked right now: leave the phase alone


class PlatformUnavailable(BrokerError):
    """The platform cannot be reached right now (e.g. slurmctld is down).

    Not a failure of the session: the reconciler leaves the session where it is and tries the
    same step again on a later pass. Should one reach a client, it is HTTP 503.
    """

    kind = msg.PLATFORM_UNAVAILABLE
    status = 503


class ReleaseLeftovers(Exception):
    """``release`` gave up on something it could not delete in time (an OpenStack volume
    still attached long after its server went, say).

    The session ends as planned all the same (it must not stay RELEASING for ever), with a
    warning naming what is left for an operator; the message is the exception's text.
    """


@dataclass(frozen=True)
class StagedData:
    """A data resource the broker staged for a session (see docs/data.md).

    ``mount`` is where the session expects it, relative to the session's root (``data/x.fits``
    for a volume mount at ``/data/x.fits``); ``files`` are ``(path inside the resource, cached
    file)`` pairs — one pair with an empty path for a single file, several for a directory
    (a bucket). ``env`` names the environment variable that tells the session the path.
    """

    name: str
    mount: str
    readonly: bool
    env: str
    directory: bool
    files: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SessionSpec:
    """A snapshot of one booked session, as a platform needs it (plain data, no ORM)."""

    uuid: str
    owner: str
    groups: tuple[str, ...]
    request: ExecutionRequest
    resources: Resources
    start: datetime
    end: datetime
    preparation: timedelta
    handle: dict[str, Any] = field(default_factory=dict)
    work_dir: str = ""
    #: For sessions booked from a queue estimate: ``earliest``/``expected``/``latest`` start
    #: (ISO instants) and ``basis``; None for precise slots.
    estimate: dict[str, Any] | None = None
    #: The request's data, staged by the broker before :meth:`Platform.launch` (empty when the
    #: request has none). The platform makes it appear at the mount paths.
    data: tuple[StagedData, ...] = ()
    #: The GiB of ``resources.storage_gib`` booked for the request's data (counted as storage
    #: wherever it is staged): a platform that reads the data from a shared staging area
    #: (Kubernetes' staging claim) does not allocate it again with the session's own storage.
    data_storage_gib: int = 0

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class EstimatedSlot:
    """A queue estimate: the session may start anywhere in ``[earliest, latest]``.

    ``expected`` is the platform's best guess (e.g. Slurm's backfill estimate); no resources
    are held on the platform for it, the platform's queue decides when it really starts.
    """

    earliest: datetime
    expected: datetime
    latest: datetime
    duration: timedelta
    resources: Resources
    basis: str = ""


@dataclass
class PlatformStatus:
    """A platform's answer for one session in :meth:`Platform.poll`."""

    state: PlatformState
    messages: list[MessageItem] = field(default_factory=list)
    connectors: list[SimpleSessionConnector] = field(default_factory=list)
    handle: dict[str, Any] | None = None  # updated handle to persist, if it changed
    outputs: dict[str, str] = field(default_factory=dict)  # e.g. output notebook path


class Platform(LoggingConfigurable):
    """Base class of platform plugins. Subclasses override the methods below."""

    #: Short name shown in capabilities and offers (``local``, ``slurm``, ...).
    name: ClassVar[str] = "abstract"

    #: Set by the broker: call it (on the broker's event loop) when the platform learns that a
    #: session changed on its own — a runner process exited — so the reconciler polls now
    #: instead of on its next pass. Platforms that cannot tell leave it alone: they are polled.
    changed: Callable[[], None] | None = None

    def executable_kinds(self) -> list[str]:
        """Kind URIs of the executables this platform can run."""
        raise NotImplementedError

    def capacity(self) -> Capacity:
        """The platform's capacity, possibly varying over time."""
        raise NotImplementedError

    def external_usage(self) -> list[tuple[str, datetime, datetime, Resources]]:
        """Usage the broker did not book (other jobs on a shared cluster): (key, start, end, res).

        The broker adds these to its timeline after each :meth:`refresh`.
        """
        return []

    #: Seconds between calls of :meth:`refresh` by the reconciler.
    refresh_interval: ClassVar[float] = 30.0

    async def refresh(self) -> None:
        """Re-read capacity and external usage from the platform (called periodically).

        After it, the broker reads :meth:`capacity` and :meth:`external_usage` again.
        """

    def check(self, request: ExecutionRequest) -> list[MessageItem]:
        """Why this platform cannot run ``request`` at all (empty list: it can). Pure."""
        return []

    def capabilities(self) -> dict[str, Any]:
        """Platform-specific fields of ``GET /capabilities`` (``jeb:`` extensions, e.g. the
        profiles a request may name); the list under ``extensions`` joins the broker's."""
        return {}

    def preparation(self, request: ExecutionRequest) -> timedelta:
        """Time the platform needs before the start (image pull, start-up). Pure.

        Data staging is not part of it: the broker predicts that itself and adds it.
        """
        return timedelta(0)

    def staging_dir(self) -> str | None:
        """Where the broker stages data for this platform's sessions: a directory the broker
        writes and every session can read (for a cluster, on its shared file system).

        None (the default): this platform cannot take staged data, requests with data get NO.
        A platform that returns a directory mounts :attr:`SessionSpec.data` in
        :meth:`launch`.
        """
        return None

    def configured_staging_dir(self) -> str | None:
        """``DataStaging.staging_dir`` of the broker's configuration, absolute (None when it
        is not set): for platforms that must know where the staging service keeps its cache
        (a claim's storage as the broker sees it, a place to pack images beside it)."""
        configured = str((self.config.get("DataStaging") or {}).get("staging_dir") or "")
        return str(Path(configured).expanduser().absolute()) if configured else None

    def shape(
        self, request: ExecutionRequest, demands: list[Demand]
    ) -> tuple[list[Demand], list[MessageItem]]:
        """The demands in the sizes this platform allocates, and why none fits. Pure.

        Called with the translated demands of a request that passed :meth:`check`. A platform
        that allocates in fixed sizes (OpenStack flavors) returns demands of exactly those
        sizes, so the offers book what it will really use; when it returns no demand, its
        messages make the answer NO. The default keeps the demands as they are.
        """
        return demands, []

    async def estimate(
        self, request: ExecutionRequest, demand: Demand, now: datetime
    ) -> list[EstimatedSlot]:
        """Queue estimates for a flexible request (empty: this platform makes none).

        Called for every request that passed :meth:`check`; the broker offers them next to the
        precise slots, labelled as estimates. Accepting one books no slot on the platform:
        :meth:`launch` is called at once and the platform's queue decides the real start.
        """
        return []

    async def book(self, spec: SessionSpec) -> dict[str, Any]:
        """An offer was accepted: hold its slot on the platform, if the platform can.

        Called once when the session leaves ACCEPTED (again after a crash, so it must be
        idempotent). Returns the handle to persist (``spec.handle`` plus whatever it created);
        the default holds nothing and returns the handle unchanged. ``release`` undoes it.
        """
        return dict(spec.handle)

    async def launch(self, spec: SessionSpec) -> dict[str, Any]:
        """Start preparing and running ``spec``; return the handle to persist.

        Must be idempotent per ``spec.uuid``: after a broker crash it may be called again for a
        session whose launch already happened, and must then adopt the existing work.
        """
        raise NotImplementedError

    async def poll(self, specs: list[SessionSpec]) -> dict[str, PlatformStatus]:
        """Status of many launched sessions at once, keyed by uuid."""
        raise NotImplementedError

    async def stop(self, spec: SessionSpec) -> None:
        """Stop whatever runs for ``spec`` (cancel, or the end of the booked slot)."""
        raise NotImplementedError

    async def release(self, spec: SessionSpec) -> None:
        """Clean up what was created for ``spec`` after it stopped."""

    async def close(self) -> None:
        """Called when the broker shuts down (sessions keep running)."""
