"""The usage timeline: unit tests plus a property test against a brute-force reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eb_broker.scheduling import Capacity, CapacityPeriod, Resources, Timeline
from eb_broker.scheduling.timeline import from_us, to_us

MON = datetime(2025, 1, 6, tzinfo=UTC)


def at(hour: int, minute: int = 0) -> datetime:
    return MON + timedelta(hours=hour, minutes=minute)


def cores(n: int, mem: int = 0) -> Resources:
    return Resources(cores=n, memory_gib=mem)


def test_microsecond_conversion_round_trips() -> None:
    t = datetime(2025, 1, 6, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert from_us(to_us(t)) == t
    assert from_us(to_us(t)).tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        to_us(datetime(2025, 1, 6))


def test_empty_timeline() -> None:
    tl = Timeline()
    assert len(tl) == 0
    assert tl.usage_at(at(9)).is_zero()
    assert tl.peak(at(0), at(23)).is_zero()
    assert tl.next_change_after(at(0)) is None
    assert list(tl.breakpoints()) == []
    assert tl.free_min(Capacity(cores(4)), at(0), at(1)) == cores(4)
    assert tl.blocked_until(at(0), at(1), Resources()) is None


def test_add_usage_and_peak() -> None:
    tl = Timeline()
    tl.add("a", at(9), at(12), cores(2, 8))
    tl.add("b", at(10), at(11), cores(3))
    assert tl.usage_at(at(8, 59)).is_zero()
    assert tl.usage_at(at(9)) == cores(2, 8)
    assert tl.usage_at(at(10, 30)) == cores(5, 8)
    assert tl.usage_at(at(11)) == cores(2, 8)
    assert tl.usage_at(at(12)).is_zero()
    assert tl.peak(at(8), at(9)).is_zero()  # half-open: a starts at the end
    assert tl.peak(at(8), at(10)) == cores(2, 8)
    assert tl.peak(at(10, 59), at(13)) == cores(5, 8)
    assert tl.peak(at(11), at(13)) == cores(2, 8)
    assert tl.peak(at(11), at(11)).is_zero()
    assert list(tl.breakpoints()) == [at(9), at(10), at(11), at(12)]
    assert list(tl.breakpoints(at(10), at(12))) == [at(10), at(11)]


def test_keys_and_errors() -> None:
    tl = Timeline()
    tl.add(("booking", 1), at(9), at(10), cores(1))
    assert ("booking", 1) in tl
    assert len(tl) == 1
    with pytest.raises(KeyError):
        tl.add(("booking", 1), at(11), at(12), cores(1))
    with pytest.raises(ValueError, match="end after"):
        tl.add("x", at(10), at(10), cores(1))
    with pytest.raises(ValueError, match="end after"):
        tl.add("x", at(10), at(9), cores(1))
    assert "x" not in tl
    booking = tl.get(("booking", 1))
    assert booking is not None
    assert (booking.start, booking.end, booking.resources) == (at(9), at(10), cores(1))
    assert tl.get("missing") is None
    assert [b.key for b in tl.items()] == [("booking", 1)]
    assert tl.remove(("booking", 1)) is True
    assert tl.remove(("booking", 1)) is False
    assert len(tl) == 0
    assert list(tl.breakpoints()) == []


def test_shared_breakpoints_are_reference_counted() -> None:
    tl = Timeline()
    tl.add("a", at(9), at(10), cores(1))
    tl.add("b", at(10), at(11), cores(1))  # starts where a ends: level stays 1
    tl.add("c", at(9), at(11), cores(2))
    assert list(tl.breakpoints()) == [at(9), at(10), at(11)]
    assert tl.usage_at(at(10)) == cores(3)
    tl.remove("c")
    assert list(tl.breakpoints()) == [at(9), at(10), at(11)]
    tl.remove("a")
    assert list(tl.breakpoints()) == [at(10), at(11)]
    assert tl.usage_at(at(9, 30)).is_zero()
    assert tl.usage_at(at(10, 30)) == cores(1)


def test_next_change_after() -> None:
    tl = Timeline()
    tl.add("a", at(9), at(12), cores(1))
    tl.add("b", at(10), at(11), cores(1))
    assert tl.next_change_after(at(0)) == at(9)
    assert tl.next_change_after(at(9)) == at(10)
    assert tl.next_change_after(at(10, 30)) == at(11)
    assert tl.next_change_after(at(12)) is None


def test_free_min_follows_capacity_periods_and_shows_overbooking() -> None:
    tl = Timeline()
    tl.add("a", at(9), at(12), cores(2, 4))
    maintenance = CapacityPeriod(at(11), at(13), cores(1, 16))
    cap = Capacity(cores(8, 16), (maintenance,))
    assert tl.free_min(cap, at(8), at(11)) == cores(6, 12)
    # From 11:00 only 1 core exists while 2 are booked: free is -1, not clamped to zero.
    assert tl.free_min(cap, at(8), at(14)) == cores(-1, 12)
    assert tl.free_min(cap, at(12), at(13)) == cores(1, 16)
    assert tl.free_min(cap, at(12), at(12)) == cores(1, 16)


def test_accelerator_dimensions_appear_on_demand() -> None:
    tl = Timeline(block_size=2)
    for i in range(10):
        tl.add(i, at(i), at(i + 2), cores(1))
    gpu = Resources(accelerators={"gpu:A100": 2})
    tl.add("gpu", at(3), at(6), gpu)
    assert "gpu:A100" in tl.dimensions
    assert tl.usage_at(at(4)) == cores(2) + gpu
    assert tl.peak(at(0), at(24)) == cores(2) + gpu
    tl.remove("gpu")
    assert tl.peak(at(0), at(24)) == cores(2)


def test_instants_in_other_zones_are_the_same_instants() -> None:
    tl = Timeline()
    cet = timezone(timedelta(hours=1))
    tl.add(
        "a", datetime(2025, 1, 6, 10, tzinfo=cet), datetime(2025, 1, 6, 11, tzinfo=cet), cores(1)
    )
    assert tl.usage_at(at(9)) == cores(1)
    assert tl.next_change_after(at(0)) == at(9)


def test_blocked_until() -> None:
    tl = Timeline()
    tl.add("a", at(9), at(10), cores(3))
    tl.add("b", at(11), at(13), cores(3))
    tl.add("c", at(12), at(14), cores(1))
    limit = cores(2, 100)
    assert tl.blocked_until(at(7), at(9), limit) is None
    assert tl.blocked_until(at(7), at(10), limit) == at(10)
    # The last excess decides: b (with c) runs until 13:00.
    assert tl.blocked_until(at(7), at(12), limit) == at(13)
    assert tl.blocked_until(at(10), at(11), limit) is None
    assert tl.blocked_until(at(13), at(15), limit) is None
    assert tl.blocked_until(at(12, 30), at(12, 31), limit) == at(13)
    # Unlisted dimensions have limit zero.
    assert tl.blocked_until(at(7), at(9, 1), Resources(memory_gib=5)) == at(10)
    with pytest.raises(ValueError, match="non-negative"):
        tl.blocked_until(at(7), at(9), cores(-1))


def test_long_booking_over_many_blocks() -> None:
    tl = Timeline(block_size=2)
    for i in range(50):
        tl.add(i, at(0, 10 * i), at(0, 10 * i + 5), cores(1))
    tl.add("long", at(0), at(20), cores(10))
    assert tl.peak(at(0), at(20)) == cores(11)
    assert tl.usage_at(at(0, 7)) == cores(10)
    assert tl.usage_at(at(5, 2)) == cores(11)
    tl.remove("long")
    assert tl.peak(at(0), at(20)) == cores(1)
    for i in range(50):
        tl.remove(i)
    assert list(tl.breakpoints()) == []
    assert tl.peak(at(0), at(20)).is_zero()


def test_block_size_must_be_sensible() -> None:
    with pytest.raises(ValueError):
        Timeline(block_size=1)


# -- property test against a brute-force reference ---------------------------------------------

DIMS = ("cores", "memory_gib", "gpu")


def minute(m: int) -> datetime:
    return MON + timedelta(minutes=m)


resources_st = st.builds(
    lambda c, m, g: Resources(cores=c, memory_gib=m, accelerators={"gpu": g}),
    st.integers(0, 5),
    st.integers(0, 5),
    st.sampled_from([0, 0, 0, 1, 2]),
)

op_st = st.one_of(
    st.tuples(
        st.just("add"), st.integers(0, 40), st.integers(1, 20), resources_st, st.integers(0, 39)
    ),
    st.tuples(st.just("remove"), st.integers(0, 39)),
)


class Reference:
    """Bookings kept as a plain dict; every answer computed from scratch."""

    def __init__(self) -> None:
        self.bookings: dict[int, tuple[int, int, Resources]] = {}

    def edges(self) -> list[int]:
        return sorted({t for s, e, _ in self.bookings.values() for t in (s, e)})

    def usage(self, t: int) -> Resources:
        total = Resources()
        for s, e, r in self.bookings.values():
            if s <= t < e:
                total = total + r
        return total

    def points(self, s: int, e: int) -> list[int]:
        return [s, *(t for t in self.edges() if s < t < e)]

    def peak(self, s: int, e: int) -> Resources:
        result = Resources()
        for t in self.points(s, e):
            result = result.componentwise_max(self.usage(t))
        return result

    def free_min(self, cap: Capacity, s: int, e: int) -> Resources:
        points = set(self.points(s, e))
        for b in cap.breakpoints(minute(s), minute(e)):
            points.add((to_us(b) - to_us(MON)) // 60_000_000)
        frees = [cap.at(minute(t)) - self.usage(t) for t in sorted(points)]
        result = frees[0]
        for f in frees[1:]:
            result = result.componentwise_min(f)
        return result

    def blocked_until(self, s: int, e: int, limit: Resources) -> int | None:
        bad = [t for t in self.points(s, e) if not self.usage(t).fits_in(limit)]
        if not bad:
            return None
        return min(t for t in self.edges() if t > bad[-1] and self.usage(t).fits_in(limit))


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(op_st, min_size=10, max_size=120),
    block_size=st.sampled_from([2, 3, 4, 5, 8, 64]),
    probes=st.lists(st.tuples(st.integers(-5, 70), st.integers(1, 40)), min_size=1, max_size=8),
    limit=resources_st,
    survivors=st.integers(1, 4),
)
def test_timeline_matches_brute_force(
    ops: list[tuple],
    block_size: int,
    probes: list[tuple[int, int]],
    limit: Resources,
    survivors: int,
) -> None:
    """Random adds and removes; every query agrees with the reference at every breakpoint.

    After the random phase all but every ``survivors``-th booking is removed and everything
    is checked again, which shrinks blocks and exercises merging.
    """
    tl = Timeline(block_size=block_size)
    ref = Reference()
    for op in ops:
        if op[0] == "add":
            _, start, length, res, key = op
            if key in ref.bookings:
                with pytest.raises(KeyError):
                    tl.add(key, minute(start), minute(start + length), res)
                continue
            tl.add(key, minute(start), minute(start + length), res)
            ref.bookings[key] = (start, start + length, res)
        else:
            _, key = op
            assert tl.remove(key) is (ref.bookings.pop(key, None) is not None)
        assert len(tl) == len(ref.bookings)
    check_against_reference(tl, ref, probes, limit)
    for n, key in enumerate(sorted(ref.bookings)):
        if n % survivors:
            assert tl.remove(key)
            del ref.bookings[key]
    check_against_reference(tl, ref, probes, limit)


def check_against_reference(
    tl: Timeline, ref: Reference, probes: list[tuple[int, int]], limit: Resources
) -> None:
    cap = Capacity(
        Resources(cores=12, memory_gib=12, accelerators={"gpu": 2}),
        (CapacityPeriod(minute(20), minute(30), Resources(cores=3, memory_gib=20)),),
    )
    assert len(tl) == len(ref.bookings)
    edges = ref.edges()
    assert list(tl.breakpoints()) == [minute(t) for t in edges]
    for t in {*edges, *(t - 1 for t in edges), *(s for s, _ in probes)}:
        assert tl.usage_at(minute(t)) == ref.usage(t), t
        expected_next = next((x for x in edges if x > t), None)
        assert tl.next_change_after(minute(t)) == (
            None if expected_next is None else minute(expected_next)
        )
    spans = [(s, s + length) for s, length in probes]
    spans += [(a, b) for a, b in zip(edges, edges[2:], strict=False)]
    spans += [(a, b) for a, b in zip(edges, edges[5:], strict=False)]
    for s, e in spans:
        assert tl.peak(minute(s), minute(e)) == ref.peak(s, e), (s, e)
        assert tl.free_min(cap, minute(s), minute(e)) == ref.free_min(cap, s, e), (s, e)
        expected = ref.blocked_until(s, e, limit)
        assert tl.blocked_until(minute(s), minute(e), limit) == (
            None if expected is None else minute(expected)
        ), (s, e)
