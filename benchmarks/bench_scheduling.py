"""Micro-benchmark of the offer math (``eb_broker.scheduling``): not a test, prints numbers.

Builds timelines with N random bookings on one platform (default 1000 cores / 4000 GiB over
90 days, filled to a target utilisation without overbooking), then times

* ``add`` and ``remove`` of one more booking,
* ``find_slots`` for a "start within the next 24 h" request,
* ``find_slots`` for a 3-window request (09:00-12:00 on three consecutive days),
* ``find_slots`` with no window ("as soon as possible"),

and prints p50/p99 per operation and size. The broker's target is p50 <= 10 ms per request
at 10k active bookings, growing at most 2x from 1k to 100k bookings.

    .venv/bin/python benchmarks/bench_scheduling.py --sizes 1000 10000 100000
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

# A plain script: make the checkout importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eb_broker.scheduling import (
    Capacity,
    Demand,
    NoFit,
    Resources,
    Timeline,
    Window,
    find_slots,
)

T0 = datetime(2030, 1, 7, tzinfo=UTC)  # a Monday


def build(
    n: int, cores: int, memory: int, days: int, utilisation: float, rng: random.Random, block: int
) -> tuple[Timeline, float]:
    """A timeline with ``n`` bookings that never exceed the capacity; returns it and the
    seconds spent building it."""
    timeline = Timeline(block_size=block)
    capacity = Resources(cores=cores, memory_gib=memory)
    mean_hours = 4.25  # durations are uniform in [0.5 h, 8 h]
    mean_cores = max(1.0, utilisation * cores * days * 24 / (n * mean_hours))
    span = days * 24 * 60
    added = attempts = 0
    began = time.perf_counter()
    while added < n and attempts < 20 * n:
        attempts += 1
        start = T0 + timedelta(minutes=rng.randrange(span))
        end = start + timedelta(minutes=rng.randrange(30, 8 * 60 + 1))
        c = rng.randint(1, max(1, round(2 * mean_cores - 1)))
        want = Resources(cores=c, memory_gib=c * memory // cores)
        if (timeline.peak(start, end) + want).fits_in(capacity):
            timeline.add(("b", added), start, end, want)
            added += 1
    return timeline, time.perf_counter() - began


def measure(fn: Callable[[int], object], repeat: int) -> list[float]:
    """Run ``fn(i)`` ``repeat`` times; per-call durations in microseconds."""
    out = []
    for i in range(repeat):
        began = time.perf_counter_ns()
        fn(i)
        out.append((time.perf_counter_ns() - began) / 1000)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


DEMAND_MIN = Resources(cores=16, memory_gib=64)
DEMAND_MAX = Resources(cores=64, memory_gib=256)
FOUR_HOURS = timedelta(hours=4)


def run_size(n: int, args: argparse.Namespace, capacity: Capacity) -> dict[str, float]:
    """Build one timeline of ``n`` bookings, time every operation; returns the p50s."""
    rng = random.Random(args.seed)
    timeline, built = build(
        n, args.cores, args.memory, args.days, args.utilisation, rng, args.block_size
    )
    used = sum((b.end - b.start).total_seconds() * b.resources.cores for b in timeline.items())
    util = used / (args.cores * args.days * 86400)
    print(f"\n{len(timeline)} bookings built in {built:.2f} s (utilisation {util:.0%})")
    print(f"{'bookings':>9} {'operation':<22} {'p50':>9} {'p99':>9} {'mean':>9}")
    # Query times: "now" somewhere in the first 80 days, so windows stay inside the data.
    nows = [
        T0 + timedelta(minutes=rng.randrange(args.days * 24 * 60 - 10 * 24 * 60))
        for _ in range(args.repeat)
    ]
    extra = [
        (
            now + timedelta(minutes=rng.randrange(0, 24 * 60)),
            timedelta(minutes=rng.randrange(30, 481)),
        )
        for now in nows
    ]

    def do_add(i: int) -> None:
        start, length = extra[i]
        timeline.add(("x", i), start, start + length, Resources(cores=1, memory_gib=4))

    def do_remove(i: int) -> None:
        timeline.remove(("x", i))

    def within_24h(i: int) -> object:
        now = nows[i]
        demand = Demand(
            DEMAND_MIN, DEMAND_MAX, FOUR_HOURS, (Window(now, now + timedelta(hours=24)),)
        )
        return find_slots(capacity, timeline, demand, now)

    def three_windows(i: int) -> object:
        day = nows[i].replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        windows = tuple(
            Window(day + timedelta(days=k, hours=9), day + timedelta(days=k, hours=12))
            for k in range(3)
        )
        demand = Demand(DEMAND_MIN, DEMAND_MAX, FOUR_HOURS, windows)
        return find_slots(capacity, timeline, demand, nows[i], max_offers=9)

    def asap(i: int) -> object:
        demand = Demand(DEMAND_MIN, DEMAND_MAX, FOUR_HOURS)
        return find_slots(capacity, timeline, demand, nows[i])

    results: dict[str, float] = {}
    for label, fn in (
        ("add", do_add),
        ("remove", do_remove),
        ("find_slots 24h window", within_24h),
        ("find_slots 3 windows", three_windows),
        ("find_slots asap", asap),
    ):
        times = measure(fn, args.repeat)
        results[label] = statistics.median(times)
        print(
            f"{n:>9} {label:<22} {pct(times, 0.5):>9.1f} {pct(times, 0.99):>9.1f} "
            f"{statistics.fmean(times):>9.1f}"
        )
    nofit = sum(isinstance(within_24h(i), NoFit) for i in range(min(50, args.repeat)))
    print(f"{'':>9} (24h-window requests answered with NoFit: {nofit} of the first 50)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=300, help="timed calls per operation")
    parser.add_argument("--cores", type=int, default=1000)
    parser.add_argument("--memory", type=int, default=4000, help="GiB")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--utilisation", type=float, default=0.7)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    capacity = Capacity(Resources(cores=args.cores, memory_gib=args.memory))
    print(
        f"capacity {args.cores} cores / {args.memory} GiB over {args.days} days, "
        f"target utilisation {args.utilisation:.0%}, block size {args.block_size}, "
        f"{args.repeat} calls per operation; times in microseconds"
    )
    rows = {n: run_size(n, args, capacity) for n in args.sizes}
    if len(rows) > 1:
        small, large = min(rows), max(rows)
        print(f"\np50 growth from {small} to {large} bookings:")
        for label in rows[small]:
            print(f"  {label:<22} x{rows[large][label] / rows[small][label]:.2f}")


if __name__ == "__main__":
    main()
