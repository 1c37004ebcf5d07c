"""``find_slots``: turn a demand, the capacity and the current usage into concrete offers.

The function is pure and deterministic: the same capacity, timeline contents, demand and
``now`` always give the same answer, which keeps offers reproducible in tests and lets the
broker retry safely. See ``docs/scheduling.md`` for the algorithm in prose.

Internally everything runs on integer microseconds and plain int lists over the demand's
dimensions (see :mod:`.timeline`); :class:`Resources` objects are built only for the answer.
"""

from __future__ import annotations

import enum
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .resources import (
    Capacity,
    Demand,
    Resources,
    Window,
    describe_dimension,
    format_duration,
)
from .timeline import Timeline, from_us, to_us

__all__ = ["NoFit", "NoFitKind", "Reason", "Slot", "find_slots"]

_ONE_US = timedelta(microseconds=1)
_NEG_INF = -(2**62)
_POS_INF = 2**62

#: A feasible start (microseconds) and the free amounts over its span, per demand column.
_Candidate = tuple[int, list[int]]


@dataclass(frozen=True)
class Slot:
    """One offer: start at ``start``, run until ``end`` with ``resources``.

    ``window_index`` is the index in ``Demand.windows`` of the requested window the start lies
    in, or None for "as soon as possible" slots (no windows requested, or ``NoFit.earliest``).
    """

    start: datetime
    end: datetime
    resources: Resources
    window_index: int | None


class NoFitKind(enum.StrEnum):
    """What kind of "nothing fits" a :class:`Reason` is (callers classify by this, never by
    the text)."""

    #: The minimum asked for is more than the platform has at all (in some dimension).
    EXCEEDS_PLATFORM = "exceeds-platform"
    #: The minimum fits the platform's capacity in no period within the horizon.
    NEVER_FITS = "never-fits"
    #: Other bookings leave no room within the horizon.
    NO_CAPACITY = "no-capacity"
    #: A requested window ends before the earliest possible start.
    WINDOW_PAST = "window-past"
    #: A requested window starts beyond the booking horizon.
    WINDOW_BEYOND_HORIZON = "window-beyond-horizon"
    #: The capacity in force during the windows is below the minimum (maintenance, a share).
    WINDOW_CAPACITY = "window-capacity"
    #: Other bookings leave no room in the requested windows.
    WINDOW_BUSY = "window-busy"
    #: Nothing fits outside the requested windows either (no earliest alternative).
    NOTHING_LATER = "nothing-later"


@dataclass(frozen=True)
class Reason:
    """One reason why nothing fits: its kind and the sentence a user reads."""

    kind: NoFitKind
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class NoFit:
    """Why nothing could be offered, plus the earliest slot that would fit (ignoring the
    requested windows) within the horizon, if there is one — so the user gets a concrete
    alternative instead of a bare "no"."""

    reasons: tuple[Reason, ...]
    earliest: Slot | None

    @property
    def texts(self) -> tuple[str, ...]:
        """The reasons' sentences."""
        return tuple(r.text for r in self.reasons)


def find_slots(
    capacity: Capacity,
    timeline: Timeline,
    demand: Demand,
    now: datetime,
    *,
    max_offers: int = 4,
    step: timedelta = timedelta(hours=1),
    horizon: timedelta = timedelta(days=14),
    granularity: timedelta = timedelta(minutes=1),
) -> list[Slot] | NoFit:
    """Up to ``max_offers`` slots (sorted by start) where ``demand`` fits, or a :class:`NoFit`.

    * Starts lie in one of the requested windows (half-open; a zero-width window means exactly
      its start), no earlier than ``now + demand.preparation`` and before ``now + horizon``.
      Starts are rounded up to ``granularity`` (counted from the Unix epoch, UTC), except the
      exact start of a zero-width window.
    * Each slot gets, per dimension, as much as is free over its whole span, clamped to
      ``[demand.minimum, demand.maximum]``; usage plus the slot never exceeds the capacity.
    * Candidates in a window: its (aligned) start, a grid every ``step`` anchored at the window
      start, and where a grid point is blocked, the first moment in the following gap at which
      capacity frees up. Picks are spread: the earliest feasible slot always, then round-robin
      over the windows in time order, evenly spaced within each window.
    * Without windows: the earliest feasible start, then further slots at least ``step``
      apart, all within ``horizon``.
    """
    if max_offers < 1:
        raise ValueError("max_offers must be at least 1")
    for name, value in (("step", step), ("horizon", horizon), ("granularity", granularity)):
        if value <= timedelta(0):
            raise ValueError(f"{name} must be positive, got {value}")
    search = _Search(capacity, timeline, demand, now, granularity)
    step_us = step // _ONE_US
    horizon_end = to_us(now) + horizon // _ONE_US

    exceeded = search.exceeds_capacity(search.earliest_exact, horizon_end + search.duration)
    if exceeded is not None:
        return NoFit(exceeded, None)

    if not demand.windows:
        slots: list[Slot] = []
        s = search.align(search.earliest_exact)
        while len(slots) < max_offers and s < horizon_end:
            found = search.earliest(s, horizon_end)
            if found is None:
                break
            slots.append(search.slot(found[0], found[1], None))
            s = search.align(found[0] + step_us)
        if slots:
            return slots
        return NoFit(
            (
                Reason(
                    NoFitKind.NO_CAPACITY,
                    f"no capacity for {demand.minimum.describe()} for "
                    f"{format_duration(demand.duration)} within the next "
                    f"{format_duration(horizon)}",
                ),
            ),
            None,
        )

    windows = [Window.of(w) for w in demand.windows]
    order = sorted(
        range(len(windows)), key=lambda i: (to_us(windows[i].start), to_us(windows[i].end))
    )
    claimed: set[int] = set()
    # Feasible (start, free) candidates per window, windows in time order; a start shared by
    # overlapping windows belongs to the earlier one. Slots are built only for the picks.
    per_window: list[tuple[int, list[_Candidate]]] = []
    for index in order:
        found_here = [
            (s, free)
            for s, free in search.window_candidates(windows[index], step_us, horizon_end)
            if s not in claimed
        ]
        claimed.update(s for s, _ in found_here)
        if found_here:
            per_window.append((index, found_here))
    if per_window:
        picks = _spread([found for _, found in per_window], max_offers)
        return [
            search.slot(start, free, per_window[w][0])
            for w, (start, free) in sorted(picks, key=lambda pick: pick[1][0])
        ]
    return _no_fit_in_windows(capacity, demand, now, search, windows, step_us, horizon)


# ---------------------------------------------------------------------------------------------


class _Search:
    """Precomputed state of one ``find_slots`` call, on integer microseconds.

    Columns ``j`` index the demand's dimensions (those with a non-zero maximum); ``need`` are
    the columns with a non-zero minimum, the only ones that decide feasibility. Dimensions the
    demand does not ask for are ignored, so an overbooked pool the request does not use cannot
    block it.
    """

    def __init__(
        self,
        capacity: Capacity,
        timeline: Timeline,
        demand: Demand,
        now: datetime,
        granularity: timedelta,
    ) -> None:
        self.timeline = timeline
        self.demand = demand
        self.tz = now.tzinfo
        self.gran = granularity // _ONE_US
        if self.gran < 1:
            raise ValueError("granularity must be at least one microsecond")
        self.duration = demand.duration // _ONE_US
        # Elapsed-time arithmetic on microseconds: ``now + timedelta`` in a ZoneInfo zone is
        # wall-clock arithmetic and would be off by an hour across a DST change.
        self.earliest_exact = to_us(now) + demand.preparation // _ONE_US
        self.names = list(demand.maximum.dimensions())
        self.cols = [timeline.dimension_index(n) for n in self.names]
        self.low = [demand.minimum.get(n) for n in self.names]
        self.high = [demand.maximum.get(n) for n in self.names]
        self.need = [j for j, v in enumerate(self.low) if v > 0]
        # Capacity as pieces: cap_vecs[i] holds from cap_starts[i] to cap_starts[i + 1].
        edges = sorted(
            {to_us(e) for p in capacity.periods for e in (p.start, p.end) if e is not None}
        )
        probes = [edges[0] - 1 if edges else to_us(now), *edges]
        self.cap_starts = [_NEG_INF, *edges]
        self.cap_vecs = []
        for t in probes:
            cap = capacity.at(from_us(t))
            self.cap_vecs.append([cap.get(n) for n in self.names])

    # -- small helpers ------------------------------------------------------------------------

    def align(self, t: int) -> int:
        """Round up to the granularity grid."""
        g = self.gran
        return -(-t // g) * g

    def _pieces(self, s: int, e: int) -> range:
        """Indices of the capacity pieces overlapping ``[s, e)``."""
        return range(bisect_right(self.cap_starts, s) - 1, bisect_left(self.cap_starts, e))

    def _piece_end(self, i: int) -> int:
        return self.cap_starts[i + 1] if i + 1 < len(self.cap_starts) else _POS_INF

    def fits(self, free: Sequence[int]) -> bool:
        low = self.low
        return all(free[j] >= low[j] for j in self.need)

    def slot(self, start: int, free: Sequence[int], window_index: int | None) -> Slot:
        values = [min(max(f, lo), hi) for f, lo, hi in zip(free, self.low, self.high, strict=True)]
        return Slot(
            start=from_us(start).astimezone(self.tz),
            end=from_us(start + self.duration).astimezone(self.tz),
            resources=Resources.from_dimensions(zip(self.names, values, strict=True)),
            window_index=window_index,
        )

    # -- the core queries ---------------------------------------------------------------------

    def free(self, s: int, e: int) -> list[int]:
        """Per column, the minimum over ``[s, e)`` of capacity minus usage (may be negative)."""
        result: list[int] | None = None
        starts, cols = self.cap_starts, self.cols
        for i in self._pieces(s, e):
            a = max(s, starts[i])
            b = min(e, self._piece_end(i))
            peak = self.timeline.peak_us(a, b, cols)
            free = [c - p for c, p in zip(self.cap_vecs[i], peak, strict=True)]
            if result is not None:
                free = [min(x, y) for x, y in zip(result, free, strict=True)]
            result = free
        assert result is not None
        return result

    def blocked_until(self, s: int, e: int) -> int:
        """For an infeasible span ``[s, e)``: the earliest start that could possibly work.

        The last piece of the span where the minimum does not fit decides: any start before
        the end of that shortage would still overlap it. Returns ``_POS_INF`` if the capacity
        never allows the minimum again.
        """
        starts, low, need, cols = self.cap_starts, self.low, self.need, self.cols
        pieces = self._pieces(s, e)
        for i in reversed(pieces):
            cap, pe = self.cap_vecs[i], self._piece_end(i)
            if any(cap[j] < low[j] for j in need):
                return pe
            limits = [(cols[j], cap[j] - low[j]) for j in need]
            t = self.timeline.blocked_until_us(max(s, starts[i]), min(e, pe), limits)
            if t is not None:
                return min(t, pe)
        return s + self.gran  # pragma: no cover - only if free() and this disagree

    def earliest(self, lo: int, hi: int) -> tuple[int, list[int]] | None:
        """The earliest feasible aligned start in ``[lo, hi)`` (``lo`` aligned) and its free
        amounts; jumps past each shortage instead of stepping minute by minute."""
        s = lo
        while s < hi:
            free = self.free(s, s + self.duration)
            if self.fits(free):
                return s, free
            s = self.align(self.blocked_until(s, s + self.duration))
        return None

    def exceeds_capacity(self, lo: int, hi: int) -> tuple[Reason, ...] | None:
        """Reasons if the minimum fits the *capacity* (ignoring usage) nowhere in ``[lo, hi)``."""
        if not self.need:
            return None
        pieces = self._pieces(lo, hi)
        if any(self.fits(self.cap_vecs[i]) for i in pieces):
            return None
        best = [max(self.cap_vecs[i][j] for i in pieces) for j in range(len(self.names))]
        reasons = tuple(
            Reason(
                NoFitKind.EXCEEDS_PLATFORM,
                f"the minimum {describe_dimension(self.names[j], self.low[j])} exceeds this "
                f"platform's capacity of {describe_dimension(self.names[j], best[j])}",
            )
            for j in self.need
            if self.low[j] > best[j]
        )
        return reasons or (
            Reason(
                NoFitKind.NEVER_FITS,
                f"the minimum {self.demand.minimum.describe()} never fits this platform's "
                "capacity within the booking horizon",
            ),
        )

    def window_bounds(self, window: Window, horizon_end: int) -> tuple[int, int] | None:
        """``[lo, hi)`` of allowed starts in ``window``, None if it has none (in the past,
        beyond the horizon); a zero-width window gives ``[start, start + 1 µs)``."""
        ws, we = to_us(window.start), to_us(window.end)
        if ws == we:
            return (ws, ws + 1) if self.earliest_exact <= ws < horizon_end else None
        lo, hi = max(ws, self.earliest_exact), min(we, horizon_end)
        return (lo, hi) if lo < hi else None

    def window_candidates(self, window: Window, step: int, horizon_end: int) -> list[_Candidate]:
        """Feasible ``(start, free)`` candidates of one window, in time order."""
        bounds = self.window_bounds(window, horizon_end)
        if bounds is None:
            return []
        lo, hi = bounds
        ws = to_us(window.start)
        if window.is_instant:
            free = self.free(ws, ws + self.duration)
            return [(ws, free)] if self.fits(free) else []
        first = self.align(lo)
        if first >= hi:
            # A window narrower than the granularity has no aligned instant: use its start.
            first = lo
        grid = [first]
        k = (lo - ws) // step + 1 if lo > ws else 1
        g = ws + k * step
        while g < hi:
            a = self.align(g)
            if a > grid[-1] and a < hi:
                grid.append(a)
            g += step
        out: list[_Candidate] = []
        for n, c in enumerate(grid):
            free = self.free(c, c + self.duration)
            if self.fits(free):
                out.append((c, free))
                continue
            # Blocked: offer the first moment in the gap up to the next grid point at which
            # enough capacity frees up (a booking ends, a maintenance period is over).
            gap_end = grid[n + 1] if n + 1 < len(grid) else hi
            nxt = self.align(self.blocked_until(c, c + self.duration))
            if nxt < gap_end:
                found = self.earliest(nxt, gap_end)
                if found is not None:
                    out.append(found)
        return out


def _spread(per_window: list[list[_Candidate]], max_offers: int) -> list[tuple[int, _Candidate]]:
    """Pick at most ``max_offers`` candidates, as ``(window position, candidate)`` pairs.

    The earliest candidate always; every window before a second pick from any window
    (round-robin in time order); evenly spaced picks within a window. Candidates are
    ``(start, ...)`` tuples sorted by start within each (non-empty) window list.
    """
    first = min(range(len(per_window)), key=lambda w: per_window[w][0][0])
    order = [first, *(w for w in range(len(per_window)) if w != first)]
    quota = [0] * len(per_window)
    left = max_offers
    while left:
        progressed = False
        for w in order:
            if left and quota[w] < len(per_window[w]):
                quota[w] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    picks: list[tuple[int, _Candidate]] = []
    for w, (candidates, q) in enumerate(zip(per_window, quota, strict=True)):
        n = len(candidates)
        if q == 1:
            picks.append((w, candidates[0]))
        elif q > 1:
            # q evenly spaced indices from 0 to n - 1, rounded half up; distinct as q <= n.
            picks.extend(
                (w, candidates[(i * (n - 1) * 2 + (q - 1)) // (2 * (q - 1))]) for i in range(q)
            )
    return picks


def _no_fit_in_windows(
    capacity: Capacity,
    demand: Demand,
    now: datetime,
    search: _Search,
    windows: list[Window],
    step: int,
    horizon: timedelta,
) -> NoFit:
    """Explain why none of the requested windows had a feasible start."""
    horizon_end = to_us(now) + horizon // _ONE_US
    reasons: list[Reason] = []
    usable = [w for w in windows if search.window_bounds(w, horizon_end) is not None]
    past = [
        w
        for w in windows
        if (to_us(w.start) if w.is_instant else to_us(w.end) - 1) < search.earliest_exact
    ]
    beyond = [w for w in windows if to_us(w.start) >= horizon_end]
    if past:
        prep = (
            f"now + {format_duration(demand.preparation)} preparation"
            if demand.preparation
            else "now"
        )
        which = (
            "the requested window ends"
            if len(windows) == 1
            else f"{len(past)} of the {len(windows)} requested windows end"
        )
        reasons.append(
            Reason(
                NoFitKind.WINDOW_PAST,
                f"{which} before the earliest possible start "
                f"{from_us(search.earliest_exact).astimezone(search.tz).isoformat()} ({prep})",
            )
        )
    if beyond:
        which = (
            "the requested window starts"
            if len(windows) == 1
            else f"{len(beyond)} of the {len(windows)} requested windows start"
        )
        reasons.append(
            Reason(
                NoFitKind.WINDOW_BEYOND_HORIZON,
                f"{which} beyond the booking horizon of {format_duration(horizon)} "
                f"({from_us(horizon_end).astimezone(search.tz).isoformat()})",
            )
        )
    if usable:
        # Would the windows work on an empty platform? If not, the capacity itself (e.g. a
        # maintenance period) is the problem, not other people's bookings.
        empty = _Search(capacity, Timeline(), demand, now, timedelta(microseconds=search.gran))
        if not any(empty.window_candidates(w, step, horizon_end) for w in usable):
            reasons.append(
                Reason(
                    NoFitKind.WINDOW_CAPACITY,
                    f"the platform's capacity during the requested window(s) is below the "
                    f"minimum {demand.minimum.describe()} for {format_duration(demand.duration)}"
                    " (maintenance or a reduced share)",
                )
            )
        else:
            reasons.append(
                Reason(
                    NoFitKind.WINDOW_BUSY,
                    f"no capacity for {demand.minimum.describe()} for "
                    f"{format_duration(demand.duration)} in the requested window(s)",
                )
            )
    found = search.earliest(search.align(search.earliest_exact), horizon_end)
    earliest = None if found is None else search.slot(found[0], found[1], None)
    if earliest is None:
        reasons.append(
            Reason(
                NoFitKind.NOTHING_LATER,
                f"nothing fits within the next {format_duration(horizon)} outside the requested "
                "window(s) either",
            )
        )
    return NoFit(tuple(reasons), earliest)
