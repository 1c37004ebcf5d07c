"""The grammar pieces behind :mod:`eb_sdk.model.phrases`: durations, clock times, days.

Kept apart from the public module so that each piece stays small. Everything here works on
text already normalised by :func:`normalise` (lower case, single spaces) and knows nothing
about "now" or zones: it turns words into minutes-after-midnight and named days, and
:mod:`~eb_sdk.model.phrases` puts those on the calendar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, timedelta


class PhraseError(ValueError):
    """A phrase could not be turned into times; the message says what works instead."""


#: Human duration forms accepted by :func:`duration_words` (used in error messages).
DURATION_EXAMPLES = ("2h", "2 hours", "90 min", "1h30m", "1.5h", "30s", "1 day", "PT2H")

#: Parts of the day as (start hour, end hour); "night" (and "tonight") runs to midnight.
PARTS_OF_DAY: dict[str, tuple[int, int]] = {
    "morning": (6, 12),
    "afternoon": (12, 18),
    "evening": (18, 22),
    "night": (18, 24),
}

DAY = 24 * 60  # minutes


def normalise(text: str) -> str:
    """Lower-case, unify dashes and am/pm spellings, and collapse white space."""
    text = text.strip().lower().replace("\u2013", "-").replace("\u2014", "-")
    text = re.sub(r"\b([ap])\.m\b\.?", r"\1m", text)  # "p.m." -> "pm"
    text = re.sub(r"(\d)\s+([ap]m)\b", r"\1\2", text)  # "4 pm" -> "4pm"
    text = re.sub(r"\btonight\b", "this night", text)
    return re.sub(r"\s+", " ", text).strip(" .")


# ---------------------------------------------------------------------------------------------
# Durations

_UNITS: tuple[tuple[str, timedelta], ...] = (
    (r"seconds?|secs?|s", timedelta(seconds=1)),
    (r"minutes?|mins?|m", timedelta(minutes=1)),
    (r"hours?|hrs?|h", timedelta(hours=1)),
    (r"days?|d", timedelta(days=1)),
    (r"weeks?|wks?|w", timedelta(weeks=1)),
)
_UNIT_RE = "|".join(f"(?P<u{i}>{pattern})" for i, (pattern, _) in enumerate(_UNITS))
# One "<amount> <unit>" term; "(?![a-z])" rather than \b so that "1h30m" splits after "h".
_TERM = re.compile(
    rf"(?:(?P<n>\d+(?:\.\d+)?|an?|one)\s*)?(?:{_UNIT_RE})(?![a-z])\s*(?:,\s*|and\s+)?"
)


def duration_words(text: str, *, bare_unit: bool = False) -> timedelta | None:
    """Read "2 hours", "90 min", "1h30m", "1.5h", "half an hour", "1 day"; None if not one.

    ``bare_unit`` lets a lone unit mean one of it, for "in the next hour".
    """
    text = re.sub(r"\bhalf an? ", "0.5 ", text.strip())
    text = re.sub(r"^(\d+)\s*h\s*(\d{1,2})$", r"\1h\2m", text)  # "1h30" -> "1h30m"
    total, pos = timedelta(0), 0
    while pos < len(text):
        match = _TERM.match(text, pos)
        if match is None or match.end() == pos:
            return None
        amount = match["n"]
        if amount is None and not (bare_unit and pos == 0 and match.end() == len(text)):
            return None
        value = float(amount) if amount and amount[0].isdigit() else 1.0
        try:
            total += value * next(u for i, (_, u) in enumerate(_UNITS) if match[f"u{i}"])
        except OverflowError:
            raise PhraseError(f"{text!r} is too long a time") from None
        pos = match.end()
    return total if pos else None


# ---------------------------------------------------------------------------------------------
# Clock times and windows on one day

_CLOCK_WORDS = {"noon": (12, 0), "midday": (12, 0), "midnight": (0, 0)}
#: A clock time as written by people: "9", "09:30", "4pm", "4:30pm", "noon".
CLOCK = r"(?:(?:[01]?\d|2[0-4])(?::[0-5]\d)?(?:am|pm)?|noon|midday|midnight)"
#: A clock time that cannot be mistaken for another number: it has ":" or am/pm or is a word.
EXPLICIT_CLOCK = (
    r"(?:(?:[01]?\d|2[0-4]):[0-5]\d(?:am|pm)?|(?:0?[1-9]|1[0-2])(?:am|pm)|noon|midday|midnight)"
)


def clock(text: str) -> tuple[int, int] | None:
    """Turn a clock time into ``(hour, minute)`` on the 24-hour clock; None if invalid.

    Bare numbers are hours on the 24-hour clock ("between 9 and 12"); ``24:00`` is the end
    of the day and comes back as ``(24, 0)``.
    """
    if text in _CLOCK_WORDS:
        return _CLOCK_WORDS[text]
    match = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?(am|pm)?", text)
    if match is None:
        return None
    hour, minute, meridiem = int(match[1]), int(match[2] or 0), match[3]
    if meridiem:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if meridiem == "pm" else 0)
    if minute > 59 or hour > 24 or (hour == 24 and minute):
        return None
    return hour, minute


@dataclass(frozen=True)
class Window:
    """A window on one day in minutes after midnight; ``end`` may pass :data:`DAY` (it then
    ends the next day); ``end is None`` is a point in time. ``pm_unsaid`` marks clock times
    written without am/pm before noon, which "this evening" moves to the afternoon clock."""

    start: int
    end: int | None
    pm_unsaid: bool = False


WHOLE_DAY = Window(0, DAY)

_C = f"({CLOCK})"
_RANGES = (
    re.compile(rf"\bbetween {_C} and {_C}(?![\w:])"),
    re.compile(rf"\bfrom {_C} ?(?:-|to|until|till) ?{_C}(?![\w:])"),
    re.compile(rf"(?<![\w:-]){_C} ?(?:-|to|until|till) ?{_C}(?![\w:])"),
)
_POINTS = (
    re.compile(rf"(?:\bat|@) ?{_C}(?![\w:])"),
    re.compile(rf"(?<![\w:-])({EXPLICIT_CLOCK})(?![\w:])"),
)
_PART = re.compile(rf"\b(?:in the )?({'|'.join(PARTS_OF_DAY)})\b")


def _minutes(text: str) -> int:
    value = clock(text)
    if value is None:
        raise PhraseError(f"{text!r} is not a clock time; write e.g. 09:30, 9am or 4:30pm")
    return value[0] * 60 + value[1]


def _unsaid(*texts: str) -> bool:
    return all(not t.endswith(("am", "pm")) and t not in _CLOCK_WORDS for t in texts)


def _range(first: str, second: str) -> Window:
    """A clock range; "9-11am" reads as 9am-11am; an end at or before the start is next day."""
    inherited = first + second[-2:]
    if not _unsaid(second) and _unsaid(first) and clock(inherited):
        first = inherited if _minutes(inherited) < _minutes(second) else first
    start, end = _minutes(first), _minutes(second)
    if end == start:
        raise PhraseError(f"the window {first}-{second} is empty")
    if end < start:
        if first.isdigit() and second.isdigit() and start <= 12 * 60:
            raise PhraseError(
                f"{first}-{second} would run overnight on the 24-hour clock; "
                f"write e.g. {int(first):02d}:00-{int(second) + 12:02d}:00 or {first}am-{second}pm"
            )
        end += DAY
    return Window(start, end, _unsaid(first, second) and start < 12 * 60)


def _cut(text: str, match: re.Match[str]) -> str:
    return f"{text[: match.start()]} {text[match.end() :]}"


def take_window(text: str) -> tuple[Window | None, str]:
    """Find the time of day in a phrase; return it and the rest of the phrase.

    A clock time or range wins over a part of the day; when both are given ("tonight at 9",
    "this evening 8-10") the part of the day only decides am/pm for times written without.
    """
    window = None
    for pattern in _RANGES:
        if match := pattern.search(text):
            window, text = _range(match[1], match[2]), _cut(text, match)
            break
    else:
        if match := _POINTS[0].search(text) or _POINTS[1].search(text):
            minutes = _minutes(match[1])
            window = Window(minutes, None, _unsaid(match[1]) and minutes < 12 * 60)
            text = _cut(text, match)
    if not (part := _PART.search(text)):
        return window, text
    text = _cut(text, part)
    first, last = PARTS_OF_DAY[part[1]]
    if window is None:
        return Window(first * 60, last * 60), text
    if window.pm_unsaid and first >= 12:
        shifted = None if window.end is None else window.end + 12 * 60
        return replace(window, start=window.start + 12 * 60, end=shifted), text
    return window, text


# ---------------------------------------------------------------------------------------------
# Days


@dataclass(frozen=True)
class Day:
    """A day named in a phrase: ``offset`` days from today (an explicit day such as "today",
    "tomorrow" or a date), or the next ``weekday`` (0 = Monday); ``after_today`` for "next"."""

    offset: int | None = None
    weekday: int | None = None
    after_today: bool = False


WEEKDAYS: dict[str, int] = {}
for _index, _names in enumerate(
    (
        "mon monday",
        "tue tues tuesday",
        "wed weds wednesday",
        "thu thur thurs thursday",
        "fri friday",
        "sat saturday",
        "sun sunday",
    )
):
    for _name in _names.split():
        WEEKDAYS[_name] = WEEKDAYS[_name + "s"] = _index  # plurals: "mondays"

_RELATIVE = {"this": 0, "today": 0, "tomorrow": 1, "day after tomorrow": 2}
_GROUPS = {
    "weekdays": range(5),
    "weekday": range(5),
    "workdays": range(5),
    "weekend": range(5, 7),
    "weekends": range(5, 7),
    "every day": range(7),
    "daily": range(7),
}
_FILLERS = re.compile(r"\b(?:on|the|in|at|during|some ?time|any ?time)\b")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def take_dates(text: str, today: date) -> tuple[list[Day] | None, str]:
    """Take the ISO dates (``2026-11-23``) out of a phrase, as explicitly named days."""
    try:
        days = [Day(offset=(date.fromisoformat(d) - today).days) for d in _DATE.findall(text)]
    except ValueError:
        return None, text
    return days, _DATE.sub(" ", text)


def days_named(text: str) -> list[Day] | None:
    """The days named in ``text`` (which has no time of day left); None if not understood.

    Understands "today", "tomorrow", "Friday", "next Tuesday", "Mon-Wed", "Fri-Mon",
    "Mon, Tue or Wed", "weekdays", "weekend"; an empty list means no day was named.
    """
    words = re.sub(r"\s+", " ", _FILLERS.sub(" ", text)).strip(" ,")
    after_today = False
    if prefix := re.match(r"(next|this|coming) (?!day)", words):
        after_today, words = prefix[1] != "this", words[prefix.end() :]
    if words in _GROUPS:
        return [Day(weekday=w, after_today=after_today) for w in _GROUPS[words]]
    days: list[Day] = []
    words = re.sub(r" ?(?:-|\bto\b|\bthrough\b|\bthru\b|\buntil\b|\btill\b) ?", "-", words)
    for item in filter(None, re.split(r" ?(?:,|/|&|\bor\b|\band\b) ?", words)):
        first, _, last = item.strip().partition("-")
        if item.strip() in _RELATIVE:
            days.append(Day(offset=_RELATIVE[item.strip()]))
        elif first in WEEKDAYS and (not last or last in WEEKDAYS):
            count = (WEEKDAYS[last] - WEEKDAYS[first]) % 7 if last else 0
            days += [Day(weekday=(WEEKDAYS[first] + i) % 7, after_today=after_today)
                     for i in range(count + 1)]  # fmt: skip
        else:
            return None
    return days
