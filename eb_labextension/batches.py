"""The sidebar's batches, read through the SDK's batch API when this eb_sdk has one.

Batch runs (``eb.map`` → ``Batch``) are being added to the SDK in parallel with this
extension, so everything here is guarded: without the API the sidebar gets
``{"available": false, "batches": []}`` and shows no batch section.

The contract this module reads (docs/labextension.md, "Batches"):

* ``eb_sdk.aio.batches()`` (awaited) or else ``eb_sdk.batches()`` (run in a worker thread)
  returns the user's batches: objects with ``summary()`` (or ``to_dict()``) or plain dicts,
  each with ``id``, ``name``, ``notebook``, ``total``, ``counts`` ({phase: n}), ``done``,
  ``finished`` (datetime or ISO text) and ``failed`` (runs: ``input``, ``error``, ``cell``
  — the failing cell's index — and ``output``, the output notebook's path);
* ``eb_sdk.Batch.load(id)`` and a run's ``reopen(start="now")`` (found by its ``input``
  among ``batch.failed()``) for "re-open interactively", returning a session.

TODO(integrator): once the batch branch merges, point this at its real names if they
differ, and add a browser test for the batch section.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import eb_sdk
from eb_sdk import aio
from eb_sdk._errors import EBError, NotFound
from eb_sdk.sessions import AsyncSession, Session

from .views import iso, lab_path

__all__ = ["BatchesUnavailable", "available", "batch_view", "list_batches", "reopen"]


class BatchesUnavailable(EBError):
    """This eb_sdk has no batch API (yet)."""


def _lister() -> Callable[[], Any] | None:
    return getattr(aio, "batches", None) or getattr(eb_sdk, "batches", None)


def available() -> bool:
    return _lister() is not None


async def _call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Await a coroutine function; run a blocking one in a worker thread."""
    if inspect.iscoroutinefunction(func):
        return await func(*args, **kwargs)
    result = await asyncio.to_thread(func, *args, **kwargs)
    return await result if inspect.isawaitable(result) else result


def _as_dict(item: Any) -> Mapping[str, Any]:
    if isinstance(item, Mapping):
        return item
    for name in ("summary", "to_dict"):
        method = getattr(item, name, None)
        if callable(method):
            data = method()
            if isinstance(data, Mapping):
                return data
    raise TypeError(f"cannot read a batch summary from {type(item).__name__}")


def _when(value: Any) -> str | None:
    if isinstance(value, datetime):
        return iso(value)
    return str(value) if value else None


def _run_view(run: Any, root: Path | None) -> dict[str, Any]:
    data = run if isinstance(run, Mapping) else _as_dict_or_attrs(run)
    output = data.get("output") or data.get("output_notebook")
    cell = data.get("cell", data.get("failing_cell"))
    error = data.get("error") or ""
    if isinstance(error, Mapping):
        error = ": ".join(str(error[k]) for k in ("name", "value") if error.get(k))
    return {
        "input": str(data.get("input", "")),
        "error": str(error),
        "cell": int(cell) if isinstance(cell, int) else None,
        "output": str(output) if output else None,
        "lab_path": lab_path(str(output), root) if output else None,
    }


def _as_dict_or_attrs(run: Any) -> Mapping[str, Any]:
    try:
        return _as_dict(run)
    except TypeError:
        names = ("input", "error", "cell", "failing_cell", "output", "output_notebook")
        return {n: getattr(run, n) for n in names if hasattr(run, n)}


def batch_view(item: Any, root: Path | None) -> dict[str, Any]:
    """One batch as the sidebar shows it (see the module's docstring for the fields read)."""
    data = _as_dict(item)
    counts = {str(k): int(v) for k, v in dict(data.get("counts") or {}).items()}
    notebook = data.get("notebook")
    return {
        "id": str(data.get("id", "")),
        "name": str(data.get("name") or (Path(str(notebook)).name if notebook else "")),
        "notebook": str(notebook) if notebook else None,
        "total": int(data.get("total") or sum(counts.values())),
        "counts": counts,
        "done": bool(data.get("done")),
        "finished": _when(data.get("finished")),
        "failed": [_run_view(r, root) for r in data.get("failed") or []],
    }


async def list_batches(root: Path | None) -> dict[str, Any]:
    lister = _lister()
    if lister is None:
        return {"available": False, "batches": []}
    items = await _call(lister)
    try:
        views = [batch_view(b, root) for b in items or []]
    except (TypeError, ValueError, AttributeError) as exc:
        raise EBError(f"the SDK's batches are not what the sidebar reads: {exc}") from None
    return {"available": True, "batches": views}


async def reopen(batch_id: str, run_input: str) -> AsyncSession:
    """Re-open a failed run interactively (``run.reopen(start="now")``) as a session."""
    batch_class = getattr(eb_sdk, "Batch", None)
    if batch_class is None or not hasattr(batch_class, "load"):
        raise BatchesUnavailable("batch runs are not available in this eb_sdk")
    batch = await _call(batch_class.load, batch_id)
    runs = await _call(batch.failed)
    run = next((r for r in runs if str(getattr(r, "input", "")) == run_input), None)
    if run is None:
        raise NotFound(f"batch {batch_id} has no failed run for input {run_input!r}")
    session = await _call(run.reopen, start="now")
    if isinstance(session, Session):  # the sync flavour: same wire and broker, async calls
        return AsyncSession(session.wire, session.broker)
    if isinstance(session, AsyncSession):
        return session
    raise TypeError(f"run.reopen() returned {type(session).__name__}, not a session")
