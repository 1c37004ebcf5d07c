"""Pure translation between the wire model and the scheduler's plain data.

No I/O here, so the rules (defaults, limits, what becomes NO and why) are unit-tested alone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from eb_sdk.model import (
    Accelerator,
    AcceleratorType,
    ComponentMetadata,
    EnumValueOption,
    ExecutionRequest,
    MessageItem,
    MinMax,
    OfferSetResponse,
    OfferSetResult,
    Phase,
    RequestedScheduleBlock,
    RequestedScheduleItem,
    ScheduledExecutionSchedule,
    ScheduledExecutionSession,
    ScheduleStartDurationInstant,
    ScheduleStartDurationInterval,
    SimpleComputeResource,
    SimpleSessionConnector,
    SimpleStorageResource,
)
from eb_sdk.model import messages as msg
from eb_sdk.model.times import Interval, format_instant

from .ledger import InvalidTransitionError
from .scheduling import Demand, Resources


@dataclass(frozen=True)
class Limits:
    """A broker's per-session limits and defaults (from configuration)."""

    max_resources: Resources
    default_cores: int = 1
    default_memory_gib: int = 1
    default_duration: timedelta = timedelta(hours=1)
    max_duration: timedelta = timedelta(days=7)
    horizon: timedelta = timedelta(days=14)
    #: What users get between them and a session here (``jeb:interactivity``): bandwidth in
    #: Mbit/s and round-trip latency in ms; None where the broker does not know (not checked).
    bandwidth_mbit: float | None = None
    latency_ms: float | None = None


@dataclass
class Translation:
    """The scheduler's alternatives for one request, or the reasons it cannot be served."""

    demands: list[Demand] = field(default_factory=list)
    problems: list[MessageItem] = field(default_factory=list)


def _range(value: MinMax | None, default_min: int) -> tuple[int, int]:
    low = value.min if value and value.min is not None else None
    high = value.max if value and value.max is not None else None
    if low is None:
        low = min(default_min, high) if high is not None else default_min
    if high is None:
        high = low
    return low, high


def matching_pools(wanted: str, pools: Iterable[str]) -> list[str]:
    """Capacity pools that satisfy one accelerator requirement (``gpu`` matches any model).

    ``wanted`` is a requirement's pool name (``gpu``, ``gpu:A100``), matched case-insensitively.
    """
    key = wanted.lower()
    if ":" in key:
        return [p for p in pools if p.lower() == key]
    return [p for p in pools if p.lower().split(":", 1)[0] == key]


def requested_duration(request: ExecutionRequest, default: timedelta) -> timedelta:
    """The session length ``request`` asks for (``default`` when it names none)."""
    schedule = request.schedule.requested if request.schedule else None
    return schedule.duration if schedule and schedule.duration is not None else default


def with_duration(request: ExecutionRequest, duration: timedelta) -> ExecutionRequest:
    """A copy of ``request`` asking for ``duration`` (a proposed duration)."""
    block = request.schedule or RequestedScheduleBlock()
    item = block.requested or RequestedScheduleItem()
    return request.model_copy(
        update={
            "schedule": block.model_copy(
                update={"requested": item.model_copy(update={"duration": duration})}
            )
        }
    )


def request_to_demands(
    request: ExecutionRequest,
    *,
    now: datetime,
    limits: Limits,
    preparation: timedelta,
    accelerator_pools: Collection[str] = (),
    data_storage_gib: int = 0,
) -> Translation:
    """The demand(s) for ``request``; several when an accelerator may come from several pools.

    ``data_storage_gib`` is the staged data's size: booked as storage next to the request's.
    """
    out = Translation()
    compute = request.compute
    if compute is not None and not isinstance(compute, SimpleComputeResource):
        out.problems.append(
            msg.error(
                msg.NOT_SUPPORTED,
                f"compute kind {compute.kind} is not supported",
                kind_uri=compute.kind,
            )
        )
        return out
    cores = _range(compute.cores if compute else None, limits.default_cores)
    memory = _range(compute.memory if compute else None, limits.default_memory_gib)
    storage_min = storage_max = 0
    for item in request.storage or []:
        if not isinstance(item, SimpleStorageResource):
            out.problems.append(
                msg.error(
                    msg.NOT_SUPPORTED,
                    f"storage kind {item.kind} is not supported",
                    kind_uri=item.kind,
                )
            )
            continue
        low, high = _range(item.size, 0)
        storage_min, storage_max = storage_min + low, storage_max + high
    storage_min, storage_max = storage_min + data_storage_gib, storage_max + data_storage_gib

    schedule = request.schedule.requested if request.schedule else None
    duration = requested_duration(request, limits.default_duration)
    if duration <= timedelta(0):
        out.problems.append(
            msg.error(msg.INVALID_REQUEST, "the requested duration must be positive")
        )
    elif duration > limits.max_duration:
        out.problems.append(
            msg.error(
                msg.RESOURCE_LIMIT,
                f"the requested duration {_human(duration)} is longer than this broker's "
                f"limit of {_human(limits.max_duration)}",
                requested=duration,
                limit=limits.max_duration,
            )
        )
    maximum = limits.max_resources
    for name, (low, limit) in {
        "cores": (cores[0], maximum.cores),
        "memory (GiB)": (memory[0], maximum.memory_gib),
        "storage (GiB)": (storage_min, maximum.storage_gib),
    }.items():
        if low > limit:
            out.problems.append(
                msg.error(
                    msg.RESOURCE_LIMIT,
                    f"the minimum of {low} {name} is more than the {limit} "
                    "one session can have here",
                    resource=name,
                    requested=low,
                    limit=limit,
                )
            )

    windows: list[Interval] = []
    for window in schedule.windows if schedule else []:
        end = window.end if window.end > window.start else window.start + timedelta(seconds=1)
        if end <= now:
            continue
        if window.start < now:
            window = Interval(now, max(now, window.end))
        windows.append(window)
    if schedule and schedule.windows and not windows:
        out.problems.append(
            msg.error(msg.INVALID_REQUEST, "every requested start window is in the past")
        )
    for window in windows:
        if window.start > now + limits.horizon:
            out.problems.append(
                msg.error(
                    msg.RESOURCE_LIMIT,
                    f"this broker books at most {_human(limits.horizon)} ahead",
                    horizon=limits.horizon,
                )
            )
            break

    out.problems += interactivity_problems(request, limits)

    accel_choices: list[list[tuple[str, int, int]]] = [[]]
    for accel in (compute.accelerators if compute else None) or []:
        low, high = _range(accel.count, 1)
        pools = matching_pools(accel.pool_name, accelerator_pools)
        if not pools:
            out.problems.append(
                msg.error(
                    msg.NOT_SUPPORTED,
                    f"no {accel.pool_name} accelerators on this platform",
                    accelerator=accel.pool_name,
                )
            )
            continue
        accel_choices = [[*choice, (pool, low, high)] for choice in accel_choices for pool in pools]
    if out.problems:
        return out

    for choice in accel_choices:
        acc_min = {pool: low for pool, low, _ in choice}
        acc_max = {pool: high for pool, _, high in choice}
        out.demands.append(
            Demand(
                minimum=Resources(cores[0], memory[0], acc_min, storage_min),
                maximum=Resources(cores[1], memory[1], acc_max, storage_max),
                duration=duration,
                windows=tuple(windows),
                preparation=preparation,
            )
        )
    return out


def interactivity_problems(request: ExecutionRequest, limits: Limits) -> list[MessageItem]:
    """Why this broker cannot meet the request's ``jeb:interactivity`` (empty: it can).

    Only the figures the broker knows are checked: one it does not know is ignored, as a v1.0
    broker ignores the whole extension (``/capabilities`` says which ones it checks).
    """
    wanted = request.interactivity
    if wanted is None:
        return []
    problems = []
    low = wanted.bandwidth.min if wanted.bandwidth else None
    if low is not None and limits.bandwidth_mbit is not None and low > limits.bandwidth_mbit:
        problems.append(
            msg.error(
                msg.RESOURCE_LIMIT,
                f"the session needs at least {low:g} Mbit/s to its users; sessions here get "
                f"{limits.bandwidth_mbit:g} Mbit/s",
                resource="bandwidth",
                requested=low,
                limit=limits.bandwidth_mbit,
            )
        )
    high = wanted.latency.max if wanted.latency else None
    if high is not None and limits.latency_ms is not None and high < limits.latency_ms:
        problems.append(
            msg.error(
                msg.RESOURCE_LIMIT,
                f"the session needs a round-trip latency of at most {high:g} ms; users see "
                f"{limits.latency_ms:g} ms to sessions here",
                resource="latency",
                requested=high,
                limit=limits.latency_ms,
            )
        )
    return problems


def _human(td: timedelta) -> str:
    seconds = int(td.total_seconds())
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes = rem // 60
    parts = [
        f"{days} d" if days else "",
        f"{hours} h" if hours else "",
        f"{minutes} min" if minutes else "",
    ]
    return " ".join(p for p in parts if p) or f"{seconds} s"


def options_for(phase: Phase) -> list[Any]:
    """The updates a client may make in ``phase`` (``meta.options``)."""
    if phase == Phase.OFFERED:
        return [EnumValueOption(path="phase", values=[Phase.ACCEPTED.value, Phase.REJECTED.value])]
    if phase.is_active:
        return [EnumValueOption(path="phase", values=[Phase.CANCELLED.value])]
    return []


@dataclass(frozen=True)
class SessionView:
    """What the wire form of a session needs, independent of the ORM row."""

    uuid: str
    phase: Phase
    name: str | None
    created: datetime
    modified: datetime
    expires: datetime | None
    start: datetime
    end: datetime
    preparation: timedelta
    resources: Resources
    request: dict[str, Any]
    messages: Sequence[dict[str, Any]]
    connectors: Sequence[dict[str, Any]]
    outputs: dict[str, Any]
    #: A queue estimate's interval (``earliest``, ``expected``, ``latest``, ``basis``).
    estimate: dict[str, Any] | None = None
    #: The data staging plan and state (``sessions.staging``), the run-time prediction.
    staging: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None


def offerset_to_wire(
    *,
    uuid: str,
    url: str,
    created: datetime,
    result: str,
    messages: Sequence[dict[str, Any]],
    offers: Sequence[ScheduledExecutionSession],
) -> OfferSetResponse:
    """The OfferSetResponse of a stored offer set (its offers already in their wire form)."""
    return OfferSetResponse(
        meta=ComponentMetadata(
            uuid=uuid,
            url=url,
            created=created,
            messages=[MessageItem.model_validate(m) for m in messages] or None,
        ),
        result=OfferSetResult(result),
        offers=list(offers) or None,
    )


def session_to_wire(
    view: SessionView, *, url: str, platform: str, broker: str
) -> ScheduledExecutionSession:
    """The ScheduledExecutionSession for a ledger row: what was asked, what was booked, when."""
    request = ExecutionRequest.model_validate(view.request)
    res = view.resources
    compute = SimpleComputeResource(
        cores=MinMax(min=res.cores, max=res.cores),
        memory=MinMax(min=res.memory_gib, max=res.memory_gib),
        accelerators=[
            Accelerator(
                type=_accel_type(pool),
                model=pool.split(":", 1)[1] if ":" in pool else None,
                count=MinMax(min=count, max=count),
            )
            for pool, count in sorted(dict(res.accelerators).items())
        ]
        or None,
    )
    if request.compute is not None and request.compute.volumes:
        compute.volumes = request.compute.volumes
    storage = request.storage
    if storage and res.storage_gib:
        storage = [
            SimpleStorageResource(
                **{**s.dump(), "size": {"min": res.storage_gib, "max": res.storage_gib}}
            )
            if isinstance(s, SimpleStorageResource) and len(storage) == 1
            else s
            for s in storage
        ]
    available = Interval(view.start, view.start)
    extra: dict[str, Any] = {"jeb:platform": {"name": platform, "broker": broker}}
    if view.estimate:
        # A queue estimate: the start lies somewhere in [earliest, latest]; the platform's
        # queue decides. Preparing (queued) runs from the offer until the expected start.
        earliest = _instant(view.estimate.get("earliest"), view.start)
        latest = _instant(view.estimate.get("latest"), view.start)
        available = Interval(min(earliest, view.start), max(latest, view.start))
        extra["jeb:estimate"] = {
            "expected": format_instant(view.start),
            "earliest": format_instant(available.start),
            "latest": format_instant(available.end),
            "basis": str(view.estimate.get("basis") or ""),
        }
    schedule = ScheduledExecutionSchedule(
        preparing=ScheduleStartDurationInstant(
            start=view.start - view.preparation, duration=view.preparation
        ),
        available=ScheduleStartDurationInterval(start=available, duration=view.end - view.start),
        releasing=ScheduleStartDurationInstant(start=view.end),
    )
    if view.outputs:
        extra["jeb:outputs"] = dict(view.outputs)
    if view.staging:
        extra["jeb:staging"] = staging_to_wire(view.staging)
    if view.prediction:
        extra["jeb:prediction"] = dict(view.prediction)
    return ScheduledExecutionSession(
        meta=ComponentMetadata(
            uuid=view.uuid,
            name=view.name,
            url=url,
            created=view.created,
            modified=view.modified,
            messages=[MessageItem.model_validate(m) for m in view.messages] or None,
            options=options_for(view.phase) or None,
        ),
        phase=view.phase,
        expires=view.expires if view.phase == Phase.OFFERED else None,
        executable=request.executable,
        compute=compute,
        storage=storage,
        data=request.data,
        schedule=schedule,
        connectors=[SimpleSessionConnector.model_validate(c) for c in view.connectors] or None,
        **extra,
    )


def staging_to_wire(record: dict[str, Any]) -> dict[str, Any]:
    """``jeb:staging`` of a session: what its data takes, where from, and how far it got.

    The plan's internals (cache keys and paths) are not shown.
    """
    out: dict[str, Any] = {
        "state": record.get("state"),
        "seconds": record.get("estimate_s", 0),
        "bytes": record.get("fetch_bytes", 0),
        "cached_bytes": record.get("cached_bytes", 0),
    }
    for key in ("moved_bytes", "started", "finished", "error"):
        if record.get(key) is not None:
            out[key] = record[key]
    out["objects"] = [
        {
            "resource": resource.get("name"),
            "source": obj.get("url"),
            "host": obj.get("host"),
            "size": obj.get("size"),
            "cached": bool(obj.get("cached")),
            "seconds": obj.get("estimate_s", 0),
            **({"basis": obj["basis"]} if obj.get("basis") else {}),
        }
        for resource in record.get("resources") or []
        for obj in resource.get("objects") or []
    ]
    return out


def _accel_type(pool: str) -> AcceleratorType:
    head = pool.split(":", 1)[0].upper()
    return AcceleratorType(head) if head in AcceleratorType.__members__ else AcceleratorType.OTHER


def _instant(value: Any, default: datetime) -> datetime:
    """An ISO instant stored in the ledger's JSON (``default`` when missing or unreadable)."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def client_phase(value: str) -> Phase:
    """The phase a client asks for in an update: ACCEPTED, REJECTED or CANCELLED only."""
    try:
        target = Phase.parse(value)
    except ValueError:
        raise InvalidTransitionError(f"{value!r} is not a session phase") from None
    if target not in (Phase.ACCEPTED, Phase.REJECTED, Phase.CANCELLED):
        raise InvalidTransitionError(
            f"a client may set the phase to ACCEPTED, REJECTED or CANCELLED, not {target.value}"
        )
    return target
