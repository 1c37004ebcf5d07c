"""Benchmark the Slurm platform on a real single-node Slurm started for the run.

1. Offer latency: ``POST /requests`` to a real ``eb-broker --platform=slurm`` next to a bare
   ``sbatch --test-only`` on the same node, on an empty queue and with foreign jobs queued.
   Two requests: a narrow window (precise slots only: no Slurm call at all) and "within the
   next 24 hours" (precise slots plus a queue estimate: one ``sbatch --test-only``).
2. Accuracy of start estimates: queue ``--jobs`` 1-core jobs one after another; before each,
   ask for its estimate, then submit the job. Once every job has started, compare predicted
   and actual starts (mean absolute error, bias, median, max). The estimates: what a user is
   offered — ``jeb:estimate.expected`` of the estimate offer of ``POST /requests`` to a real
   ``eb-broker --platform=slurm`` ("within the next 24 hours", the offers rejected at once) —
   and, underneath it, ``SlurmPlatform.estimate`` with either estimator; also
   ``squeue --start``'s estimate read right after all jobs were queued. Two workloads: jobs
   that run their full time limit, and jobs that end early (30 to 100 % of the limit, as
   real jobs do).

Run by hand:  .venv/bin/python benchmarks/bench_slurm.py [--requests 50] [--jobs 50]
Needs Debian's slurm-wlm, slurmctld, slurmd, slurm-client and munge (./dev setup).
Results go to stdout as Markdown (paste into benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eb_broker.platforms.slurm import SlurmPlatform
from eb_broker.platforms.slurm.objects import JobRequest
from eb_broker.scheduling import Demand, Resources, Window
from eb_sdk.model import ExecutionRequest, JupyterNotebook
from eb_sdk.model.times import parse_instant
from tests.fixtures.services import BrokerProcess, start_sqlite_broker
from tests.fixtures.slurm import SlurmCluster, start_slurm

NOTEBOOK = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/jupyter-notebook.yaml"
COMPUTE = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/compute/simple-compute-resource.yaml"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):.1f} / {1000 * pct(values, 0.95):.1f}"


def body(window: str) -> dict[str, Any]:
    return {
        "executable": {"kind": NOTEBOOK, "location": "/bench.ipynb"},
        "compute": {"kind": COMPUTE, "cores": {"min": 1}, "memory": {"min": 1}},
        "schedule": {"requested": {"start": window, "duration": "PT10M"}},
    }


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- 1. offer latency -----------------------------------------------------------------------------


def test_only_latency(cluster: SlurmCluster, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        cluster.run("sbatch", "--test-only", "-c", "1", "--mem=1G", "-t", "10", "--wrap=true")
        out.append(time.perf_counter() - t)
    return out


def offer_latency(broker: BrokerProcess, n: int, flexible: bool) -> tuple[list[float], int]:
    out, estimates = [], 0
    with broker.client() as client:
        for _ in range(n):
            now = datetime.now(UTC)
            window = (
                f"{iso(now)}/PT24H"
                if flexible
                else f"{iso(now + timedelta(hours=2))}/PT10M"  # narrow: precise slots only
            )
            t = time.perf_counter()
            answer = client.post("/requests", json=body(window))
            out.append(time.perf_counter() - t)
            offers = answer.json().get("offers") or []
            estimates += sum(1 for o in offers if "jeb:estimate" in o)
            reject(client, offers)
    return out, estimates


def reject(client: Any, offers: list[dict[str, Any]]) -> None:
    """Reject offers: their holds must not pile up between requests."""
    for offer in offers:
        client.post(
            offer["meta"]["url"],
            json={"kind": "uri:enum-value-update", "path": "phase", "value": "REJECTED"},
        )


def slurm_broker(cluster: SlurmCluster, base: Path, prefix: str, *extra: str) -> BrokerProcess:
    """A real ``eb-broker --platform=slurm`` on the benchmark's cluster (no probe job)."""
    return start_sqlite_broker(
        base,
        "--platform=slurm",
        f"--SlurmPlatform.slurm_conf={cluster.conf}",
        "--SlurmPlatform.default_user=root",
        f"--SlurmPlatform.reservation_prefix={prefix}",
        "--SlurmPlatform.container_engine=",
        f"--SlurmPlatform.python={sys.executable}",
        *extra,
    )


def bench_latency(cluster: SlurmCluster, base: Path, n: int) -> list[str]:
    broker = slurm_broker(cluster, base, "bench-")
    rows = [
        "| queue | `sbatch --test-only` | POST /requests, narrow window (precise only) "
        "| POST /requests, next 24 h (precise + estimate) |",
        "|---|---:|---:|---:|",
    ]
    try:
        for label, foreign in (("empty", 0), ("200 foreign 5-min jobs queued", 200)):
            for _ in range(foreign):
                cluster.sbatch("-c", "1", "--mem=1G", "-t", "5", script="sleep 300")
            time.sleep(3)  # backfill plans the queue; the broker re-reads the cluster
            bare = test_only_latency(cluster, n)
            precise, _ = offer_latency(broker, n, flexible=False)
            flexible, estimates = offer_latency(broker, n, flexible=True)
            if estimates != n:
                raise RuntimeError(
                    f"{n - estimates} flexible answers had no estimate:\n{broker.log()[-2000:]}"
                )
            rows.append(f"| {label} | {ms(bare)} | {ms(precise)} | {ms(flexible)} |")
    finally:
        broker.stop()
        cluster.clean()
    return rows


# -- 2. accuracy of start estimates ---------------------------------------------------------


def offered_expected(client: Any, limit_minutes: int) -> datetime:
    """``jeb:estimate.expected`` of the estimate offer a broker makes now (offers rejected)."""
    request = body(f"{iso(datetime.now(UTC))}/PT24H")
    request["schedule"]["requested"]["duration"] = f"PT{limit_minutes}M"
    offers = client.post("/requests", json=request).json().get("offers") or []
    reject(client, offers)
    (estimate,) = [o["jeb:estimate"] for o in offers if "jeb:estimate" in o]
    return parse_instant(estimate["expected"])


async def queue_jobs(
    platforms: dict[str, SlurmPlatform],
    client: Any,
    n: int,
    runtime: Any,
    limit_minutes: int,
) -> list[tuple[int, dict[str, datetime]]]:
    """Estimate, then submit, ``n`` jobs one after another: [(job id, {estimator: start})]."""
    request = ExecutionRequest(executable=JupyterNotebook(location="/bench.ipynb"))
    submitter = next(iter(platforms.values()))
    queued = []
    for i in range(n):
        offered = await asyncio.to_thread(offered_expected, client, limit_minutes)
        now = datetime.now(UTC)
        demand = Demand(
            minimum=Resources(cores=1, memory_gib=1),
            maximum=Resources(cores=1, memory_gib=1),
            duration=timedelta(minutes=limit_minutes),
            windows=(Window(now, now + timedelta(hours=24)),),
            preparation=timedelta(0),
        )
        predicted = {"offer": offered}
        for name, platform in platforms.items():
            (estimate,) = await platform.estimate(request, demand, now)
            predicted[name] = estimate.expected
        job_id = await submitter.client.submit(
            JobRequest(
                name=f"bench-{i}",
                cores=1,
                memory_mb=1024,
                time_limit=limit_minutes,
                script=f"#!/bin/sh\nsleep {runtime():.0f}\n",
                workdir="/tmp",
                output="/dev/null",
            )
        )
        queued.append((job_id, predicted))
    return queued


def squeue_starts(cluster: SlurmCluster) -> dict[int, int]:
    jobs = json.loads(cluster.run("squeue", "--json").stdout)["jobs"]
    return {int(j["job_id"]): int(j["start_time"] or 0) for j in jobs}


def wait_all_started(cluster: SlurmCluster, ids: list[int], timeout: float) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = json.loads(cluster.run("squeue", "--json").stdout)["jobs"]
        started = {
            int(j["job_id"]): int(j["start_time"])
            for j in jobs
            if int(j["job_id"]) in ids and j["job_state"] not in ("PENDING",)
        }
        if len(started) == len(ids):
            return started
        time.sleep(2)
    raise TimeoutError("not every job started")


def errors(predicted: dict[int, float], actual: dict[int, int]) -> list[float]:
    return [predicted[j] - actual[j] for j in predicted]


def summary(label: str, predictor: str, signed: list[float]) -> str:
    absolute = [abs(e) for e in signed]
    return (
        f"| {label} | {predictor} | {len(signed)} | {statistics.mean(absolute):.1f} s "
        f"| {statistics.mean(signed):+.1f} s | {statistics.median(absolute):.1f} s "
        f"| {max(absolute):.1f} s |"
    )


def estimate_broker(cluster: SlurmCluster, base: Path) -> BrokerProcess:
    """A broker that sees every job queued just before a request: it re-reads the cluster
    every second and asks squeue afresh for each estimate (poll_interval=0)."""
    return slurm_broker(
        cluster,
        base,
        "ebb-",
        "--SlurmPlatform.refresh_interval=1",
        "--SlurmPlatform.poll_interval=0",
    )


def bench_accuracy(cluster: SlurmCluster, base: Path, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    platforms = {
        estimator: SlurmPlatform(
            slurm_conf=str(cluster.conf),
            reservation_prefix="bench-",
            work_dir=str(base),
            estimator=estimator,
            poll_interval=0,  # every estimate sees the jobs queued just before it
            container_engine="",  # no probe job
        )
        for estimator in ("queue", "slurm")
    }
    labels = {
        "offer": "**offered** `jeb:estimate.expected` (`POST /requests`, `estimator=queue`)",
        "queue": "`SlurmPlatform.estimate`, `estimator=queue` (simulated queue)",
        "slurm": "`SlurmPlatform.estimate`, `estimator=slurm` (`sbatch --test-only`)",
    }
    rows = [
        "| workload | predictor | jobs | MAE | bias (predicted - actual) | median abs. error "
        "| max abs. error |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    workloads: list[tuple[str, Any]] = [
        ("run their full limit (60 s of 1 min)", lambda: 60),
        ("end early (18 to 60 s of 1 min)", lambda: rng.uniform(18, 60)),
    ]
    broker = estimate_broker(cluster, base / "broker")
    try:
        with broker.client() as client:
            for label, runtime in workloads:
                rows += accuracy_run(cluster, platforms, client, n, label, runtime, labels)
    finally:
        broker.stop()
    cluster.clean()
    return rows


def accuracy_run(
    cluster: SlurmCluster,
    platforms: dict[str, SlurmPlatform],
    client: Any,
    n: int,
    label: str,
    runtime: Any,
    labels: dict[str, str],
) -> list[str]:
    rows = []
    cluster.clean()
    started_at = time.monotonic()
    queued = asyncio.run(queue_jobs(platforms, client, n, runtime, 1))
    ids = [job_id for job_id, _ in queued]
    time.sleep(3)  # let the backfill scheduler plan the queue
    slurm_view = squeue_starts(cluster)
    actual = wait_all_started(cluster, ids, timeout=30 * 60)
    for name in labels:
        ours = {job_id: predicted[name].timestamp() for job_id, predicted in queued}
        rows.append(summary(label, labels[name], errors(ours, actual)))
    theirs = {j: float(slurm_view[j]) for j in ids if slurm_view.get(j)}
    rows.append(summary(label, "`squeue --start`, 3 s after queueing", errors(theirs, actual)))
    print(f"  {label}: {time.monotonic() - started_at:.0f} s", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="requests per latency cell")
    parser.add_argument("--jobs", type=int, default=50, help="queued jobs per accuracy run")
    parser.add_argument("--cpus", type=int, default=10, help="CPUs of the benchmark node")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="eb-bench-slurm-"))
    cluster = start_slurm(base / "slurm", cpus=args.cpus, memory_mb=1024 * (args.cpus + 2))
    try:
        print(f"## Slurm node: {args.cpus} CPUs (virtual), Slurm 22.05, single node\n")
        print("### Offer latency (p50 / p95, ms)\n")
        print("\n".join(bench_latency(cluster, base / "broker", args.requests)))
        if not args.skip_accuracy:
            print("\n### Start estimates: predicted vs actual start\n")
            print("\n".join(bench_accuracy(cluster, base / "work", args.jobs, args.seed)))
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
