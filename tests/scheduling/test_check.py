"""The accept-time sweep agrees with the timeline on whether a slot fits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from eb_broker.scheduling import Capacity, CapacityPeriod, Resources, Timeline
from eb_broker.scheduling.check import shortfall

T0 = datetime(2026, 11, 23, tzinfo=UTC)

slots = st.lists(
    st.tuples(st.integers(0, 48), st.integers(1, 12), st.integers(0, 4), st.integers(0, 4)),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(
    others=slots,
    wanted=st.tuples(st.integers(0, 48), st.integers(1, 12), st.integers(0, 6), st.integers(0, 6)),
    maintenance=st.booleans(),
)
def test_sweep_matches_timeline(
    others: list[tuple[int, int, int, int]],
    wanted: tuple[int, int, int, int],
    maintenance: bool,
) -> None:
    periods = (
        (
            CapacityPeriod(
                T0 + timedelta(hours=20), T0 + timedelta(hours=24), Resources(cores=2, memory_gib=8)
            ),
        )
        if maintenance
        else ()
    )
    capacity = Capacity(Resources(cores=8, memory_gib=8), periods)
    timeline = Timeline()
    items = []
    for i, (h, d, c, m) in enumerate(others):
        start, end = T0 + timedelta(hours=h), T0 + timedelta(hours=h + d)
        res = Resources(cores=c, memory_gib=m)
        timeline.add(i, start, end, res)
        items.append((start, end, dict(res.items())))
    h, d, c, m = wanted
    start, end, res = (
        T0 + timedelta(hours=h),
        T0 + timedelta(hours=h + d),
        Resources(cores=c, memory_gib=m),
    )
    free = timeline.free_min(capacity, start, end)
    # A slot is only refused for what it asks for: a dimension it does not use may already be
    # overbooked (external usage) without that being its fault.
    expected = [name for name in res.exceeded_dimensions(free) if res.get(name) > 0]
    assert shortfall(capacity, items, start, end, res) == sorted(expected)
