"""The broker's side of notebook batches (``urn:jeb:v1:executable:notebook-batch``).

Shared by the platforms that run the session runner (local processes, Slurm jobs): what to
check in a request, what the runner's ``spec.json`` says, and how a running batch is reported —
one ``urn:jeb:v1:batch-input`` message per finished input (so a client that does not share the
broker's file system still learns every input's outcome) and ``jeb:outputs`` pointing at the
manifest and the output directory (for a client that does). See docs/batch.md.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path
from typing import Any

from eb_sdk.model import MessageItem, NotebookBatch
from eb_sdk.model import messages as msg

from . import batch_runner as br
from . import local_runner as rn
from .base import PlatformStatus

log = logging.getLogger("eb_broker.platforms.batch")

__all__ = ["batch_problems", "batch_runner_spec", "input_message", "with_batch_progress"]


def batch_problems(executable: NotebookBatch, platform: str) -> list[MessageItem]:
    """Why ``platform`` cannot run this batch (empty: it can). Pure."""
    from .local import _location_scheme  # local imports this module

    problems = []

    def no(message: str, **values: Any) -> None:
        problems.append(msg.error(msg.NOT_SUPPORTED, message, **values))

    scheme = _location_scheme(executable.location or "")
    if not executable.location:
        no("the notebook batch has no location: say where the notebook is")
    elif scheme not in ("", "file"):
        no(
            f"the {platform} platform reads notebooks from paths (or file:// URLs), not "
            f"{scheme}://",
            location=executable.location,
        )
    if not executable.inputs:
        no("the notebook batch has no inputs: give at least one")
    if executable.output_dir and not os.path.isabs(executable.output_dir):
        no(
            "output_dir must be an absolute path (the broker does not share your working "
            "directory)",
            output_dir=executable.output_dir,
        )
    return problems


def batch_runner_spec(
    executable: NotebookBatch,
    notebook: Path,
    session_dir: Path,
    *,
    cores: int,
    workers_per_core: float,
    kernel_name: str | None,
    cwd: str,
    kernel_start_timeout: float,
) -> dict[str, Any]:
    """The runner's ``spec.json`` fields of a batch (``kind: notebook-batch``).

    ``workers``: the request may ask for fewer inputs at once than the broker allows
    (``workers_per_core`` times the cores), never more.
    """
    allowed = max(1, math.ceil(max(1, cores) * workers_per_core))
    workers = min(executable.workers or allowed, allowed)
    output_dir = executable.output_dir or str(session_dir / br.OUTPUTS_DIR)
    inputs = [item.model_dump(mode="json", exclude_none=True) for item in executable.inputs or []]
    return {
        "kind": br.BATCH_KIND,
        "notebook": str(notebook),
        "parameter": executable.parameter or "input",
        "parameters": executable.parameters or {},
        "inputs": [{**item, "output": br.output_path(output_dir, item)} for item in inputs],
        "output_dir": output_dir,
        "workers": workers,
        "kernel_name": executable.kernel or kernel_name or None,
        "cwd": cwd,
        "kernel_start_timeout": kernel_start_timeout,
        "cell_timeout": executable.cell_timeout,
    }


def input_message(record: dict[str, Any]) -> MessageItem | None:
    """The ``urn:jeb:v1:batch-input`` message of one input's record (None: not finished)."""
    state = str(record.get("state") or "")
    if state not in br.FINISHED:
        return None
    name = str(record.get("id"))
    values: dict[str, Any] = {
        "id": name,
        "state": state,
        "output": record.get("output") or "",
        "duration_s": record.get("duration_s", ""),
        "started": record.get("started") or "",
        "finished": record.get("finished") or "",
    }
    if state == "SUCCEEDED":
        seconds = record.get("duration_s")
        took = f" in {seconds:.1f} s" if isinstance(seconds, int | float) else ""
        item = msg.info(msg.BATCH_INPUT, f"input {name} succeeded{took}", **values)
    else:
        error = record.get("error") if isinstance(record.get("error"), dict) else {}
        assert isinstance(error, dict)
        for key in ("cell", "ename", "evalue", "exec_count"):
            if error.get(key) is not None:
                values[key] = error[key]
        reason = str(error.get("message") or "it failed")
        values["reason"] = reason
        item = msg.warn(msg.BATCH_INPUT, f"input {name} failed: {reason}", **values)
    item.time = rn.parse_iso(record.get("finished")) or item.time
    return item


def with_batch_progress(session_dir: Path, status: PlatformStatus) -> PlatformStatus:
    """``status`` with a batch session's progress: a message per finished input, and the
    manifest and output directory in the outputs. Other sessions are returned unchanged."""
    try:
        return _with_progress(session_dir, status)
    except Exception:  # a broken manifest must not stop the broker following its sessions
        log.exception("cannot read the batch progress in %s", session_dir)
        return status


def _with_progress(session_dir: Path, status: PlatformStatus) -> PlatformStatus:
    path = session_dir / br.MANIFEST_FILE
    try:
        stat = path.stat()
    except FileNotFoundError:
        return status
    view = _manifest_view(str(path), stat.st_mtime_ns, stat.st_size)
    if view is None:
        return status
    messages, total, done, failed = view
    status.messages += messages
    spec = rn.read_json(session_dir / rn.STATUS_FILE) or {}
    status.outputs = {
        **status.outputs,
        "batch": str(path),
        "inputs": str(session_dir / br.INPUTS_DIR),
    }
    if spec.get("output_dir"):
        status.outputs["outputs"] = str(spec["output_dir"])
    if done is not None:
        status.outputs["progress"] = f"{done}/{total} inputs finished, {failed} failed"
    return status


@functools.lru_cache(maxsize=256)
def _manifest_view(
    path: str, mtime_ns: int, size: int
) -> tuple[list[MessageItem], Any, int | None, int] | None:
    """The messages and counts of one version of a manifest (its path, mtime and size): the
    broker polls every running batch session each second, and a chunk's manifest of a hundred
    inputs changes far less often than that. The messages are shared between polls: read only.
    """
    manifest = rn.read_json(Path(path))
    if manifest is None:
        return None
    records = [r for r in manifest.get("inputs") or [] if isinstance(r, dict)]
    messages = [m for m in map(input_message, records) if m is not None]
    counts = manifest.get("counts") or {}
    if not isinstance(counts, dict):
        return messages, None, None, 0
    done = sum(int(counts.get(s) or 0) for s in br.FINISHED)
    return messages, manifest.get("total", "?"), done, int(counts.get("FAILED") or 0)
