"""Plain value types for the offer math: resource vectors, demands and time-varying capacity.

Everything here is a frozen (hashable) dataclass with no I/O and no wire-model imports, so the
scheduler can be tested and benchmarked in isolation and the broker can translate to and from
the wire model at its edges.

Dimensions
    A :class:`Resources` value is a vector over named dimensions: ``cores``, ``memory_gib``,
    ``storage_gib`` and one dimension per accelerator pool (``"gpu:A100"``, ``"fpga:U280"``).
    A dimension that is not mentioned is zero. Values are plain ints and may be negative:
    "free = capacity - usage" is negative when a platform is overbooked, and callers need to
    see that rather than a silently clamped zero.

Times
    All instants must be timezone-aware (naive datetimes are ambiguous across sites); spans are
    half-open ``[start, end)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "CORE_DIMENSIONS",
    "AcceleratorCounts",
    "Capacity",
    "CapacityPeriod",
    "Demand",
    "Resources",
    "TimeSpan",
    "Window",
    "describe_dimension",
    "format_duration",
]

#: The fixed (non-accelerator) dimensions, in the order used everywhere.
CORE_DIMENSIONS: tuple[str, ...] = ("cores", "memory_gib", "storage_gib")


def _require_aware(value: datetime, what: str) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")


def _utc(value: datetime) -> datetime:
    """Compare instants in UTC: two datetimes in the same ``ZoneInfo`` compare on wall-clock
    fields, which is wrong around DST changes."""
    return value.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# Accelerator counts


class AcceleratorCounts(Mapping[str, int]):
    """An immutable, hashable ``{pool name: count}`` mapping with zero counts dropped.

    Normalising (sorted keys, no zeros) makes equal resource vectors compare and hash equal no
    matter how they were built, e.g. ``{"gpu": 0}`` equals ``{}``.
    """

    __slots__ = ("_items", "_map")

    def __init__(self, counts: Mapping[str, int] | Iterable[tuple[str, int]] = ()) -> None:
        pairs = counts.items() if isinstance(counts, Mapping) else counts
        merged: dict[str, int] = {}
        for name, count in pairs:
            if not isinstance(name, str) or not name:
                raise ValueError(f"accelerator pool names must be non-empty strings: {name!r}")
            if name in CORE_DIMENSIONS:
                raise ValueError(f"{name!r} is a core dimension, not an accelerator pool")
            merged[name] = merged.get(name, 0) + _as_int(count, name)
        self._items: tuple[tuple[str, int], ...] = tuple(
            sorted((k, v) for k, v in merged.items() if v != 0)
        )
        self._map: dict[str, int] = dict(self._items)

    def __getitem__(self, key: str) -> int:
        return self._map[key]

    def get_count(self, key: str) -> int:
        """The count for ``key``, zero when absent (absent pools have nothing)."""
        return self._map.get(key, 0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AcceleratorCounts):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._map == {k: v for k, v in other.items() if v != 0}
        return NotImplemented

    def __repr__(self) -> str:
        return f"AcceleratorCounts({self._map!r})"


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Resources


@dataclass(frozen=True)
class Resources:
    """An amount of resources: a vector over cores, memory, storage and accelerator pools.

    Used for demands, capacity, usage and free amounts alike, which is why values may be
    negative (free capacity of an overbooked platform). ``accelerators`` accepts any mapping
    (or ``(name, count)`` pairs) and is normalised to an :class:`AcceleratorCounts` so the
    value stays hashable.
    """

    cores: int = 0
    memory_gib: int = 0
    accelerators: Mapping[str, int] = field(default_factory=AcceleratorCounts)
    storage_gib: int = 0

    def __post_init__(self) -> None:
        for name in CORE_DIMENSIONS:
            _as_int(getattr(self, name), name)
        if not isinstance(self.accelerators, AcceleratorCounts):
            object.__setattr__(self, "accelerators", AcceleratorCounts(self.accelerators))

    # -- construction and access -------------------------------------------------------------

    @classmethod
    def from_dimensions(cls, values: Mapping[str, int] | Iterable[tuple[str, int]]) -> Resources:
        """Build from ``{dimension: amount}``; unknown names are accelerator pools."""
        pairs = values.items() if isinstance(values, Mapping) else values
        core: dict[str, int] = dict.fromkeys(CORE_DIMENSIONS, 0)
        accel: dict[str, int] = {}
        for name, amount in pairs:
            if name in core:
                core[name] += amount
            else:
                accel[name] = accel.get(name, 0) + amount
        return cls(
            cores=core["cores"],
            memory_gib=core["memory_gib"],
            storage_gib=core["storage_gib"],
            accelerators=accel,
        )

    def get(self, dimension: str) -> int:
        """The amount in one dimension (zero for accelerator pools not mentioned)."""
        if dimension in CORE_DIMENSIONS:
            value: int = getattr(self, dimension)
            return value
        return self._accel.get_count(dimension)

    @property
    def _accel(self) -> AcceleratorCounts:
        accel = self.accelerators
        assert isinstance(accel, AcceleratorCounts)
        return accel

    def dimensions(self) -> tuple[str, ...]:
        """Names of the dimensions with a non-zero amount, core dimensions first."""
        names = [n for n in CORE_DIMENSIONS if getattr(self, n)]
        names.extend(self._accel)
        return tuple(names)

    def items(self) -> Iterator[tuple[str, int]]:
        """``(dimension, amount)`` for every non-zero dimension."""
        for name in self.dimensions():
            yield name, self.get(name)

    # -- arithmetic ---------------------------------------------------------------------------

    def _combine(self, other: Resources, op: Any) -> Resources:
        names = set(self._accel) | set(other._accel)
        return Resources(
            cores=op(self.cores, other.cores),
            memory_gib=op(self.memory_gib, other.memory_gib),
            storage_gib=op(self.storage_gib, other.storage_gib),
            accelerators={n: op(self.get(n), other.get(n)) for n in names},
        )

    def __add__(self, other: Resources) -> Resources:
        if not isinstance(other, Resources):
            return NotImplemented
        return self._combine(other, int.__add__)

    def __sub__(self, other: Resources) -> Resources:
        if not isinstance(other, Resources):
            return NotImplemented
        return self._combine(other, int.__sub__)

    def __neg__(self) -> Resources:
        return Resources() - self

    def componentwise_min(self, other: Resources) -> Resources:
        """Per-dimension minimum (absent accelerator pools count as zero)."""
        return self._combine(other, min)

    def componentwise_max(self, other: Resources) -> Resources:
        """Per-dimension maximum (absent accelerator pools count as zero)."""
        return self._combine(other, max)

    def clamped(self, low: Resources, high: Resources) -> Resources:
        """Each dimension clamped into ``[low, high]`` (``high`` wins if they cross)."""
        return self.componentwise_max(low).componentwise_min(high)

    def fits_in(self, other: Resources) -> bool:
        """True when every dimension of ``self`` is ≤ the same dimension of ``other``."""
        return not self.exceeded_dimensions(other)

    def exceeded_dimensions(self, other: Resources) -> list[str]:
        """Names of the dimensions where ``self`` > ``other`` (for error messages)."""
        out = [n for n in CORE_DIMENSIONS if getattr(self, n) > getattr(other, n)]
        for name in sorted(set(self._accel) | set(other._accel)):
            if self.get(name) > other.get(name):
                out.append(name)
        return out

    def is_zero(self) -> bool:
        """True when every dimension is zero."""
        return not (self.cores or self.memory_gib or self.storage_gib or self.accelerators)

    def is_nonnegative(self) -> bool:
        """True when no dimension is negative."""
        return all(v >= 0 for _, v in self.items())

    def describe(self) -> str:
        """Human text such as ``"2 cores, 4 GiB, 1 gpu:A100"`` (``"nothing"`` when zero)."""
        parts = []
        if self.cores:
            parts.append(describe_dimension("cores", self.cores))
        if self.memory_gib:
            parts.append(f"{self.memory_gib} GiB")
        if self.storage_gib:
            parts.append(describe_dimension("storage_gib", self.storage_gib))
        parts.extend(describe_dimension(n, c) for n, c in self._accel.items())
        return ", ".join(parts) if parts else "nothing"

    def __str__(self) -> str:
        return self.describe()


def describe_dimension(name: str, amount: int) -> str:
    """One dimension as text, e.g. ``"8 cores"``, ``"64 GiB memory"``, ``"2 gpu:A100"``."""
    if name == "cores":
        return f"{amount} core" if amount == 1 else f"{amount} cores"
    if name == "memory_gib":
        return f"{amount} GiB memory"
    if name == "storage_gib":
        return f"{amount} GiB storage"
    return f"{amount} {name}"


def format_duration(value: timedelta) -> str:
    """Short human duration: ``"2 h"``, ``"1 h 30 min"``, ``"3 days"``, ``"45 s"``."""
    total = int(value.total_seconds())
    if total <= 0:
        return "0 s"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days} day" if days == 1 else f"{days} days")
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if seconds:
        parts.append(f"{seconds} s")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# Windows and demands


@runtime_checkable
class TimeSpan(Protocol):
    """Anything with aware ``start`` and ``end`` datetimes (our :class:`Window`, or the wire
    model's ``Interval``), so callers need not convert before asking for offers."""

    @property
    def start(self) -> datetime: ...

    @property
    def end(self) -> datetime: ...


@dataclass(frozen=True)
class Window:
    """A half-open span ``[start, end)`` of aware datetimes.

    As a requested start window, a zero-width window (``start == end``) means "start exactly
    then".
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _require_aware(self.start, "window start")
        _require_aware(self.end, "window end")
        if _utc(self.end) < _utc(self.start):
            raise ValueError(f"window ends before it starts: {self.start} > {self.end}")

    @classmethod
    def of(cls, span: TimeSpan) -> Window:
        """Convert anything with ``.start``/``.end`` (returns ``span`` if already a Window)."""
        return span if isinstance(span, Window) else cls(span.start, span.end)

    @property
    def is_instant(self) -> bool:
        """True for a zero-width window: "start exactly at ``start``"."""
        return _utc(self.start) == _utc(self.end)

    def __contains__(self, when: object) -> bool:
        if not isinstance(when, datetime):
            return False
        t, start = _utc(when), _utc(self.start)
        return t == start if self.is_instant else start <= t < _utc(self.end)


@dataclass(frozen=True)
class Demand:
    """What a request asks for.

    ``minimum``/``maximum`` bound the resources per dimension (an offer gives as much as is free
    up to the maximum); ``duration`` is how long the session runs; ``windows`` are the requested
    *start* windows (empty: "as soon as possible"); ``preparation`` is how long the platform
    needs before the start (image pull, data staging), so no offer starts before
    ``now + preparation``.
    """

    minimum: Resources
    maximum: Resources
    duration: timedelta
    windows: tuple[TimeSpan, ...] = ()
    preparation: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if not self.minimum.is_nonnegative():
            raise ValueError(f"the minimum must not be negative: {self.minimum!r}")
        exceeded = self.minimum.exceeded_dimensions(self.maximum)
        if exceeded:
            raise ValueError(
                "the maximum must be at least the minimum in every dimension; "
                f"it is smaller in: {', '.join(exceeded)}"
            )
        if self.duration <= timedelta(0):
            raise ValueError(f"the duration must be positive, got {self.duration}")
        if self.preparation < timedelta(0):
            raise ValueError(f"the preparation time must not be negative: {self.preparation}")
        object.__setattr__(self, "windows", tuple(Window.of(w) for w in self.windows))

    @classmethod
    def exactly(
        cls,
        resources: Resources,
        duration: timedelta,
        windows: Iterable[TimeSpan] = (),
        preparation: timedelta = timedelta(0),
    ) -> Demand:
        """A demand whose minimum and maximum are the same."""
        return cls(resources, resources, duration, tuple(windows), preparation)


# ---------------------------------------------------------------------------------------------
# Capacity


@dataclass(frozen=True)
class CapacityPeriod:
    """Capacity that replaces the base capacity within ``[start, end)``.

    ``None`` means unbounded on that side. Examples: a maintenance window (zero cores), a
    pledged share that shrinks for a campaign, or extra nodes for a week.
    """

    start: datetime | None
    end: datetime | None
    resources: Resources

    def __post_init__(self) -> None:
        if self.start is not None:
            _require_aware(self.start, "capacity period start")
        if self.end is not None:
            _require_aware(self.end, "capacity period end")
        if self.start is not None and self.end is not None and _utc(self.end) <= _utc(self.start):
            raise ValueError(f"capacity period is empty: {self.start} >= {self.end}")

    def covers(self, when: datetime) -> bool:
        """True when ``when`` lies in ``[start, end)``."""
        t = _utc(when)
        return (self.start is None or _utc(self.start) <= t) and (
            self.end is None or t < _utc(self.end)
        )

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """True when the period intersects the half-open span ``[start, end)``."""
        return (self.start is None or _utc(self.start) < _utc(end)) and (
            self.end is None or _utc(start) < _utc(self.end)
        )


@dataclass(frozen=True)
class Capacity:
    """A platform's capacity over time: ``base``, overridden by ``periods`` where they apply.

    Where several periods overlap, the componentwise minimum of *those periods* applies: it is
    order-independent and errs on the safe side (never offer what one of the overlapping
    constraints forbids).
    """

    base: Resources
    periods: tuple[CapacityPeriod, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "periods", tuple(self.periods))

    def at(self, when: datetime) -> Resources:
        """The capacity in force at ``when``."""
        _require_aware(when, "when")
        result: Resources | None = None
        for period in self.periods:
            if period.covers(when):
                result = (
                    period.resources
                    if result is None
                    else result.componentwise_min(period.resources)
                )
        return self.base if result is None else result

    def breakpoints(self, start: datetime, end: datetime) -> list[datetime]:
        """Sorted instants in ``(start, end)`` where the capacity may change (in UTC)."""
        lo, hi = _utc(start), _utc(end)
        points = set()
        for period in self.periods:
            for edge in (period.start, period.end):
                if edge is not None and lo < _utc(edge) < hi:
                    points.add(_utc(edge))
        return sorted(points)

    def pieces(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime, Resources]]:
        """``[start, end)`` cut where the capacity changes: ``(from, to, capacity)`` triples."""
        if _utc(end) <= _utc(start):
            return []
        edges = [start, *self.breakpoints(start, end), end]
        return [(a, b, self.at(a)) for a, b in pairwise(edges)]

    def min_over(self, start: datetime, end: datetime) -> Resources:
        """Componentwise minimum capacity over ``[start, end)`` (``at(start)`` if empty)."""
        pieces = self.pieces(start, end)
        if not pieces:
            return self.at(start)
        result = pieces[0][2]
        for _, _, resources in pieces[1:]:
            result = result.componentwise_min(resources)
        return result

    def max_over(self, start: datetime, end: datetime) -> Resources:
        """Componentwise maximum capacity over ``[start, end)`` (``at(start)`` if empty)."""
        pieces = self.pieces(start, end)
        if not pieces:
            return self.at(start)
        result = pieces[0][2]
        for _, _, resources in pieces[1:]:
            result = result.componentwise_max(resources)
        return result
