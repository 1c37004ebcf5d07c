"""The sidebar's batches: the SDK's saved batch runs (``eb.map`` → ``eb.batches()``).

Listing reads the batches' state files only (``~/.eb/batches`` or ``$EB_BATCHES`` of the
Jupyter server's user; no broker is asked), so the sidebar can poll it cheaply. The notebook
that started a batch keeps following it; the sidebar only looks.

"Re-open interactively" looks at the batch without following it (another process may hold
its lock), finds the failed run by its id (or its input) and calls ``run.reopen(start="now")``:
a Jupyter server session with that run's parameters injected, on the batch's brokers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import eb_sdk
from eb_sdk._errors import NotFound
from eb_sdk.aio import Batch as AsyncBatch
from eb_sdk.sessions import AsyncSession

from .views import lab_path

__all__ = ["batch_view", "input_text", "list_batches", "reopen"]


def input_text(value: Any) -> str:
    """An input as the sidebar shows it and names it in a re-open request: text as it is,
    anything else as compact JSON (stable key order)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _error_text(run: Mapping[str, Any]) -> str:
    if run.get("ename"):
        return f"{run['ename']}: {run['evalue']}" if run.get("evalue") else str(run["ename"])
    return str(run.get("message") or "failed")


def _run_view(run: Mapping[str, Any], root: Path | None) -> dict[str, Any]:
    output = run.get("output")
    cell = run.get("cell")
    return {
        "run": str(run.get("id") or ""),
        "input": input_text(run.get("input")),
        "error": _error_text(run),
        "cell": cell if isinstance(cell, int) else None,
        "output": str(output) if output else None,
        "lab_path": lab_path(str(output), root) if output else None,
    }


def batch_view(summary: Mapping[str, Any], root: Path | None) -> dict[str, Any]:
    """One batch as the sidebar shows it, from its ``eb.batches()`` summary (docs/batch.md)."""
    counts = {str(k): int(v) for k, v in dict(summary.get("counts") or {}).items()}
    notebook = summary.get("notebook")
    done = bool(summary.get("done"))
    return {
        "id": str(summary.get("id", "")),
        "name": str(summary.get("name") or (Path(str(notebook)).name if notebook else "")),
        "notebook": str(notebook) if notebook else None,
        "total": int(summary.get("total") or sum(counts.values())),
        "counts": counts,
        "done": done,
        # the state file's last write: for a done batch, when its last run ended
        "finished": summary.get("updated") if done else None,
        "error": summary.get("error") or None,
        "failed": [_run_view(r, root) for r in summary.get("failed") or []],
    }


async def list_batches(root: Path | None) -> dict[str, Any]:
    """``{"available": true, "batches": [...]}``, newest first (a worker thread reads the
    files, so a slow home directory does not block the server)."""
    summaries = await asyncio.to_thread(eb_sdk.batches)
    return {"available": True, "batches": [batch_view(s, root) for s in summaries]}


async def reopen(batch_id: str, run: str) -> AsyncSession:
    """Re-open a failed run (named by its run id or its input text) as an interactive
    Jupyter server session. :class:`eb.NotFound` for an unknown batch or run."""
    batch = await asyncio.to_thread(AsyncBatch.look, batch_id)  # not followed: nothing placed
    found = next((r for r in batch.failed() if run in (r.id, input_text(r.input))), None)
    if found is None:
        raise NotFound(f"batch {batch_id} has no failed run {run!r}")
    session: AsyncSession = await found.reopen(start="now")
    return session
