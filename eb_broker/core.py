"""The broker's domain logic: offers from capacity, atomic accepts, cancels, expiry.

It sits between the web handlers (which only parse, authenticate and render) and the ledger,
platform and pure scheduler. The in-memory :class:`~eb_broker.scheduling.Timeline` is a cache
of the ledger's holding rows for fast offers; the ledger stays the source of truth and ``accept``
re-checks capacity there.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eb_sdk.model import ExecutionRequest, MessageItem, Phase
from eb_sdk.model import messages as msg

from .auth import Identity
from .ledger import (
    Booked,
    InvalidTransitionError,
    Ledger,
    NotFoundError,
    OfferDraft,
    OfferSetRow,
    SessionRow,
    row_resources,
)
from .platforms.base import EstimatedSlot, Platform, PlatformUnavailable, SessionSpec
from .policies import PolicyChain
from .scheduling import (
    Capacity,
    CapacityPeriod,
    Demand,
    NoFit,
    Resources,
    Slot,
    Timeline,
    Window,
    find_slots,
)
from .scheduling.check import shortfall
from .translate import Limits, SessionView, request_to_demands, utcnow

log = logging.getLogger("eb_broker")


@dataclass(frozen=True)
class Settings:
    """The core's knobs (filled from the traitlets configuration)."""

    name: str = "local broker"
    offer_expiry: timedelta = timedelta(minutes=5)
    max_offers: int = 4
    step: timedelta = timedelta(hours=1)
    hold_offers: bool = True
    #: Offered starts are rounded up to this ("now" means now + preparation, to the second).
    granularity: timedelta = timedelta(seconds=1)
    admin_users: frozenset[str] = frozenset()


class BrokerCore:
    """Answers requests with offers and keeps the ledger and timeline in step."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        platform: Platform,
        limits: Limits,
        settings: Settings,
        policies: PolicyChain | None = None,
        clock: Callable[[], datetime] = utcnow,
        work_dir: str = "",
        capacity_periods: Iterable[CapacityPeriod] = (),
    ) -> None:
        self.ledger = ledger
        self.platform = platform
        self.limits = limits
        self.settings = settings
        self.policies = policies or PolicyChain([])
        self.clock = clock
        self.work_dir = work_dir
        self.timeline = Timeline()
        self.capacity_periods = tuple(capacity_periods)
        self.capacity: Capacity = self._platform_capacity()
        self._external: dict[str, tuple[datetime, datetime, Resources]] = {}
        self._next_expiry: datetime | None = None

    # -- start-up and housekeeping ------------------------------------------------------------

    def load(self) -> None:
        """Rebuild the timeline from the ledger (after a start or restart)."""
        now = self.clock()
        self.ledger.expire_due(now)
        self._next_expiry = self.ledger.next_offer_expiry()
        self.timeline = Timeline()
        for booked in self.ledger.holding(now):
            self.timeline.add(booked.uuid, booked.start, booked.end, booked.resources)
        self._external = {}
        self.sync_external()

    def sync_external(self) -> None:
        """Put the platform's own usage (jobs we did not book) on the timeline."""
        for key in self._external:
            self.timeline.remove(key)
        self._external = {}
        for key, start, end, resources in self.platform.external_usage():
            ext_key = f"external:{key}"
            if end > start:
                self.timeline.add(ext_key, start, end, resources)
                self._external[ext_key] = (start, end, resources)
        self.capacity = self._platform_capacity()

    def _platform_capacity(self) -> Capacity:
        """The platform's capacity with the configured periods (maintenance, pledges) on top."""
        own = self.platform.capacity()
        return Capacity(own.base, (*own.periods, *self.capacity_periods))

    def reap(self) -> list[str]:
        """Expire offers whose time is up and free their capacity.

        Cheap when nothing is due: the ledger is only written when the earliest known offer
        expiry has passed.
        """
        now = self.clock()
        if self._next_expiry is None or now < self._next_expiry:
            return []
        expired = self.ledger.expire_due(now)
        for uuid in expired:
            self.timeline.remove(uuid)
        self._next_expiry = self.ledger.next_offer_expiry()
        return expired

    def release_capacity(self, uuid: str) -> None:
        """A session ended (or was cancelled): its slot is free again."""
        self.timeline.remove(uuid)

    # -- ownership ------------------------------------------------------------------------------

    def _visible(self, identity: Identity, owner: str) -> bool:
        return identity.user == owner or identity.user in self.settings.admin_users

    def get_offerset(self, identity: Identity, uuid: str) -> tuple[OfferSetRow, list[SessionRow]]:
        self.reap()
        found = self.ledger.get_offerset(uuid)
        if found is None or not self._visible(identity, found[0].owner):
            raise NotFoundError(f"no offer set {uuid}")
        return found

    def get_session(self, identity: Identity, uuid: str) -> SessionRow:
        self.reap()
        row = self.ledger.get_session(uuid)
        if row is None or not self._visible(identity, row.owner):
            raise NotFoundError(f"no session {uuid}")
        return row

    def list_sessions(self, identity: Identity, phases: Iterable[str] | None) -> list[SessionRow]:
        self.reap()
        owner = None if identity.user in self.settings.admin_users else identity.user
        return self.ledger.list_sessions(owner, phases)

    # -- offers ---------------------------------------------------------------------------------

    async def request_offers(
        self, identity: Identity, request: ExecutionRequest, raw: dict[str, Any]
    ) -> tuple[OfferSetRow, list[SessionRow]]:
        """Answer a request: YES with up to ``max_offers`` offers, or NO with reasons.

        Precise slots come from the capacity and the timeline; a platform may add queue
        estimates (:meth:`Platform.estimate`). The only ``await`` is that call, made before the
        offers are computed and held, so computing and holding happen without interleaving.
        """
        self.reap()
        now = self.clock()
        problems = [*self.platform.check(request), *self.policies.check(identity, request)]
        drafts: list[OfferDraft] = []
        if not problems:
            preparation = self.platform.preparation(request)
            translation = request_to_demands(
                request,
                now=now,
                limits=self.limits,
                preparation=preparation,
                accelerator_pools=accelerator_names(self.capacity.base),
            )
            problems += translation.problems
            demands = translation.demands
            if not problems and demands:
                demands, unfit = self.platform.shape(request, demands)
                problems += unfit
            estimates: list[EstimatedSlot] = []
            if not problems and demands:
                try:
                    estimates = await self.platform.estimate(request, demands[0], now)
                except PlatformUnavailable as exc:
                    problems.append(msg.error(msg.PLATFORM_UNAVAILABLE, str(exc)))
                except Exception:
                    log.exception("the platform's queue estimate failed; offering slots only")
            if not problems:
                drafts, misses = self._drafts(demands, estimates, preparation, now, request)
                problems += misses
        offerset, rows = self.ledger.create_offerset(
            owner=identity.user,
            groups=identity.groups,
            request=raw,
            result="YES" if drafts else "NO",
            messages=[m.dump() for m in problems],
            offers=drafts,
            now=now,
            expires=now + self.settings.offer_expiry,
            name=request.name,
        )
        if rows and (self._next_expiry is None or offerset.expires < self._next_expiry):
            self._next_expiry = offerset.expires
        if self.settings.hold_offers:
            for row in rows:
                self.timeline.add(row.uuid, row.start, row.end, row_resources(row))
        return offerset, rows

    def _drafts(
        self,
        demands: list[Demand],
        estimates: list[EstimatedSlot],
        preparation: timedelta,
        now: datetime,
        request: ExecutionRequest,
    ) -> tuple[list[OfferDraft], list[MessageItem]]:
        """Precise slots from the timeline plus queue estimates, at most ``max_offers``.

        Returns the offers, or (none and) the messages saying why nothing fits.
        """
        slots: list[Slot] = []
        misses: list[NoFit] = []
        for demand in demands:
            found = find_slots(
                self.capacity,
                self.timeline,
                demand,
                now,
                max_offers=self.settings.max_offers,
                step=self.settings.step,
                horizon=self.limits.horizon,
                granularity=self.settings.granularity,
            )
            if isinstance(found, NoFit):
                misses.append(found)
            else:
                slots.extend(found)
        queued = self._estimate_drafts(estimates, now, request.name)
        precise = _best(slots, max(0, self.settings.max_offers - len(queued)))
        drafts = [
            OfferDraft(slot.start, slot.end, slot.resources, preparation, request.name)
            for slot in precise
        ]
        drafts += queued
        return drafts, ([] if drafts else _no_fit_messages(misses))

    def _estimate_drafts(
        self, estimates: list[EstimatedSlot], now: datetime, name: str | None
    ) -> list[OfferDraft]:
        """Offers from the platform's queue estimates.

        Each holds its *expected* slot on the timeline like any offer: the expected start is
        moved to the first start in ``[expected, latest]`` that fits next to the bookings and
        holds the platform's queue does not know about (other users' open offers). The
        reconciler launches an accepted estimate at once (preparation = the expected wait); the
        platform's queue decides the real start within ``[earliest, latest]``.
        """
        drafts: list[OfferDraft] = []
        for est in estimates[: self.settings.max_offers]:
            latest = max(est.latest, est.expected)
            demand = Demand(
                minimum=est.resources,
                maximum=est.resources,
                duration=est.duration,
                windows=(Window(est.expected, latest),),
                preparation=timedelta(0),
            )
            found = find_slots(
                self.capacity,
                self.timeline,
                demand,
                now,
                max_offers=1,
                step=self.settings.step,
                horizon=self.limits.horizon,
                granularity=self.settings.granularity,
            )
            if isinstance(found, NoFit) or not found:
                continue
            slot = found[0]
            wait = max(timedelta(0), slot.start - now)
            wait = timedelta(seconds=math.ceil(wait.total_seconds()))
            drafts.append(
                OfferDraft(
                    slot.start,
                    slot.end,
                    slot.resources,
                    wait,
                    name,
                    estimate={
                        "earliest": min(est.earliest, slot.start).isoformat(),
                        "expected": slot.start.isoformat(),
                        "latest": max(latest, slot.start).isoformat(),
                        "basis": est.basis,
                    },
                )
            )
        return drafts

    # -- updates --------------------------------------------------------------------------------

    def _fits(self, row: SessionRow, overlapping: list[Booked]) -> list[str]:
        """Does ``row`` fit next to ``overlapping`` (read in the accept transaction)?"""
        others: list[tuple[datetime, datetime, Mapping[str, int]]] = [
            (b.start, b.end, b.amounts) for b in overlapping
        ]
        others += [
            (start, end, dict(res.items()))
            for start, end, res in self._external.values()
            if start < row.end and end > row.start
        ]
        short = shortfall(self.capacity, others, row.start, row.end, row_resources(row))
        if not short:
            return []
        return [f"the slot is no longer free ({', '.join(short)} already booked)"]

    def accept(self, identity: Identity, uuid: str) -> SessionRow:
        """Accept an offer (atomic in the ledger); its siblings are rejected."""
        self.get_session(identity, uuid)
        row, rejected = self.ledger.accept(
            uuid, self.clock(), self._fits, count_offers=self.settings.hold_offers
        )
        for sibling in rejected:
            self.timeline.remove(sibling)
        if uuid not in self.timeline:
            self.timeline.add(row.uuid, row.start, row.end, row_resources(row))
        return row

    def reject(self, identity: Identity, uuid: str) -> SessionRow:
        self.get_session(identity, uuid)
        row = self.ledger.transition(
            uuid,
            Phase.REJECTED,
            self.clock(),
            allowed_from=[Phase.OFFERED],
            message="offer rejected",
        )
        self.release_capacity(uuid)
        return row

    def cancel(self, identity: Identity, uuid: str) -> SessionRow:
        """Cancel a session: not launched yet → CANCELLED now; else the reconciler stops it."""
        row = self.get_session(identity, uuid)
        phase = Phase(row.phase)
        if not phase.is_active:
            raise InvalidTransitionError(f"session {uuid} is {row.phase}: it cannot be cancelled")
        now = self.clock()
        if row.launched is None and not row.handle:
            row = self.ledger.transition(
                uuid,
                Phase.CANCELLED,
                now,
                allowed_from=[Phase.ACCEPTED, Phase.WAITING],
                message="cancelled by the user",
            )
            self.release_capacity(uuid)
            return row
        return self.ledger.update_fields(uuid, now, stop_requested=Phase.CANCELLED.value)

    def update_phase(self, identity: Identity, uuid: str, value: str) -> SessionRow:
        """``POST /sessions/{uuid}`` with a phase update."""
        try:
            target = Phase.parse(value)
        except ValueError:
            raise InvalidTransitionError(f"{value!r} is not a session phase") from None
        if target == Phase.ACCEPTED:
            return self.accept(identity, uuid)
        if target == Phase.REJECTED:
            return self.reject(identity, uuid)
        if target == Phase.CANCELLED:
            return self.cancel(identity, uuid)
        raise InvalidTransitionError(
            f"a client may set the phase to ACCEPTED, REJECTED or CANCELLED, not {target.value}"
        )

    # -- views ----------------------------------------------------------------------------------

    def spec_for(self, row: SessionRow) -> SessionSpec:
        """The platform's view of a booked session."""
        return SessionSpec(
            uuid=row.uuid,
            owner=row.owner,
            groups=tuple(row.groups or ()),
            request=ExecutionRequest.model_validate(row.request),
            resources=row_resources(row),
            start=row.start,
            end=row.end,
            preparation=timedelta(seconds=row.preparation_s),
            handle=dict(row.handle or {}),
            work_dir=self.work_dir,
            estimate=dict(row.estimate) if row.estimate else None,
        )


def view_of(row: SessionRow) -> SessionView:
    """The wire-independent view of a ledger row."""
    return SessionView(
        uuid=row.uuid,
        phase=Phase(row.phase),
        name=row.name,
        created=row.created,
        modified=row.modified,
        expires=row.expires,
        start=row.start,
        end=row.end,
        preparation=timedelta(seconds=row.preparation_s),
        resources=row_resources(row),
        request=row.request,
        messages=row.messages or [],
        connectors=row.connectors or [],
        outputs=row.outputs or {},
        estimate=dict(row.estimate) if row.estimate else None,
    )


def accelerator_names(resources: Resources) -> list[str]:
    """The accelerator pools a platform has (names like ``gpu:A100``)."""
    return [name for name, count in dict(resources.accelerators).items() if count > 0]


def _best(slots: list[Slot], limit: int) -> list[Slot]:
    """Merge alternatives (e.g. several GPU pools): earliest first, at most ``limit``."""
    unique: dict[tuple[datetime, datetime, Any], Slot] = {}
    for slot in sorted(slots, key=lambda s: (s.start, -s.resources.cores)):
        unique.setdefault((slot.start, slot.end, slot.resources), slot)
    return list(unique.values())[:limit]


def _no_fit_messages(fits: list[NoFit]) -> list[MessageItem]:
    out: list[MessageItem] = []
    earliest: Slot | None = None
    for nofit in fits:
        for reason in nofit.reasons:
            kind = msg.RESOURCE_LIMIT if "exceeds" in reason else msg.NO_CAPACITY
            out.append(msg.error(kind, reason))
        if nofit.earliest and (earliest is None or nofit.earliest.start < earliest.start):
            earliest = nofit.earliest
    if earliest is not None:
        out.append(
            msg.info(
                msg.EARLIEST_FIT,
                f"the earliest slot that would fit starts at {earliest.start.isoformat()}",
                start=earliest.start.isoformat(),
                end=earliest.end.isoformat(),
            )
        )
    if not out:
        out.append(msg.error(msg.NO_CAPACITY, "no capacity for this request"))
    return out
