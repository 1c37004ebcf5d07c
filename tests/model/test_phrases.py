"""Tests for eb_sdk.model.phrases: human phrases for *when* and for *how long*."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eb_sdk.model.phrases import (
    EXAMPLE_PHRASES,
    NOW_WINDOW,
    POINT_WINDOW,
    PhraseError,
    local_zone,
    parse_duration_phrase,
    parse_when,
)
from eb_sdk.model.times import Interval

LON = ZoneInfo("Europe/London")
NY = ZoneInfo("America/New_York")

#: Wednesday 18 November 2026, 10:17 in London (GMT, UTC+0).
NOW = datetime(2026, 11, 18, 10, 17, tzinfo=LON)


def L(day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A London wall-clock time in November 2026 (day 31 spills into December)."""
    if day > 30:
        return datetime(2026, 12, day - 30, hour, minute, tzinfo=LON)
    return datetime(2026, 11, day, hour, minute, tzinfo=LON)


def iv(start: datetime, end: datetime) -> Interval:
    return Interval(start, end)


def days(*spans: tuple[int, int, int]) -> list[Interval]:
    """Windows (day, start hour, end hour) in London."""
    return [iv(L(day, h1), L(day, h2)) for day, h1, h2 in spans]


MON_TO_WED_9_12 = [iv(NOW, L(18, 12)), *days((23, 9, 12), (24, 9, 12))]

LONDON_CASES: list[tuple[str, list[Interval]]] = [
    # now
    ("now", [iv(NOW, L(18, 10, 18))]),
    ("asap", [iv(NOW, L(18, 10, 18))]),
    ("ASAP", [iv(NOW, L(18, 10, 18))]),
    ("immediately", [iv(NOW, L(18, 10, 18))]),
    ("as soon as possible", [iv(NOW, L(18, 10, 18))]),
    # within / in the next: [now, now + N)
    ("within 10 min", [iv(NOW, L(18, 10, 27))]),
    ("within 2 hours", [iv(NOW, L(18, 12, 17))]),
    ("  Within   2   HRS ", [iv(NOW, L(18, 12, 17))]),
    ("within 90 mins", [iv(NOW, L(18, 11, 47))]),
    ("within 3 d", [iv(NOW, L(21, 10, 17))]),
    ("within a day", [iv(NOW, L(19, 10, 17))]),
    ("in the next 30 minutes", [iv(NOW, L(18, 10, 47))]),
    ("in the next hour", [iv(NOW, L(18, 11, 17))]),
    ("in the next 3 days", [iv(NOW, L(21, 10, 17))]),
    ("sometime in the next 24 hours", [iv(NOW, L(19, 10, 17))]),
    ("next 3 hours", [iv(NOW, L(18, 13, 17))]),
    # in N: [now + N, now + N + 15 min)
    ("in 2 hours", [iv(L(18, 12, 17), L(18, 12, 32))]),
    ("in 10 minutes", [iv(L(18, 10, 27), L(18, 10, 42))]),
    ("in 10m", [iv(L(18, 10, 27), L(18, 10, 42))]),
    ("in 1h30m", [iv(L(18, 11, 47), L(18, 12, 2))]),
    ("in half an hour", [iv(L(18, 10, 47), L(18, 11, 2))]),
    ("2 hours from now", [iv(L(18, 12, 17), L(18, 12, 32))]),
    # parts of today (clipped to now when begun)
    ("this morning", [iv(NOW, L(18, 12))]),
    ("this afternoon", [iv(L(18, 12), L(18, 18))]),
    ("this evening", [iv(L(18, 18), L(18, 22))]),
    ("tonight", [iv(L(18, 18), L(19))]),
    ("today", [iv(NOW, L(19))]),
    ("in the morning", [iv(NOW, L(18, 12))]),
    # tomorrow
    ("tomorrow", [iv(L(19), L(20))]),
    ("tomorrow morning", [iv(L(19, 6), L(19, 12))]),
    ("tomorrow afternoon", [iv(L(19, 12), L(19, 18))]),
    ("Tomorrow Evening", [iv(L(19, 18), L(19, 22))]),
    ("tomorrow night", [iv(L(19, 18), L(20))]),
    ("tomorrow in the afternoon", [iv(L(19, 12), L(19, 18))]),
    ("day after tomorrow", [iv(L(20), L(21))]),
    # clock times: [t, t + 15 min), today if still ahead, else tomorrow
    ("at 16:00", [iv(L(18, 16), L(18, 16, 15))]),
    ("at 4pm", [iv(L(18, 16), L(18, 16, 15))]),
    ("at 4 p.m.", [iv(L(18, 16), L(18, 16, 15))]),
    ("4pm", [iv(L(18, 16), L(18, 16, 15))]),
    ("at 10:00", [iv(L(19, 10), L(19, 10, 15))]),
    ("at noon", [iv(L(18, 12), L(18, 12, 15))]),
    ("at midnight", [iv(L(19), L(19, 0, 15))]),
    ("tonight at 9", [iv(L(18, 21), L(18, 21, 15))]),
    ("tomorrow morning at 9", [iv(L(19, 9), L(19, 9, 15))]),
    ("tomorrow at 9", [iv(L(19, 9), L(19, 9, 15))]),
    # clock ranges
    ("between 14:00 and 16:00", [iv(L(18, 14), L(18, 16))]),
    ("between 9 and 10", [iv(L(19, 9), L(19, 10))]),  # over today: tomorrow
    ("from 9 to 11am", [iv(NOW, L(18, 11))]),
    ("9-11am", [iv(NOW, L(18, 11))]),
    ("noon to 2pm", [iv(L(18, 12), L(18, 14))]),
    ("10pm-2am", [iv(L(18, 22), L(19, 2))]),
    ("this evening 8-10", [iv(L(18, 20), L(18, 22))]),
    ("today 14:00-16:00", [iv(L(18, 14), L(18, 16))]),
    # weekdays
    ("next Tuesday 09:00", [iv(L(24, 9), L(24, 9, 15))]),
    ("Tuesday 14:30", [iv(L(24, 14, 30), L(24, 14, 45))]),
    ("on Friday", [iv(L(20), L(21))]),
    ("friday afternoon", [iv(L(20, 12), L(20, 18))]),
    ("this friday", [iv(L(20), L(21))]),
    ("on Friday at 10:00", [iv(L(20, 10), L(20, 10, 15))]),
    ("wednesday", [iv(NOW, L(19))]),  # today is Wednesday
    ("next wednesday", [iv(L(25), L(26))]),
    ("wednesday 10:00", [iv(L(25, 10), L(25, 10, 15))]),  # 10:00 today is over
    ("wednesday 11:00", [iv(L(18, 11), L(18, 11, 15))]),
    # several days: one window per day, next occurrence of each, sorted
    ("Mon-Wed 09:00-12:00", MON_TO_WED_9_12),
    ("Mon - Wed 9am\u201312pm", MON_TO_WED_9_12),
    ("Mon, Tue or Wed 09:00-12:00", MON_TO_WED_9_12),
    ("between 9 and 12 on Mon, Tue or Wed", MON_TO_WED_9_12),
    ("monday to wednesday from 9 to 12", MON_TO_WED_9_12),
    ("mon/tue 10:00", [iv(L(23, 10), L(23, 10, 15)), iv(L(24, 10), L(24, 10, 15))]),
    (
        "weekdays 09:00-17:00",
        [iv(NOW, L(18, 17)), *days((19, 9, 17), (20, 9, 17), (23, 9, 17), (24, 9, 17))],
    ),
    ("fri-mon 10:00-11:00", days((20, 10, 11), (21, 10, 11), (22, 10, 11), (23, 10, 11))),
    ("weekend", [iv(L(21), L(22)), iv(L(22), L(23))]),
    ("today or tomorrow 9-12", [iv(NOW, L(18, 12)), iv(L(19, 9), L(19, 12))]),
    ("Mon-Wed", [iv(NOW, L(19)), iv(L(23), L(24)), iv(L(24), L(25))]),
    # dates and ISO-8601
    ("2026-11-23", [iv(L(23), L(24))]),
    ("2026-11-23 09:00", [iv(L(23, 9), L(23, 9, 15))]),
    ("2026-11-23 09:00-12:00", [iv(L(23, 9), L(23, 12))]),
    ("on 2026-11-23 at 9", [iv(L(23, 9), L(23, 9, 15))]),
    ("2026-11-21T13:00:00Z/PT2H", [iv(L(21, 13), L(21, 15))]),
    ("2026-11-21T13:00:00Z", [iv(L(21, 13), L(21, 13))]),
    ("2026-11-23T09:00", [iv(L(23, 9), L(23, 9))]),  # naive ISO: the user's zone
    ("2026-11-23 09:00+01:00", [iv(L(23, 8), L(23, 8))]),
    ("2026-11-23 09:00/PT2H", [iv(L(23, 9), L(23, 11))]),
    ("2026-11-23/25", [iv(L(23), L(25))]),
    ("PT2H/2026-11-21T15:00Z", [iv(L(21, 13), L(21, 15))]),
]


@pytest.mark.parametrize(("phrase", "expected"), LONDON_CASES, ids=[c[0] for c in LONDON_CASES])
def test_phrases_in_london(phrase: str, expected: list[Interval]) -> None:
    assert parse_when(phrase, now=NOW) == expected


def test_at_least_forty_phrases() -> None:
    assert len(LONDON_CASES) >= 40


def test_results_are_in_the_users_zone() -> None:
    for phrase in ("tomorrow morning", "within 2 hours", "Mon-Wed 09:00-12:00", "at 4pm"):
        for window in parse_when(phrase, now=NOW):
            assert window.start.tzinfo is LON
            assert window.end.tzinfo is LON


# ---------------------------------------------------------------------------------------------
# New York, including both DST changes of 2026 (8 March and 1 November)


def N(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=NY)


def Z(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


SAT_EVENING = N(3, 7, 20)  # the evening before clocks go forward
SUN_EARLY = N(3, 8, 1, 30)  # half an hour before they do
FALL_BACK = N(11, 1, 0, 30)  # an hour and a half before they go back

NEW_YORK_CASES: list[tuple[str, datetime, list[Interval]]] = [
    ("tomorrow", SAT_EVENING, [iv(N(3, 8), N(3, 9))]),
    ("sunday", SAT_EVENING, [iv(N(3, 8), N(3, 9))]),
    ("today", SAT_EVENING, [iv(SAT_EVENING, N(3, 8))]),
    ("tomorrow 09:00", SAT_EVENING, [iv(N(3, 8, 9), N(3, 8, 9, 15))]),
    ("within 8 hours", SAT_EVENING, [iv(SAT_EVENING, Z(3, 8, 9))]),
    ("at 02:30", SAT_EVENING, [iv(Z(3, 8, 7, 30), Z(3, 8, 7, 45))]),  # 02:30 does not exist
    ("weekdays 9am-5pm", SAT_EVENING, [iv(N(3, d, 9), N(3, d, 17)) for d in range(9, 14)]),
    ("in 2 hours", SUN_EARLY, [iv(Z(3, 8, 8, 30), Z(3, 8, 8, 45))]),  # 04:30 EDT
    ("this morning", SUN_EARLY, [iv(N(3, 8, 6), N(3, 8, 12))]),
    ("today", SUN_EARLY, [iv(SUN_EARLY, N(3, 9))]),
    ("tonight", SUN_EARLY, [iv(N(3, 8, 18), N(3, 9))]),
    ("at 1:30", FALL_BACK, [iv(Z(11, 1, 5, 30), Z(11, 1, 5, 45))]),  # the first 01:30 (EDT)
    ("within 2 hours", FALL_BACK, [iv(FALL_BACK, Z(11, 1, 6, 30))]),  # ends 01:30 EST
    ("tomorrow", FALL_BACK, [iv(N(11, 2), N(11, 3))]),
    ("this evening", FALL_BACK, [iv(N(11, 1, 18), N(11, 1, 22))]),
]


@pytest.mark.parametrize(
    ("phrase", "now", "expected"), NEW_YORK_CASES, ids=[f"{c[0]}@{c[1]}" for c in NEW_YORK_CASES]
)
def test_phrases_in_new_york(phrase: str, now: datetime, expected: list[Interval]) -> None:
    assert parse_when(phrase, now=now) == expected


def test_dst_days_have_their_true_length() -> None:
    (spring,) = parse_when("tomorrow", now=SAT_EVENING)
    assert spring.duration == timedelta(hours=23)
    (autumn,) = parse_when("today", now=N(11, 1))
    assert autumn.duration == timedelta(hours=25)
    (morning,) = parse_when("tomorrow 09:00", now=SAT_EVENING)
    assert (morning.start.hour, morning.start.minute) == (9, 0)  # wall clock, not +24 h


# ---------------------------------------------------------------------------------------------
# Zone and now handling


def test_zone_can_be_named_and_now_can_be_naive() -> None:
    naive = datetime(2026, 11, 18, 10, 17)
    assert parse_when("tomorrow", now=naive, tz="Europe/London") == [iv(L(19), L(20))]
    assert parse_when("tomorrow", now=naive, tz=NY) == [iv(N(11, 19), N(11, 20))]


def test_tz_overrides_the_zone_of_now() -> None:
    # 10:17 in London is 05:17 in New York, where the morning (06:00-12:00) has not begun.
    assert parse_when("this morning", now=NOW, tz="America/New_York") == [
        iv(N(11, 18, 6), N(11, 18, 12))
    ]


def test_aware_utc_now_uses_utc() -> None:
    now = datetime(2026, 11, 18, 10, 17, tzinfo=UTC)
    (window,) = parse_when("tomorrow", now=now)
    assert window == iv(Z(11, 19), Z(11, 20))


def test_default_now_is_current_time() -> None:
    before = datetime.now(UTC)
    (window,) = parse_when("now", tz="UTC")
    after = datetime.now(UTC)
    assert before <= window.start <= after
    assert window.duration == NOW_WINDOW


def test_default_zone_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    zone = local_zone()
    assert isinstance(zone, ZoneInfo)
    assert zone.key == "America/New_York"
    (window,) = parse_when("tomorrow", now=datetime(2026, 11, 18, 10, 17))
    assert window == iv(N(11, 19), N(11, 20))


def test_local_zone_always_gives_a_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Not/A_Zone")
    assert isinstance(local_zone(), tzinfo)


def test_unknown_zone() -> None:
    with pytest.raises(PhraseError, match="unknown time zone 'Mars/Olympus'"):
        parse_when("now", tz="Mars/Olympus")


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "phrase",
    ["", "   ", "blah", "whenever the cluster is free", "next week", "at 25:00", "PT2H", "Mon-Zed"],
)
def test_unknown_phrases_list_the_forms_that_work(phrase: str) -> None:
    with pytest.raises(PhraseError) as caught:
        parse_when(phrase, now=NOW)
    message = str(caught.value)
    assert "could not understand" in message
    assert "Phrases that work" in message
    for example in EXAMPLE_PHRASES:
        assert f"- {example}" in message


def test_lone_iso_duration_explains_itself() -> None:
    with pytest.raises(PhraseError, match="a duration alone is not an interval"):
        parse_when("PT2H", now=NOW)


@pytest.mark.parametrize(
    ("phrase", "now", "hint"),
    [
        ("this morning", L(18, 15), "try 'tomorrow morning'"),
        ("today at 9", NOW, "try 'tomorrow at 9'"),
        ("today 09:00-10:00", NOW, "try 'tomorrow 09:00-10:00'"),
        ("this afternoon", L(18, 19), "try 'tomorrow afternoon'"),
        ("this evening", L(18, 22, 30), "try 'tomorrow evening'"),
        ("2026-11-01", NOW, "name a day that is not over"),
    ],
)
def test_windows_already_over(phrase: str, now: datetime, hint: str) -> None:
    with pytest.raises(PhraseError, match="already over") as caught:
        parse_when(phrase, now=now)
    assert hint in str(caught.value)


def test_begun_window_is_clipped_to_now() -> None:
    assert parse_when("this afternoon", now=L(18, 13)) == [iv(L(18, 13), L(18, 18))]


@pytest.mark.parametrize(
    ("phrase", "message"),
    [
        ("between 9 and 5", "09:00-17:00 or 9am-5pm"),
        ("9-9", "is empty"),
        ("at 13pm", "'13pm' is not a clock time"),
    ],
)
def test_clock_mistakes(phrase: str, message: str) -> None:
    with pytest.raises(PhraseError, match=re.escape(message)):
        parse_when(phrase, now=NOW)


def test_phrase_error_is_value_error() -> None:
    assert issubclass(PhraseError, ValueError)


# ---------------------------------------------------------------------------------------------
# Properties over many "now"s


PLAIN_EXAMPLES = [p for p in EXAMPLE_PHRASES if not re.match(r"\d{4}-", p)]


@given(
    now=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31)),
    zone=st.sampled_from([LON, NY, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("Asia/Kolkata")]),
    phrase=st.sampled_from(PLAIN_EXAMPLES),
)
def test_examples_give_sorted_future_windows(now: datetime, zone: ZoneInfo, phrase: str) -> None:
    try:
        windows = parse_when(phrase, now=now, tz=zone)
    except PhraseError as exc:  # only "this/today" phrases may be over
        assert "already over" in str(exc)
        return
    assert windows
    instant = now.replace(tzinfo=zone).astimezone(UTC)
    starts = [w.start.astimezone(UTC) for w in windows]
    assert starts == sorted(starts)
    for window in windows:
        assert window.start.astimezone(UTC) >= instant
        assert window.end.astimezone(UTC) > instant
        assert window.end.astimezone(UTC) - instant <= timedelta(days=8)


@given(st.integers(min_value=1, max_value=10_000), st.sampled_from(["min", "minutes", "m"]))
def test_within_minutes_is_elapsed(count: int, unit: str) -> None:
    assert parse_when(f"within {count} {unit}", now=NOW) == [
        Interval.from_start(NOW, timedelta(minutes=count))
    ]
    (point,) = parse_when(f"in {count}{unit}", now=NOW)
    start = NOW.astimezone(UTC) + timedelta(minutes=count)
    assert point == Interval.from_start(start, POINT_WINDOW)


PHRASE_PIECES = (
    st.sampled_from(["now", "in", "within", "the", "next", "at", "between", "and", "on", "from"])
    | st.sampled_from(["9", "12", "09:00", "-", "/", ",", "or", "to", "pm", "24:00", "1h", "an"])
    | st.sampled_from(["mon", "wed", "weekdays", "tomorrow", "today", "this", "morning", "tonight"])
    | st.sampled_from(["2026-11-23", "9999-12-31", "T", "Z", "PT2H", "R5", "hour", "half"])
    | st.just("99999999999weeks")
)


@given(st.text(max_size=40) | st.lists(PHRASE_PIECES, max_size=8).map(" ".join))
def test_parsers_only_ever_raise_phrase_error(text: str) -> None:
    for parse in (lambda t: parse_when(t, now=NOW), parse_duration_phrase):
        with contextlib.suppress(PhraseError):
            parse(text)


@pytest.mark.parametrize(
    ("phrase", "message"),
    [("in 9999999 weeks", "too far from now"), ("within 99999999999 weeks", "too long")],
)
def test_absurd_lengths(phrase: str, message: str) -> None:
    with pytest.raises(PhraseError, match=message):
        parse_when(phrase, now=NOW)


def test_zero_lengths() -> None:
    assert parse_when("within 0 min", now=NOW) == [iv(NOW, NOW)]
    assert parse_when("in 0 min", now=NOW) == [iv(NOW, L(18, 10, 32))]
    assert parse_duration_phrase("0s") == timedelta(0)


# ---------------------------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", timedelta(hours=2)),
        ("2 hours", timedelta(hours=2)),
        ("2 HRS", timedelta(hours=2)),
        ("90 min", timedelta(minutes=90)),
        ("90 mins", timedelta(minutes=90)),
        ("1h30m", timedelta(minutes=90)),
        ("1h 30m", timedelta(minutes=90)),
        ("1h30", timedelta(minutes=90)),
        ("1 hour and 30 minutes", timedelta(minutes=90)),
        ("2 hrs, 15 mins", timedelta(hours=2, minutes=15)),
        ("1.5h", timedelta(minutes=90)),
        ("30s", timedelta(seconds=30)),
        ("45 seconds", timedelta(seconds=45)),
        ("1 day", timedelta(days=1)),
        ("3d", timedelta(days=3)),
        ("2 weeks", timedelta(weeks=2)),
        ("an hour", timedelta(hours=1)),
        ("half an hour", timedelta(minutes=30)),
        ("PT2H", timedelta(hours=2)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("pt90m", timedelta(minutes=90)),
    ],
)
def test_parse_duration_phrase(text: str, expected: timedelta) -> None:
    assert parse_duration_phrase(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "2 parsecs", "h", "-2h", "2", "1 month", "two hours"])
def test_parse_duration_phrase_rejects(text: str) -> None:
    with pytest.raises(PhraseError, match="forms that work: 2h, 2 hours, 90 min, 1h30m"):
        parse_duration_phrase(text)


def test_parse_duration_phrase_keeps_iso_hint() -> None:
    with pytest.raises(PhraseError, match=r"did you mean PT1H\?.*forms that work"):
        parse_duration_phrase("P1H")
