"""Benchmark batch runs: one-cell notebooks through ``eb.map`` on a local broker.

Four throughputs (runs per second) of the same one-cell notebook, each run with its own kernel:

1. **the limit**: the cores / the time of one bare ``nbclient`` run (a kernel started, one cell
   executed, the kernel shut down; median of ``--bare`` runs one after another);
2. **a plain papermill loop**: ``papermill.execute_notebook`` for ``--loop`` inputs one after
   another (what a user would write without a broker);
3. **the batch runner alone**: ``python -m eb_broker.platforms.local_runner`` on one session
   directory holding all ``--inputs`` inputs (no broker, no SDK, no chunks): what the runner's
   execution model gives (inputs run ``batch_workers_per_core`` per core at once);
4. **eb.map**: ``--inputs`` inputs through ``eb.map`` to a real ``eb-broker`` (local platform,
   every core), from the call to the end of ``batch.wait()``.

The SDK + broker overhead per run is (4's wall time - 3's wall time) / inputs: what
negotiating chunks, following them and the broker's sessions add to the same execution.

Run by hand:  .venv/bin/python benchmarks/bench_batch.py [--inputs 1000] [--loop 100]
Results go to stdout as Markdown (paste into benchmarks/RESULTS.md). The machine may be
shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import eb_sdk as eb
from tests.fixtures.notebooks import write_notebook
from tests.fixtures.services import BrokerProcess, free_port

REPO = Path(__file__).resolve().parents[1]


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def bare_runs(notebook: Path, count: int) -> list[float]:
    """Seconds of bare nbclient runs (kernel start, the cell, kernel shutdown)."""
    import nbformat
    from nbclient import NotebookClient

    times = []
    for i in range(count + 1):
        nb = nbformat.read(notebook, as_version=4)
        started = time.perf_counter()
        NotebookClient(nb, kernel_name="python3").execute()
        if i:  # the first one warms the disk caches
            times.append(time.perf_counter() - started)
    return times


def papermill_loop(notebook: Path, out: Path, count: int) -> float:
    """Wall seconds of ``count`` papermill runs one after another."""
    import papermill

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for i in range(count):
        papermill.execute_notebook(
            str(notebook),
            str(out / f"{i}.ipynb"),
            parameters={"input_file": f"obs-{i}.fits"},
            kernel_name="python3",
            progress_bar=False,
        )
    return time.perf_counter() - started


def runner_alone(notebook: Path, base: Path, inputs: list[str], workers: int) -> float:
    """Wall seconds of the batch runner on all inputs in one session directory."""
    session = base / "runner-alone"
    session.mkdir(parents=True)
    spec = {
        "kind": "notebook-batch",
        "notebook": str(notebook),
        "parameter": "input_file",
        "parameters": {},
        "inputs": [
            {"id": f"in-{i}", "value": v, "output": str(session / "outputs" / f"in-{i}.ipynb")}
            for i, v in enumerate(inputs)
        ],
        "output_dir": str(session / "outputs"),
        "workers": workers,
        "kernel_name": "python3",
        "cwd": str(notebook.parent),
        "kernel_start_timeout": 120,
    }
    (session / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "eb_broker.platforms.local_runner", str(session)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - started
    status = json.loads((session / "status.json").read_text())
    assert status["state"] == "SUCCEEDED" and status["failed"] == 0, status
    return elapsed


def through_eb_map(notebook: Path, base: Path, inputs: list[str], chunk: int) -> float:
    """Wall seconds of ``eb.map`` + ``batch.wait()`` against a real local broker."""
    cores = os.cpu_count() or 1
    broker = BrokerProcess(
        dir=base / "broker",
        port=free_port(),
        db_url=f"sqlite:///{base / 'broker' / 'ledger.sqlite'}",
        args=(f"--LocalPlatform.cores={cores}", "--LocalPlatform.memory_gib=8"),
    )
    broker.dir.mkdir(parents=True)
    broker.start()
    os.environ["EB_BATCHES"] = str(base / "batches")
    try:
        target = eb.Broker(broker.url, name="local", token=broker.tokens["alice"])
        started = time.perf_counter()
        batch = eb.map(notebook, inputs, brokers=target, chunk_size=chunk, per_input="20s")
        batch.wait(progress=False)
        elapsed = time.perf_counter() - started
        status = batch.status()
        assert status["COMPLETED"] == len(inputs), (status, batch.warnings)
        return elapsed
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1000)
    parser.add_argument("--loop", type=int, default=100, help="inputs of the papermill loop")
    parser.add_argument("--bare", type=int, default=10, help="bare nbclient runs timed")
    parser.add_argument("--chunk-size", type=int, default=None, help="default: automatic")
    parser.add_argument("--workers-per-core", type=float, default=2.0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # papermill's and the kernels' chatter

    cores = os.cpu_count() or 1
    base = Path(tempfile.mkdtemp(prefix="eb-bench-batch-"))
    notebook = write_notebook(
        base / "one.ipynb", "y = len(input_file)", parameters="input_file = ''"
    )
    inputs = [f"obs-{i:05d}.fits" for i in range(args.inputs)]
    before = load()

    try:
        bare = bare_runs(notebook, args.bare)
        loop = papermill_loop(notebook, base / "loop", args.loop)
        workers = max(1, round(cores * args.workers_per_core))
        alone = runner_alone(notebook, base, inputs, workers)
        mapped = through_eb_map(notebook, base, inputs, args.chunk_size)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    after = load()
    t_bare = statistics.median(bare)
    limit = cores / t_bare

    rows = [
        ("limit: cores / one bare nbclient run", f"{cores} / {t_bare:.3f} s", limit),
        (f"plain papermill loop ({args.loop} runs)", f"{loop:.1f} s", args.loop / loop),
        (
            f"batch runner alone ({args.inputs} runs, {workers} at once)",
            f"{alone:.1f} s",
            args.inputs / alone,
        ),
        (f"eb.map on a local broker ({args.inputs} runs)", f"{mapped:.1f} s", args.inputs / mapped),
    ]
    print(f"bare nbclient runs: median {t_bare:.3f} s, min {min(bare):.3f}, max {max(bare):.3f}")
    print(f"load average: before {before}, after {after}\n")
    print("| | time | runs/s | x limit |")
    print("|---|---:|---:|---:|")
    for name, took, rate in rows:
        print(f"| {name} | {took} | {rate:.2f} | {rate / limit:.2f} |")
    overhead = (mapped - alone) / args.inputs * 1000
    print(
        f"\nSDK + broker overhead per run: ({mapped:.1f} s - {alone:.1f} s) / {args.inputs} "
        f"= {overhead:.1f} ms"
    )


if __name__ == "__main__":
    main()
