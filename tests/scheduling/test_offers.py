"""``find_slots``: one test group per rule of the issue, then property tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eb_broker.scheduling import (
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
from eb_broker.scheduling.timeline import to_us

MON = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday
NOW = MON - timedelta(days=1)  # Sunday midnight: all of Monday is in the future
H = timedelta(hours=1)
CAP = Capacity(Resources(cores=8, memory_gib=32))


def at(hour: int, minute: int = 0, day: int = 0, second: int = 0) -> datetime:
    return MON + timedelta(days=day, hours=hour, minutes=minute, seconds=second)


def cores(n: int, mem: int = 0) -> Resources:
    return Resources(cores=n, memory_gib=mem)


def demand(
    low: Resources,
    high: Resources | None = None,
    duration: timedelta = 4 * H,
    windows: tuple[Window, ...] = (),
    preparation: timedelta = timedelta(0),
) -> Demand:
    return Demand(low, high or low, duration, windows, preparation)


def slots_of(result: list[Slot] | NoFit) -> list[Slot]:
    assert not isinstance(result, NoFit), result
    return result


def starts(result: list[Slot] | NoFit) -> list[datetime]:
    return [s.start for s in slots_of(result)]


def no_fit(result: list[Slot] | NoFit) -> NoFit:
    assert isinstance(result, NoFit), result
    return result


def assert_fits(capacity: Capacity, timeline: Timeline, slot: Slot) -> None:
    """usage + slot <= capacity at every instant of the slot (checked at every change)."""
    points = {
        slot.start,
        *timeline.breakpoints(slot.start, slot.end),
        *capacity.breakpoints(slot.start, slot.end),
    }
    for t in points:
        used = timeline.usage_at(t) + slot.resources
        assert used.fits_in(capacity.at(t)), (t, used, capacity.at(t))


# -- rule 1: starts inside the windows, after now + preparation, aligned ---------------------------


def test_window_end_is_exclusive() -> None:
    d = demand(cores(2), windows=(Window(at(9), at(12)),))
    assert starts(find_slots(CAP, Timeline(), d, NOW, max_offers=9)) == [at(9), at(10), at(11)]


def test_window_already_running_starts_at_the_next_aligned_minute() -> None:
    d = demand(cores(2), windows=(Window(at(9), at(12)),))
    now = at(9, 20, second=30)
    assert starts(find_slots(CAP, Timeline(), d, now, max_offers=9)) == [
        at(9, 21),
        at(10),
        at(11),
    ]


def test_preparation_delays_the_earliest_start() -> None:
    d = demand(cores(2), windows=(Window(at(9), at(12)),), preparation=timedelta(minutes=30))
    assert starts(find_slots(CAP, Timeline(), d, at(8, 50), max_offers=9)) == [
        at(9, 20),
        at(10),
        at(11),
    ]


def test_unaligned_window_start_is_rounded_up_and_anchors_the_grid() -> None:
    d = demand(cores(2), windows=(Window(at(9, second=30), at(12)),))
    assert starts(find_slots(CAP, Timeline(), d, NOW, max_offers=9)) == [
        at(9, 1),
        at(10, 1),
        at(11, 1),
    ]


def test_coarser_granularity() -> None:
    d = demand(cores(2), windows=(Window(at(9), at(10)),))
    result = find_slots(
        CAP, Timeline(), d, at(9, 7), granularity=timedelta(minutes=15), max_offers=9
    )
    assert starts(result) == [at(9, 15)]


def test_zero_width_window_means_exactly_then() -> None:
    d = demand(cores(2), windows=(Window(at(9, 0, second=30), at(9, 0, second=30)),))
    [slot] = slots_of(find_slots(CAP, Timeline(), d, NOW))
    assert slot.start == at(9, 0, second=30)  # not rounded to the minute
    assert slot.end == at(13, 0, second=30)
    assert slot.window_index == 0


def test_zero_width_window_in_the_past_is_no_fit() -> None:
    d = demand(cores(2), windows=(Window(at(9), at(9)),), preparation=timedelta(minutes=10))
    result = no_fit(find_slots(CAP, Timeline(), d, at(8, 55)))
    assert result.texts[0].startswith(
        "the requested window ends before the earliest possible start 2025-01-06T09:05:00"
    )
    assert "(now + 10 min preparation)" in result.texts[0]
    assert result.earliest is not None
    assert result.earliest.start == at(9, 5)
    assert result.earliest.window_index is None


def test_window_narrower_than_the_granularity_uses_its_start() -> None:
    d = demand(cores(2), windows=(Window(at(9, second=10), at(9, second=50)),))
    assert starts(find_slots(CAP, Timeline(), d, NOW)) == [at(9, second=10)]


def test_slots_come_back_in_the_zone_of_now() -> None:
    cet = timezone(timedelta(hours=1))
    d = demand(cores(2), windows=(Window(at(9), at(10)),))
    [slot] = slots_of(find_slots(CAP, Timeline(), d, NOW.astimezone(cet)))
    assert slot.start.utcoffset() == timedelta(hours=1)
    assert slot.start == at(9)


# -- rule 2: resources between minimum and maximum, as much as is free -----------------------------


def test_gives_as_much_as_is_free_over_the_whole_slot() -> None:
    tl = Timeline()
    tl.add("a", at(9), at(10), cores(3, 8))
    d = demand(cores(2, 4), cores(8, 16), windows=(Window(at(9), at(12)),))
    result = slots_of(find_slots(CAP, tl, d, NOW, max_offers=9))
    assert [(s.start, s.resources) for s in result] == [
        (at(9), cores(5, 16)),  # 3 of 8 cores taken until 10:00; memory capped at 16
        (at(10), cores(8, 16)),
        (at(11), cores(8, 16)),
    ]
    for slot in result:
        assert_fits(CAP, tl, slot)


def test_never_more_than_the_maximum_and_nothing_unasked_for() -> None:
    cap = Capacity(Resources(cores=64, memory_gib=256, storage_gib=100, accelerators={"gpu": 4}))
    d = demand(cores(2), cores(4, 8), windows=(Window(at(9), at(10)),))
    [slot] = slots_of(find_slots(cap, Timeline(), d, NOW))
    assert slot.resources == cores(4, 8)


def test_accelerators_are_a_dimension_like_any_other() -> None:
    gpu = "gpu:A100"
    cap = Capacity(Resources(cores=16, memory_gib=64, accelerators={gpu: 2}))
    tl = Timeline()
    tl.add("x", at(9), at(11), Resources(cores=1, accelerators={gpu: 1}))
    d = demand(
        Resources(cores=1, accelerators={gpu: 1}),
        Resources(cores=2, accelerators={gpu: 2}),
        duration=H,
        windows=(Window(at(9), at(12)),),
    )
    result = slots_of(find_slots(cap, tl, d, NOW, max_offers=9))
    assert [(s.start, s.resources.get(gpu)) for s in result] == [
        (at(9), 1),
        (at(10), 1),
        (at(11), 2),
    ]
    tl.add("y", at(9), at(10), Resources(accelerators={gpu: 1}))
    assert starts(find_slots(cap, tl, d, NOW, max_offers=9)) == [at(10), at(11)]


def test_an_overbooked_pool_the_request_does_not_use_does_not_block_it() -> None:
    cap = Capacity(Resources(cores=8, accelerators={"gpu": 1}))
    tl = Timeline()
    tl.add("over", at(0), at(23), Resources(accelerators={"gpu": 2}))
    d = demand(
        cores(1), Resources(cores=1, accelerators={"gpu": 1}), windows=(Window(at(9), at(10)),)
    )
    [slot] = slots_of(find_slots(cap, tl, d, NOW))
    assert slot.resources == cores(1)  # no GPU: the pool is over-full


def test_usage_plus_slot_never_exceeds_capacity() -> None:
    tl = Timeline()
    tl.add("a", at(9), at(9, 30), cores(6))
    tl.add("b", at(12), at(13), cores(5))
    d = demand(cores(2), cores(8), windows=(Window(at(8), at(12)),))
    result = slots_of(find_slots(CAP, tl, d, NOW, max_offers=20))
    assert [(s.start, s.resources.cores) for s in result] == [
        (at(8), 2),
        (at(9), 2),
        (at(10), 3),
        (at(11), 3),
    ]
    for slot in result:
        assert_fits(CAP, tl, slot)


# -- rule 3: several windows, the step grid, and bookings ending inside a window -------------------

SEED_WINDOWS = tuple(Window(at(9, day=k), at(12, day=k)) for k in range(3))


def test_the_seed_example_three_mornings() -> None:
    d = demand(cores(2), windows=SEED_WINDOWS)
    result = slots_of(find_slots(CAP, Timeline(), d, NOW, max_offers=9))
    assert [(s.start, s.window_index) for s in result] == [
        (at(h, day=k), k) for k in range(3) for h in (9, 10, 11)
    ]
    assert all(s.end - s.start == 4 * H for s in result)


def test_a_slot_appears_when_a_booking_ends_inside_the_window() -> None:
    tl = Timeline()
    tl.add("busy", at(7), at(9, 40), cores(8))
    d = demand(cores(2), windows=(Window(at(9), at(12)),))
    assert starts(find_slots(CAP, tl, d, NOW, max_offers=9)) == [at(9, 40), at(10), at(11)]


def test_booking_end_candidates_only_fill_blocked_grid_gaps() -> None:
    tl = Timeline()
    tl.add("busy", at(7, day=1), at(11, 30, day=1), cores(8))  # all of Tuesday morning
    d = demand(cores(2), windows=SEED_WINDOWS)
    result = slots_of(find_slots(CAP, tl, d, NOW, max_offers=9))
    assert [(s.start, s.window_index) for s in result] == [
        (at(9), 0),
        (at(10), 0),
        (at(11), 0),
        (at(11, 30, day=1), 1),  # 09:00, 10:00 and 11:00 blocked; free from 11:30
        (at(9, day=2), 2),
        (at(10, day=2), 2),
        (at(11, day=2), 2),
    ]


def test_step_controls_the_grid() -> None:
    d = demand(cores(2), windows=(Window(at(9), at(11)),))
    result = find_slots(CAP, Timeline(), d, NOW, max_offers=9, step=timedelta(minutes=30))
    assert starts(result) == [at(9), at(9, 30), at(10), at(10, 30)]


def test_overlapping_windows_do_not_offer_a_start_twice() -> None:
    d = demand(cores(2), windows=(Window(at(10), at(13)), Window(at(9), at(12))))
    result = slots_of(find_slots(CAP, Timeline(), d, NOW, max_offers=9))
    # Windows are taken in time order: [09, 12) claims 09, 10, 11; [10, 13) adds 12.
    assert [(s.start, s.window_index) for s in result] == [
        (at(9), 1),
        (at(10), 1),
        (at(11), 1),
        (at(12), 0),
    ]


# -- rule 4: spreading -----------------------------------------------------------------------------


def test_picks_are_spread_evenly_within_a_window() -> None:
    d = demand(cores(2), windows=(Window(at(9), at(17)),))
    # 8 feasible starts 09..16; 4 picks at indices 0, 2, 5, 7.
    assert starts(find_slots(CAP, Timeline(), d, NOW, max_offers=4)) == [
        at(9),
        at(11),
        at(14),
        at(16),
    ]
    assert starts(find_slots(CAP, Timeline(), d, NOW, max_offers=2)) == [at(9), at(16)]
    assert starts(find_slots(CAP, Timeline(), d, NOW, max_offers=1)) == [at(9)]


def test_not_adjacent_minutes() -> None:
    d = demand(cores(2), windows=(Window(at(9), at(17)),))
    # 480 feasible starts 09:00..16:59 on a one-minute grid; 3 picks at 0, 240 and 479.
    result = find_slots(CAP, Timeline(), d, NOW, max_offers=3, step=timedelta(minutes=1))
    assert starts(result) == [at(9), at(13), at(16, 59)]


def test_every_window_before_a_second_pick() -> None:
    d = demand(cores(2), windows=SEED_WINDOWS)
    result = slots_of(find_slots(CAP, Timeline(), d, NOW, max_offers=4))
    assert [(s.start, s.window_index) for s in result] == [
        (at(9), 0),
        (at(11), 0),  # the extra pick goes to the earliest window, spread to its far end
        (at(9, day=1), 1),
        (at(9, day=2), 2),
    ]


def test_more_windows_than_offers_takes_the_earliest_windows_and_keeps_indices() -> None:
    windows = tuple(Window(at(9, day=k), at(12, day=k)) for k in (4, 2, 0, 3, 1))
    d = demand(cores(2), windows=windows)
    result = slots_of(find_slots(CAP, Timeline(), d, NOW, max_offers=3))
    assert [(s.start, s.window_index) for s in result] == [
        (at(9, day=0), 2),
        (at(9, day=1), 4),
        (at(9, day=2), 1),
    ]


def test_windows_without_a_feasible_start_are_skipped_in_the_round_robin() -> None:
    tl = Timeline()
    tl.add("tuesday", at(0, day=1), at(23, day=1), cores(8))
    d = demand(cores(2), windows=SEED_WINDOWS)
    result = slots_of(find_slots(CAP, tl, d, NOW, max_offers=4))
    assert [(s.start, s.window_index) for s in result] == [
        (at(9), 0),
        (at(11), 0),
        (at(9, day=2), 2),
        (at(11, day=2), 2),
    ]


def test_the_earliest_feasible_slot_is_always_included() -> None:
    tl = Timeline()
    tl.add("busy", at(8), at(10, 5), cores(8))
    quarter = timedelta(minutes=15)
    # The long window only offers aligned starts (10:15); the exact start at 10:07 is earlier
    # although its window comes later in time order.
    d = demand(cores(2), windows=(Window(at(8), at(12)), Window(at(10, 7), at(10, 7))))
    result = slots_of(find_slots(CAP, tl, d, NOW, max_offers=1, granularity=quarter))
    assert [(s.start, s.window_index) for s in result] == [(at(10, 7), 1)]
    result = slots_of(find_slots(CAP, tl, d, NOW, max_offers=2, granularity=quarter))
    assert [(s.start, s.window_index) for s in result] == [(at(10, 7), 1), (at(10, 15), 0)]


# -- rule 5: no start given ------------------------------------------------------------------------


def test_as_soon_as_possible_on_an_empty_platform() -> None:
    d = demand(cores(2))
    assert starts(find_slots(CAP, Timeline(), d, at(8, 0, second=30))) == [
        at(8, 1),
        at(9, 1),
        at(10, 1),
        at(11, 1),
    ]


def test_as_soon_as_possible_jumps_to_when_capacity_frees_up() -> None:
    tl = Timeline()
    tl.add("a", at(8), at(10, 20), cores(7))
    tl.add("b", at(13), at(14), cores(7))
    d = demand(cores(2), duration=2 * H)
    # 10:20 is the first moment with 2 cores free; 11:20 and 12:20 would overlap b.
    assert starts(find_slots(CAP, tl, d, at(8))) == [at(10, 20), at(14), at(15), at(16)]


def test_as_soon_as_possible_respects_preparation_and_horizon() -> None:
    d = demand(cores(2), preparation=timedelta(minutes=45))
    result = find_slots(CAP, Timeline(), d, at(8), horizon=3 * H)
    assert starts(result) == [at(8, 45), at(9, 45), at(10, 45)]


def test_as_soon_as_possible_with_nothing_in_the_horizon() -> None:
    tl = Timeline()
    tl.add("full", at(0), at(0, day=30), cores(8))
    result = no_fit(find_slots(CAP, tl, demand(cores(2), duration=2 * H), at(8)))
    assert result.texts == ("no capacity for 2 cores for 2 h within the next 14 days",)
    assert [r.kind for r in result.reasons] == [NoFitKind.NO_CAPACITY]
    assert result.earliest is None


# -- rule 6: no fit --------------------------------------------------------------------------------


def test_minimum_above_capacity() -> None:
    cap = Capacity(Resources(cores=4, memory_gib=32))
    result = no_fit(find_slots(cap, Timeline(), demand(cores(8, 64)), NOW))
    assert result.texts == (
        "the minimum 8 cores exceeds this platform's capacity of 4 cores",
        "the minimum 64 GiB memory exceeds this platform's capacity of 32 GiB memory",
    )
    assert {r.kind for r in result.reasons} == {NoFitKind.EXCEEDS_PLATFORM}
    assert result.earliest is None


def test_minimum_needs_an_accelerator_the_platform_lacks() -> None:
    d = demand(Resources(cores=1, accelerators={"gpu:H100": 1}), windows=(Window(at(9), at(10)),))
    result = no_fit(find_slots(CAP, Timeline(), d, NOW))
    assert result.texts == (
        "the minimum 1 gpu:H100 exceeds this platform's capacity of 0 gpu:H100",
    )


def test_no_capacity_in_the_window_offers_the_earliest_slot_outside() -> None:
    cap = Capacity(Resources(cores=4, memory_gib=8))
    tl = Timeline()
    tl.add("x", at(9), at(14), cores(4))
    d = demand(cores(2, 4), duration=2 * H, windows=(Window(at(9), at(12)),))
    result = no_fit(find_slots(cap, tl, d, at(8)))
    assert result.texts == ("no capacity for 2 cores, 4 GiB for 2 h in the requested window(s)",)
    assert [r.kind for r in result.reasons] == [NoFitKind.WINDOW_BUSY]
    assert result.earliest == Slot(at(14), at(16), cores(2, 4), None)


def test_window_beyond_the_horizon() -> None:
    d = demand(cores(2), windows=(Window(at(9, day=30), at(12, day=30)),))
    result = no_fit(find_slots(CAP, Timeline(), d, NOW))
    assert result.texts[0].startswith(
        "the requested window starts beyond the booking horizon of 14 days"
    )
    assert result.earliest is not None
    assert result.earliest.start == NOW


def test_several_windows_past_and_beyond() -> None:
    windows = (Window(at(9), at(10)), Window(at(9, day=30), at(10, day=30)))
    result = no_fit(find_slots(CAP, Timeline(), demand(cores(2), windows=windows), at(11)))
    assert len(result.texts) == 2
    assert result.texts[0].startswith("1 of the 2 requested windows end before")
    assert result.texts[1].startswith("1 of the 2 requested windows start beyond")
    kinds = [r.kind for r in result.reasons]
    assert kinds == [NoFitKind.WINDOW_PAST, NoFitKind.WINDOW_BEYOND_HORIZON]


def test_nothing_fits_anywhere_in_the_horizon() -> None:
    tl = Timeline()
    tl.add("full", NOW, at(0, day=30), cores(8))
    d = demand(cores(2), windows=(Window(at(9), at(12)),))
    result = no_fit(find_slots(CAP, tl, d, NOW))
    assert result.earliest is None
    assert result.texts[-1] == (
        "nothing fits within the next 14 days outside the requested window(s) either"
    )
    assert result.reasons[-1].kind == NoFitKind.NOTHING_LATER


# -- rule 7: capacity periods ----------------------------------------------------------------------


def test_maintenance_blocks_overlapping_slots() -> None:
    maintenance = CapacityPeriod(at(10), at(11), Resources(memory_gib=32))
    cap = Capacity(Resources(cores=8, memory_gib=32), (maintenance,))
    d = demand(cores(2), duration=2 * H, windows=(Window(at(6), at(12)),))
    # 08:00-10:00 just ends as maintenance begins (half-open); 09:00 and 10:00 overlap it.
    assert starts(find_slots(cap, Timeline(), d, NOW, max_offers=9)) == [
        at(6),
        at(7),
        at(8),
        at(11),
    ]


def test_maintenance_ending_inside_a_window_opens_a_slot() -> None:
    maintenance = CapacityPeriod(at(9), at(10, 30), Resources())
    cap = Capacity(Resources(cores=8, memory_gib=32), (maintenance,))
    d = demand(cores(2), duration=H, windows=(Window(at(9), at(12)),))
    assert starts(find_slots(cap, Timeline(), d, NOW, max_offers=9)) == [at(10, 30), at(11)]


def test_maintenance_covering_the_window_is_named_as_the_reason() -> None:
    maintenance = CapacityPeriod(at(9), at(13), Resources())
    cap = Capacity(Resources(cores=8, memory_gib=32), (maintenance,))
    d = demand(cores(2), duration=H, windows=(Window(at(9), at(12)),))
    result = no_fit(find_slots(cap, Timeline(), d, at(8)))
    assert len(result.texts) == 1
    assert "maintenance" in result.texts[0]
    assert result.reasons[0].kind == NoFitKind.WINDOW_CAPACITY
    assert result.earliest == Slot(at(8), at(9), cores(2), None)


def test_a_shortage_during_maintenance_ends_with_the_maintenance() -> None:
    # During 10-11 only 5 cores exist and a 2-core booking (09-14) leaves 3: too few for 4.
    # The shortage is over at 11:00 although the booking runs on; the search must not jump
    # to the booking's end.
    reduced = CapacityPeriod(at(10), at(11), Resources(cores=5, memory_gib=32))
    cap = Capacity(Resources(cores=8, memory_gib=32), (reduced,))
    tl = Timeline()
    tl.add("b", at(9), at(14), cores(2))
    d = demand(cores(4), duration=H)
    assert starts(find_slots(cap, tl, d, at(9, 30), max_offers=1)) == [at(11)]


def test_a_reduced_share_limits_what_is_given() -> None:
    share = CapacityPeriod(at(11), at(20), Resources(cores=3, memory_gib=32))
    cap = Capacity(Resources(cores=8, memory_gib=32), (share,))
    d = demand(cores(2), cores(8), duration=2 * H, windows=(Window(at(8), at(12)),))
    result = slots_of(find_slots(cap, Timeline(), d, NOW, max_offers=9))
    assert [(s.start, s.resources.cores) for s in result] == [
        (at(8), 8),
        (at(9), 8),
        (at(10), 3),
        (at(11), 3),
    ]


def test_minimum_fits_only_during_a_capacity_boost() -> None:
    boost = CapacityPeriod(at(12), at(18), Resources(cores=16, memory_gib=32))
    cap = Capacity(Resources(cores=4, memory_gib=32), (boost,))
    d = demand(cores(10), duration=2 * H)
    assert starts(find_slots(cap, Timeline(), d, at(8))) == [at(12), at(13), at(14), at(15)]


# -- argument checks and determinism ---------------------------------------------------------------


def test_bad_arguments() -> None:
    d = demand(cores(1))
    with pytest.raises(ValueError, match="max_offers"):
        find_slots(CAP, Timeline(), d, NOW, max_offers=0)
    with pytest.raises(ValueError, match="step"):
        find_slots(CAP, Timeline(), d, NOW, step=timedelta(0))
    with pytest.raises(ValueError, match="granularity"):
        find_slots(CAP, Timeline(), d, NOW, granularity=timedelta(0))
    with pytest.raises(ValueError, match="timezone-aware"):
        find_slots(CAP, Timeline(), d, datetime(2025, 1, 6))


def test_zero_minimum_always_fits() -> None:
    tl = Timeline()
    tl.add("full", at(0), at(23), cores(8, 32))
    d = demand(Resources(), cores(4), duration=H, windows=(Window(at(9), at(10)),))
    [slot] = slots_of(find_slots(CAP, tl, d, NOW))
    assert slot.resources.is_zero()


def test_find_slots_does_not_change_the_timeline() -> None:
    tl = Timeline()
    tl.add("a", at(9), at(10), cores(3))
    before = list(tl.items())
    d = demand(cores(2), windows=SEED_WINDOWS)
    first = find_slots(CAP, tl, d, NOW)
    assert list(tl.items()) == before
    assert find_slots(CAP, tl, d, NOW) == first


# -- property tests --------------------------------------------------------------------------------

GRAN = timedelta(minutes=15)
PNOW = MON  # property tests: "now" is Monday 00:00


def brute_feasible(capacity: Capacity, timeline: Timeline, d: Demand, start: datetime) -> bool:
    end = start + d.duration
    points = {
        start,
        *timeline.breakpoints(start, end),
        *capacity.breakpoints(start, end),
    }
    for t in points:
        free = capacity.at(t) - timeline.usage_at(t)
        if any(d.minimum.get(n) > free.get(n) for n in d.minimum.dimensions()):
            return False
    return True


capacity_st = st.builds(
    lambda c, m, maint: Capacity(
        Resources(cores=c, memory_gib=m),
        ()
        if maint is None
        else (
            CapacityPeriod(
                PNOW + timedelta(minutes=15 * maint[0]),
                PNOW + timedelta(minutes=15 * (maint[0] + maint[1])),
                Resources(cores=maint[2], memory_gib=m),
            ),
        ),
    ),
    st.integers(1, 8),
    st.integers(1, 16),
    st.none() | st.tuples(st.integers(0, 150), st.integers(1, 30), st.integers(0, 4)),
)


@st.composite
def demand_st(draw: st.DrawFn) -> Demand:
    low = Resources(cores=draw(st.integers(0, 4)), memory_gib=draw(st.integers(0, 6)))
    high = low + Resources(cores=draw(st.integers(0, 4)), memory_gib=draw(st.integers(0, 6)))
    duration = timedelta(minutes=draw(st.integers(1, 40)) * 10)
    windows = tuple(
        Window(
            PNOW + timedelta(minutes=5 * a),
            PNOW + timedelta(minutes=5 * a + 5 * w),
        )
        for a, w in draw(
            st.lists(st.tuples(st.integers(-20, 500), st.integers(0, 100)), min_size=0, max_size=3)
        )
    )
    preparation = timedelta(minutes=draw(st.sampled_from([0, 0, 7, 30])))
    return Demand(low, high, duration, windows, preparation)


def check_slot_rules(
    capacity: Capacity, timeline: Timeline, d: Demand, slot: Slot, now: datetime
) -> None:
    assert slot.end - slot.start == d.duration
    assert slot.start >= now + d.preparation
    assert d.minimum.fits_in(slot.resources)
    assert slot.resources.fits_in(d.maximum)
    assert_fits(capacity, timeline, slot)
    aligned = to_us(slot.start) % (GRAN // timedelta(microseconds=1)) == 0
    if slot.window_index is None:
        assert aligned
    else:
        window = Window.of(d.windows[slot.window_index])
        assert slot.start in window
        # Exceptions: a zero-width window's exact start, and a window so narrow that it holds
        # no aligned instant (then its first allowed instant is used).
        assert aligned or window.is_instant or slot.start == max(window.start, now + d.preparation)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacity=capacity_st,
    demands=st.lists(demand_st(), min_size=1, max_size=25),
    max_offers=st.integers(1, 6),
)
def test_booking_the_first_offer_never_overbooks(
    capacity: Capacity, demands: list[Demand], max_offers: int
) -> None:
    """Loop "find_slots, book the first slot": every offer obeys the rules and the platform is
    never overbooked at any instant."""
    tl = Timeline(block_size=4)
    horizon = timedelta(days=2)
    for n, d in enumerate(demands):
        result = find_slots(
            capacity, tl, d, PNOW, max_offers=max_offers, granularity=GRAN, horizon=horizon
        )
        if isinstance(result, NoFit):
            assert result.texts
            if result.earliest is not None:
                check_slot_rules(capacity, tl, d, result.earliest, PNOW)
            continue
        assert 1 <= len(result) <= max_offers
        assert [s.start for s in result] == sorted({s.start for s in result})
        for slot in result:
            check_slot_rules(capacity, tl, d, slot, PNOW)
        tl.add(n, result[0].start, result[0].end, result[0].resources)
    points = {*tl.breakpoints(), *capacity.breakpoints(PNOW - horizon, PNOW + 2 * horizon)}
    for t in points:
        assert tl.usage_at(t).fits_in(capacity.at(t)), t


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacity=capacity_st,
    bookings=st.lists(
        st.tuples(st.integers(0, 150), st.integers(1, 40), st.integers(0, 3), st.integers(0, 4)),
        max_size=12,
    ),
    d=demand_st(),
)
def test_candidates_match_a_brute_force_scan(
    capacity: Capacity, bookings: list[tuple[int, int, int, int]], d: Demand
) -> None:
    """With unlimited offers, the slots are exactly the rule's candidates, found by scanning
    every 15 minutes: feasible grid points, plus the first feasible start in each gap after
    a blocked grid point; and without windows the first slot is the earliest feasible one."""
    tl = Timeline(block_size=3)
    for n, (a, length, c, m) in enumerate(bookings):
        start = PNOW + timedelta(minutes=10 * a)
        tl.add(n, start, start + timedelta(minutes=10 * length), Resources(cores=c, memory_gib=m))
    horizon = timedelta(days=2)
    result = find_slots(capacity, tl, d, PNOW, max_offers=1000, granularity=GRAN, horizon=horizon)
    earliest = PNOW + d.preparation
    horizon_end = PNOW + horizon

    def align(t: datetime) -> datetime:
        return PNOW + -((PNOW - t) // GRAN) * GRAN

    def first_feasible(lo: datetime, hi: datetime) -> datetime | None:
        t = align(lo)
        while t < hi:
            if brute_feasible(capacity, tl, d, t):
                return t
            t += GRAN
        return None

    if not d.windows:
        expected_first = first_feasible(earliest, horizon_end)
        if expected_first is None:
            assert isinstance(result, NoFit)
        else:
            assert starts(result)[0] == expected_first
        return

    expected: set[datetime] = set()
    for window in map(Window.of, d.windows):
        if window.is_instant:
            if earliest <= window.start < horizon_end and brute_feasible(
                capacity, tl, d, window.start
            ):
                expected.add(window.start)
            continue
        lo, hi = max(window.start, earliest), min(window.end, horizon_end)
        if lo >= hi:
            continue
        grid = [align(lo) if align(lo) < hi else lo]
        g = window.start + H
        while g < hi:
            if g > lo and align(g) > grid[-1] and align(g) < hi:
                grid.append(align(g))
            g += H
        for i, point in enumerate(grid):
            if brute_feasible(capacity, tl, d, point):
                expected.add(point)
            else:
                gap_end = grid[i + 1] if i + 1 < len(grid) else hi
                found = first_feasible(point + timedelta(microseconds=1), gap_end)
                if found is not None:
                    expected.add(found)
    if isinstance(result, NoFit):
        assert not expected
        found_anywhere = first_feasible(earliest, horizon_end)
        assert (result.earliest and result.earliest.start) == found_anywhere
    else:
        assert set(starts(result)) == expected
