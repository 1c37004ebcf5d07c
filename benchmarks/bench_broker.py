"""Benchmark a real eb-broker process: offer latency, accept throughput and memory.

For each ledger size (active bookings written straight into a fresh SQLite ledger), start
``eb-broker``, then measure over HTTP on loopback:

* ``POST /requests`` latency (p50/p99) for a 1-core, 1 h request "within the next 24 hours";
* accept throughput (request + accept pairs per second, and the accept's own latency);
* the broker's RSS after loading the ledger and after the run, and its start-up time.

By default the platform is huge (10,000 cores), so offers never compete for capacity. With
``--utilisation U`` it is sized instead so that the bookings fill a fraction U of its
core-hours and GiB-hours on average: requests then search a busy timeline, some answers are
NO, and some accepts lose (409) to the capacity held by earlier offers and bookings.

In that mode each timed request's offers are then rejected (untimed), as a person declines
what they did not take, so that a few hundred requests in a few seconds do not hold the whole
window for five minutes.

Run by hand:  .venv/bin/python benchmarks/bench_broker.py [--sizes 1000 10000 100000]
              [--utilisation 0.85]
Results go to stdout as a Markdown table (paste into benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eb_broker.ledger import make_engine, migrate
from eb_broker.ledger.tables import OfferSetRow, SessionRow
from tests.fixtures.services import BrokerProcess, free_port

NOTEBOOK = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/jupyter-notebook.yaml"
COMPUTE = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/compute/simple-compute-resource.yaml"
CORES = 10_000
MEMORY = 40_000


def request_body() -> dict[str, object]:
    """1 core, 1 h, starting in the 24 h from one hour from now.

    Future slots, so that an accept measures booking, not the local platform starting a
    process (which the reconciler does at once for a slot that starts now).
    """
    now = datetime.now(UTC) + timedelta(hours=1)
    return {
        "executable": {"kind": NOTEBOOK, "location": "/bench.ipynb"},
        "compute": {"kind": COMPUTE, "cores": {"min": 1}, "memory": {"min": 1}},
        "schedule": {
            "requested": {
                "start": now.strftime("%Y-%m-%dT%H:%M:%SZ") + "/PT24H",
                "duration": "PT1H",
            }
        },
    }


SPAN = timedelta(days=13)  # bookings start between 1 h and 13 days from now


def fill(db_url: str, n: int, seed: int = 1) -> tuple[float, float, float]:
    """Write ``n`` accepted future bookings; returns seconds taken, core-hours, GiB-hours."""
    rng = random.Random(seed)
    engine = make_engine(db_url)
    migrate(engine)
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    offerset = str(uuid.uuid4())
    core_hours = gib_hours = 0.0
    with engine.begin() as conn:
        conn.execute(
            insert(OfferSetRow),
            [
                dict(
                    uuid=offerset,
                    owner="bench",
                    created=now,
                    expires=now,
                    result="YES",
                    request={},
                    messages=[],
                )
            ],
        )
        batch = []
        for _ in range(n):
            start = now + timedelta(minutes=rng.randrange(60, int(SPAN.total_seconds() // 60)))
            hours = rng.choice((1, 2, 3, 4))
            cores, memory = rng.choice((1, 2, 4, 8)), rng.choice((1, 2, 4, 8))
            core_hours += cores * hours
            gib_hours += memory * hours
            batch.append(
                dict(
                    uuid=str(uuid.uuid4()),
                    offerset=offerset,
                    owner="bench",
                    groups=[],
                    name=None,
                    phase="WAITING",
                    created=now,
                    modified=now,
                    expires=None,
                    start=start,
                    end=start + timedelta(hours=hours),
                    preparation_s=5,
                    launch_at=start - timedelta(seconds=5),
                    cores=cores,
                    memory_gib=memory,
                    storage_gib=0,
                    accelerators={},
                    request={},
                    messages=[],
                    connectors=[],
                    outputs={},
                    handle={},
                    launched=None,
                    stop_requested=None,
                )
            )
            if len(batch) == 5000:
                conn.execute(insert(SessionRow), batch)
                batch = []
        if batch:
            conn.execute(insert(SessionRow), batch)
    engine.dispose()
    return time.perf_counter() - started, core_hours, gib_hours


REJECT = {"kind": "uri:enum-value-update", "path": "phase", "value": "REJECTED"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(n: int, requests: int, accepts: int, utilisation: float | None) -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix=f"eb-bench-{n}-"))
    db_url = f"sqlite:///{base / 'ledger.sqlite'}"
    fill_s, core_hours, gib_hours = fill(db_url, n)
    cores, memory = CORES, MEMORY
    if utilisation:
        span_h = SPAN.total_seconds() / 3600
        cores = max(8, round(core_hours / span_h / utilisation))
        memory = max(8, round(gib_hours / span_h / utilisation))
    broker = BrokerProcess(
        dir=base,
        port=free_port(),
        db_url=db_url,
        args=(
            f"--LocalPlatform.cores={cores}",
            f"--LocalPlatform.memory_gib={memory}",
            "--EBBroker.horizon_days=14",
            "--EBBroker.log_level=WARN",
        ),
    )
    t0 = time.perf_counter()
    broker.start()
    startup = time.perf_counter() - t0
    assert broker.proc is not None
    pid = broker.proc.pid
    rss_loaded = rss_mb(pid)
    try:
        with broker.client() as c:
            body = request_body()
            for _ in range(20):  # warm up
                c.post("/requests", json=body)
            latencies = []
            yes = 0
            for _ in range(requests):
                s = time.perf_counter()
                r = c.post("/requests", json=body)
                latencies.append((time.perf_counter() - s) * 1000)
                assert r.status_code == 303, r.text[:300]
                yes += r.json()["result"] == "YES"
                if utilisation:  # as a person would: decline what was not taken (untimed)
                    for offer in r.json().get("offers") or []:
                        c.post(offer["meta"]["url"], json=REJECT)
            assert utilisation or yes == requests, "a huge platform must always say YES"
            accept_lat = []
            lost = no_offer = 0
            s_all = time.perf_counter()
            for _ in range(accepts):
                offers = c.post("/requests", json=body).json().get("offers")
                if not offers:
                    no_offer += 1
                    continue
                s = time.perf_counter()
                r = c.post(
                    offers[0]["meta"]["url"],
                    json={"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"},
                )
                accept_lat.append((time.perf_counter() - s) * 1000)
                assert r.status_code in ((200, 409) if utilisation else (200,)), r.text[:300]
                lost += r.status_code == 409
            pairs_per_s = accepts / (time.perf_counter() - s_all)
        rss_after = rss_mb(pid)
    finally:
        broker.stop()
    return {
        "bookings": n,
        "cores": cores,
        "memory": memory,
        "yes": yes / requests,
        "accepts_lost": lost,
        "no_offer": no_offer,
        "fill_s": fill_s,
        "startup_s": startup,
        "p50": statistics.median(latencies),
        "p99": pct(latencies, 0.99),
        "accept_p50": statistics.median(accept_lat) if accept_lat else float("nan"),
        "accept_p99": pct(accept_lat, 0.99) if accept_lat else float("nan"),
        "pairs_per_s": pairs_per_s,
        "rss_loaded": rss_loaded,
        "rss_after": rss_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--accepts", type=int, default=200)
    parser.add_argument(
        "--utilisation",
        type=float,
        default=None,
        help="size the platform so that the bookings fill this fraction of it (e.g. 0.85)",
    )
    args = parser.parse_args()
    rows = [run(n, args.requests, args.accepts, args.utilisation) for n in args.sizes]
    print(
        "| active bookings | POST /requests p50 | p99 | accept p50 | accept p99 "
        "| request+accept pairs/s | RSS after load | RSS after run | start-up |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['bookings']:,} | {r['p50']:.2f} ms | {r['p99']:.2f} ms "
            f"| {r['accept_p50']:.2f} ms "
            f"| {r['accept_p99']:.2f} ms | {r['pairs_per_s']:.0f} | {r['rss_loaded']:.0f} MB "
            f"| {r['rss_after']:.0f} MB | {r['startup_s']:.1f} s |"
        )
    if args.utilisation:
        print()
        print(
            "| active bookings | platform | requests answered YES | accepts lost (409) "
            "| no offer left to accept |"
        )
        print("|---:|---|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['bookings']:,} | {r['cores']:,} cores, {r['memory']:,} GiB "
                f"| {100 * r['yes']:.0f} % | {r['accepts_lost']} of {args.accepts} "
                f"| {r['no_offer']} |"
            )


if __name__ == "__main__":
    main()
