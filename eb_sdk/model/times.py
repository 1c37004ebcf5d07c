"""ISO-8601 instants, durations and intervals: the time layer of the wire model.

Why this exists instead of ``datetime.fromisoformat``:

* The ExecutionBroker schema carries start windows as ISO-8601 *intervals* (``start/end``,
  ``start/duration``, ``duration/end``), which the standard library cannot parse at all, and
  durations (``PT2H``), which it cannot parse either.
* Peers write instants loosely (no seconds, date only, no zone). We accept all of that, but
  every value we *write* has exactly one canonical spelling so that messages can be compared,
  hashed and diffed: instants as ``2026-11-21T13:00:00Z``, durations as the shortest
  ``PnDTnHnMnS`` form, intervals as ``start/duration``.
* Aware datetimes in the same ``ZoneInfo`` compare and subtract on *wall-clock* fields, which
  is wrong across DST changes. :class:`Interval` therefore does all arithmetic and comparison
  on UTC instants, so an interval spanning a DST change has its true elapsed length.

Fixed choices (documented in ``docs/time-and-phrases.md``):

* ``Y`` and ``M`` in durations are accepted with fixed lengths, 365 and 30 days: the wire
  values are lengths of time, not calendar steps, and a fixed length keeps parsing total and
  reversible. We never *write* them. Note that ISO's ``P30M`` is thirty months; thirty minutes
  is ``PT30M``.
* ``D`` is exactly 24 hours, for the same reason.
* More than six fractional digits are truncated to microseconds, the resolution of ``datetime``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

__all__ = [
    "Interval",
    "TimeFormatError",
    "format_duration",
    "format_instant",
    "format_interval",
    "parse_duration",
    "parse_instant",
    "parse_interval",
]


class TimeFormatError(ValueError):
    """A string is not a time value we accept; the message says what was expected.

    It subclasses :class:`ValueError` so that pydantic validators turn it into an ordinary
    validation error and callers that only know ``ValueError`` still catch it.
    """


# ---------------------------------------------------------------------------------------------
# Instants

_INSTANT_EXAMPLES = "e.g. 2026-11-21T13:00:00Z, 2026-11-21T14:00+01:00 or 2026-11-21"

_INSTANT = re.compile(
    r"""
    (?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})
    (?:
        [T\ ]
        (?P<hour>\d{2}):(?P<minute>\d{2})
        (?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?
        (?P<zone>Z|(?P<sign>[+-])(?P<oh>\d{2})(?::?(?P<om>\d{2})(?::?(?P<os>\d{2}))?)?)?
    )?
    """,
    re.VERBOSE | re.IGNORECASE,
)


def _real(dt: datetime) -> datetime:
    """Resolve a wall-clock time that falls into a DST gap to the instant it denotes.

    ``datetime(2026, 3, 8, 2, 30, tzinfo=New_York)`` does not exist; a round trip through UTC
    turns it into 03:30 EDT, the instant it is taken to mean, so that later naive-field
    comparisons in the same zone cannot disagree with UTC ones.
    """
    return dt.astimezone(UTC).astimezone(dt.tzinfo)


def _zone(match: re.Match[str], default: tzinfo) -> tzinfo:
    if not match["zone"]:
        return default
    if match["zone"].upper() == "Z":
        return UTC
    offset = timedelta(
        hours=int(match["oh"]), minutes=int(match["om"] or 0), seconds=int(match["os"] or 0)
    )
    if offset >= timedelta(hours=24) or int(match["om"] or 0) > 59:
        raise ValueError(f"time-zone offset out of range: {match['zone']!r}")
    return timezone(-offset if match["sign"] == "-" else offset)


def parse_instant(text: str, tz: tzinfo = UTC) -> datetime:
    """Parse an ISO-8601 instant into an *aware* datetime.

    Accepted: ``2026-11-21T13:00:00Z``, offsets (``+01:00``, ``+0100``, ``+01``), fractional
    seconds (``.5`` or ``,5``), no seconds (``2023-08-14T11:30Z``), a space instead of ``T``
    (RFC 3339), ``24:00`` (midnight at the end of that day) and a bare date (midnight).
    Without a zone the wall-clock time is read in ``tz``, because a value without a zone is
    only meaningful relative to whoever wrote it; the caller knows who that was.
    """
    if not isinstance(text, str):
        raise TimeFormatError(f"expected an ISO-8601 instant string, got {type(text).__name__}")
    match = _INSTANT.fullmatch(text.strip())
    if match is None:
        raise TimeFormatError(f"not an ISO-8601 instant: {text!r} ({_INSTANT_EXAMPLES})")
    fraction = match["fraction"] or ""
    try:
        zone = _zone(match, tz)
        day = date(int(match["year"]), int(match["month"]), int(match["day"]))
        hour, minute = int(match["hour"] or 0), int(match["minute"] or 0)
        second, micro = int(match["second"] or 0), int((fraction + "000000")[:6])
        if hour == 24 and minute == second == micro == 0:
            # ISO's "end of day": the midnight that starts the next day.
            day, hour = day + timedelta(days=1), 0
        dt = datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=zone)
    except (ValueError, OverflowError) as exc:
        raise TimeFormatError(f"invalid ISO-8601 instant {text!r}: {exc}") from None
    return _real(dt)


def format_instant(dt: datetime) -> str:
    """Write an instant in the canonical UTC form ``2026-11-21T13:00:00Z``.

    The fraction ``.ffffff`` appears only when there are microseconds. Naive input is taken
    as UTC, matching how naive values are read on the wire.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        dt = dt.replace(tzinfo=UTC)
    u = dt.astimezone(UTC)
    text = f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
    if u.microsecond:
        text += f".{u.microsecond:06d}"
    return text + "Z"


# ---------------------------------------------------------------------------------------------
# Durations

_DURATION_EXAMPLES = "e.g. PT2H, PT1H30M, P1DT2H, PT0.5S, P2W"

_NUM = r"\d+(?:[.,]\d+)?"
_DURATION = re.compile(
    rf"(?P<sign>[+-])?P(?:(?P<Y>{_NUM})Y)?(?:(?P<Mo>{_NUM})M)?(?:(?P<W>{_NUM})W)?"
    rf"(?:(?P<D>{_NUM})D)?(?P<T>T(?:(?P<H>{_NUM})H)?(?:(?P<Mi>{_NUM})M)?(?:(?P<S>{_NUM})S)?)?",
    re.IGNORECASE,
)
_DAY_US = 86_400_000_000
_UNIT_US = {
    "Y": 365 * _DAY_US,
    "Mo": 30 * _DAY_US,
    "W": 7 * _DAY_US,
    "D": _DAY_US,
    "H": 3_600_000_000,
    "Mi": 60_000_000,
    "S": 1_000_000,
}
# Date-part prefix of a duration, used to suggest where a forgotten "T" belongs.
_DATE_PREFIX = re.compile(rf"[+-]?P(?:{_NUM}[YMWD])*", re.IGNORECASE)


def _duration_hint(text: str) -> str:
    """Suggest a fix for the common slip ``P1H`` (hours without the ``T``)."""
    if re.fullmatch(r"[+-]?P[^T]*", text, re.IGNORECASE):
        after_p = text.upper().index("P") + 1
        head = _DATE_PREFIX.match(text)
        # "P1M30S" most likely meant PT1M30S, so try "T right after P" before "T after the days".
        for at in (after_p, head.end() if head else after_p):
            candidate = (text[:at] + "T" + text[at:]).upper()
            if _is_valid_duration(candidate):
                return f"; did you mean {candidate}? (hours, minutes and seconds go after T)"
    if re.fullmatch(r"\d+(?:\.\d+)?\s*[a-z]+", text, re.IGNORECASE):
        return f"; ISO-8601 durations start with P ({_DURATION_EXAMPLES})"
    return f" ({_DURATION_EXAMPLES})"


def _is_valid_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except TimeFormatError:
        return False
    return True


def parse_duration(text: str) -> timedelta:
    """Parse an ISO-8601 duration such as ``PT2H``, ``P1DT2H``, ``PT0.5S`` or ``P2W``.

    ``Y`` counts 365 days and ``M`` (before ``T``) 30 days; see the module notes for why.
    A leading ``-`` gives a negative duration: whether that is allowed is the caller's call.
    Only the last component may have a fraction, as ISO-8601 requires.
    """
    if not isinstance(text, str):
        raise TimeFormatError(f"expected an ISO-8601 duration string, got {type(text).__name__}")
    stripped = text.strip()
    match = _DURATION.fullmatch(stripped)
    present = [k for k in _UNIT_US if match and match[k] is not None]
    if match is None or not present or (match["T"] and not match["T"][1:]):
        raise TimeFormatError(f"not an ISO-8601 duration: {text!r}{_duration_hint(stripped)}")
    if any(("." in match[k] or "," in match[k]) for k in present[:-1]):
        raise TimeFormatError(
            f"invalid ISO-8601 duration {text!r}: only the last component may have a fraction"
        )
    try:
        total = sum(
            (Decimal(match[k].replace(",", ".")) * _UNIT_US[k] for k in present), Decimal(0)
        )
        micros = int(total.to_integral_value(rounding=ROUND_HALF_EVEN))
        result = timedelta(microseconds=micros)
    except (OverflowError, InvalidOperation):
        raise TimeFormatError(f"ISO-8601 duration too long: {text!r}") from None
    return -result if match["sign"] == "-" else result


def format_duration(td: timedelta) -> str:
    """Write a duration in its shortest canonical form: ``PT2H``, ``P1DT2H``, ``-PT1H``.

    Days are written as ``D`` (never weeks, months or years, whose lengths readers may
    interpret differently); zero is ``PT0S``; fractions of a second lose trailing zeros.
    """
    micros = td // timedelta(microseconds=1)
    sign, micros = ("-", -micros) if micros < 0 else ("", micros)
    days, micros = divmod(micros, _DAY_US)
    seconds, micros = divmod(micros, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    time = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if seconds or micros:
        time += f"{seconds}.{micros:06d}".rstrip("0").rstrip(".") + "S"
    text = "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "")
    return sign + (text if text != "P" else "PT0S")


# ---------------------------------------------------------------------------------------------
# Intervals


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _shift(dt: datetime, td: timedelta) -> datetime:
    """Add *elapsed* time to an aware datetime, keeping its zone (correct across DST)."""
    return (dt.astimezone(UTC) + td).astimezone(dt.tzinfo)


@dataclass(frozen=True)
class Interval:
    """A time interval ``[start, end)`` between two aware datetimes, ``end >= start``.

    Equality, hashing and all arithmetic use the UTC instants, so the same interval written
    in two zones compares equal and lengths are true elapsed time across DST changes. A
    zero-width interval (``start == end``) is a single instant: "start exactly then".
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise ValueError(f"interval {name} must be an aware datetime, got {value!r}")
        if _utc(self.end) < _utc(self.start):
            raise ValueError(
                f"interval ends ({format_instant(self.end)}) before it starts "
                f"({format_instant(self.start)})"
            )

    @classmethod
    def from_start(cls, start: datetime, duration: timedelta) -> Interval:
        """The interval of elapsed length ``duration`` from ``start`` (in ``start``'s zone)."""
        return cls(start, _shift(start, duration))

    @property
    def duration(self) -> timedelta:
        """The elapsed length, ``end - start`` computed in UTC."""
        return _utc(self.end) - _utc(self.start)

    @property
    def is_instant(self) -> bool:
        """True for a zero-width interval, i.e. one exact instant."""
        return self.duration == timedelta(0)

    def contains(self, dt: datetime) -> bool:
        """Whether ``dt`` is in ``[start, end)``; a zero-width interval contains its start.

        The half-open rule lets adjacent windows tile time without double-counting the seam;
        the zero-width exception keeps "start exactly at t" meaningful. Naive ``dt`` is UTC.
        """
        t, start = _utc(dt), _utc(self.start)
        if self.is_instant:
            return t == start
        return start <= t < _utc(self.end)

    def overlaps(self, other: Interval) -> bool:
        """Whether some instant is contained in both intervals (see :meth:`contains`)."""
        if self.is_instant:
            return other.contains(self.start)
        if other.is_instant:
            return self.contains(other.start)
        return _utc(self.start) < _utc(other.end) and _utc(other.start) < _utc(self.end)

    def shift(self, td: timedelta) -> Interval:
        """The same interval moved by ``td`` of elapsed time."""
        return Interval(_shift(self.start, td), _shift(self.end, td))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Interval):
            return NotImplemented
        return (_utc(self.start), _utc(self.end)) == (_utc(other.start), _utc(other.end))

    def __hash__(self) -> int:
        return hash((_utc(self.start), _utc(self.end)))

    def __str__(self) -> str:
        return format_interval(self)


_INTERVAL_EXAMPLES = (
    "e.g. 2026-11-21T13:00:00Z/PT2H, 2026-11-21T13:00Z/2026-11-21T15:00Z, "
    "PT2H/2026-11-21T15:00Z, 2023-08-14T11:30Z/12:00 or 2026-11-21T13:00:00Z"
)


def _is_duration(text: str) -> bool:
    return bool(re.match(r"[+-]?P", text, re.IGNORECASE))


def _expand_end(text: str, start: datetime) -> str:
    """Complete an abbreviated interval end from the start, as ISO-8601 allows.

    ``2023-08-14T11:30Z/12:00`` ends at 12:00 on the start's date; ``2023-08-09/10`` ends on
    the 10th of the start's month; ``2023-08-09/09-12`` on 12 September of the start's year.
    """
    if re.match(r"\d{4}-", text):
        return text
    split = re.fullmatch(r"(?P<date>[^Tt ]*)[Tt ](?P<time>.*)", text)
    if split:
        date_part, time_part = split["date"], split["time"]
    elif ":" in text:
        date_part, time_part = "", text
    else:
        date_part, time_part = text, ""
    day = re.fullmatch(r"(?:(?P<month>\d{2})-)?(?P<day>\d{2})", date_part)
    if (date_part and day is None) or not (date_part or time_part):
        raise TimeFormatError(f"expected an instant, a time or a day ({_INTERVAL_EXAMPLES})")
    month = day["month"] if day and day["month"] else f"{start.month:02d}"
    dd = day["day"] if day else f"{start.day:02d}"
    return f"{start.year:04d}-{month}-{dd}" + (f"T{time_part}" if time_part else "")


def parse_interval(text: str, tz: tzinfo = UTC) -> Interval:
    """Parse any single ISO-8601 interval into an :class:`Interval`.

    Accepted: ``start/end``, ``start/duration``, ``duration/end``, a lone instant (zero width)
    and an abbreviated end that borrows its leading parts from the start (``.../12:00``,
    ``.../T12:00Z``, ``2023-08-09/10``). An end without a zone takes the start's zone; a start
    without a zone is read in ``tz``. Repeating intervals (``R5/...``) are rejected: a start
    window is one interval.
    """
    if not isinstance(text, str):
        raise TimeFormatError(f"expected an ISO-8601 interval string, got {type(text).__name__}")
    stripped = text.strip()
    if re.match(r"R\d*/", stripped, re.IGNORECASE):
        raise TimeFormatError(f"repeating intervals are not supported: {text!r}; give one interval")
    parts = [p.strip() for p in stripped.split("/")]
    if len(parts) > 2 or not all(parts):
        raise TimeFormatError(f"not an ISO-8601 interval: {text!r} ({_INTERVAL_EXAMPLES})")
    if len(parts) == 1:
        if _is_duration(parts[0]):
            raise TimeFormatError(
                f"a duration alone is not an interval: {text!r}; "
                f"give a start too, e.g. 2026-11-21T13:00:00Z/{parts[0]}"
            )
        if not _INSTANT.fullmatch(parts[0]):
            raise TimeFormatError(f"not an ISO-8601 interval: {text!r} ({_INTERVAL_EXAMPLES})")
        start = parse_instant(parts[0], tz)
        return Interval(start, start)
    try:
        return _parse_pair(text, parts[0], parts[1], tz)
    except OverflowError:
        raise TimeFormatError(f"interval out of range: {text!r}") from None


def _parse_pair(text: str, left: str, right: str, tz: tzinfo) -> Interval:
    if _is_duration(left) and _is_duration(right):
        raise TimeFormatError(f"an interval needs an instant on at least one side: {text!r}")
    if _is_duration(left):
        length, end = parse_duration(left), parse_instant(right, tz)
        if length < timedelta(0):
            raise TimeFormatError(f"interval duration must not be negative: {text!r}")
        return Interval(_shift(end, -length), end)
    start = parse_instant(left, tz)
    if _is_duration(right):
        length = parse_duration(right)
        if length < timedelta(0):
            raise TimeFormatError(f"interval duration must not be negative: {text!r}")
        return Interval.from_start(start, length)
    try:
        end = parse_instant(_expand_end(right, start), start.tzinfo or tz)
    except TimeFormatError as exc:
        raise TimeFormatError(f"cannot read the interval end {right!r}: {exc}") from None
    if _utc(end) < _utc(start):
        raise TimeFormatError(f"interval ends before it starts: {text!r}")
    return Interval(start, end)


def format_interval(iv: Interval) -> str:
    """Write an interval canonically as ``start/duration``, e.g. ``2026-11-21T13:00:00Z/PT2H``.

    ``start/duration`` keeps the start (what schedulers key on) in UTC and states the length
    directly; a zero-width interval is ``.../PT0S``.
    """
    return f"{format_instant(iv.start)}/{format_duration(iv.duration)}"
