"""Group allocations as scheduling constraints: capacity divided into pools over time.

The seeds' example: a site with 1,000 cores, 500 pledged to the national allocation and 500
local. National users may book only from the national pool; local users from both, up to all
1,000. Each booking draws on a *set* of pools (the pools its owner may use), and the amounts of
the pools can change over time (a pledge that grows next year).

Bookings that may each use any pool of their set can all be served exactly when, for every
set ``S`` of pools, the bookings whose pools all lie in ``S`` use no more than the pools of
``S`` hold together (Hall's condition for divisible amounts). So every such ``S`` becomes one
more *dimension* of the ordinary scheduling problem — ``"cores in the national allocation"``,
``"cores in the local+national allocations"`` — with the pools' sum as its capacity; a booking
uses that dimension when its own pools lie in ``S``. :func:`~eb_broker.scheduling.find_slots`
and the accept check then enforce the allocations without knowing about them, and their
messages name the allocation that is short.

Pure: no I/O, no wire model, no configuration parsing (the policy does that).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import combinations, pairwise

from .resources import Capacity, CapacityPeriod, Demand, Resources

__all__ = ["Allocations", "Pool", "Settled"]

#: More pools than this would make too many combined dimensions (2**n - 1 sets).
MAX_POOLS = 8

_UNITS = {"cores": "cores", "memory_gib": "GiB memory", "storage_gib": "GiB storage"}


@dataclass(frozen=True)
class Pool:
    """A share of the capacity: ``amounts`` within ``[start, end)`` (None: unbounded).

    Several entries with the same name describe one pool over time: an entry with a period
    replaces the one without within that period (like capacity periods).
    """

    name: str
    amounts: Resources
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class Settled:
    """An offer's real resources after the allocation dimensions were taken off."""

    resources: Resources
    #: ``(dimension, wanted, given, allocation)`` for every dimension an allocation reduced.
    reduced: tuple[tuple[str, int, int, str], ...] = ()


@dataclass(frozen=True)
class Allocations:
    """Pools over time, and the scheduling dimensions that enforce them."""

    pools: tuple[Pool, ...]
    _sets: tuple[frozenset[str], ...] = field(init=False, repr=False, compare=False)
    _dims: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _names: dict[str, tuple[str, frozenset[str]]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = sorted({p.name for p in self.pools})
        if not names:
            raise ValueError("allocations need at least one pool")
        if len(names) > MAX_POOLS:
            raise ValueError(f"at most {MAX_POOLS} allocation pools are supported")
        for pool in self.pools:
            if not pool.name or pool.name != pool.name.strip():
                raise ValueError(f"invalid pool name {pool.name!r}")
            if not pool.amounts.is_nonnegative():
                raise ValueError(f"pool {pool.name}: amounts must not be negative")
        sets = tuple(frozenset(c) for n in range(1, len(names) + 1) for c in combinations(names, n))
        dims = tuple(sorted({d for p in self.pools for d, _ in p.amounts.items()}))
        object.__setattr__(self, "_sets", sets)
        object.__setattr__(self, "_dims", dims)
        object.__setattr__(
            self,
            "_names",
            {self.dimension(d, s): (d, s) for s in sets for d in dims},
        )

    # -- naming ---------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The pool names, sorted."""
        return tuple(sorted({p.name for p in self.pools}))

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The resource dimensions the pools constrain (``cores``, ``gpu:A100``...)."""
        return self._dims

    @staticmethod
    def label(pools: Collection[str]) -> str:
        """``"the national allocation"``, ``"the local+national allocations"``."""
        names = "+".join(sorted(pools))
        return f"the {names} allocation" + ("s" if len(pools) > 1 else "")

    def dimension(self, resource: str, pools: Collection[str]) -> str:
        """The scheduling dimension for ``resource`` in the pool set ``pools``.

        A readable name, because the scheduler's messages quote it ("the minimum 600 cores in
        the national allocation exceeds ...").
        """
        return f"{_UNITS.get(resource, resource)} in {self.label(pools)}"

    def known(self, pools: Iterable[str]) -> frozenset[str]:
        """``pools`` without names that are not (or no longer) configured."""
        return frozenset(pools) & frozenset(self.names)

    # -- capacity -------------------------------------------------------------------------------

    def pool_capacity(self, name: str) -> Capacity:
        """One pool's amounts over time."""
        entries = [p for p in self.pools if p.name == name]
        base = next((p.amounts for p in entries if p.start is None and p.end is None), None)
        periods = tuple(
            CapacityPeriod(p.start, p.end, p.amounts)
            for p in entries
            if p.start is not None or p.end is not None
        )
        return Capacity(base or Resources(), periods)

    def _extra_at(self, when: datetime | None) -> dict[str, int]:
        """Allocation dimensions' capacity at ``when`` (None: the pools' base amounts)."""
        pools = {name: self.pool_capacity(name) for name in self.names}
        per_pool = {n: c.base if when is None else c.at(when) for n, c in pools.items()}
        return {
            self.dimension(d, s): sum(per_pool[p].get(d) for p in s)
            for s in self._sets
            for d in self._dims
        }

    def capacity(self, platform: Capacity) -> Capacity:
        """``platform`` plus one dimension per (resource, pool set), piecewise over time."""
        edges = sorted(
            {e for p in platform.periods for e in (p.start, p.end) if e is not None}
            | {e for p in self.pools for e in (p.start, p.end) if e is not None}
        )
        if not edges:
            return Capacity(self._with(platform.base, self._extra_at(None)))
        before = edges[0] - timedelta(microseconds=1)
        base = self._with(platform.at(before), self._extra_at(before))
        periods = tuple(
            CapacityPeriod(start, end, self._with(platform.at(start), self._extra_at(start)))
            for start, end in pairwise([*edges, None])
            if start is not None
        )
        return Capacity(base, periods)

    @staticmethod
    def _with(resources: Resources, extra: dict[str, int]) -> Resources:
        return Resources.from_dimensions([*resources.items(), *extra.items()])

    # -- bookings and demands -------------------------------------------------------------------

    def usage(self, pools: Collection[str] | None, resources: Resources) -> dict[str, int]:
        """The allocation dimensions a booking drawing on ``pools`` uses (none for None)."""
        if pools is None:
            return {}
        mine = self.known(pools)
        if not mine:
            return {}
        return {
            self.dimension(d, s): resources.get(d)
            for s in self._sets
            if mine <= s
            for d in self._dims
            if resources.get(d) > 0
        }

    def holding(self, pools: Collection[str] | None, resources: Resources) -> Resources:
        """What a booking holds on the scheduling timeline: its resources plus its usage."""
        extra = self.usage(pools, resources)
        return self._with(resources, extra) if extra else resources

    def demand(self, demand: Demand, pools: Collection[str]) -> Demand:
        """``demand`` for a requester who may draw on ``pools``."""
        return Demand(
            minimum=self.holding(pools, demand.minimum),
            maximum=self.holding(pools, demand.maximum),
            duration=demand.duration,
            windows=demand.windows,
            preparation=demand.preparation,
        )

    def settle(self, resources: Resources) -> Settled:
        """An offered slot's real resources: allocation dimensions off, linked ones reduced.

        The scheduler gives every dimension as much as is free, independently; a resource is
        then reduced to what is free in each allocation it draws on.
        """
        real: dict[str, int] = {}
        limits: dict[str, tuple[int, str]] = {}
        for name, amount in resources.items():
            link = self._names.get(name)
            if link is None:
                real[name] = amount
                continue
            resource, pools = link
            if resource not in limits or amount < limits[resource][0]:
                limits[resource] = (amount, self.label(pools))
        reduced = []
        for resource, (limit, label) in sorted(limits.items()):
            wanted = real.get(resource, 0)
            if limit < wanted:
                real[resource] = limit
                reduced.append((resource, wanted, limit, label))
        return Settled(Resources.from_dimensions(real), tuple(reduced))

    def describe(self) -> str:
        """``"national (500 cores), local (500 cores)"`` (the amounts without a period)."""
        parts = []
        for name in self.names:
            amounts = self.pool_capacity(name).base
            parts.append(f"{name} ({amounts.describe()})")
        return ", ".join(parts)
