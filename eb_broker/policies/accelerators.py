"""``accelerators``: which groups may use which accelerator pools."""

from __future__ import annotations

from typing import Any

from traitlets import Dict, TraitError, validate

from eb_sdk.model import SimpleComputeResource

from ..translate import matching_pools
from .base import Decision, Policy, PolicyQuery, describe_groups, for_groups
from .shaping import allowed_pools


class AcceleratorPolicy(Policy):
    """Accelerator pools per group: ``{"ml": ["gpu:*"], "*": ["gpu:T4"]}``.

    A user may use the union of their groups' pools. Requests for a pool they may not use are
    refused; a request for "any GPU" is narrowed to the models they may use (with a note).
    """

    name = "accelerators"

    groups = Dict(
        {},
        config=True,
        help="Accelerator pools each group may use: {group: [patterns]}, patterns like "
        "'gpu:A100', 'gpu:*' or 'gpu' (any model); '*' as a group is everyone. Users in no "
        "listed group may use no accelerators.",
    )

    @validate("groups")
    def _check_groups(self, proposal: Any) -> dict[str, Any]:
        value = dict(proposal["value"])
        for group, patterns in value.items():
            if not isinstance(patterns, list | tuple) or not all(
                isinstance(p, str) for p in patterns
            ):
                raise TraitError(f"AcceleratorPolicy.groups[{group!r}] must be a list of strings")
        return value

    async def decide(self, query: PolicyQuery) -> Decision:
        decision = Decision()
        entries = for_groups(self.groups, query.identity.groups)
        patterns = [p for _, values in entries for p in values]
        allowed = allowed_pools(patterns, query.accelerator_pools)
        decision.restrict("accelerators", allowed, self.name)
        compute = query.request.compute
        if not isinstance(compute, SimpleComputeResource):
            return decision
        who = describe_groups(query.identity.groups)
        for accel in compute.accelerators or []:
            candidates = matching_pools(accel.pool_name, query.accelerator_pools)
            if not candidates:
                continue  # the platform has none: it says so itself
            usable = sorted(set(candidates) & allowed)
            if not usable:
                decision.refusals.append(
                    self.refuse(
                        f"{accel.pool_name} accelerators are not available to {who}",
                        accelerator=accel.pool_name,
                    )
                )
            elif len(usable) < len(candidates):
                decision.notes.append(
                    self.note(
                        f"{who} may use {', '.join(usable)} of the {accel.pool_name} "
                        f"accelerators here ({', '.join(sorted(candidates))})",
                        accelerator=accel.pool_name,
                    )
                )
        return decision

    def summary(self) -> str:
        return "; ".join(f"{g}: {', '.join(v)}" for g, v in self.groups.items())
