"""``group-allocation``: the capacity divided into pools, and which groups book from which.

The seeds' example, for a site with 1,000 cores::

    c.EBBroker.policies = ["group-allocation"]
    c.GroupAllocationPolicy.pools = [
        {"name": "national", "cores": 500},  # pledged to the national (SRCNet) allocation
        {"name": "local", "cores": 500},
    ]
    c.GroupAllocationPolicy.groups = {
        "srcnet": ["national"],  # national users: only the pledged 500
        "uksrc-local": ["national", "local"],  # local users: both, up to all 1,000
    }

The scheduling enforces it (see :mod:`eb_broker.scheduling.allocations`); this class parses
the configuration and tells each request which pools it may draw on.
"""

from __future__ import annotations

from typing import Any

from traitlets import Dict, List, TraitError, Unicode, validate

from eb_sdk.model.times import parse_instant

from ..configuration import config_entries
from ..scheduling import Resources
from ..scheduling.allocations import Allocations, Pool
from .base import Decision, Policy, PolicyQuery, describe_groups, for_groups_or_default

_POOL_KEYS = {"name", "start", "end", "cores", "memory_gib", "storage_gib", "accelerators"}


def parse_pools(items: list[dict[str, Any]]) -> Allocations:
    """``GroupAllocationPolicy.pools`` entries as :class:`Allocations` (clear errors)."""
    pools = []
    for number, item in config_entries(items, _POOL_KEYS, "pool"):
        name = str(item.get("name") or "").strip()
        if not name:
            raise ValueError(f"pool {number}: every pool needs a 'name'")
        try:
            start = parse_instant(item["start"]) if item.get("start") else None
            end = parse_instant(item["end"]) if item.get("end") else None
            amounts = Resources(
                cores=int(item.get("cores", 0)),
                memory_gib=int(item.get("memory_gib", 0)),
                storage_gib=int(item.get("storage_gib", 0)),
                accelerators=dict(item.get("accelerators") or {}),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"pool {name}: {exc}") from None
        if amounts.is_zero():
            raise ValueError(f"pool {name}: give at least one amount (cores, memory_gib, ...)")
        pools.append(Pool(name, amounts, start, end))
    if not pools:
        raise ValueError("GroupAllocationPolicy.pools is empty: configure at least one pool")
    return Allocations(tuple(pools))


class GroupAllocationPolicy(Policy):
    """Pools of capacity per group; each booking draws only on its owner's pools."""

    name = "group-allocation"

    pools = List(
        Dict(),
        [],
        config=True,
        help="The capacity's pools: [{'name': 'national', 'cores': 500}, ...]. Amounts in "
        "cores, memory_gib, storage_gib and accelerators ({'gpu:A100': 2}); only the resources "
        "given are divided. Entries with 'start'/'end' (ISO instants) give a pool's amounts "
        "for a period (a pledge that changes), replacing its entry without a period there.",
    )
    groups = Dict(
        {},
        config=True,
        help="Pools each group may book from: {'srcnet': ['national'], 'local': ['national', "
        "'local']}. A user may use the pools of all their groups; '*' is the default for users "
        "in none of the listed groups.",
    )
    default_pools = List(
        Unicode(),
        [],
        config=True,
        help="Pools for users in none of the listed groups (like a '*' entry in groups); "
        "empty: such users are refused.",
    )

    _parsed: Allocations | None = None

    @validate("pools")
    def _check_pools(self, proposal: Any) -> list[dict[str, Any]]:
        value = list(proposal["value"])
        try:
            self._parsed = parse_pools(value) if value else None
        except ValueError as exc:
            raise TraitError(f"GroupAllocationPolicy.pools: {exc}") from None
        return value

    @validate("groups")
    def _check_groups(self, proposal: Any) -> dict[str, Any]:
        value = dict(proposal["value"])
        for group, pools in value.items():
            if not isinstance(pools, list | tuple) or not all(isinstance(p, str) for p in pools):
                raise TraitError(
                    f"GroupAllocationPolicy.groups[{group!r}] must be a list of pool names"
                )
        return value

    def allocations(self) -> Allocations:
        if self._parsed is None:
            self._parsed = parse_pools(list(self.pools))
        unknown = {p for pools in self.groups.values() for p in pools} | set(self.default_pools)
        unknown -= set(self._parsed.names)
        if unknown:
            raise ValueError(
                f"GroupAllocationPolicy.groups names unknown pools {sorted(unknown)}; "
                f"configured pools: {', '.join(self._parsed.names)}"
            )
        return self._parsed

    def pools_of(self, groups: tuple[str, ...]) -> frozenset[str]:
        """The pools a member of ``groups`` may book from (the default pools if none)."""
        entries = for_groups_or_default(self.groups, groups)
        if not entries:
            return frozenset(self.default_pools)
        return frozenset(p for _, values in entries for p in values)

    async def decide(self, query: PolicyQuery) -> Decision:
        allocations = self.allocations()
        pools = self.pools_of(query.identity.groups)
        decision = Decision()
        decision.restrict("pools", pools, self.name)
        if not pools:
            who = describe_groups(query.identity.groups)
            decision.refusals.append(
                self.refuse(f"you ({who}) have no allocation here; pools: {allocations.describe()}")
            )
        return decision

    def summary(self) -> str:
        groups = "; ".join(f"{g}: {', '.join(p)}" for g, p in self.groups.items())
        return f"pools {self.allocations().describe()}; groups {groups}"
