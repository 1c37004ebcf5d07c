"""Does one slot fit beside a handful of others? A sweep, for the accept transaction.

The accept re-checks capacity against the slots read from the ledger inside its write lock.
Those are few (the ones overlapping the slot), so a sweep over their start/end events is far
cheaper than building a :class:`~eb_broker.scheduling.Timeline` for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from .resources import Capacity, Resources


def shortfall(
    capacity: Capacity,
    others: Iterable[tuple[datetime, datetime, Mapping[str, int]]],
    start: datetime,
    end: datetime,
    wanted: Resources,
) -> list[str]:
    """The dimensions in which ``wanted`` over ``[start, end)`` does not fit beside ``others``.

    ``others`` are ``(start, end, amounts)`` with amounts as a dimension → amount mapping
    (``Resources`` works too: it is a mapping). Empty when it fits. Checked at every instant
    where usage or capacity changes.
    """
    events: list[tuple[datetime, int, Mapping[str, int]]] = []
    for s, e, res in others:
        if s < end and e > start:
            events.append((max(s, start), 1, res))
            if e < end:
                events.append((e, -1, res))
    events.sort(key=lambda ev: (ev[0], ev[1]))  # ends (-1) before starts (+1) at one instant
    points = sorted({start, *capacity.breakpoints(start, end), *(t for t, _, _ in events)})
    usage: dict[str, int] = {}
    short: set[str] = set()
    i = 0
    for t in points:
        while i < len(events) and events[i][0] <= t:
            _, sign, res = events[i]
            for name, amount in res.items():
                if amount:
                    usage[name] = usage.get(name, 0) + sign * amount
            i += 1
        limit = capacity.at(t)
        for name, amount in wanted.items():
            if amount and usage.get(name, 0) + amount > limit.get(name):
                short.add(name)
    return sorted(short)
