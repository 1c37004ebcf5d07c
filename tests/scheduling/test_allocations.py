"""Group allocations as scheduling dimensions: the seeds' 1,000-unit example, pools over time,
and a max-flow reference that the pool dimensions must agree with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from eb_broker.scheduling import Capacity, Demand, NoFit, Resources, Timeline, find_slots
from eb_broker.scheduling.allocations import Allocations, Pool
from eb_broker.scheduling.check import shortfall

NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)
SITE = Capacity(Resources(cores=1000, memory_gib=8000))
SEEDS = Allocations((Pool("national", Resources(cores=500)), Pool("local", Resources(cores=500))))
NATIONAL = frozenset({"national"})
LOCAL = frozenset({"national", "local"})


def demand(low: int, high: int | None = None) -> Demand:
    return Demand(
        Resources(cores=low, memory_gib=1), Resources(cores=high or low, memory_gib=1), HOUR
    )


def offer(timeline: Timeline, pools: frozenset[str], low: int, high: int | None = None) -> int:
    """Cores offered now (0 if nothing fits), booked on the timeline like a broker does."""
    capacity = SEEDS.capacity(SITE)
    found = find_slots(
        capacity, timeline, SEEDS.demand(demand(low, high), pools), NOW, max_offers=1
    )
    if isinstance(found, NoFit) or found[0].start != NOW:
        return 0
    settled = SEEDS.settle(found[0].resources)
    timeline.add(len(timeline), NOW, NOW + HOUR, SEEDS.holding(pools, settled.resources))
    return settled.resources.cores


def test_the_seeds_example_national_users_get_the_pledged_500() -> None:
    timeline = Timeline()
    assert offer(timeline, NATIONAL, 400) == 400
    assert offer(timeline, NATIONAL, 200) == 0  # only 100 left of the pledge
    assert offer(timeline, NATIONAL, 50, 200) == 100  # less than asked, not nothing
    assert offer(timeline, NATIONAL, 1) == 0
    assert offer(timeline, LOCAL, 500) == 500  # local users: their own 500 ...
    assert offer(timeline, LOCAL, 1) == 0  # ... and the site is full


def test_the_seeds_example_local_users_can_use_all_1000() -> None:
    timeline = Timeline()
    assert offer(timeline, LOCAL, 1000) == 1000
    assert offer(timeline, NATIONAL, 1) == 0
    message = find_slots(SEEDS.capacity(SITE), Timeline(), SEEDS.demand(demand(600), NATIONAL), NOW)
    assert isinstance(message, NoFit)
    assert message.texts == (
        "the minimum 600 cores in the national allocation exceeds this platform's capacity of "
        "500 cores in the national allocation",
    )


def test_local_users_leave_the_national_pledge_when_they_can() -> None:
    timeline = Timeline()
    assert offer(timeline, LOCAL, 300) == 300
    assert offer(timeline, NATIONAL, 500) == 500  # local users' 300 came from their own pool
    assert offer(timeline, LOCAL, 200) == 200
    assert offer(timeline, LOCAL, 1) == 0


def test_pools_over_time() -> None:
    change = NOW + timedelta(days=2)
    grows = Allocations(
        (
            Pool("national", Resources(cores=500)),
            Pool("national", Resources(cores=700), change, None),
            Pool("local", Resources(cores=300)),
        )
    )
    capacity = grows.capacity(SITE)
    national = grows.dimension("cores", NATIONAL)
    assert capacity.at(NOW).get(national) == 500
    assert capacity.at(change).get(national) == 700
    assert capacity.at(change).get("cores") == 1000
    found = find_slots(capacity, Timeline(), grows.demand(demand(600), NATIONAL), NOW, max_offers=1)
    assert not isinstance(found, NoFit) and found[0].start == change


def test_settle_reduces_to_the_tightest_allocation() -> None:
    national = SEEDS.dimension("cores", NATIONAL)
    both = SEEDS.dimension("cores", LOCAL)
    settled = SEEDS.settle(Resources(cores=8, memory_gib=2, accelerators={national: 3, both: 5}))
    assert settled.resources == Resources(cores=3, memory_gib=2)
    assert settled.reduced == (("cores", 8, 3, "the national allocation"),)
    assert SEEDS.usage(None, Resources(cores=3)) == {}


# -- a max-flow reference -------------------------------------------------------------------------

POOLS = ("a", "b", "c")


def max_flow_feasible(caps: dict[str, int], bookings: list[tuple[frozenset[str], int]]) -> bool:
    """Can every booking be served from its pools? (Edmonds-Karp on a tiny graph.)"""
    nodes = ["s", *[f"x{i}" for i in range(len(bookings))], *POOLS, "t"]
    flow: dict[tuple[str, str], int] = {}
    cap: dict[tuple[str, str], int] = {}
    for i, (pools, amount) in enumerate(bookings):
        cap["s", f"x{i}"] = amount
        for p in pools:
            cap[f"x{i}", p] = 10**9
    for p in POOLS:
        cap[p, "t"] = caps[p]

    def residual(u: str, v: str) -> int:
        return cap.get((u, v), 0) - flow.get((u, v), 0) + flow.get((v, u), 0)

    total = 0
    while True:
        parent: dict[str, str] = {"s": ""}
        queue = ["s"]
        while queue and "t" not in parent:
            u = queue.pop(0)
            for v in nodes:
                if v not in parent and residual(u, v) > 0:
                    parent[v] = u
                    queue.append(v)
        if "t" not in parent:
            return total == sum(a for _, a in bookings)
        path, v = [], "t"
        while v != "s":
            path.append((parent[v], v))
            v = parent[v]
        push = min(residual(u, v) for u, v in path)
        for u, v in path:
            back = min(push, flow.get((v, u), 0))
            flow[v, u] = flow.get((v, u), 0) - back
            flow[u, v] = flow.get((u, v), 0) + push - back
        total += push


pool_sets = st.sampled_from([frozenset(c) for n in (1, 2, 3) for c in combinations(POOLS, n)])


@settings(max_examples=150, deadline=None)
@given(
    caps=st.fixed_dictionaries({p: st.integers(1, 12) for p in POOLS}),
    bookings=st.lists(st.tuples(pool_sets, st.integers(1, 8)), max_size=6),
)
def test_pool_dimensions_agree_with_max_flow(
    caps: dict[str, int], bookings: list[tuple[frozenset[str], int]]
) -> None:
    alloc = Allocations(tuple(Pool(p, Resources(cores=c)) for p, c in caps.items()))
    capacity = alloc.capacity(Capacity(Resources(cores=10**6)))
    accepted: list[tuple[frozenset[str], int]] = []
    others: list[tuple[datetime, datetime, Resources]] = []
    for pools, amount in bookings:
        wanted = alloc.holding(pools, Resources(cores=amount))
        fits = not shortfall(capacity, others, NOW, NOW + HOUR, wanted)
        assert fits == max_flow_feasible(caps, [*accepted, (pools, amount)])
        if fits:
            accepted.append((pools, amount))
            others.append((NOW, NOW + HOUR, wanted))
