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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from eb_sdk.model import ExecutionRequest, MessageItem, Phase
from eb_sdk.model import messages as msg
from eb_sdk.model.times import format_duration

from .auth import Identity
from .clock import utcnow
from .ledger import (
    Booked,
    InvalidTransitionError,
    Ledger,
    NotFoundError,
    OfferDraft,
    OfferExpiredError,
    OfferSetRow,
    SessionRow,
    row_resources,
)
from .ledger.archive import Archive, ArchiveFilter
from .platforms.base import EstimatedSlot, Platform, PlatformUnavailable, SessionSpec
from .policies import AcceptQuery, Decision, PolicyChain, PolicyDenied, PolicyQuery
from .prediction import Predictions, executable_key
from .scheduling import (
    Capacity,
    CapacityPeriod,
    Demand,
    NoFit,
    NoFitKind,
    Resources,
    Slot,
    Timeline,
    Window,
    find_slots,
)
from .scheduling.allocations import Allocations
from .scheduling.check import shortfall
from .staging import DataStaging, Plan, StagingRunner
from .translate import (
    Limits,
    client_phase,
    request_to_demands,
    requested_duration,
    with_duration,
)

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
        staging: DataStaging | None = None,
        predictions: Predictions | None = None,
    ) -> None:
        self.ledger = ledger
        self.archive = Archive(ledger)
        self.predictions = predictions or Predictions(self.archive)
        if self.predictions.archive is None:
            self.predictions.archive = self.archive
        #: Data staging (None: requests with data get NO); its runner stages during PREPARING.
        self.staging = staging
        self.staging_runner = StagingRunner(staging, ledger, self.archive) if staging else None
        self.platform = platform
        self.limits = limits
        self.settings = settings
        self.policies = policies or PolicyChain([])
        self.clock = clock
        self.work_dir = work_dir
        self.timeline = Timeline()
        self.capacity_periods = tuple(capacity_periods)
        self._set_capacity()
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
            self.timeline.add(
                booked.uuid, booked.start, booked.end, self._holding(booked.resources, booked.pools)
            )
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
        self._set_capacity()

    def _platform_capacity(self) -> Capacity:
        """The platform's capacity with the configured periods (maintenance, pledges) on top.

        With data staging, the storage is less what the staging cache keeps for no active
        session (sessions book the data they use); a platform without storage of its own
        (Slurm) gets the staging area's room as its storage.
        """
        own = self.platform.capacity()
        base = own.base
        staging = self.staging
        if staging is not None and staging.available:
            room = base.storage_gib or staging.room_gib
            base = replace(base, storage_gib=max(0, room - staging.retained_gib))
        return Capacity(base, (*own.periods, *self.capacity_periods))

    def _set_capacity(self) -> None:
        """Read the platform's capacity; with allocations, also the pools' dimensions."""
        self.capacity: Capacity = self._platform_capacity()
        alloc = self.allocations
        self.scheduling_capacity = self.capacity if alloc is None else alloc.capacity(self.capacity)

    @property
    def allocations(self) -> Allocations | None:
        """The capacity's pools (group-allocation policy), if any."""
        return self.policies.allocations

    def _holding(self, resources: Resources, pools: Iterable[str] | None) -> Resources:
        """What a booking holds on the timeline: its resources plus its allocation usage."""
        alloc = self.allocations
        return resources if alloc is None else alloc.holding(_pool_set(pools), resources)

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

    def may_launch_early(self, row: SessionRow, now: datetime) -> bool:
        """Whether a waiting session may launch now, before its booked launch time: when it was
        offered for "as soon as possible" (its start was the offer's creation plus preparation,
        rounded up to ``granularity``), that time is less than ``granularity`` away, and what
        it holds is free from now on. Without this a session accepted for "now" idles until
        the next whole second, half a second on average — for a batch, every chunk. The
        booking is moved to start now, so the timeline stays true."""
        gran = self.settings.granularity
        due = row.start - timedelta(seconds=row.preparation_s)
        if not now < due <= now + gran or due - row.created > gran:
            return False
        holding = self._holding(row_resources(row), row.pools)
        # its own booking starts at row.start, so it holds nothing of [now, row.start)
        if not holding.fits_in(self.timeline.free_min(self.capacity, now, row.start)):
            return False
        self.timeline.remove(row.uuid)
        self.timeline.add(row.uuid, now, row.end, holding)
        return True

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

        Policies decide first (refuse, cap, restrict accelerators and allocation pools; a remote
        policy is awaited). Precise slots come from the capacity and the timeline; a platform
        may add queue estimates (:meth:`Platform.estimate`). Both awaits come before the offers
        are computed and held, so computing and holding happen without interleaving. The
        offer set's messages explain every policy decision (notes on YES, reasons on NO).
        """
        problems = list(self.platform.check(request))
        notes: list[MessageItem] = []
        decision = Decision()
        key = executable_key(request)
        prediction: dict[str, Any] | None = None
        if not problems:
            request, prediction = self._predict(request, key, notes)
            applied = await self.policies.apply(
                self._policy_query(identity, request),
                default_cores=self.limits.default_cores,
                default_memory_gib=self.limits.default_memory_gib,
            )
            request, decision = applied.request, applied.decision
            notes += applied.notes
            problems += applied.refusals
        self.reap()
        now = self.clock()
        drafts: list[OfferDraft] = []
        plan = Plan()
        if not problems and self.staging is not None and request.data:
            plan = await self.staging.plan(request)
            problems += plan.problems
            notes += plan.notes
        elif not problems and request.data and self.staging is None:
            problems.append(msg.error(msg.NOT_SUPPORTED, "this broker does not stage data"))
        if not problems:
            platform_preparation = self.platform.preparation(request)
            preparation = platform_preparation + timedelta(seconds=math.ceil(plan.seconds))
            translation = request_to_demands(
                request,
                now=now,
                limits=self.limits,
                preparation=preparation,
                data_storage_gib=plan.storage_gib,
                accelerator_pools=[
                    name
                    for name in accelerator_names(self.capacity.base)
                    if decision.accelerators is None or name in decision.accelerators
                ],
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
                drafts, more = self._drafts(
                    demands, estimates, preparation, now, request, decision.pools
                )
                (notes if drafts else problems).extend(more)
                staging = plan.record
                if staging is not None:
                    staging = {
                        **staging,
                        "platform_preparation_s": int(platform_preparation.total_seconds()),
                    }
                drafts = [
                    replace(d, staging=staging, prediction=prediction, executable_hash=key)
                    for d in drafts
                ]
        offerset, rows = self.ledger.create_offerset(
            owner=identity.user,
            groups=identity.groups,
            request=raw,
            result="YES" if drafts else "NO",
            messages=[m.dump() for m in [*notes, *problems]],
            offers=drafts,
            now=now,
            expires=now + self.settings.offer_expiry,
            name=request.name,
        )
        if rows and (self._next_expiry is None or offerset.expires < self._next_expiry):
            self._next_expiry = offerset.expires
        if self.settings.hold_offers:
            for row in rows:
                self.timeline.add(
                    row.uuid, row.start, row.end, self._holding(row_resources(row), row.pools)
                )
        return offerset, rows

    def _predict(
        self, request: ExecutionRequest, key: str | None, notes: list[MessageItem]
    ) -> tuple[ExecutionRequest, dict[str, Any] | None]:
        """The run-time prediction for ``request`` (a note, and ``jeb:prediction``); a request
        without a duration gets the predicted one (see :class:`Predictions`)."""
        predictions = self.predictions
        runtime = predictions.run_time(key)
        if runtime is None:
            return request, None
        notes.append(
            msg.info(
                msg.PREDICTION,
                runtime.message(),
                median=round(runtime.median),
                high=round(runtime.high),
                runs=runtime.runs,
            )
        )
        asked = request.schedule.requested if request.schedule else None
        if not predictions.propose_duration or (asked is not None and asked.duration):
            return request, runtime.record()
        proposed = min(
            runtime.proposed(predictions.duration_margin, predictions.duration_rounding),
            self.limits.max_duration,
        )
        notes.append(
            msg.info(
                msg.PREDICTION,
                f"no duration was given: offering {format_duration(proposed)} from the past runs "
                f"(instead of the default {format_duration(self.limits.default_duration)})",
                duration=format_duration(proposed),
            )
        )
        return with_duration(request, proposed), runtime.record(proposed)

    def _policy_query(self, identity: Identity, request: ExecutionRequest) -> PolicyQuery:
        alloc = self.allocations
        return PolicyQuery(
            identity=identity,
            request=request,
            now=self.clock(),
            broker=self.settings.name,
            duration=requested_duration(request, self.limits.default_duration),
            accelerator_pools=tuple(accelerator_names(self.capacity.base)),
            allocation_pools=alloc.names if alloc is not None else (),
            active_sessions=self.ledger.count_active,
        )

    def _drafts(
        self,
        demands: list[Demand],
        estimates: list[EstimatedSlot],
        preparation: timedelta,
        now: datetime,
        request: ExecutionRequest,
        pools: frozenset[str] | None = None,
    ) -> tuple[list[OfferDraft], list[MessageItem]]:
        """Precise slots from the timeline plus queue estimates, at most ``max_offers``.

        Returns the offers and notes (what an allocation reduced), or no offers and the
        messages saying why nothing fits.
        """
        slots: list[Slot] = []
        misses: list[NoFit] = []
        notes: list[MessageItem] = []
        for demand in demands:
            found = find_slots(
                self.scheduling_capacity,
                self.timeline,
                self._for_pools(demand, pools),
                now,
                max_offers=self.settings.max_offers,
                step=self.settings.step,
                horizon=self.limits.horizon,
                granularity=self.settings.granularity,
            )
            if isinstance(found, NoFit):
                misses.append(found)
            else:
                slots.extend(self._settle(slot, notes) for slot in found)
        queued = self._estimate_drafts(estimates, now, request.name, pools)
        precise = _best(slots, max(0, self.settings.max_offers - len(queued)))
        drafts = [
            OfferDraft(
                slot.start, slot.end, slot.resources, preparation, request.name, pools=_pools(pools)
            )
            for slot in precise
        ]
        drafts += queued
        return drafts, (_unique(notes) if drafts else _no_fit_messages(misses))

    def _for_pools(self, demand: Demand, pools: frozenset[str] | None) -> Demand:
        alloc = self.allocations
        return demand if alloc is None or not pools else alloc.demand(demand, pools)

    def _settle(self, slot: Slot, notes: list[MessageItem]) -> Slot:
        """A slot's real resources (allocation dimensions off); a note where one reduced it."""
        alloc = self.allocations
        if alloc is None:
            return slot
        settled = alloc.settle(slot.resources)
        for resource, wanted, given, label in settled.reduced:
            notes.append(
                msg.info(
                    msg.POLICY,
                    f"policy group-allocation: {given} {resource} instead of up to {wanted} "
                    f"from {slot.start.isoformat()}: {label} has no more free then",
                    policy="group-allocation",
                    resource=resource,
                    requested=wanted,
                    given=given,
                )
            )
        return replace(slot, resources=settled.resources)

    def _estimate_drafts(
        self,
        estimates: list[EstimatedSlot],
        now: datetime,
        name: str | None,
        pools: frozenset[str] | None = None,
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
                self.scheduling_capacity,
                self.timeline,
                self._for_pools(demand, pools),
                now,
                max_offers=1,
                step=self.settings.step,
                horizon=self.limits.horizon,
                granularity=self.settings.granularity,
            )
            if isinstance(found, NoFit) or not found:
                continue
            slot = self._settle(found[0], [])
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
                    pools=_pools(pools),
                )
            )
        return drafts

    # -- updates --------------------------------------------------------------------------------

    def _fits(self, row: SessionRow, overlapping: list[Booked]) -> list[str]:
        """Does ``row`` fit next to ``overlapping`` (read in the accept transaction)?"""
        alloc = self.allocations
        others: list[tuple[datetime, datetime, Mapping[str, int]]] = [
            (
                b.start,
                b.end,
                b.amounts if alloc is None else dict(self._holding(b.resources, b.pools).items()),
            )
            for b in overlapping
        ]
        others += [
            (start, end, dict(res.items()))
            for start, end, res in self._external.values()
            if start < row.end and end > row.start
        ]
        wanted = self._holding(row_resources(row), row.pools)
        short = shortfall(self.scheduling_capacity, others, row.start, row.end, wanted)
        if not short:
            return []
        return [f"the slot is no longer free ({', '.join(short)} already booked)"]

    def accept(self, identity: Identity, uuid: str) -> SessionRow:
        """Accept an offer (atomic in the ledger); its siblings are rejected.

        Policies may refuse first (e.g. one session too many for this user): 403.
        """
        self.get_session(identity, uuid)
        if self.policies.policies:
            active = self.ledger.count_active(identity.user)
            refusals = self.policies.check_accept(AcceptQuery(identity, active))
            if refusals:
                raise PolicyDenied(refusals)
        try:
            row, rejected = self.ledger.accept(
                uuid, self.clock(), self._fits, count_offers=self.settings.hold_offers
            )
        except OfferExpiredError:
            self.release_capacity(uuid)  # the ledger marked it EXPIRED (another process's offer)
            raise
        for sibling in rejected:
            self.timeline.remove(sibling)
        if uuid not in self.timeline:
            self.timeline.add(
                row.uuid, row.start, row.end, self._holding(row_resources(row), row.pools)
            )
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
        target = client_phase(value)
        if target == Phase.ACCEPTED:
            return self.accept(identity, uuid)
        if target == Phase.REJECTED:
            return self.reject(identity, uuid)
        return self.cancel(identity, uuid)

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
            data=DataStaging.staged_data(row.staging),
            data_storage_gib=DataStaging.storage_gib(row.staging),
        )

    # -- the archive and the staging cache --------------------------------------------------------

    def archive_page(
        self, identity: Identity, where: ArchiveFilter, user: str | None
    ) -> tuple[list[SessionRow], int]:
        """Archive records the caller may see: their own; an admin's, anyone's (or ``user``'s).

        Someone else's records asked for by a non-admin are simply not there (an empty page).
        """
        if identity.user in self.settings.admin_users:
            return self.archive.page(replace(where, owner=user))
        if user is not None and user != identity.user:
            return [], 0
        return self.archive.page(replace(where, owner=identity.user))

    def housekeeping(self) -> None:
        """Clean the staging cache; what it keeps counts against the storage capacity."""
        if self.staging is None:
            return
        before = self.staging.retained_gib
        self.staging.housekeeping(self.archive.staging_in_use())
        if self.staging.retained_gib != before:
            self._set_capacity()


def accelerator_names(resources: Resources) -> list[str]:
    """The accelerator pools a platform has (names like ``gpu:A100``)."""
    return [name for name, count in dict(resources.accelerators).items() if count > 0]


def _pool_set(pools: Iterable[str] | None) -> frozenset[str] | None:
    return None if pools is None else frozenset(pools)


def _pools(pools: frozenset[str] | None) -> tuple[str, ...] | None:
    """Pools as stored with an offer (sorted), None without allocations."""
    return None if pools is None else tuple(sorted(pools))


def _unique(items: list[MessageItem]) -> list[MessageItem]:
    """Messages without repeats (several offers reduced alike), at most five."""
    seen: set[str] = set()
    out = []
    for item in items:
        if item.message not in seen:
            seen.add(item.message or "")
            out.append(item)
    return out[:5]


def _best(slots: list[Slot], limit: int) -> list[Slot]:
    """Merge alternatives (e.g. several GPU pools): earliest first, at most ``limit``."""
    unique: dict[tuple[datetime, datetime, Any], Slot] = {}
    for slot in sorted(slots, key=lambda s: (s.start, -s.resources.cores)):
        unique.setdefault((slot.start, slot.end, slot.resources), slot)
    return list(unique.values())[:limit]


#: The MessageItem kind of a scheduling reason: more than the platform has at all is a resource
#: limit; every other reason is a lack of capacity (at the times asked for, or at all).
_NO_FIT_KINDS = {NoFitKind.EXCEEDS_PLATFORM: msg.RESOURCE_LIMIT}


def _no_fit_messages(fits: list[NoFit]) -> list[MessageItem]:
    out: list[MessageItem] = []
    earliest: Slot | None = None
    for nofit in fits:
        for reason in nofit.reasons:
            out.append(msg.error(_NO_FIT_KINDS.get(reason.kind, msg.NO_CAPACITY), reason.text))
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
