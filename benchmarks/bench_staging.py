"""Benchmark what data staging and the archive add to a real eb-broker's answers.

Starts ``eb-broker`` (local platform, SQLite ledger holding ``--records`` finished sessions
written straight into it) and a local data server, then measures over HTTP on loopback:

* ``POST /requests`` latency (p50/p99) without data, with 1 and 5 data URLs whose HEAD answers
  the broker has cached, and with a URL it has never seen (one HEAD request each time);
* ``GET /archive`` of one JSON page (100 records, newest first) and the CSV and Parquet exports
  of every record, with the sizes.

Run by hand:  .venv/bin/python benchmarks/bench_staging.py [--records 10000] [--repeat 200]
Results go to stdout as a Markdown table (paste into benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
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
from tests.fixtures.data_server import DataServer
from tests.fixtures.services import BrokerProcess, free_port
from tests.staging.helpers import data_request


def fill(db_url: str, records: int) -> None:
    """``records`` COMPLETED sessions of alice, spread over the last 30 days."""
    engine = make_engine(db_url)
    migrate(engine)
    now = datetime.now(UTC)
    request = data_request("/bench.ipynb", {"in": "http://data.example.org/x.fits"})
    with engine.begin() as conn:
        conn.execute(
            insert(OfferSetRow),
            [
                {
                    "uuid": "bench",
                    "owner": "alice",
                    "created": now,
                    "expires": now,
                    "result": "YES",
                    "request": request,
                    "messages": [],
                }
            ],
        )
        rows = []
        for i in range(records):
            start = now - timedelta(minutes=4 * i + 60)
            rows.append(
                {
                    "uuid": str(uuid.uuid4()),
                    "offerset": "bench",
                    "owner": "alice",
                    "groups": [],
                    "phase": "COMPLETED",
                    "created": start - timedelta(minutes=5),
                    "modified": start,
                    "start": start,
                    "end": start + timedelta(hours=1),
                    "preparation_s": 5,
                    "launch_at": start,
                    "cores": 1,
                    "memory_gib": 1,
                    "storage_gib": 1,
                    "accelerators": {},
                    "request": request,
                    "messages": [],
                    "connectors": [],
                    "outputs": {},
                    "handle": {},
                    "launched": start,
                    "accepted_at": start - timedelta(minutes=4),
                    "running_at": start,
                    "ended_at": start + timedelta(minutes=12),
                    "finished_at": start + timedelta(minutes=12),
                    "executable_hash": f"notebook:sha256:{i % 50:064x}",
                }
            )
        conn.execute(insert(SessionRow), rows)


def timed(call: object, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="eb-bench-staging-"))
    data = DataServer(base / "files").start()
    urls = [data.file(f"f{i}.bin", 1024) for i in range(5)]
    db_url = f"sqlite:///{base / 'ledger.sqlite'}"
    fill(db_url, args.records)
    broker = BrokerProcess(
        dir=base,
        port=free_port(),
        db_url=db_url,
        args=(
            "--LocalPlatform.cores=10000",
            "--LocalPlatform.memory_gib=40000",
            '--DataStaging.trusted_hosts=["127.0.0.1"]',
            "--EBBroker.hold_offers=False",
        ),
    ).start()
    rows = []
    try:
        with broker.client() as c:
            cases = {
                "no data": data_request("/bench.ipynb", {}),
                "1 URL (HEAD cached)": data_request("/bench.ipynb", {"a": urls[0]}),
                "5 URLs (HEAD cached)": data_request(
                    "/bench.ipynb", {f"a{i}": u for i, u in enumerate(urls)}
                ),
            }
            for label, body in cases.items():
                c.post("/requests", json=body)  # warm up (and fill the HEAD cache)
                p50, p99 = timed(lambda b=body: c.post("/requests", json=b), args.repeat)
                rows.append((f"POST /requests, {label}", p50, p99, ""))
            fresh = iter(range(10**6))
            p50, p99 = timed(
                lambda: c.post(
                    "/requests",
                    json=data_request("/bench.ipynb", {"a": f"{urls[0]}?v={next(fresh)}"}),
                ),
                min(args.repeat, 100),
            )
            rows.append(("POST /requests, 1 URL never seen (one HEAD)", p50, p99, ""))
            p50, p99 = timed(lambda: c.get("/archive"), 20)
            rows.append((f"GET /archive (100 of {args.records} records, JSON)", p50, p99, ""))
            for fmt in ("csv", "parquet"):
                size = len(c.get("/archive", params={"format": fmt}).content)
                p50, p99 = timed(lambda f=fmt: c.get("/archive", params={"format": f}), 5)
                rows.append(
                    (
                        f"GET /archive?format={fmt} (all {args.records})",
                        p50,
                        p99,
                        f"{size / 1024 / 1024:.1f} MiB",
                    )
                )
    finally:
        broker.stop()
        data.stop()
    print("| what | p50 ms | p99 ms | size |\n|---|---:|---:|---|")
    for label, p50, p99, size in rows:
        print(f"| {label} | {p50:.1f} | {p99:.1f} | {size} |")


if __name__ == "__main__":
    main()
