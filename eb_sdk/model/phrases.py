"""Human phrases for *when*: "within 2 hours", "tomorrow morning", "Mon-Wed 09:00-12:00".

A notebook user asking "when can I run this?" thinks in phrases, not ISO-8601. This module
turns a phrase into the *start windows* the ExecutionBroker schema wants: a list of
:class:`~eb_sdk.model.times.Interval` in the user's zone (the wire layer writes them in UTC).

Design rules, chosen so that results are predictable (full table in docs/time-and-phrases.md):

* Wall-clock times are built with ``datetime(..., tzinfo=zone)`` from calendar dates, never
  by adding days to an aware datetime, so "tomorrow 09:00" is 09:00 even across a DST change;
  "within 2 hours" and "in 2 hours" are *elapsed* time and are computed in UTC.
* "now"/"asap" is the window ``[now, now + 1 min)``: a zero-width instant in the past by the
  time the broker sees it would be unsatisfiable, one minute lets the broker offer "now".
* A point in time said by a person ("at 16:00", "in 2 hours", "Tuesday 14:30",
  "2026-11-23 09:00") is the window ``[t, t + 15 min)``: people mean "around then", and a
  quarter of an hour gives the broker room without changing the meaning. A bare date
  ("2026-11-23") is that whole day, like "on Friday".
* A window that has begun is clipped to start at ``now``. A window that is over *rolls*
  forward when no day was named ("at 9" → tomorrow) or a weekday was named (a week later);
  if the day was named explicitly ("today", "this morning", a date) it is an error with a
  suggestion instead, because silently moving it would contradict the user.
* Unmistakable ISO-8601 (``2026-11-21T13:00:00Z``, ``.../PT2H``, ``PT2H/...``) is handed to
  :func:`~eb_sdk.model.times.parse_interval` and taken literally: a lone instant is a
  zero-width window and nothing is clipped or rolled; naive values are read in the user's
  zone. Whoever writes ISO-8601 means exactly that.
"""

from __future__ import annotations

import contextlib
import os
import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._phrase_parts import (
    DAY,
    DURATION_EXAMPLES,
    PARTS_OF_DAY,
    WHOLE_DAY,
    Day,
    PhraseError,
    Window,
    days_named,
    duration_words,
    normalise,
    take_dates,
    take_window,
)
from .times import Interval, TimeFormatError, parse_duration, parse_interval

__all__ = [
    "EXAMPLE_PHRASES",
    "NOW_WINDOW",
    "PARTS_OF_DAY",
    "POINT_WINDOW",
    "PhraseError",
    "local_zone",
    "parse_duration_phrase",
    "parse_when",
]

#: Width of the window for "now"/"asap".
NOW_WINDOW = timedelta(minutes=1)
#: Width of the window for a point in time said by a person ("at 16:00", "in 2 hours").
POINT_WINDOW = timedelta(minutes=15)

#: Phrases that work, shown in error messages and docs.
EXAMPLE_PHRASES: tuple[str, ...] = (
    "now",
    "within 2 hours",
    "in the next 30 minutes",
    "in 2 hours",
    "today",
    "this afternoon",
    "tonight",
    "tomorrow morning",
    "at 16:00",
    "at 4pm",
    "between 14:00 and 16:00",
    "on Friday",
    "next Tuesday 09:00",
    "Mon-Wed 09:00-12:00",
    "between 9 and 12 on Mon, Tue or Wed",
    "weekdays 09:00-17:00",
    "2026-11-23 09:00",
    "2026-11-21T13:00:00Z/PT2H",
)


def _not_understood(phrase: str, detail: str = "") -> PhraseError:
    detail = f" ({detail})" if detail else ""
    examples = "\n".join(f"  - {example}" for example in EXAMPLE_PHRASES)
    return PhraseError(
        f"could not understand {phrase!r} as a time{detail}. Phrases that work:\n{examples}"
    )


# ---------------------------------------------------------------------------------------------
# Zones


def local_zone() -> tzinfo:
    """The user's zone, as an IANA ``ZoneInfo`` when it can be found (so DST rules apply).

    Looks at ``$TZ``, the ``/etc/localtime`` link and ``/etc/timezone``; falls back to the
    current fixed UTC offset, which is right today but not across a DST change.
    """
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(os.readlink("/etc/localtime"))
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text().strip())
    for candidate in candidates:
        name = candidate.partition("zoneinfo/")[2] or candidate
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return datetime.now().astimezone().tzinfo or UTC


def _zone_and_now(now: datetime | None, tz: str | tzinfo | None) -> tuple[datetime, tzinfo]:
    if isinstance(tz, str):
        try:
            zone: tzinfo = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise PhraseError(
                f"unknown time zone {tz!r}; use an IANA name such as 'Europe/London'"
            ) from None
    elif tz is not None:
        zone = tz
    elif now is not None and now.tzinfo is not None and now.utcoffset() is not None:
        zone = now.tzinfo
    else:
        zone = local_zone()
    if now is None:
        return datetime.now(zone), zone
    if now.utcoffset() is None:
        now = now.replace(tzinfo=zone)
    return now.astimezone(UTC).astimezone(zone), zone


# ---------------------------------------------------------------------------------------------
# Putting windows on days


def _wall(day: date, minutes: int, zone: tzinfo) -> datetime:
    """Wall-clock ``minutes`` after midnight of ``day`` in ``zone`` (DST-safe, gap-resolved)."""
    extra, minutes = divmod(minutes, DAY)
    day += timedelta(days=extra)
    local = datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=zone)
    return local.astimezone(UTC).astimezone(zone)


def _place(
    days: list[Day], window: Window, now: datetime, zone: tzinfo, phrase: str
) -> list[Interval]:
    today = now.date()

    def span(day: date) -> Interval:
        start = _wall(day, window.start, zone)
        if window.end is None:
            return Interval.from_start(start, POINT_WINDOW)
        return Interval(start, _wall(day, window.end, zone))

    def over(day: date) -> bool:
        iv = span(day)
        return _before(iv.start, now) if window.end is None else not _before(now, iv.end)

    chosen: list[date] = []
    if not days:  # no day named: the next time this window comes round
        chosen.append(today if not over(today) else today + timedelta(days=1))
    for named in days:
        if named.weekday is not None:
            day = today + timedelta(days=(named.weekday - today.weekday()) % 7)
            if (named.after_today and day == today) or over(day):
                day += timedelta(days=7)
            chosen.append(day)
        elif not over(day := today + timedelta(days=named.offset or 0)):
            chosen.append(day)
    if not chosen:
        raise _already_over(phrase, now)
    intervals = {span(day) for day in chosen}
    clipped = {Interval(now, iv.end) if _before(iv.start, now) else iv for iv in intervals}
    return sorted(clipped, key=lambda iv: iv.start.astimezone(UTC))


def _before(a: datetime, b: datetime) -> bool:
    """``a < b`` as instants (same-zone comparison uses wall-clock fields, wrong in a fold)."""
    return a.astimezone(UTC) < b.astimezone(UTC)


def _already_over(phrase: str, now: datetime) -> PhraseError:
    suggestion = re.sub(r"\btonight\b", "tomorrow night", phrase, flags=re.IGNORECASE)
    suggestion = re.sub(r"\b(?:this|today)\b", "tomorrow", suggestion, flags=re.IGNORECASE)
    hint = f"; try {suggestion!r}" if suggestion != phrase else "; name a day that is not over"
    return PhraseError(f"{phrase!r} is already over (it is now {now:%a %Y-%m-%d %H:%M %Z}){hint}")


# ---------------------------------------------------------------------------------------------
# Public API

_NOW = re.compile(r"(?:right )?now|asap|as soon as possible|immediately|right away|straight away")
_WITHIN = re.compile(
    r"(?:(?:some ?time|any ?time) )?(?:within|in|during|over) (?:the )?(?:next|coming) (?P<a>.+)"
    r"|within (?P<b>.+)|(?:the )?next (?P<c>(?:\d|an? |one ).+)"
)
_IN = re.compile(r"in (?P<a>.+)|(?P<b>.+) from now")
# Unmistakably ISO-8601 (a duration, a repeat, a date followed by "T" or "/"): taken literally.
_ISO = re.compile(r"[+-]?P(?:\d|T\d)|R\d*/|\d{4}-\d{2}-\d{2}(?:T\d|/)", re.IGNORECASE)
# "2026-11-23 09:00" is read as a phrase (date + clock time); only if that fails, as RFC 3339.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2} \d")


def _relative(text: str, now: datetime) -> list[Interval] | None:
    """'now', 'within 2 hours', 'in 2 hours': windows measured from now in elapsed time."""
    if _NOW.fullmatch(text):
        return [Interval.from_start(now, NOW_WINDOW)]
    if (match := _WITHIN.fullmatch(text)) and (
        length := duration_words(match["a"] or match["b"] or match["c"], bare_unit=True)
    ) is not None:
        return [Interval.from_start(now, length)]
    if (match := _IN.fullmatch(text)) and (
        length := duration_words(match["a"] or match["b"])
    ) is not None:
        start = (now.astimezone(UTC) + length).astimezone(now.tzinfo)
        return [Interval.from_start(start, POINT_WINDOW)]
    return None


def parse_when(
    phrase: str, now: datetime | None = None, tz: str | tzinfo | None = None
) -> list[Interval]:
    """Turn a phrase such as "tomorrow morning" into start windows, sorted by start.

    ``tz`` (an IANA name or a tzinfo) is the user's zone; by default the zone of an aware
    ``now``, else the local zone. ``now`` defaults to the current time; a naive ``now`` is
    read in ``tz``. See :data:`EXAMPLE_PHRASES` and docs/time-and-phrases.md for the forms.
    Raises :class:`PhraseError` (a ``ValueError``) with the working forms listed.
    """
    now, zone = _zone_and_now(now, tz)
    raw = phrase.strip() if isinstance(phrase, str) else ""
    problem = ""
    if _ISO.match(raw):
        try:
            return [parse_interval(raw, zone)]
        except TimeFormatError as exc:
            problem = f"as ISO-8601: {exc}"
    text = normalise(raw)
    try:
        if result := _relative(text, now) or _calendar(text, now, zone, raw):
            return result
    except OverflowError:
        raise PhraseError(f"{phrase!r} is too far from now to be a date") from None
    if _RFC3339.match(raw):
        try:
            return [parse_interval(raw, zone)]
        except TimeFormatError as exc:
            problem = f"as ISO-8601: {exc}"
    raise _not_understood(str(phrase), problem)


def _calendar(text: str, now: datetime, zone: tzinfo, phrase: str) -> list[Interval] | None:
    """Days and times of day: "tomorrow morning", "Mon-Wed 09:00-12:00", "at 4pm"."""
    dates, text = take_dates(text, now.date())
    window, rest = take_window(text)
    days = days_named(rest)
    if dates is None or days is None or (window is None and not dates + days):
        return None
    return _place(dates + days, window or WHOLE_DAY, now, zone, phrase)


def parse_duration_phrase(text: str) -> timedelta:
    """Read a length of time: "2h", "2 hours", "90 min", "1h30m", "1.5h", "30s", "1 day", "PT2H".

    Raises :class:`PhraseError` listing the forms that work.
    """
    raw = text.strip() if isinstance(text, str) else ""
    if re.match(r"[+-]?P(?:\d|T)", raw, re.IGNORECASE):
        try:
            return parse_duration(raw)
        except TimeFormatError as exc:
            raise PhraseError(f"{exc}; forms that work: {', '.join(DURATION_EXAMPLES)}") from None
    length = duration_words(normalise(raw))
    if length is None:
        raise PhraseError(
            f"could not understand {text!r} as a duration; forms that work: "
            f"{', '.join(DURATION_EXAMPLES)}"
        )
    return length
