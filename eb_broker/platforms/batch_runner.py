"""The runner's side of a notebook batch (``kind: notebook-batch`` in ``spec.json``).

One session runs one chunk of a batch: the same notebook once per input, each input a papermill
run of its own with a fresh kernel (so inputs are as isolated as separate papermill calls), a
few at a time (``workers``). A failing input does not stop the others. Every input leaves

* its output notebook (``output``; papermill marks the failing cell and puts a link to it at
  the top), and
* its status record ``DIR/inputs/<id>.json`` (written atomically when it starts and ends)::

    {"id": ..., "state": "RUNNING" | "SUCCEEDED" | "FAILED" | "STOPPED", "output": path,
     "started": iso, "finished": iso, "duration_s": 1.2, "error": {cell, ename, evalue, ...}}

``DIR/batch.json`` (the manifest) gathers the records in input order with their counts; it is
rewritten at most every half second while inputs finish, and at the end. The session itself
SUCCEEDS when every input ran (whatever each input's outcome) and FAILS only when it was
stopped or could not run at all. An input interrupted by a stop is recorded ``STOPPED``: it did
not finish, so the client runs it again elsewhere.

Why threads: each papermill run spends most of its time waiting for its kernel process (start-up,
replies), so a few runs per core overlap well (benchmarks/RESULTS.md). The kernel's working
directory is passed to nbclient (``resources``) rather than with papermill's ``cwd``, which
changes the working directory of the whole process.

Standard library only at import time (papermill is imported when the batch runs).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import local_runner as rn

if TYPE_CHECKING:
    from .local_runner import Runner

log = logging.getLogger("eb_broker.local_runner.batch")

#: ``kind`` of a batch in ``spec.json``.
BATCH_KIND = "notebook-batch"
#: The manifest, per-input records and default output directory in a session directory.
MANIFEST_FILE = "batch.json"
INPUTS_DIR = "inputs"
OUTPUTS_DIR = "outputs"

#: Input states; FINISHED ones are final (STOPPED means: it did not finish).
FINISHED = frozenset({"SUCCEEDED", "FAILED"})

#: Seconds between two rewrites of the manifest while inputs finish.
MANIFEST_INTERVAL = 0.5
#: Seconds the running inputs get to notice a stop (their kernels are killed) before the
#: runner records its end anyway.
STOP_GRACE = 10.0


def input_record_path(session_dir: Path, input_id: str) -> Path:
    return session_dir / INPUTS_DIR / f"{input_id}.json"


def read_records(session_dir: Path, ids: list[str]) -> list[dict[str, Any]]:
    """The status records of ``ids`` that exist, in that order."""
    out = []
    for input_id in ids:
        record = rn.read_json(input_record_path(session_dir, input_id))
        if record is not None:
            out.append(record)
    return out


def counts_of(records: list[dict[str, Any]], total: int) -> dict[str, int]:
    """How many inputs are in each state (``PENDING``: no record yet)."""
    counts = {"PENDING": total - len(records)}
    for record in records:
        state = str(record.get("state") or "RUNNING")
        counts[state] = counts.get(state, 0) + 1
    return counts


class BatchRun:
    """Runs the inputs of one ``notebook-batch`` spec for a :class:`Runner`."""

    def __init__(self, runner: Runner, spec: dict[str, Any]) -> None:
        self.runner = runner
        self.spec = spec
        self.dir = runner.dir
        self.inputs: list[dict[str, Any]] = list(spec.get("inputs") or [])
        self.manifest = self.dir / MANIFEST_FILE
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}
        self._dirty = False
        self._language: str | None = rn.kernel_language(spec.get("kernel_name"))

    # -- records ---------------------------------------------------------------------------

    def _record(self, record: dict[str, Any]) -> None:
        rn.write_json_atomic(input_record_path(self.dir, str(record["id"])), record)
        with self._lock:
            self._records[str(record["id"])] = dict(record)
            self._dirty = True

    def write_manifest(self) -> None:
        with self._lock:
            records = [self._records[i["id"]] for i in self.inputs if i["id"] in self._records]
            self._dirty = False
        rn.write_json_atomic(
            self.manifest,
            {
                "total": len(self.inputs),
                "counts": counts_of(records, len(self.inputs)),
                "inputs": records,
                "updated": rn.now_iso(),
            },
        )

    # -- one input -------------------------------------------------------------------------

    def run_input(self, item: dict[str, Any]) -> None:
        """Execute the notebook for one input (in a worker thread); never raises."""
        if self.runner.stop_requested:
            return
        import papermill

        spec = self.spec
        output = str(item["output"])
        record: dict[str, Any] = {
            "id": item["id"],
            "state": "RUNNING",
            "output": output,
            "started": rn.now_iso(),
        }
        self._record(record)
        began = time.monotonic()
        parameters = {**(spec.get("parameters") or {}), spec["parameter"]: item.get("value")}
        try:
            rn.execute_papermill(
                lambda: self.runner.stop_requested,
                input_path=spec["notebook"],
                output_path=output,
                parameters=parameters,
                kernel_name=spec.get("kernel_name") or None,
                language=self._language,
                log_output=False,
                progress_bar=False,
                start_timeout=int(spec.get("kernel_start_timeout") or 60),
                execution_timeout=spec.get("cell_timeout") or None,
                # the kernel's working directory, without papermill's process-wide chdir
                resources={"metadata": {"path": spec.get("cwd") or str(self.dir)}},
            )
            record["state"] = "SUCCEEDED"
        except papermill.PapermillExecutionError as exc:
            record.update(state="FAILED", error=rn.notebook_error(exc, spec["notebook"], output))
        except Exception as exc:
            if self.runner.stop_requested:
                record["state"] = "STOPPED"
            else:
                log.exception("input %s could not be executed", item["id"])
                record.update(
                    state="FAILED",
                    error={
                        "message": f"the notebook could not be executed: "
                        f"{type(exc).__name__}: {exc}",
                        "ename": type(exc).__name__,
                        "evalue": str(exc),
                    },
                )
        record.update(finished=rn.now_iso(), duration_s=round(time.monotonic() - began, 3))
        self._record(record)

    # -- the whole chunk -------------------------------------------------------------------

    def run(self) -> int:
        spec = self.spec
        output_dir = Path(spec["output_dir"])
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            (self.dir / INPUTS_DIR).mkdir(exist_ok=True)
        except OSError as exc:
            return self.runner.finish(
                "FAILED", {"message": f"cannot create the output directory {output_dir}: {exc}"}
            )
        workers = max(1, min(int(spec.get("workers") or 1), len(self.inputs) or 1))
        self.runner.update(
            state="RUNNING",
            manifest=str(self.manifest),
            output_dir=str(output_dir),
            workers=workers,
        )
        self.write_manifest()
        log.info("running %d inputs, %d at a time", len(self.inputs), workers)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="input")
        futures = [pool.submit(self.run_input, item) for item in self.inputs]
        stopped = self._follow(futures)
        pool.shutdown(wait=not stopped, cancel_futures=True)
        self.write_manifest()
        if stopped:
            code = self.runner.finish(
                "FAILED", {"message": "stopped before every input finished"}, stopped=True
            )
            if not all(f.done() for f in futures):
                # an input that did not notice its kernel's end: do not wait for it at exit
                logging.shutdown()
                os._exit(code)
            return code
        with self._lock:
            failed = sum(1 for r in self._records.values() if r.get("state") == "FAILED")
        return self.runner.finish("SUCCEEDED", inputs=len(self.inputs), failed=failed)

    def _follow(self, futures: list[Future[None]]) -> bool:
        """Wait for the inputs, rewriting the manifest as they finish; True when stopped."""
        pending = set(futures)
        last_write = 0.0
        while pending:
            _, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            if self.runner.stop_requested:
                log.info("stopping: %d inputs not finished", len(pending))
                for future in pending:
                    future.cancel()
                self.runner._kill_children()  # the running inputs' kernels
                wait(pending, timeout=STOP_GRACE)
                return True
            if self._dirty and time.monotonic() - last_write >= MANIFEST_INTERVAL:
                self.write_manifest()
                last_write = time.monotonic()
        return False


def output_path(output_dir: str, item: dict[str, Any]) -> str:
    """Where an input's output notebook goes: ``output`` or ``<id>.ipynb`` in ``output_dir``."""
    return os.path.join(output_dir, str(item.get("output") or f"{item['id']}.ipynb"))
