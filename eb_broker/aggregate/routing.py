"""The aggregator's pure rules: whom to ask, how to rank, how ids and messages are rewritten.

No I/O: plain wire objects in, plain data out, so every rule is unit-tested on its own.
"""

from __future__ import annotations

import contextlib
import copy
import uuid as uuidlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from eb_sdk._wireview import available_start
from eb_sdk.model import (
    Capabilities,
    ExecutionRequest,
    MessageItem,
    Phase,
    ScheduledExecutionSession,
    SimpleComputeResource,
)
from eb_sdk.model.kinds import canonical_kind, kind_label
from eb_sdk.model.times import format_duration, parse_duration

from ..scheduling import format_duration as human_duration
from ..translate import matching_pools, requested_duration

T = TypeVar("T")

_LATEST = datetime.max.replace(tzinfo=UTC)

#: Extension field: the brokers an offer passed through, from this aggregator down.
ROUTE = "jeb:route"
#: Extension field of an aggregator's capabilities: some brokers' capabilities are unknown.
PARTIAL = "jeb:partial"


# -- ids ----------------------------------------------------------------------------------------


def namespace(aggregator: str) -> uuidlib.UUID:
    """The uuid namespace of one aggregator's ids."""
    return uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"urn:jeb:v1:aggregator:{aggregator}")


def remote_ref(wire: ScheduledExecutionSession) -> str:
    """How to address a downstream session: its URL, else its uuid."""
    return (wire.meta.url if wire.meta and wire.meta.url else None) or str(wire.uuid)


def phase_of(wire: ScheduledExecutionSession) -> str:
    """A downstream session's phase (an offer without one is OFFERED)."""
    return (wire.phase or Phase.OFFERED).value


def proxy_uuid(space: uuidlib.UUID, broker: str, remote_uuid: str) -> str:
    """Our uuid for a downstream broker's session: stable, so it survives restarts."""
    return str(uuidlib.uuid5(space, f"{broker}\n{remote_uuid}"))


# -- routing hints ------------------------------------------------------------------------------


def unsuitable(
    caps: Capabilities | None,
    request: ExecutionRequest,
    *,
    default_duration: timedelta = timedelta(hours=1),
    allowed_accelerators: frozenset[str] | None = None,
) -> str | None:
    """Why a broker with ``caps`` cannot run ``request`` (None: it may; ask it).

    Unknown capabilities (not fetched yet, or unreadable) never exclude a broker.
    """
    if caps is None or (caps.model_extra or {}).get(PARTIAL):
        return None
    executable = request.executable
    if executable is not None and executable.kind and caps.executables:
        kinds = {canonical_kind(k) for k in caps.executables}
        if canonical_kind(executable.kind) not in kinds:
            runs = ", ".join(sorted(kind_label(k) for k in caps.executables))
            return f"it cannot run {kind_label(executable.kind)} executables (it runs {runs})"
    compute = request.compute
    if isinstance(compute, SimpleComputeResource):
        pools = [name for name, count in caps.accelerators.items() if count > 0]
        for accel in compute.accelerators or []:
            matching = matching_pools(accel.pool_name, pools)
            if not matching:
                return f"it has no {accel.pool_name} accelerators"
            if allowed_accelerators is not None and not set(matching) & allowed_accelerators:
                return f"its {accel.pool_name} accelerators ({', '.join(matching)}) are not for you"
        for field, key, unit in (("cores", "cores", "cores"), ("memory", "memory", "GiB memory")):
            value = getattr(compute, field)
            low = value.min if value is not None and value.min is not None else None
            limit = caps.max_compute.get(key)
            if low is not None and limit is not None and low > limit:
                return f"its largest session has {limit} {unit}; the request needs at least {low}"
    try:
        longest = parse_duration(caps.max_duration)
    except (TypeError, ValueError):
        return None
    duration = requested_duration(request, default_duration)
    if duration > longest:
        return (
            f"its sessions last at most {human_duration(longest)}; the request asks for "
            f"{human_duration(duration)}"
        )
    return None


# -- ranking ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate(Generic[T]):
    """One downstream offer: where it comes from, which answer (by position), the offer and
    the caller's data.

    ``broker`` is the offer's origin (``site/leaf-a`` through an aggregator, see
    :func:`origin`): choices are spread over origins.
    """

    broker: str
    position: int
    offer: ScheduledExecutionSession
    data: T


def origin(offer: ScheduledExecutionSession, broker: str) -> str:
    """Where an offer comes from: ``broker``, and below it the route it took (``site/leaf-a``)."""
    route = (offer.model_extra or {}).get(ROUTE)
    return "/".join([broker, *(str(r) for r in route)]) if isinstance(route, list) else broker


def offer_start(offer: ScheduledExecutionSession) -> datetime:
    """When an offer starts: a queue estimate's expected start, else its available start."""
    estimate = (offer.model_extra or {}).get("jeb:estimate")
    if isinstance(estimate, dict) and estimate.get("expected"):
        try:
            expected = datetime.fromisoformat(str(estimate["expected"]).replace("Z", "+00:00"))
            return expected if expected.tzinfo else expected.replace(tzinfo=UTC)
        except ValueError:
            pass
    return available_start(offer) or _LATEST


def fit(offer: ScheduledExecutionSession, request: ExecutionRequest) -> float:
    """How much of what was asked (up to the maximum) an offer gives, in [0, 1].

    Averaged over cores and memory where the request gives a range; 1.0 when it does not.
    """
    asked = request.compute
    given = offer.compute
    if not isinstance(asked, SimpleComputeResource) or not isinstance(given, SimpleComputeResource):
        return 1.0
    ratios = []
    for field in ("cores", "memory"):
        want = getattr(asked, field)
        got = getattr(given, field)
        high = want.max if want is not None and want.max is not None else None
        if high is None and want is not None:
            high = want.min
        if not high or got is None:
            continue
        amount = got.min if got.min is not None else got.max
        ratios.append(min(1.0, (amount or 0) / high))
    return sum(ratios) / len(ratios) if ratios else 1.0


def rank(candidates: Iterable[Candidate[T]], request: ExecutionRequest) -> list[Candidate[T]]:
    """Earliest start first, then the better fit, then precise before estimates, then the
    brokers' configured order."""

    def key(item: tuple[int, Candidate[T]]) -> tuple[datetime, float, bool, int, int]:
        index, c = item
        estimate = "jeb:estimate" in (c.offer.model_extra or {})
        return (offer_start(c.offer), -fit(c.offer, request), estimate, c.position, index)

    return [c for _, c in sorted(enumerate(candidates), key=key)]


def choose(
    ranked: Sequence[Candidate[T]], limit: int
) -> tuple[list[Candidate[T]], list[Candidate[T]]]:
    """At most ``limit`` offers, each broker's best first (so every platform that can run it is
    among the choices when there is room), then the best of the rest. Returns (chosen,
    dropped), both in rank order."""
    if limit <= 0:
        return [], list(ranked)
    chosen: set[int] = set()
    seen: set[str] = set()
    for index, c in enumerate(ranked):
        if len(chosen) >= limit:
            break
        if c.broker not in seen:
            seen.add(c.broker)
            chosen.add(index)
    for index in range(len(ranked)):
        if len(chosen) >= limit:
            break
        chosen.add(index)
    keep = [c for i, c in enumerate(ranked) if i in chosen]
    drop = [c for i, c in enumerate(ranked) if i not in chosen]
    return keep, drop


# -- rewriting ----------------------------------------------------------------------------------


def from_broker(item: MessageItem, broker: str) -> MessageItem:
    """A downstream broker's message, prefixed with its name (and ``broker`` among values)."""
    data = item.dump()
    text = data.get("message") or data.get("template") or data.get("kind") or "message"
    data["message"] = f"{broker}: {text}"
    values = dict(data.get("values") or {})
    values.setdefault("broker", broker)
    data["values"] = values
    return MessageItem.model_validate(data)


def rewrite_session(
    wire: dict[str, Any],
    *,
    uuid: str,
    url: str,
    broker: str,
    messages: Sequence[MessageItem] = (),
) -> dict[str, Any]:
    """A downstream session as our client sees it: our uuid and URL, the route it took."""
    out = copy.deepcopy(wire)
    meta = dict(out.get("meta") or {})
    meta["uuid"] = uuid
    meta["url"] = url
    if messages:
        meta["messages"] = [*(meta.get("messages") or []), *(m.dump() for m in messages)]
    out["meta"] = meta
    route = out.get(ROUTE)
    out[ROUTE] = [broker, *(route if isinstance(route, list) else [])]
    return out


def server_timing(parts: Sequence[tuple[str, float, str]]) -> str:
    """A ``Server-Timing`` header value: ``name;dur=ms;desc="..."`` for each part (seconds in)."""
    items = []
    for name, seconds, desc in parts:
        item = f"{name};dur={seconds * 1000:.1f}"
        if desc:
            item += ';desc="' + desc.replace("\\", "").replace('"', "") + '"'
        items.append(item)
    return ", ".join(items)


def merge_capabilities(
    own: Capabilities, downstream: Sequence[tuple[str, Capabilities]]
) -> Capabilities:
    """One broker's view of many: what any of them can run, the largest of each limit."""
    executables = sorted({k for _, c in downstream for k in c.executables})
    max_compute: dict[str, int] = {}
    accelerators: dict[str, int] = {}
    durations: list[timedelta] = []
    data_kinds = sorted({k for _, c in downstream for k in c.data_kinds})
    extensions = set(own.extensions)
    for _, caps in downstream:
        for key, value in caps.max_compute.items():
            max_compute[key] = max(max_compute.get(key, 0), value)
        for pool, count in caps.accelerators.items():
            accelerators[pool] = accelerators.get(pool, 0) + count
        with contextlib.suppress(TypeError, ValueError):
            durations.append(parse_duration(caps.max_duration))
        extensions.update(caps.extensions)
    return own.model_copy(
        update={
            "executables": executables or own.executables,
            "max_compute": max_compute or own.max_compute,
            "accelerators": accelerators,
            "max_duration": format_duration(max(durations)) if durations else own.max_duration,
            "data_kinds": data_kinds,
            "extensions": sorted(extensions),
        }
    )
