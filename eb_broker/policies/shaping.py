"""Apply a chain's :class:`~eb_broker.policies.base.Decision` to a request. Pure.

Caps lower the *maximum* a request asks for ("capped to 4 cores by policy limits") and refuse
when even the minimum is above them; accelerator restrictions keep only the pools the caller may
use. Both brokers and aggregators call this before they look for offers, so the request that
reaches the scheduler (or the downstream brokers) is already within the rules.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from fnmatch import fnmatchcase

from eb_sdk.model import Accelerator, ExecutionRequest, MessageItem, MinMax, SimpleComputeResource
from eb_sdk.model import messages as msg

from ..translate import matching_pools
from .base import Cap, Decision

#: Compute fields the caps apply to, with the unit used in messages.
_CAPPED = {"cores": ("cores", "cores"), "memory_gib": ("memory", "GiB memory")}


def allowed_pools(patterns: Iterable[str], pools: Iterable[str]) -> frozenset[str]:
    """The pools matching any of ``patterns`` (``gpu:*``, ``gpu:A100``, ``gpu``, ``*``)."""
    found = set()
    for pattern in patterns:
        key = pattern.lower()
        for pool in pools:
            name = pool.lower()
            if fnmatchcase(name, key) or (":" not in key and name.split(":", 1)[0] == key):
                found.add(pool)
    return frozenset(found)


def _capped_message(field: str, cap: Cap, asked: int) -> MessageItem:
    unit = _CAPPED[field][1] if field in _CAPPED else "accelerators"
    why = f" ({cap.why})" if cap.why else ""
    return msg.info(
        msg.POLICY,
        f"capped to {cap.amount} {unit} (asked up to {asked}) by policy {cap.policy}{why}",
        policy=cap.policy,
        resource=field,
        requested=asked,
        limit=cap.amount,
    )


def _refused_message(field: str, cap: Cap, minimum: int) -> MessageItem:
    unit = _CAPPED[field][1] if field in _CAPPED else "accelerators"
    why = f" ({cap.why})" if cap.why else ""
    return msg.error(
        msg.POLICY,
        f"policy {cap.policy} allows at most {cap.amount} {unit} per session{why}; "
        f"the request needs at least {minimum}",
        policy=cap.policy,
        resource=field,
        requested=minimum,
        limit=cap.amount,
    )


def _cap_range(
    value: MinMax | None, default: int, field: str, cap: Cap
) -> tuple[MinMax | None, MessageItem | None]:
    """``value`` with its maximum lowered to ``cap`` (and the message saying so)."""
    low = value.min if value and value.min is not None else None
    high = value.max if value and value.max is not None else None
    minimum = low if low is not None else min(default, high) if high is not None else default
    if minimum > cap.amount:
        return value, _refused_message(field, cap, minimum)
    maximum = high if high is not None else minimum
    if maximum <= cap.amount:
        return value, None
    return MinMax(min=minimum, max=cap.amount), _capped_message(field, cap, maximum)


def shape_request(
    request: ExecutionRequest,
    decision: Decision,
    *,
    default_cores: int = 1,
    default_memory_gib: int = 1,
) -> tuple[ExecutionRequest, list[MessageItem], list[MessageItem]]:
    """``request`` within the decision's caps: ``(request, notes, refusals)``.

    The original is not changed. Only a simple compute resource can be capped; other compute
    kinds are left to the platform (which answers NO for kinds it does not know).
    """
    compute = request.compute
    unknown_kind = compute is not None and not isinstance(compute, SimpleComputeResource)
    if not decision.caps or unknown_kind:
        return request, [], []
    shaped = (
        compute.model_copy(deep=True)
        if isinstance(compute, SimpleComputeResource)
        else SimpleComputeResource()
    )
    notes: list[MessageItem] = []
    refusals: list[MessageItem] = []
    defaults = {"cores": default_cores, "memory_gib": default_memory_gib}
    changed = False
    for field, (attr, _) in _CAPPED.items():
        cap = decision.caps.get(field)
        if cap is None:
            continue
        value, message = _cap_range(getattr(shaped, attr), defaults[field], field, cap)
        if message is None:
            continue
        if message.level == "ERROR":
            refusals.append(message)
        else:
            setattr(shaped, attr, value)
            notes.append(message)
            changed = True
    cap = decision.caps.get("accelerators")
    if cap is not None and shaped.accelerators:
        items: list[Accelerator] = []
        for accel in shaped.accelerators:
            value, message = _cap_range(accel.count, 1, "accelerators", cap)
            if message is not None and message.level == "ERROR":
                refusals.append(message)
            elif message is not None and value is not None:
                accel = accel.model_copy(update={"count": value})
                notes.append(message)
                changed = True
            items.append(accel)
        shaped.accelerators = items
    if not changed:
        return request, notes, refusals
    return request.model_copy(update={"compute": shaped}), notes, refusals


def check_accelerators(
    request: ExecutionRequest, decision: Decision, platform_pools: Collection[str]
) -> list[MessageItem]:
    """Refusals when the policies together leave no pool for a requested accelerator.

    ``platform_pools`` empty (an aggregator, which has none of its own): nothing to check.
    """
    compute = request.compute
    if decision.accelerators is None or not platform_pools:
        return []
    if not isinstance(compute, SimpleComputeResource) or not compute.accelerators:
        return []
    out: list[MessageItem] = []
    for accel in compute.accelerators:
        candidates = matching_pools(accel.pool_name, platform_pools)
        if not candidates or set(candidates) & decision.accelerators:
            continue  # none here at all: the platform says so; or some are allowed
        sources = decision.sources.get("accelerators", {})
        who = "; ".join(
            f"{policy} allows {', '.join(sorted(v)) or 'none'}" for policy, v in sources.items()
        )
        out.append(
            msg.error(
                msg.POLICY,
                f"the policies allow none of the {accel.pool_name} accelerators here "
                f"({', '.join(sorted(candidates))}): {who}",
                accelerator=accel.pool_name,
            )
        )
    return out
