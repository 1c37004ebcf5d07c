"""Value types of the offer math: resource vectors, windows, demands, time-varying capacity."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from eb_broker.scheduling import (
    AcceleratorCounts,
    Capacity,
    CapacityPeriod,
    Demand,
    Resources,
    Window,
    describe_dimension,
    format_duration,
)

MON = datetime(2025, 1, 6, tzinfo=UTC)


def at(hour: int, minute: int = 0, day: int = 0) -> datetime:
    return MON + timedelta(days=day, hours=hour, minutes=minute)


# -- Resources ---------------------------------------------------------------------------------


def test_defaults_are_zero() -> None:
    r = Resources()
    assert r.is_zero()
    assert r.get("cores") == 0
    assert r.get("gpu:A100") == 0
    assert r.dimensions() == ()
    assert r.describe() == "nothing"


def test_accelerators_are_normalised_and_hashable() -> None:
    a = Resources(cores=2, accelerators={"gpu:A100": 1, "fpga:U280": 0})
    b = Resources(cores=2, accelerators=[("gpu:A100", 1)])  # type: ignore[arg-type]
    assert a == b
    assert hash(a) == hash(b)
    assert isinstance(a.accelerators, AcceleratorCounts)
    assert dict(a.accelerators) == {"gpu:A100": 1}
    assert a.accelerators == {"gpu:A100": 1, "tpu": 0}
    assert len({a, b}) == 1
    assert not Resources(accelerators={"gpu": 0}).accelerators


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(TypeError):
        Resources(cores=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Resources(cores=True)
    with pytest.raises(TypeError):
        Resources(accelerators={"gpu": 1.0})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="core dimension"):
        Resources(accelerators={"cores": 1})
    with pytest.raises(ValueError, match="non-empty"):
        Resources(accelerators={"": 1})


def test_arithmetic() -> None:
    a = Resources(cores=4, memory_gib=16, accelerators={"gpu:A100": 2})
    b = Resources(cores=1, memory_gib=20, storage_gib=5, accelerators={"fpga:U280": 1})
    assert a + b == Resources(
        cores=5, memory_gib=36, storage_gib=5, accelerators={"gpu:A100": 2, "fpga:U280": 1}
    )
    # Differences may go negative: free capacity of an overbooked platform.
    assert a - b == Resources(
        cores=3, memory_gib=-4, storage_gib=-5, accelerators={"gpu:A100": 2, "fpga:U280": -1}
    )
    assert -a == Resources(cores=-4, memory_gib=-16, accelerators={"gpu:A100": -2})
    assert (a - a).is_zero()
    assert not (a - b).is_nonnegative()


def test_componentwise_min_max_treat_absent_pools_as_zero() -> None:
    a = Resources(cores=4, memory_gib=16, accelerators={"gpu:A100": 2})
    b = Resources(cores=8, memory_gib=8, accelerators={"fpga:U280": 1})
    assert a.componentwise_min(b) == Resources(cores=4, memory_gib=8)
    assert a.componentwise_max(b) == Resources(
        cores=8, memory_gib=16, accelerators={"gpu:A100": 2, "fpga:U280": 1}
    )
    assert Resources(cores=10).clamped(Resources(cores=2), Resources(cores=6)) == Resources(cores=6)


def test_fits_in_and_exceeded_dimensions() -> None:
    need = Resources(cores=4, memory_gib=16, accelerators={"gpu:A100": 1})
    assert need.fits_in(Resources(cores=4, memory_gib=16, accelerators={"gpu:A100": 1}))
    assert not need.fits_in(Resources(cores=8, memory_gib=64))
    assert need.exceeded_dimensions(Resources(cores=2, memory_gib=64)) == ["cores", "gpu:A100"]
    assert need.exceeded_dimensions(Resources(cores=4, memory_gib=8, storage_gib=0)) == [
        "memory_gib",
        "gpu:A100",
    ]
    assert Resources().fits_in(Resources())


def test_dimensions_items_and_from_dimensions() -> None:
    r = Resources(cores=2, storage_gib=3, accelerators={"gpu": 1})
    assert r.dimensions() == ("cores", "storage_gib", "gpu")
    assert dict(r.items()) == {"cores": 2, "storage_gib": 3, "gpu": 1}
    assert Resources.from_dimensions(dict(r.items())) == r
    assert Resources.from_dimensions([("cores", 1), ("cores", 1), ("gpu", 2)]) == Resources(
        cores=2, accelerators={"gpu": 2}
    )


def test_describe() -> None:
    assert Resources(cores=2, memory_gib=4).describe() == "2 cores, 4 GiB"
    assert str(Resources(cores=1)) == "1 core"
    assert (
        Resources(storage_gib=10, accelerators={"gpu:A100": 2}).describe()
        == "10 GiB storage, 2 gpu:A100"
    )
    assert describe_dimension("memory_gib", 64) == "64 GiB memory"
    assert describe_dimension("cores", 8) == "8 cores"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=2), "2 h"),
        (timedelta(minutes=90), "1 h 30 min"),
        (timedelta(days=3), "3 days"),
        (timedelta(days=1, seconds=5), "1 day 5 s"),
        (timedelta(0), "0 s"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


# -- Window and Demand -----------------------------------------------------------------------


def test_window_is_half_open_and_zero_width_means_exactly() -> None:
    w = Window(at(9), at(12))
    assert at(9) in w
    assert at(11, 59) in w
    assert at(12) not in w
    instant = Window(at(9), at(9))
    assert instant.is_instant
    assert at(9) in instant
    assert at(9, 1) not in instant
    assert "09:00" not in w


def test_window_validation() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(datetime(2025, 1, 6, 9), at(12))
    with pytest.raises(ValueError, match="ends before"):
        Window(at(12), at(9))
    with pytest.raises(TypeError):
        Window("2025-01-06", at(9))  # type: ignore[arg-type]


def test_window_compares_instants_not_wall_clock() -> None:
    # 01:30 EDT and 01:10 EST on the DST fall-back night: wall clock says "earlier", the
    # instants say 40 minutes later.
    ny = ZoneInfo("America/New_York")
    first = datetime(2025, 11, 2, 1, 30, tzinfo=ny)
    second = datetime(2025, 11, 2, 1, 10, fold=1, tzinfo=ny)
    w = Window(first, second)
    assert not w.is_instant
    assert datetime(2025, 11, 2, 6, 0, tzinfo=UTC) in w


def test_window_of_accepts_anything_with_start_and_end() -> None:
    @dataclass(frozen=True)
    class Span:
        start: datetime
        end: datetime

    assert Window.of(Span(at(9), at(10))) == Window(at(9), at(10))
    w = Window(at(9), at(10))
    assert Window.of(w) is w


def test_window_of_accepts_the_wire_models_interval() -> None:
    times = pytest.importorskip("eb_sdk.model.times")
    interval = times.Interval(at(9), at(10))
    demand = Demand(Resources(cores=1), Resources(cores=1), timedelta(hours=1), (interval,))
    assert demand.windows == (Window(at(9), at(10)),)


def test_demand_validation() -> None:
    one = Resources(cores=1)
    with pytest.raises(ValueError, match="smaller in: cores, gpu"):
        Demand(Resources(cores=4, accelerators={"gpu": 1}), Resources(cores=2), timedelta(hours=1))
    with pytest.raises(ValueError, match="duration"):
        Demand(one, one, timedelta(0))
    with pytest.raises(ValueError, match="preparation"):
        Demand(one, one, timedelta(hours=1), preparation=timedelta(minutes=-1))
    with pytest.raises(ValueError, match="negative"):
        Demand(Resources(cores=-1), one, timedelta(hours=1))


def test_demand_windows_become_windows() -> None:
    d = Demand.exactly(Resources(cores=2), timedelta(hours=1), [Window(at(9), at(10))])
    assert d.minimum == d.maximum == Resources(cores=2)
    assert d.windows == (Window(at(9), at(10)),)
    assert d.preparation == timedelta(0)
    assert hash(d) == hash(Demand.exactly(Resources(cores=2), timedelta(hours=1), [d.windows[0]]))


# -- Capacity ---------------------------------------------------------------------------------

BASE = Resources(cores=8, memory_gib=32)


def test_capacity_period_validation_and_overlap() -> None:
    with pytest.raises(ValueError, match="empty"):
        CapacityPeriod(at(10), at(10), Resources())
    with pytest.raises(ValueError, match="timezone-aware"):
        CapacityPeriod(datetime(2025, 1, 6), None, Resources())
    p = CapacityPeriod(at(10), at(11), Resources())
    assert p.covers(at(10))
    assert not p.covers(at(11))
    assert p.overlaps(at(9), at(10, 1))
    assert not p.overlaps(at(9), at(10))
    assert not p.overlaps(at(11), at(12))
    open_ended = CapacityPeriod(None, at(10), Resources())
    assert open_ended.covers(at(0, day=-100))
    assert CapacityPeriod(at(10), None, Resources()).overlaps(at(11, day=300), at(12, day=300))


def test_capacity_without_periods_is_the_base() -> None:
    cap = Capacity(BASE)
    assert cap.at(at(3)) == BASE
    assert cap.breakpoints(at(0), at(23)) == []
    assert cap.pieces(at(0), at(1)) == [(at(0), at(1), BASE)]
    assert cap.pieces(at(1), at(1)) == []
    assert cap.min_over(at(0), at(1)) == BASE


def test_maintenance_period_overrides_the_base() -> None:
    maintenance = CapacityPeriod(at(10), at(11), Resources(memory_gib=32))
    cap = Capacity(BASE, (maintenance,))
    assert cap.at(at(9, 59)) == BASE
    assert cap.at(at(10)) == Resources(memory_gib=32)
    assert cap.at(at(11)) == BASE
    assert cap.breakpoints(at(9), at(12)) == [at(10), at(11)]
    assert cap.breakpoints(at(10), at(11)) == []  # open interval
    assert cap.pieces(at(9), at(12)) == [
        (at(9), at(10), BASE),
        (at(10), at(11), Resources(memory_gib=32)),
        (at(11), at(12), BASE),
    ]
    assert cap.min_over(at(9), at(12)) == Resources(memory_gib=32)
    assert cap.min_over(at(9), at(10)) == BASE
    assert cap.max_over(at(9), at(12)) == BASE
    assert cap.min_over(at(12), at(12)) == BASE


def test_overlapping_periods_take_the_componentwise_minimum() -> None:
    share = CapacityPeriod(None, None, Resources(cores=4, memory_gib=64))
    maintenance = CapacityPeriod(at(10), at(11), Resources(cores=0, memory_gib=16))
    extra = CapacityPeriod(at(20), at(22), Resources(cores=16, memory_gib=16))
    cap = Capacity(BASE, (maintenance, share, extra))
    assert cap.at(at(9)) == Resources(cores=4, memory_gib=64)  # share replaces the base
    assert cap.at(at(10, 30)) == Resources(memory_gib=16)
    assert cap.at(at(21)) == Resources(cores=4, memory_gib=16)
    assert cap.max_over(at(0), at(23)) == Resources(cores=4, memory_gib=64)


def test_capacity_in_other_zones_compares_instants() -> None:
    cet = timezone(timedelta(hours=1))
    cap = Capacity(BASE, (CapacityPeriod(at(10), at(11), Resources()),))
    assert cap.at(datetime(2025, 1, 6, 11, 30, tzinfo=cet)).is_zero()  # 10:30 UTC
    assert cap.at(datetime(2025, 1, 6, 10, 30, tzinfo=cet)) == BASE  # 09:30 UTC
