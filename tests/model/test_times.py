"""Tests for eb_sdk.model.times: ISO-8601 instants, durations and intervals."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eb_sdk.model.times import (
    Interval,
    TimeFormatError,
    format_duration,
    format_instant,
    format_interval,
    parse_duration,
    parse_instant,
    parse_interval,
)

LON = ZoneInfo("Europe/London")
NY = ZoneInfo("America/New_York")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Strategies

fixed_offsets = st.integers(min_value=-23 * 60 + 1, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
zones = st.one_of(st.just(UTC), fixed_offsets, st.timezones())
aware_datetimes = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 12, 30), timezones=zones
)
durations = st.timedeltas()
lengths = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650))


# ---------------------------------------------------------------------------------------------
# Round trips (properties)


@given(aware_datetimes)
def test_instant_round_trip(dt: datetime) -> None:
    text = format_instant(dt)
    assert parse_instant(text) == dt.astimezone(UTC)
    assert format_instant(parse_instant(text)) == text


@given(aware_datetimes)
def test_instant_reads_python_isoformat(dt: datetime) -> None:
    assert parse_instant(dt.isoformat()).astimezone(UTC) == dt.astimezone(UTC)


@given(aware_datetimes)
def test_canonical_instant_shape(dt: datetime) -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", format_instant(dt))


@given(durations)
def test_duration_round_trip(td: timedelta) -> None:
    text = format_duration(td)
    assert parse_duration(text) == td
    assert format_duration(parse_duration(text)) == text
    assert re.fullmatch(r"-?P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d*[1-9])?S)?)?", text)


@given(aware_datetimes, lengths)
def test_interval_round_trip(start: datetime, length: timedelta) -> None:
    iv = Interval.from_start(start, length)
    text = format_interval(iv)
    assert parse_interval(text) == iv
    assert str(parse_interval(text)) == text == str(iv)
    assert parse_interval(text).duration == length


@given(aware_datetimes, lengths)
def test_interval_start_end_form(start: datetime, length: timedelta) -> None:
    iv = Interval.from_start(start, length)
    both = f"{iv.start.isoformat()}/{iv.end.isoformat()}"
    assert parse_interval(both) == iv
    assert parse_interval(f"{format_duration(length)}/{format_instant(iv.end)}") == iv


ISO_PIECES = st.sampled_from(["2026", "-", "11", "21", "T", "13", ":", "00", ".5", "Z", " "]) | (
    st.sampled_from(["+01:00", "/", "P", "1", "D", "H", "M", "S", "W", "Y", "R5", ",", "-P"])
    | st.sampled_from(["24:00", "9999-12-31", "0001-01-01"])
)


@given(st.text(max_size=40) | st.lists(ISO_PIECES, max_size=12).map("".join))
def test_parsers_only_ever_raise_time_format_error(text: str) -> None:
    for parse in (parse_instant, parse_duration, parse_interval):
        with contextlib.suppress(TimeFormatError):
            parse(text)


# ---------------------------------------------------------------------------------------------
# Instants


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T13:00:00Z", utc(2026, 11, 21, 13)),
        ("2026-11-21t13:00:00z", utc(2026, 11, 21, 13)),
        ("2026-11-21T13:00:00+01:00", utc(2026, 11, 21, 12)),
        ("2026-11-21T13:00:00-0530", utc(2026, 11, 21, 18, 30)),
        ("2026-11-21T13:00+01", utc(2026, 11, 21, 12)),
        ("2026-11-21T13:00:00.5Z", utc(2026, 11, 21, 13, 0, 0, 500000)),
        ("2026-11-21T13:00:00,25Z", utc(2026, 11, 21, 13, 0, 0, 250000)),
        ("2026-11-21T13:00:00.1234567Z", utc(2026, 11, 21, 13, 0, 0, 123456)),
        ("2023-08-14T11:30Z", utc(2023, 8, 14, 11, 30)),
        ("2023-08-09", utc(2023, 8, 9)),
        ("2023-08-09T24:00Z", utc(2023, 8, 10)),
        ("2026-11-21 13:00:00Z", utc(2026, 11, 21, 13)),
        ("  2026-11-21T13:00:00Z ", utc(2026, 11, 21, 13)),
        ("2026-11-21T13:00:00", utc(2026, 11, 21, 13)),
    ],
)
def test_parse_instant(text: str, expected: datetime) -> None:
    got = parse_instant(text)
    assert got == expected
    assert got.utcoffset() is not None


def test_naive_instant_is_read_in_given_zone() -> None:
    got = parse_instant("2026-07-01T09:00", tz=LON)
    assert got == utc(2026, 7, 1, 8)
    assert got.tzinfo is LON
    assert parse_instant("2026-07-01", tz=NY) == utc(2026, 7, 1, 4)


def test_naive_instant_in_dst_gap_resolves_to_real_instant() -> None:
    got = parse_instant("2026-03-08T02:30", tz=NY)  # clocks jump 02:00 -> 03:00
    assert got == utc(2026, 3, 8, 7, 30)
    assert (got.hour, got.minute) == (3, 30)


@pytest.mark.parametrize(
    ("dt", "expected"),
    [
        (utc(2026, 11, 21, 13), "2026-11-21T13:00:00Z"),
        (datetime(2026, 11, 21, 14, tzinfo=timezone(timedelta(hours=1))), "2026-11-21T13:00:00Z"),
        (datetime(2026, 7, 1, 14, tzinfo=LON), "2026-07-01T13:00:00Z"),
        (utc(2026, 11, 21, 13, 0, 0, 500000), "2026-11-21T13:00:00.500000Z"),
        (utc(2026, 11, 21, 13, 0, 0, 1), "2026-11-21T13:00:00.000001Z"),
        (datetime(2026, 11, 21, 13), "2026-11-21T13:00:00Z"),  # naive = UTC
    ],
)
def test_format_instant(dt: datetime, expected: str) -> None:
    assert format_instant(dt) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "2026-11-21T",
        "2026-11-21T13",
        "2026-13-01",
        "2026-02-30",
        "2026-11-21T25:00Z",
        "2026-11-21T24:30Z",
        "2026-11-21T13:00:60Z",
        "2026-11-21T13:00+25:00",
        "2026-11-21Z",
        "21/11/2026",
        "20261121T130000Z",
    ],
)
def test_parse_instant_rejects(text: str) -> None:
    with pytest.raises(TimeFormatError, match="instant"):
        parse_instant(text)


def test_time_format_error_is_value_error() -> None:
    assert issubclass(TimeFormatError, ValueError)
    with pytest.raises(ValueError):
        parse_instant(42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT2H", timedelta(hours=2)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1D", timedelta(days=1)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("PT0.5S", timedelta(seconds=0.5)),
        ("PT0,5S", timedelta(seconds=0.5)),
        ("PT1.5H", timedelta(minutes=90)),
        ("P2W", timedelta(weeks=2)),
        ("PT0S", timedelta(0)),
        ("P0D", timedelta(0)),
        ("-PT1H", timedelta(hours=-1)),
        ("+PT1H", timedelta(hours=1)),
        ("P1Y", timedelta(days=365)),
        ("P1M", timedelta(days=30)),
        ("P1Y2M3DT4H5M6S", timedelta(days=365 + 60 + 3, hours=4, minutes=5, seconds=6)),
        ("pt2h", timedelta(hours=2)),
        ("PT90M", timedelta(minutes=90)),
        ("PT0.0000005S", timedelta(0)),  # below a microsecond: rounded half-even
        ("PT0.0000015S", timedelta(microseconds=2)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        (timedelta(hours=2), "PT2H"),
        (timedelta(hours=1, minutes=30), "PT1H30M"),
        (timedelta(days=1, hours=2), "P1DT2H"),
        (timedelta(0), "PT0S"),
        (timedelta(seconds=0.5), "PT0.5S"),
        (timedelta(hours=-1), "-PT1H"),
        (timedelta(weeks=2), "P14D"),
        (timedelta(days=1, seconds=1, microseconds=10), "P1DT1.00001S"),
        (timedelta(minutes=-90), "-PT1H30M"),
        (timedelta.max, "P999999999DT23H59M59.999999S"),
        (timedelta.min, "-P999999999D"),
    ],
)
def test_format_duration(td: timedelta, expected: str) -> None:
    assert format_duration(td) == expected


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("P1H", "did you mean PT1H?"),
        ("P1H30M", "did you mean PT1H30M?"),
        ("P1D2H", "did you mean P1DT2H?"),
        ("p2.5h", "did you mean PT2.5H?"),
        ("2h", "start with P"),
        ("P", "PT2H"),
        ("PT", "PT2H"),
        ("P1DT", "PT2H"),
        ("PT1H30", "PT2H"),
        ("", "PT2H"),
        ("1 hour", "start with P"),
        ("PT1.5H30M", "only the last component"),
        ("P1S2D", "PT2H"),
        ("P9999999999D", "too long"),
    ],
)
def test_parse_duration_rejects_with_hint(text: str, hint: str) -> None:
    with pytest.raises(TimeFormatError, match=re.escape(hint)):
        parse_duration(text)


# ---------------------------------------------------------------------------------------------
# Intervals: every accepted form


START = utc(2026, 11, 21, 13)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-11-21T13:00:00Z/2026-11-21T15:00:00Z", START, utc(2026, 11, 21, 15)),
        ("2026-11-21T13:00:00Z/PT2H", START, utc(2026, 11, 21, 15)),
        ("PT2H/2026-11-21T15:00:00Z", START, utc(2026, 11, 21, 15)),
        ("2026-11-21T13:00:00Z", START, START),
        ("2026-11-21T13:00:00Z/PT0S", START, START),
        ("2026-11-21T13:00:00Z/2026-11-21T13:00:00Z", START, START),
        ("2026-11-21T14:00:00+01:00/PT2H", START, utc(2026, 11, 21, 15)),
        ("2026-11-21T13:00Z/2026-11-21T16:00+01:00", START, utc(2026, 11, 21, 15)),
        ("2023-08-14T11:30Z/T12:00Z", utc(2023, 8, 14, 11, 30), utc(2023, 8, 14, 12)),
        ("2023-08-14T11:30Z/12:00", utc(2023, 8, 14, 11, 30), utc(2023, 8, 14, 12)),
        (
            "2023-08-14T11:30Z/12:00:30.5",
            utc(2023, 8, 14, 11, 30),
            utc(2023, 8, 14, 12, 0, 30, 5 * 10**5),
        ),
        ("2023-08-14T11:30+02:00/12:00", utc(2023, 8, 14, 9, 30), utc(2023, 8, 14, 10)),
        ("2023-08-14T11:30Z/15T17:00", utc(2023, 8, 14, 11, 30), utc(2023, 8, 15, 17)),
        ("2023-08-14T11:30Z/08-15T17:00", utc(2023, 8, 14, 11, 30), utc(2023, 8, 15, 17)),
        ("2023-08-09/10", utc(2023, 8, 9), utc(2023, 8, 10)),
        ("2023-08-09/09-12", utc(2023, 8, 9), utc(2023, 9, 12)),
        ("2023-08-09/2023-08-10", utc(2023, 8, 9), utc(2023, 8, 10)),
        ("2023-08-09/PT2H", utc(2023, 8, 9), utc(2023, 8, 9, 2)),
        ("2023-08-09/P1D", utc(2023, 8, 9), utc(2023, 8, 10)),
        ("P1D/2023-08-10", utc(2023, 8, 9), utc(2023, 8, 10)),
        ("2023-08-09T22:00Z/24:00", utc(2023, 8, 9, 22), utc(2023, 8, 10)),
        (" 2026-11-21T13:00:00Z / PT2H ", START, utc(2026, 11, 21, 15)),
        ("2026-11-21T13:00:00Z/pt2h", START, utc(2026, 11, 21, 15)),
    ],
)
def test_parse_interval_forms(text: str, start: datetime, end: datetime) -> None:
    iv = parse_interval(text)
    assert (iv.start, iv.end) == (start, end)
    assert iv == Interval(start, end)


def test_naive_interval_is_read_in_zone_and_end_takes_start_zone() -> None:
    iv = parse_interval("2026-07-01T09:00/11:00", tz=LON)
    assert iv == Interval(utc(2026, 7, 1, 8), utc(2026, 7, 1, 10))
    iv = parse_interval("2026-07-01T09:00+02:00/2026-07-01T11:00", tz=LON)
    assert iv.end == utc(2026, 7, 1, 9)


def test_interval_over_dst_change_has_true_length() -> None:
    iv = parse_interval("2026-03-08T00:00/2026-03-09T00:00", tz=NY)
    assert iv.duration == timedelta(hours=23)
    assert str(iv) == "2026-03-08T05:00:00Z/PT23H"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-11-21T15:00Z/2026-11-21T13:00Z", "ends before it starts"),
        ("2023-08-14T12:00Z/11:00", "ends before it starts"),
        ("2026-11-21T13:00Z/-PT1H", "must not be negative"),
        ("-PT1H/2026-11-21T13:00Z", "must not be negative"),
        ("R5/2026-11-21T13:00:00Z/PT2H", "repeating"),
        ("R/2026-11-21T13:00:00Z/PT2H", "repeating"),
        ("garbage", "not an ISO-8601 interval"),
        ("", "not an ISO-8601 interval"),
        ("PT2H", "duration alone"),
        ("PT1H/PT2H", "instant on at least one side"),
        ("2026-11-21T13:00Z/", "not an ISO-8601 interval"),
        ("/PT2H", "not an ISO-8601 interval"),
        ("a/b/c", "not an ISO-8601 interval"),
        ("2026-11-21T13:00Z/P1H", "did you mean PT1H"),
        ("2026-11-21T13:00Z/tomorrow", "interval end"),
        ("2026-11-21T13:00Z/1-2", "interval end"),
        ("2026-11-21T13:00Z/99", "instant"),
        ("9999-12-31T00:00Z/P1D", "out of range"),
        ("2026-11-21T13:00Z/2026-11-21", "ends before it starts"),
    ],
)
def test_parse_interval_rejects(text: str, message: str) -> None:
    with pytest.raises(TimeFormatError, match=re.escape(message)):
        parse_interval(text)


# ---------------------------------------------------------------------------------------------
# The Interval type


def test_interval_requires_aware_and_ordered() -> None:
    with pytest.raises(ValueError, match="aware"):
        Interval(datetime(2026, 1, 1), START)
    with pytest.raises(ValueError, match="before it starts"):
        Interval(START, START - timedelta(seconds=1))


def test_interval_properties() -> None:
    iv = Interval(START, START + timedelta(hours=2))
    assert iv.duration == timedelta(hours=2)
    assert not iv.is_instant
    assert Interval(START, START).is_instant
    assert str(iv) == "2026-11-21T13:00:00Z/PT2H"
    assert str(Interval(START, START)) == "2026-11-21T13:00:00Z/PT0S"
    assert format_interval(iv) == str(iv)


def test_interval_equality_is_by_instant() -> None:
    here = Interval(START, START + timedelta(hours=1))
    there = Interval(START.astimezone(NY), (START + timedelta(hours=1)).astimezone(LON))
    assert here == there
    assert hash(here) == hash(there)
    assert len({here, there}) == 1
    assert here != "2026-11-21T13:00:00Z/PT1H"


def test_contains_is_half_open() -> None:
    iv = Interval(START, START + timedelta(hours=1))
    assert iv.contains(START)
    assert iv.contains(START + timedelta(minutes=59, seconds=59))
    assert not iv.contains(START + timedelta(hours=1))
    assert not iv.contains(START - timedelta(microseconds=1))
    assert iv.contains(START.astimezone(NY))
    assert iv.contains(datetime(2026, 11, 21, 13, 30))  # naive = UTC


def test_zero_width_contains_exactly_its_start() -> None:
    point = Interval(START, START)
    assert point.contains(START)
    assert not point.contains(START + timedelta(microseconds=1))


def test_overlaps() -> None:
    hour = timedelta(hours=1)
    a = Interval(START, START + 2 * hour)
    assert a.overlaps(Interval(START + hour, START + 3 * hour))
    assert not a.overlaps(Interval(START + 2 * hour, START + 3 * hour))  # touching
    assert not Interval(START + 2 * hour, START + 3 * hour).overlaps(a)
    assert a.overlaps(Interval(START - hour, START + 3 * hour))  # containing
    assert a.overlaps(Interval(START, START))
    assert Interval(START, START).overlaps(a)
    assert not a.overlaps(Interval(START + 2 * hour, START + 2 * hour))
    assert Interval(START, START).overlaps(Interval(START, START))
    assert not Interval(START, START).overlaps(Interval(START + hour, START + hour))


def test_shift_is_elapsed_time_and_keeps_zone() -> None:
    start = datetime(2026, 3, 7, 12, tzinfo=NY)
    iv = Interval(start, start + timedelta(hours=1))
    moved = iv.shift(timedelta(days=1))
    assert moved.start == datetime(2026, 3, 8, 13, tzinfo=NY)  # 24 h later across the change
    assert moved.start.tzinfo is NY
    assert moved.duration == iv.duration
    assert iv.shift(-timedelta(hours=1)).end == start


def test_from_start_across_dst() -> None:
    start = datetime(2026, 3, 8, 1, 30, tzinfo=NY)
    iv = Interval.from_start(start, timedelta(hours=1))
    assert (iv.end.hour, iv.end.minute) == (3, 30)
    assert iv.duration == timedelta(hours=1)
