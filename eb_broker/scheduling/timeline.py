"""Resource usage over time as an incrementally updated step function.

Design
------
Usage only changes where a booking starts or ends, so the timeline keeps the sorted set of
those *breakpoints* together with the usage *level* valid from each breakpoint up to the next
one (before the first breakpoint, and from the last one on, usage is zero). Each breakpoint
carries a reference count (how many booking edges sit on it) so it disappears when the last
booking using it is removed; zero-delta breakpoints never accumulate.

The breakpoints live in a *blocked sorted list*: a list of blocks of at most
``2 * block_size`` consecutive breakpoints, with a bisectable list of each block's first time.
Per block and per dimension the levels are a plain ``list[int]`` (dimension-major, so the hot
operations are C-level ``max()`` over list slices), plus

* a *lazy offset* per dimension, added to every level in the block: a booking that covers a
  whole block updates one int instead of ``block_size`` of them;
* the maximum stored level per dimension, so a range maximum skips whole blocks in O(1).

Costs, with ``n`` breakpoints, ``B`` the block size and ``k`` the breakpoints in the span:

* ``add``/``remove``: O(log n + B + k/B) — bisect, an O(B) list insert/delete, level updates
  in the two edge blocks (C-speed slice arithmetic) and one lazy-offset update per covered
  block;
* ``peak``/``free_min``/``blocked_until``: O(log n + B + k/B), where the O(B) part is C-level
  ``max()`` over at most two partial blocks.

No operation loops over all bookings in Python. Registering a dimension never seen before (a
new accelerator pool) is the one O(n) step; it happens once per pool name.

Times are kept internally as integer microseconds since the Unix epoch (bisect on ints is much
cheaper than on aware datetimes); instants returned to callers are UTC datetimes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .resources import CORE_DIMENSIONS, Resources

if TYPE_CHECKING:
    from .resources import Capacity

__all__ = ["Booking", "Timeline", "from_us", "to_us"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def to_us(when: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch (exact, no floats)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"timeline instants must be timezone-aware, got {when.isoformat()}")
    return (when - _EPOCH) // _ONE_US


def from_us(micros: int) -> datetime:
    """Inverse of :func:`to_us`, as a UTC datetime."""
    return _EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True)
class Booking:
    """One entry of a :class:`Timeline`: resources held over ``[start, end)``."""

    key: Hashable
    start: datetime
    end: datetime
    resources: Resources


class _Block:
    """Up to ``2 * block_size`` consecutive breakpoints (see the module docstring)."""

    __slots__ = ("lazy", "levels", "maxes", "refs", "times")

    def __init__(
        self, times: list[int], refs: list[int], levels: list[list[int]], lazy: list[int]
    ) -> None:
        self.times = times
        self.refs = refs
        self.levels = levels  # levels[d][i]: stored level of dimension d from times[i]
        self.lazy = lazy  # lazy[d]: added to every stored level of dimension d
        self.maxes = [max(column) for column in levels]  # max stored level per dimension


def _last_above(values: list[int], lo: int, hi: int, threshold: int) -> int:
    """Index of the last ``values[i] > threshold`` with ``lo <= i < hi``, or -1.

    Halves the range with C-level ``max()`` over slices, so the Python-level work is
    O(log(hi - lo)) even though the scanned elements total O(hi - lo).
    """
    if lo >= hi or max(values[lo:hi]) <= threshold:
        return -1
    while hi - lo > 16:
        mid = (lo + hi) >> 1
        if max(values[mid:hi]) > threshold:
            lo = mid
        else:
            hi = mid
    for i in range(hi - 1, lo - 1, -1):
        if values[i] > threshold:
            return i
    return -1  # pragma: no cover - unreachable: the range holds a value above threshold


class Timeline:
    """A step function of used resources over time, updated as bookings come and go.

    Bookings (and provisional offer holds) are identified by any hashable key. See the module
    docstring for the data structure and its costs.
    """

    def __init__(self, *, block_size: int = 64) -> None:
        """``block_size`` trades insert cost against range-query cost; tests make it tiny to
        exercise block splits and merges."""
        if block_size < 2:
            raise ValueError("block_size must be at least 2")
        self._load = block_size
        self._dims: list[str] = list(CORE_DIMENSIONS)
        self._dim_index: dict[str, int] = {name: i for i, name in enumerate(self._dims)}
        self._blocks: list[_Block] = []
        self._firsts: list[int] = []  # first breakpoint time of each block
        # key -> (start_us, end_us, sparse [(dim, amount)], booking)
        self._bookings: dict[Hashable, tuple[int, int, list[tuple[int, int]], Booking]] = {}

    # -- public API -------------------------------------------------------------------------

    def add(self, key: Hashable, start: datetime, end: datetime, resources: Resources) -> None:
        """Hold ``resources`` over ``[start, end)`` under ``key``.

        Raises ``KeyError`` for a key already present and ``ValueError`` when ``end <= start``.
        """
        if key in self._bookings:
            raise KeyError(f"booking {key!r} is already on the timeline")
        s, e = to_us(start), to_us(end)
        if e <= s:
            raise ValueError(f"booking {key!r} must end after it starts: {start} >= {end}")
        sparse = [(self._dim(name), amount) for name, amount in resources.items()]
        self._incref(s)
        self._incref(e)
        if sparse:
            self._range_add(s, e, sparse)
        self._bookings[key] = (s, e, sparse, Booking(key, start, end, resources))

    def remove(self, key: Hashable) -> bool:
        """Release the booking ``key``; returns False (and changes nothing) if it is unknown."""
        entry = self._bookings.pop(key, None)
        if entry is None:
            return False
        s, e, sparse, _ = entry
        if sparse:
            self._range_add(s, e, [(d, -amount) for d, amount in sparse])
        self._decref(s)
        self._decref(e)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._bookings

    def __len__(self) -> int:
        return len(self._bookings)

    def get(self, key: Hashable) -> Booking | None:
        """The booking stored under ``key``, if any."""
        entry = self._bookings.get(key)
        return None if entry is None else entry[3]

    def items(self) -> Iterator[Booking]:
        """All bookings, in insertion order."""
        for entry in self._bookings.values():
            yield entry[3]

    @property
    def dimensions(self) -> tuple[str, ...]:
        """Dimensions the timeline has seen (core dimensions first, then accelerator pools)."""
        return tuple(self._dims)

    def breakpoints(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> Iterator[datetime]:
        """Instants in ``[start, end)`` where usage may change, in order (UTC)."""
        hi = None if end is None else to_us(end)
        b, i = 0, 0
        if start is not None:
            lo = to_us(start)
            b = max(bisect_right(self._firsts, lo) - 1, 0)
            i = bisect_left(self._blocks[b].times, lo) if self._blocks else 0
        for blk in self._blocks[b:]:
            for t in blk.times[i:]:
                if hi is not None and t >= hi:
                    return
                yield from_us(t)
            i = 0

    def usage_at(self, when: datetime) -> Resources:
        """Resources in use at the instant ``when``."""
        b, i = self._last_le(to_us(when))
        if b < 0:
            return Resources()
        blk = self._blocks[b]
        return self._resources(
            [column[i] + lazy for column, lazy in zip(blk.levels, blk.lazy, strict=True)]
        )

    def peak(self, start: datetime, end: datetime) -> Resources:
        """Componentwise maximum of usage over ``[start, end)`` (zero for an empty span)."""
        s, e = to_us(start), to_us(end)
        if e <= s:
            return Resources()
        return self._resources(self.peak_us(s, e, range(len(self._dims))))

    def free_min(self, capacity: Capacity, start: datetime, end: datetime) -> Resources:
        """Componentwise minimum over ``[start, end)`` of ``capacity(t) - usage(t)``.

        Not clamped: a negative dimension means the span is already overbooked there.
        """
        result: Resources | None = None
        for a, b, cap in capacity.pieces(start, end):
            free = cap - self.peak(a, b)
            result = free if result is None else result.componentwise_min(free)
        return result if result is not None else capacity.at(start) - self.usage_at(start)

    def next_change_after(self, when: datetime) -> datetime | None:
        """The first breakpoint strictly after ``when`` (None if usage never changes again)."""
        t = self.next_change_after_us(to_us(when))
        return None if t is None else from_us(t)

    def blocked_until(self, start: datetime, end: datetime, limit: Resources) -> datetime | None:
        """When the last excess over ``limit`` that overlaps ``[start, end)`` is over.

        None when usage stays ≤ ``limit`` (every dimension; unlisted ones have limit zero)
        throughout the span. Otherwise the returned instant is the first moment after the
        last exceeding stretch in the span at which usage is back within the limit (it may lie
        beyond ``end``). No start earlier than that can run a span of the same length without
        meeting the excess, which is what makes jumping straight to it safe when searching
        for the next free slot.
        """
        if not limit.is_nonnegative():
            raise ValueError("blocked_until needs a non-negative limit")
        limits = [(self._dim_index.get(name, -1), limit.get(name)) for name in self._dims]
        t = self.blocked_until_us(to_us(start), to_us(end), limits)
        return None if t is None else from_us(t)

    # -- fast paths on integer microseconds (used by the offer search) ----------------------

    def dimension_index(self, name: str) -> int:
        """Internal column of ``name``, or -1 if the timeline never saw it (usage zero)."""
        return self._dim_index.get(name, -1)

    def usage_at_us(self, t: int, dims: Sequence[int]) -> list[int]:
        """Usage at ``t`` in the given columns (-1: a dimension never used, reads 0)."""
        b, i = self._last_le(t)
        if b < 0:
            return [0] * len(dims)
        blk = self._blocks[b]
        return [blk.levels[d][i] + blk.lazy[d] if d >= 0 else 0 for d in dims]

    def next_change_after_us(self, t: int) -> int | None:
        """First breakpoint > ``t`` (microseconds), or None."""
        firsts = self._firsts
        b = bisect_right(firsts, t) - 1
        if b >= 0:
            times = self._blocks[b].times
            i = bisect_right(times, t)
            if i < len(times):
                return times[i]
        return firsts[b + 1] if b + 1 < len(firsts) else None

    def peak_us(self, s: int, e: int, dims: Sequence[int]) -> list[int]:
        """Max usage over ``[s, e)`` (``s < e``) in the given columns (-1 reads as 0)."""
        blocks, firsts = self._blocks, self._firsts
        b1 = bisect_left(firsts, e) - 1
        if b1 < 0:  # no breakpoint before e: nothing is used in the span
            return [0] * len(dims)
        i1 = bisect_left(blocks[b1].times, e) - 1  # last breakpoint < e
        b0 = bisect_right(firsts, s) - 1
        with_zero = b0 < 0  # the span starts before the first breakpoint, where usage is 0
        if with_zero:
            b0, i0 = 0, 0
        else:
            i0 = bisect_right(blocks[b0].times, s) - 1  # last breakpoint <= s
        out = []
        if b0 == b1:
            blk = blocks[b0]
            for d in dims:
                if d < 0:
                    out.append(0)
                    continue
                m = max(blk.levels[d][i0 : i1 + 1]) + blk.lazy[d]
                out.append(max(m, 0) if with_zero else m)
            return out
        first, last = blocks[b0], blocks[b1]
        middle = blocks[b0 + 1 : b1]
        for d in dims:
            if d < 0:
                out.append(0)
                continue
            m = max(first.levels[d][i0:]) + first.lazy[d]
            m2 = max(last.levels[d][: i1 + 1]) + last.lazy[d]
            if m2 > m:
                m = m2
            for blk in middle:
                m2 = blk.maxes[d] + blk.lazy[d]
                if m2 > m:
                    m = m2
            out.append(max(m, 0) if with_zero else m)
        return out

    def blocked_until_us(self, s: int, e: int, limits: Sequence[tuple[int, int]]) -> int | None:
        """Microsecond version of :meth:`blocked_until` with ``(column, limit)`` pairs.

        Limits must be ≥ 0 (so the zero usage before the first and after the last breakpoint
        never exceeds them); columns of -1 are skipped (their usage is zero).
        """
        if e <= s or not self._blocks:
            return None
        blocks, firsts = self._blocks, self._firsts
        b1 = bisect_left(firsts, e) - 1
        if b1 < 0:
            return None
        i1 = bisect_left(blocks[b1].times, e) - 1
        b0 = bisect_right(firsts, s) - 1
        if b0 < 0:
            b0, i0 = 0, 0
        else:
            i0 = bisect_right(blocks[b0].times, s) - 1
        checks = [(d, lim) for d, lim in limits if d >= 0]
        # Walk backwards: the *last* excess decides where a start can jump to.
        for b in range(b1, b0 - 1, -1):
            blk = blocks[b]
            lo = i0 if b == b0 else 0
            hi = i1 + 1 if b == b1 else len(blk.times)
            whole = lo == 0 and hi == len(blk.times)
            best = -1
            for d, lim in checks:
                threshold = lim - blk.lazy[d]
                if whole and blk.maxes[d] <= threshold:
                    continue
                idx = _last_above(blk.levels[d], lo, hi, threshold)
                if idx > best:
                    best = idx
            if best >= 0:
                return self._excess_end(b, best + 1, e, checks)
        return None

    def _excess_end(self, b: int, i: int, e: int, checks: Sequence[tuple[int, int]]) -> int:
        """First breakpoint from position (b, i) on whose level is within the limits.

        Breakpoints before ``e`` are within them by construction (the caller found the last
        excess before ``e``); beyond ``e`` the excess may go on, and following it here saves
        the caller a full re-check per step. Terminates because the last breakpoint's level
        is zero.
        """
        blocks = self._blocks
        while True:
            blk = blocks[b]
            if i == len(blk.times):
                b, i = b + 1, 0
                continue
            t = blk.times[i]
            if t < e or all(blk.levels[d][i] + blk.lazy[d] <= lim for d, lim in checks):
                return t
            i += 1

    # -- internals ----------------------------------------------------------------------------

    def _dim(self, name: str) -> int:
        """Column of ``name``, adding a zero column everywhere the first time it is seen."""
        idx = self._dim_index.get(name)
        if idx is None:
            idx = len(self._dims)
            self._dims.append(name)
            self._dim_index[name] = idx
            for blk in self._blocks:
                blk.levels.append([0] * len(blk.times))
                blk.lazy.append(0)
                blk.maxes.append(0)
        return idx

    def _resources(self, values: Sequence[int]) -> Resources:
        return Resources.from_dimensions(
            (name, v) for name, v in zip(self._dims, values, strict=True) if v
        )

    def _last_le(self, t: int) -> tuple[int, int]:
        """(block, index) of the last breakpoint ≤ ``t``, or (-1, -1)."""
        b = bisect_right(self._firsts, t) - 1
        if b < 0:
            return -1, -1
        return b, bisect_right(self._blocks[b].times, t) - 1

    def _find(self, t: int) -> tuple[int, int]:
        """(block, index) of the existing breakpoint at ``t``."""
        b = bisect_right(self._firsts, t) - 1
        i = bisect_left(self._blocks[b].times, t)
        return b, i

    def _incref(self, t: int) -> None:
        """Count one more booking edge at ``t``, creating the breakpoint if needed."""
        blocks, firsts = self._blocks, self._firsts
        ndims = len(self._dims)
        if not blocks:
            blocks.append(_Block([t], [1], [[0] for _ in range(ndims)], [0] * ndims))
            firsts.append(t)
            return
        b = bisect_right(firsts, t) - 1
        if b < 0:
            b, i = 0, 0
        else:
            times = blocks[b].times
            i = bisect_left(times, t)
            if i < len(times) and times[i] == t:
                blocks[b].refs[i] += 1
                return
        blk = blocks[b]
        # A new breakpoint starts with the level in force just before it (no change yet).
        if i > 0:
            values = [column[i - 1] for column in blk.levels]
        elif b > 0:
            prev = blocks[b - 1]
            values = [prev.levels[d][-1] + prev.lazy[d] - blk.lazy[d] for d in range(ndims)]
        else:
            values = [-lazy for lazy in blk.lazy]
        blk.times.insert(i, t)
        blk.refs.insert(i, 1)
        for d in range(ndims):
            blk.levels[d].insert(i, values[d])
            if values[d] > blk.maxes[d]:
                blk.maxes[d] = values[d]
        if i == 0:
            firsts[b] = t
        if len(blk.times) > 2 * self._load:
            self._split(b)

    def _split(self, b: int) -> None:
        blk = self._blocks[b]
        half = len(blk.times) // 2
        new = _Block(
            blk.times[half:],
            blk.refs[half:],
            [column[half:] for column in blk.levels],
            list(blk.lazy),
        )
        del blk.times[half:]
        del blk.refs[half:]
        for column in blk.levels:
            del column[half:]
        blk.maxes = [max(column) for column in blk.levels]
        self._blocks.insert(b + 1, new)
        self._firsts.insert(b + 1, new.times[0])

    def _decref(self, t: int) -> None:
        """Count one booking edge less at ``t``; drop the breakpoint when none is left.

        Called after the levels were updated, so a breakpoint that loses its last edge has
        the same level as the one before it and can go without changing the function.
        """
        b, i = self._find(t)
        blk = self._blocks[b]
        blk.refs[i] -= 1
        if blk.refs[i]:
            return
        del blk.times[i]
        del blk.refs[i]
        if not blk.times:
            del self._blocks[b]
            del self._firsts[b]
            return
        for d, column in enumerate(blk.levels):
            value = column.pop(i)
            if value == blk.maxes[d]:
                blk.maxes[d] = max(column)
        if i == 0:
            self._firsts[b] = blk.times[0]
        if len(blk.times) < (self._load + 1) // 2 and len(self._blocks) > 1:
            self._merge(b)

    def _merge(self, b: int) -> None:
        """Fold a small block into a neighbour so blocks stay O(block_size) on average."""
        a = b - 1 if b > 0 else b
        left, right = self._blocks[a], self._blocks[a + 1]
        for d in range(len(self._dims)):
            shift = right.lazy[d] - left.lazy[d]
            column = right.levels[d]
            left.levels[d].extend([v + shift for v in column] if shift else column)
            left.maxes[d] = max(left.maxes[d], right.maxes[d] + shift)
        left.times.extend(right.times)
        left.refs.extend(right.refs)
        del self._blocks[a + 1]
        del self._firsts[a + 1]
        if len(left.times) > 2 * self._load:
            self._split(a)

    def _range_add(self, s: int, e: int, sparse: Sequence[tuple[int, int]]) -> None:
        """Add ``sparse`` to every level in ``[s, e)``; both are existing breakpoints."""
        b0, i0 = self._find(s)
        b1, i1 = self._find(e)
        blocks = self._blocks
        if b0 == b1:
            self._block_add(blocks[b0], i0, i1, sparse)
            return
        self._block_add(blocks[b0], i0, len(blocks[b0].times), sparse)
        for blk in blocks[b0 + 1 : b1]:
            lazy = blk.lazy
            for d, amount in sparse:
                lazy[d] += amount
        self._block_add(blocks[b1], 0, i1, sparse)

    @staticmethod
    def _block_add(blk: _Block, i: int, j: int, sparse: Sequence[tuple[int, int]]) -> None:
        if i >= j:
            return
        whole = i == 0 and j == len(blk.times)
        for d, amount in sparse:
            if whole:
                blk.lazy[d] += amount
                continue
            column = blk.levels[d]
            column[i:j] = [v + amount for v in column[i:j]]
            if amount > 0:
                m = max(column[i:j])
                if m > blk.maxes[d]:
                    blk.maxes[d] = m
            else:
                blk.maxes[d] = max(column)
