"""Benchmark an aggregator fanning out to 50 brokers, 5 of them dead.

* 45 healthy brokers: lightweight real HTTP servers (tornado), all in ONE separate process
  (``--stubs``), each on its own loopback port. Each answers ``/capabilities``,
  ``POST /requests`` (one offer, after its own delay: spread evenly from ``--min-delay`` to
  ``--max-delay``) and ``POST /sessions/{uuid}`` (the aggregator rejects the offers it drops).
* 5 dead brokers: 3 ports nobody listens on (connection refused) and 2 that accept connections
  and never answer (hung), held open by this process.
* the aggregator: a real ``eb-broker --platform aggregate`` process (SQLite ledger) with a
  deadline of ``--deadline`` s and circuits that open after 2 failures.

Measured over HTTP on loopback: each ``POST /requests`` to the aggregator, and — at the same
time, as the reference — the slowest healthy broker asked directly. The first rounds wait for
the hung brokers until the deadline (nobody can know sooner that they hang); after two
failures their circuits are open and the answer comes as soon as the slowest healthy broker's.

Run by hand:  .venv/bin/python benchmarks/bench_aggregate.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from tests.fixtures.aggregate import aggregator_config, closed_port_url
from tests.fixtures.services import BrokerProcess, free_port

K = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds"
NOTEBOOK = f"{K}/executable/jupyter-notebook.yaml"
COMPUTE = f"{K}/compute/simple-compute-resource.yaml"
SESSION = f"{K}/session/scheduled-execution-session.yaml"


# -- the stub brokers (run with --stubs in their own process) ------------------------------------


def stub_app(port: int, delay: float) -> Any:
    from tornado import web

    base = f"http://127.0.0.1:{port}"

    def session(uid: str, phase: str) -> dict[str, Any]:
        start = datetime.now(UTC) + timedelta(hours=1)
        return {
            "kind": SESSION,
            "meta": {"uuid": uid, "url": f"{base}/sessions/{uid}"},
            "phase": phase,
            "expires": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
            "executable": {"kind": NOTEBOOK, "location": "/bench.ipynb"},
            "compute": {"kind": COMPUTE, "cores": {"min": 1, "max": 1}},
            "schedule": {"available": {"start": start.isoformat() + "/PT0S", "duration": "PT1H"}},
            "jeb:platform": {"name": "stub", "broker": f"stub-{port}"},
        }

    class Caps(web.RequestHandler):
        def get(self) -> None:
            self.finish(
                {
                    "name": f"stub-{port}",
                    "platform": "stub",
                    "version": "0",
                    "executables": [NOTEBOOK],
                    "max_compute": {"cores": 64, "memory": 256},
                    "timezone": "UTC",
                    "offer_expiry": "PT5M",
                    "max_offers": 1,
                    "max_duration": "P7D",
                }
            )

    class Requests(web.RequestHandler):
        async def post(self) -> None:
            await asyncio.sleep(delay)
            oid = str(uuid.uuid4())
            self.set_status(303)
            self.set_header("Location", f"{base}/offersets/{oid}")
            self.set_header("Content-Type", "application/json")
            body = {
                "meta": {"uuid": oid, "url": f"{base}/offersets/{oid}"},
                "result": "YES",
                "offers": [session(str(uuid.uuid4()), "OFFERED")],
            }
            self.finish(json.dumps(body))

    class Sessions(web.RequestHandler):
        def post(self, uid: str) -> None:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(session(uid, "REJECTED")))

        def get(self, uid: str) -> None:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(session(uid, "OFFERED")))

    class Health(web.RequestHandler):
        def get(self) -> None:
            self.finish({"status": "ok"})

    return web.Application(
        [
            (r"/capabilities", Caps),
            (r"/requests", Requests),
            (r"/sessions/([^/]+)", Sessions),
            (r"/health", Health),
        ]
    )


def run_stubs(spec: str) -> None:
    """``delay,delay,...``: serve one stub per delay on one event loop, each on a free port;
    print the ports (a JSON list) when all listen."""
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    async def serve() -> None:
        ports = []
        for delay in spec.split(","):
            sockets = bind_sockets(0, "127.0.0.1")
            port = sockets[0].getsockname()[1]
            HTTPServer(stub_app(port, float(delay))).add_sockets(sockets)
            ports.append(port)
        print(json.dumps(ports), flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


# -- the benchmark ------------------------------------------------------------------------------


def request_body() -> dict[str, Any]:
    return {
        "executable": {"kind": NOTEBOOK, "location": "/bench.ipynb"},
        "compute": {"kind": COMPUTE, "cores": {"min": 1}},
        "schedule": {"requested": {"duration": "PT1H"}},
    }


def hung_socket() -> tuple[socket.socket, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timing(header: str) -> dict[str, float]:
    """``Server-Timing`` as {name: seconds}."""
    out = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";")
        for field in rest.split(";"):
            if field.startswith("dur="):
                out[name] = float(field[4:]) / 1000
    return out


async def measure(
    agg: str, slowest: str, token: str, rounds: int, gap: float
) -> list[tuple[float, float, int, float]]:
    """(aggregated seconds, slowest healthy broker asked directly, offers, the slowest broker's
    answer time as the aggregator saw it) per round."""
    headers = {"Authorization": f"Bearer {token}"}
    out = []
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(rounds):

            async def timed(url: str) -> tuple[float, httpx.Response]:
                started = time.perf_counter()
                response = await client.post(url, json=request_body(), headers=headers)
                return time.perf_counter() - started, response

            (a, ra), (s, _) = await asyncio.gather(
                timed(f"{agg}/requests"), timed(f"{slowest}/requests")
            )
            assert ra.status_code == 303, ra.text
            seen = timing(ra.headers.get("Server-Timing", "")).get("slowest", float("nan"))
            out.append((a, s, len(ra.json().get("offers") or []), seen))
            late = [
                m["message"]
                for m in ra.json()["meta"].get("messages", [])
                if "did not answer" in m["message"]
            ]
            if late and len(out) > 2:
                print(f"round {len(out)}: {a * 1000:.0f} ms; {'; '.join(late)}", file=sys.stderr)
            await asyncio.sleep(gap)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stubs", help=argparse.SUPPRESS)
    parser.add_argument("--healthy", type=int, default=45)
    parser.add_argument("--refused", type=int, default=3)
    parser.add_argument("--hung", type=int, default=2)
    parser.add_argument("--min-delay", type=float, default=0.010)
    parser.add_argument("--max-delay", type=float, default=0.200)
    parser.add_argument("--deadline", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--gap", type=float, default=0.2, help="pause between requests (s)")
    args = parser.parse_args()
    if args.stubs:
        run_stubs(args.stubs)
        return

    step = (args.max_delay - args.min_delay) / max(1, args.healthy - 1)
    delays = [args.min_delay + i * step for i in range(args.healthy)]
    spec = ",".join(f"{d:.4f}" for d in delays)
    stubs = subprocess.Popen(
        [sys.executable, __file__, "--stubs", spec], stdout=subprocess.PIPE, text=True
    )
    assert stubs.stdout is not None
    ports: list[int] = json.loads(stubs.stdout.readline())
    hung = [hung_socket() for _ in range(args.hung)]
    brokers = [{"name": f"ok-{i:02d}", "url": f"http://127.0.0.1:{p}"} for i, p in enumerate(ports)]
    brokers += [{"name": f"refused-{i}", "url": closed_port_url()} for i in range(args.refused)]
    brokers += [{"name": f"hung-{i}", "url": url} for i, (_, url) in enumerate(hung)]
    base = Path(tempfile.mkdtemp(prefix="eb-bench-agg-"))
    agg = BrokerProcess(
        dir=base,
        port=free_port(),
        db_url=f"sqlite:///{base / 'ledger.sqlite'}",
        broker_name="bench-aggregator",
        config=aggregator_config(
            brokers, deadline=args.deadline, failure_threshold=2, cooldown=3600, max_offers=4
        )
        + "c.AggregatePlatform.capabilities_ttl = 3600\n",
    )
    try:
        agg.start()
        slowest = f"http://127.0.0.1:{ports[-1]}"
        rounds = asyncio.run(measure(agg.url, slowest, agg.tokens["alice"], args.rounds, args.gap))
    finally:
        if os.environ.get("EB_BENCH_LOG"):
            print(agg.log()[-6000:], file=sys.stderr)
        agg.stop()
        stubs.terminate()
        stubs.wait(10)
        for sock, _ in hung:
            sock.close()

    report(args, rounds)


def report(args: argparse.Namespace, rounds: list[tuple[float, float, int, float]]) -> None:
    """Markdown tables for benchmarks/RESULTS.md and the two targets.

    Two references for "the slowest healthy broker": asked directly by this client at the same
    moment, and its answer time as the aggregator saw it (``Server-Timing: slowest``). The
    second one takes out what the aggregator cannot help: the 45 stubs share one process, so
    the aggregator's 45 requests queue there behind each other.
    """
    first, steady = rounds[:2], rounds[2:]
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average at the end (1 / 5 / 15 min, 2 cores): {load}")
    print(
        f"\n{args.healthy} healthy brokers (delays {args.min_delay * 1000:.0f} to "
        f"{args.max_delay * 1000:.0f} ms, one stub process), {args.refused} refusing "
        f"connections, {args.hung} hung; deadline {args.deadline:g} s; {len(rounds)} rounds\n"
    )
    print(
        "| rounds | aggregated p50 | p95 | max | slowest healthy, asked directly, p50 "
        "| slowest healthy, as the aggregator saw it, p50 | offers |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, rows in (
        ("1-2 (hung brokers not yet known)", first),
        (f"3-{len(rounds)} (circuits open)", steady),
    ):
        total = [r[0] * 1000 for r in rows]
        print(
            f"| {label} | {statistics.median(total):.0f} ms | {pct(total, 95):.0f} ms "
            f"| {max(total):.0f} ms | {statistics.median(r[1] * 1000 for r in rows):.0f} ms "
            f"| {statistics.median(r[3] * 1000 for r in rows):.0f} ms | {rows[0][2]} |"
        )
    print("\nrounds 3 on, aggregated minus the slowest healthy broker:\n")
    print("| reference | p50 | p95 | max |")
    print("|---|---:|---:|---:|")
    for label, index in (("asked directly", 1), ("as the aggregator saw it", 3)):
        over = [(r[0] - r[index]) * 1000 for r in steady]
        print(
            f"| {label} | {statistics.median(over):+.0f} ms | {pct(over, 95):+.0f} ms "
            f"| {max(over):+.0f} ms |"
        )
    worst = max(r[0] for r in rounds)
    over_seen = [r[0] - r[3] for r in steady]
    print(
        f"\nnever above the deadline: max {worst * 1000:.0f} ms, deadline "
        f"{args.deadline * 1000:.0f} ms: {'met' if worst <= args.deadline else 'NOT met'}"
    )
    print(
        f"circuits open, at most slowest healthy (as seen) + 50 ms: p50 "
        f"{statistics.median(over_seen) * 1000:+.0f} ms, max {max(over_seen) * 1000:+.0f} ms: "
        f"{'met' if max(over_seen) <= 0.05 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
