"""One notebook over many inputs: ``eb.map(...)`` → :class:`Batch`.

>>> batch = eb.map("reduce.ipynb", sorted(glob("data/*.fits")), parameter="input_file",
...                start="sometime in the next 24 hours")
>>> batch.wait()                       # a progress bar; Ctrl-C leaves it running
>>> batch.status()                     # {'PENDING': 0, ..., 'COMPLETED': 9990, 'FAILED': 10, ...}
>>> batch.results()                    # a pandas DataFrame, one row per input
>>> run = batch.failed()[0]
>>> run.open()                         # the output notebook, the failing cell marked
>>> run.reopen(start="now")            # a Jupyter server with that input: step through it
>>> batch.retry()                      # the failed inputs again (never the finished ones)

The inputs are grouped into chunks, one session each (kind ``urn:jeb:v1:executable:notebook-
batch``), placed across the brokers by earliest expected finish. The batch's state is saved in
``~/.eb/batches/<id>/`` (``$EB_BATCHES``), so ``eb.Batch.load(id)`` carries on after a kernel
restart without running a finished input again. See docs/batch.md.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TextIO

from . import _errors
from ._batch_engine import BatchEngine, live_engine, resolve_windows, seconds
from ._batch_plan import DEFAULT_MAX_ATTEMPTS, DEFAULT_PER_INPUT
from ._batch_state import (
    FINAL_RUN_PHASES,
    BatchState,
    RunRecord,
    list_states,
    new_batch_id,
    run_ids,
)
from ._config import Broker, BrokerSpec, resolve_brokers
from ._errors import EBError, InvalidRequest, NotFound, Timeout
from ._format import html_table, text_table
from ._portal import run_sync
from ._request import Start, _compute
from .builders import JupyterServer
from .model import AbstractComputeResource
from .sessions import AsyncSession, Session

if TYPE_CHECKING:
    import pandas

__all__ = [
    "AsyncBatch",
    "AsyncRun",
    "Batch",
    "BatchList",
    "OutputNotebook",
    "Run",
    "amap",
    "batches",
    "map",
]

RESULT_COLUMNS = (
    "index",
    "input",
    "phase",
    "duration",
    "broker",
    "error_name",
    "error_value",
    "failing_cell",
    "output",
    "id",
    "session",
    "attempts",
)


# -- one run ------------------------------------------------------------------------------------


class OutputNotebook:
    """A run's output notebook: ``path``, the notebook itself (``nb``, nbformat) and, for a run
    that failed in a cell, that cell (``failing_cell``). Papermill marked it in the file: a red
    banner at the top links to a red note just above the failing cell."""

    def __init__(self, path: Path, error: dict[str, Any] | None) -> None:
        import nbformat

        self.path = path
        self.error = error or {}
        self.nb = nbformat.read(path, as_version=4)

    @property
    def failing_cell(self) -> Any:
        """The cell that raised (the code cell right after papermill's marker), or None."""
        cells = self.nb.cells
        for i, cell in enumerate(cells):
            marker = "papermill-error-cell-tag" in cell.metadata.get("tags", [])
            if marker and 'id="papermill-error-cell"' in cell.source and i + 1 < len(cells):
                return cells[i + 1]
        return None

    @property
    def traceback(self) -> str:
        cell = self.failing_cell
        for output in (cell.get("outputs") or []) if cell is not None else []:
            if output.get("output_type") == "error":
                return "\n".join(_plain(line) for line in output.get("traceback") or [])
        return str(self.error.get("traceback") or "")

    def __str__(self) -> str:
        cell = self.failing_cell
        if cell is None:
            return str(self.path)
        where = self.error.get("cell")
        head = f"{self.path}\nfailing cell {where}:" if where is not None else f"{self.path}"
        return f"{head}\n{cell.source}\n\n{self.traceback}".rstrip()

    def __repr__(self) -> str:
        return f"<OutputNotebook {self.path}>"

    def _repr_html_(self) -> str:
        link = _file_link(self.path)
        cell = self.failing_cell
        if cell is None:
            return f"<div>{link}</div>"
        return (
            f"<div>{link}</div><div><b>failing cell {self.error.get('cell', '')}</b></div>"
            f"<pre>{html.escape(cell.source)}</pre>"
            f"<pre style='color:#b00'>{html.escape(self.traceback)}</pre>"
        )


def _plain(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _file_link(path: Path) -> str:
    """A link that opens ``path`` in JupyterLab when it is below the server's root."""
    text = html.escape(str(path))
    try:
        relative = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return f"<code>{text}</code>"
    return f"<a href='{html.escape(str(relative))}' target='_blank'>{text}</a>"


class _RunBase:
    """One input of a batch and what became of it (a view of the batch's state)."""

    def __init__(self, batch: _BatchBase, record: RunRecord) -> None:
        self._batch = batch
        self._record = record

    index = property(lambda self: self._record.index, doc="Position in the inputs.")
    input = property(lambda self: self._record.input, doc="The input value.")
    id = property(lambda self: self._record.id, doc="File-safe id (names its output).")
    phase = property(lambda self: self._record.phase, doc="PENDING ... COMPLETED/FAILED.")
    output = property(lambda self: self._record.output, doc="Path of the output notebook.")
    broker = property(lambda self: self._record.broker, doc="The broker that ran it.")
    session = property(lambda self: self._record.session, doc="The session (uuid) it ran in.")
    duration = property(lambda self: self._record.duration, doc="Seconds it ran.")
    attempts = property(lambda self: self._record.attempts, doc="Sessions it was lost in.")

    @property
    def error(self) -> dict[str, Any]:
        """``message``, ``ename``, ``evalue``, ``cell`` (0-based index in your notebook)."""
        return dict(self._record.error or {})

    @property
    def cell(self) -> int | None:
        """The index of the failing cell in the notebook (0-based), when a cell failed."""
        value = self.error.get("cell")
        return int(value) if isinstance(value, int) else None

    def open(self) -> OutputNotebook:
        """The output notebook (with the failing cell marked, papermill style).

        Raises :class:`eb.NotFound` when the file is not readable here: the broker wrote it
        on its own machine (see docs/batch.md, "file systems").
        """
        if not self.output:
            raise NotFound(f"run {self.index} ({self.input!r}) has no output notebook yet")
        path = Path(self.output)
        if not path.is_file():
            raise NotFound(
                f"the output notebook {path} is not on this machine: {self.broker} wrote it on "
                "its own file system (use output_dir= on a shared file system, or fetch it "
                "from there)"
            )
        return OutputNotebook(path, self._record.error)

    def _debug_copy(self) -> tuple[Path, str]:
        """The notebook with this run's parameters injected (papermill, as the batch ran it),
        next to the original (so relative paths work), else in the batch's directory."""
        import nbformat
        from papermill.iorw import load_notebook_node
        from papermill.parameterize import parameterize_notebook

        state = self._batch._state
        source = Path(state.notebook)
        nb = load_notebook_node(str(source))
        parameters = {**state.parameters, state.parameter: self.input}
        kernel = state.options.get("kernel") or nb.metadata.get("kernelspec", {}).get("name")
        nb = parameterize_notebook(nb, parameters, kernel_name=kernel)
        name = f"{source.stem}.debug-{self.id}.ipynb"
        for root in (source.parent, state.path.parent / "debug"):
            try:
                root.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, root / name)
                return root, name
            except OSError:
                continue
        raise InvalidRequest(f"cannot write a copy of {source} for run {self.index}")

    async def _areopen(
        self,
        start: Start,
        duration: str | timedelta,
        compute: AbstractComputeResource | dict[str, Any] | None,
        brokers: BrokerSpec | None,
    ) -> AsyncSession:
        from . import aio

        root, name = self._debug_copy()
        offers = await aio.request(
            JupyterServer(root, notebook=name),
            compute=compute,
            duration=duration,
            start=start,
            name=f"debug {self._batch.id} {self.id}",
            brokers=brokers if brokers is not None else self._batch._engine.brokers,
        )
        return await offers.earliest().accept()

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "input": self.input,
            "phase": self.phase,
            "duration": self.duration,
            "broker": self.broker,
            "error_name": self.error.get("ename"),
            "error_value": self.error.get("evalue"),
            "failing_cell": self.cell,
            "output": self.output,
            "id": self.id,
            "session": self.session,
            "attempts": self.attempts,
        }

    def __repr__(self) -> str:
        text = f"<{type(self).__name__} {self.index} {self.input!r}: {self.phase}"
        if self.phase == "FAILED":
            text += f" — {_error_text(self._record.error)}"
        return text + ">"


def _error_text(error: dict[str, Any] | None) -> str:
    error = error or {}
    if error.get("ename"):
        where = f"cell {error['cell']} raised " if error.get("cell") is not None else ""
        value = f": {error['evalue']}" if error.get("evalue") else ""
        return f"{where}{error['ename']}{value}"
    return str(error.get("message") or "failed")


class AsyncRun(_RunBase):
    """A run of an :class:`AsyncBatch`."""

    async def reopen(
        self,
        start: Start = "now",
        *,
        duration: str | timedelta = "1h",
        compute: AbstractComputeResource | dict[str, Any] | None = None,
        brokers: BrokerSpec | None = None,
    ) -> AsyncSession:
        """An interactive Jupyter server with this run's notebook, parameters and input; see
        :meth:`Run.reopen`."""
        return await self._areopen(start, duration, compute, brokers)


class Run(_RunBase):
    """A run of a :class:`Batch`."""

    def reopen(
        self,
        start: Start = "now",
        *,
        duration: str | timedelta = "1h",
        compute: AbstractComputeResource | dict[str, Any] | None = None,
        brokers: BrokerSpec | None = None,
    ) -> Session:
        """Book an interactive Jupyter server (``urn:jeb:v1:executable:jupyter-server``) that
        serves a copy of the notebook with this run's parameters and input injected, to step
        through it. The earliest offer of the batch's brokers (or ``brokers``) is accepted;
        once the session is AVAILABLE its connector URL opens the copy in JupyterLab.

        The copy is written next to your notebook (``<name>.debug-<run id>.ipynb``) and the
        server serves that directory, so this needs a broker that shares your file system.
        """
        session = run_sync(self._areopen(start, duration, compute, brokers))
        return Session(session.wire, session.broker)


# -- the batch ------------------------------------------------------------------------------------


class _Progress:
    """A tqdm bar (notebook widget in Jupyter, text elsewhere) over the runs that ended."""

    def __init__(self, state: BatchState, enabled: bool, file: TextIO | None = None) -> None:
        self.bar: Any = None
        self._last: dict[str, int] = {}
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=len(state.runs), unit="run", desc=state.name or state.id, file=file
            )

    def update(self, counts: dict[str, int]) -> None:
        if self.bar is None or counts == self._last:
            return
        self._last = dict(counts)
        self.bar.set_postfix(
            failed=counts.get("FAILED", 0),
            running=counts.get("RUNNING", 0),
            waiting=counts.get("WAITING", 0) + counts.get("PENDING", 0),
            refresh=False,
        )
        ended = sum(counts.get(p, 0) for p in FINAL_RUN_PHASES)
        self.bar.update(ended - self.bar.n)  # refreshes (at most every mininterval)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _BatchBase:
    """What both flavours share: the views of the state (no I/O)."""

    _run_class: type[_RunBase] = _RunBase

    def __init__(self, engine: BatchEngine) -> None:
        self._engine = engine

    @property
    def _state(self) -> BatchState:
        return self._engine.state

    @property
    def id(self) -> str:
        return self._state.id

    @property
    def name(self) -> str | None:
        return self._state.name

    @property
    def notebook(self) -> str:
        return self._state.notebook

    @property
    def directory(self) -> Path:
        """Where the batch's state is kept."""
        return self._state.path.parent

    @property
    def runs(self) -> list[Any]:
        return [self._run_class(self, r) for r in self._state.runs]

    def __len__(self) -> int:
        return len(self._state.runs)

    def __getitem__(self, index: int) -> Any:
        return self._run_class(self, self._state.runs[index])

    def __iter__(self) -> Iterator[Any]:
        return iter(self.runs)

    @property
    def done(self) -> bool:
        """Every run ended (COMPLETED, FAILED or CANCELLED) and no session is in flight."""
        return self._state.done

    @property
    def error(self) -> str | None:
        """Why the batch stopped placing runs (nobody can run it), if it did."""
        return self._state.error

    @property
    def warnings(self) -> list[str]:
        """Recent problems that did not stop the batch (a broker that did not answer)."""
        return list(self._engine.warnings)

    def status(self) -> dict[str, int]:
        """How many runs are in each phase: PENDING, WAITING, RUNNING, COMPLETED, FAILED,
        CANCELLED (every phase, zeros included)."""
        return self._state.counts()

    def failed(self) -> list[Any]:
        """The runs that FAILED."""
        return [r for r in self.runs if r.phase == "FAILED"]

    def results(self) -> pandas.DataFrame:
        """One row per input: index, input, phase, duration (s), broker, error_name,
        error_value, failing_cell (0-based), output (the notebook's path), id, session,
        attempts."""
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.runs], columns=list(RESULT_COLUMNS))

    def summary(self) -> dict[str, Any]:
        """The stable summary that :func:`eb.batches` lists (see docs/batch.md)."""
        return self._state.summary()

    def _raise_error(self) -> None:
        if self._engine.crash is not None:
            raise self._engine.crash
        if self._state.error:
            cls = getattr(_errors, self._state.error_type or "", None)
            if not (isinstance(cls, type) and issubclass(cls, EBError)):
                cls = EBError
            raise cls(f"batch {self.id}: {self._state.error}")

    def __repr__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.status().items() if v)
        return f"<{type(self).__name__} {self.id}: {len(self)} runs, {counts or 'none'}>"

    def _repr_html_(self) -> str:
        counts = self.status()
        table = html_table(list(counts), [[str(v) for v in counts.values()]])
        rows = [
            [str(r.index), html.escape(str(r.input)), html.escape(_error_text(r.error))]
            for r in self.failed()[:10]
        ]
        failed = html_table(["#", "input", "error"], rows) if rows else ""
        notes = "".join(
            f"<div>{html.escape(n)}</div>"
            for n in ([f"error: {self.error}"] if self.error else []) + self.warnings[-3:]
        )
        return f"<div><b>{html.escape(self.id)}</b> ({len(self)} runs)</div>{table}{failed}{notes}"

    def _snapshot(self) -> tuple[dict[str, int], bool, bool]:
        return self._state.counts(), self._state.done, self._engine.running

    def _ensure_following(self) -> None:
        if not self._state.done and not self._engine.running and not self._state.error:
            self._engine.start()

    async def _acancel(self) -> None:
        await self._engine.cancel()
        self._ensure_following()

    async def _aretry(self, failed_only: bool, options: dict[str, Any]) -> None:
        _update_options(self._engine, options)
        self._engine.retry(failed_only=failed_only)
        self._ensure_following()


class AsyncBatch(_BatchBase):
    """A batch with ``async`` calls (``eb_sdk.aio.map``); its engine runs on the loop that
    made it."""

    _run_class = AsyncRun

    @classmethod
    async def load(
        cls, ref: str | os.PathLike[str], *, brokers: BrokerSpec | None = None
    ) -> AsyncBatch:
        """A saved batch (by id, directory or ``batch.json``), followed again from now on."""
        return cls(await _load_engine(ref, brokers))

    @classmethod
    def look(cls, ref: str | os.PathLike[str]) -> AsyncBatch:
        """A saved batch as its state file says, not followed: nothing is placed and its lock
        is not taken (another process may be following it). Reads one file."""
        return cls(BatchEngine(BatchState.load(ref)))

    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - the same API as Batch.wait
        *,
        progress: bool = False,
        file: TextIO | None = None,
    ) -> Self:
        """Until every run ended; :class:`eb.Timeout` after ``timeout`` seconds. Failed runs
        are results, not errors; the batch's own error (nobody can run it) is raised."""
        self._ensure_following()
        bar = _Progress(self._state, progress, file)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                counts, done, running = self._snapshot()
                bar.update(counts)
                if done or not running:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise Timeout(f"batch {self.id} is not done after {timeout:g} s: {counts}")
                await asyncio.sleep(0.25)
        finally:
            bar.close()
        self._raise_error()
        return self

    async def cancel(self) -> Self:
        """Cancel what has not finished (finished runs keep their results)."""
        await self._acancel()
        return self

    async def retry(self, failed_only: bool = True, **options: Any) -> Self:
        """Run the FAILED runs again (``failed_only=False``: the CANCELLED ones too); never a
        COMPLETED one. ``options`` change how: ``start``, ``compute``, ``duration``,
        ``per_input``, ``brokers``, ``chunk_size``, ``max_parallel``, ``tz``."""
        await self._aretry(failed_only, options)
        return self

    async def stop(self) -> None:
        """Stop following here (the sessions keep running; ``load`` follows them again)."""
        await self._engine.stop()


class Batch(_BatchBase):
    """A batch whose calls block (``eb.map``); it is followed by a background task, so the
    notebook stays usable while it runs."""

    _run_class = Run

    @classmethod
    def load(cls, ref: str | os.PathLike[str], *, brokers: BrokerSpec | None = None) -> Batch:
        """A saved batch (by id, directory or ``batch.json``), followed again from now on:
        sessions still running are followed, runs that ended are never run again, runs of a
        session that was interrupted are placed again. ``brokers`` replaces the saved choice
        (e.g. a broker that needs a token the state file does not keep)."""
        return cls(run_sync(_load_engine(ref, brokers)))

    def status(self) -> dict[str, int]:
        return run_sync(self._astatus())

    async def _astatus(self) -> dict[str, int]:
        return self._state.counts()

    def wait(
        self, timeout: float | None = None, *, progress: bool = True, file: TextIO | None = None
    ) -> Self:
        """Until every run ended, with a progress bar (``progress=False``: none). Ctrl-C stops
        waiting, not the batch. :class:`eb.Timeout` after ``timeout`` seconds."""
        run_sync(self._astart())
        bar = _Progress(self._state, progress, file)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                counts, done, running = run_sync(self._asnapshot())
                bar.update(counts)
                if done or not running:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise Timeout(f"batch {self.id} is not done after {timeout:g} s: {counts}")
                time.sleep(0.25)
        finally:
            bar.close()
        self._raise_error()
        return self

    async def _asnapshot(self) -> tuple[dict[str, int], bool, bool]:
        return self._snapshot()

    async def _astart(self) -> None:
        self._ensure_following()

    def cancel(self) -> Self:
        """Cancel what has not finished (finished runs keep their results)."""
        run_sync(self._acancel())
        return self

    def retry(self, failed_only: bool = True, **options: Any) -> Self:
        """Run the FAILED runs again (``failed_only=False``: the CANCELLED ones too); never a
        COMPLETED one. ``options`` change how: ``start``, ``compute``, ``duration``,
        ``per_input``, ``brokers``, ``chunk_size``, ``max_parallel``, ``tz``."""
        run_sync(self._aretry(failed_only, options))
        return self

    def stop(self) -> None:
        """Stop following here (the sessions keep running; ``Batch.load`` follows again)."""
        run_sync(self._engine.stop())

    def results(self) -> pandas.DataFrame:
        return run_sync(self._aresults())

    async def _aresults(self) -> pandas.DataFrame:
        return _BatchBase.results(self)


# -- starting, loading, listing -------------------------------------------------------------------


async def _load_engine(ref: str | os.PathLike[str], brokers: BrokerSpec | None) -> BatchEngine:
    state = BatchState.load(ref)
    engine = live_engine(state.path)
    if engine is None:
        engine = BatchEngine(state, resolve_brokers(brokers) if brokers is not None else None)
    elif brokers is not None:
        engine._brokers = resolve_brokers(brokers)
    if not state.done or any(c.in_flight for c in state.chunks):
        engine.start()
    return engine


def _broker_specs(brokers: BrokerSpec | None) -> list[str] | None:
    """What the state keeps of ``brokers``: names and ``name=url`` (never credentials)."""
    if brokers is None:
        return None
    items = [brokers] if isinstance(brokers, str | Broker) else list(brokers)
    out = []
    for item in items:
        out.append(f"{item.name}={item.url}" if isinstance(item, Broker) else str(item))
    return out


def _json_input(value: Any, index: int) -> Any:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise InvalidRequest(
            f"inputs[{index}]: {value!r} cannot be sent to a broker (use str, numbers, "
            "lists or dicts of them)"
        ) from None
    return value


def _set_option(options: dict[str, Any], key: str, value: Any, tz: Any) -> None:
    """Check one option and store it in the JSON form the state keeps."""
    if key == "start":
        options["start"] = None if value is None else str(value)
        options["windows"] = resolve_windows(value, tz) if value is not None else []
    elif key == "compute":
        options["compute"] = _compute(value).dump() if value is not None else None
    elif key in ("duration", "per_input"):
        options[f"{key}_s"] = seconds(value, key)
    elif key == "brokers":
        if value is not None:
            resolve_brokers(value)  # an unknown name fails now
        options["brokers"] = _broker_specs(value)
    elif key in ("chunk_size", "max_parallel", "workers", "max_attempts"):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidRequest(f"{key}: expected a whole number, not {value!r}")
        if value is not None and value < 1:
            raise InvalidRequest(f"{key}: must be at least 1, not {value}")
        options[key] = value
    elif key == "cell_timeout":
        options[key] = seconds(value, key)
    elif key in ("kernel", "output_dir"):
        if key == "output_dir" and value is not None:
            value = os.path.abspath(os.path.expanduser(os.fspath(value)))
        options[key] = value
    else:
        raise InvalidRequest(f"unknown batch option {key!r}")


_RETRY_OPTIONS = {
    "start",
    "compute",
    "duration",
    "per_input",
    "brokers",
    "chunk_size",
    "max_parallel",
}


def _update_options(engine: BatchEngine, options: dict[str, Any]) -> None:
    tz = options.pop("tz", None)
    unknown = set(options) - _RETRY_OPTIONS
    if unknown:
        raise InvalidRequest(f"retry: unknown options {', '.join(sorted(unknown))}")
    for key, value in options.items():
        _set_option(engine.state.options, key, value, tz)
    if "brokers" in options:
        engine._brokers = resolve_brokers(options["brokers"]) if options["brokers"] else None


def _new_state(
    notebook: str | os.PathLike[str],
    inputs: Iterable[Any],
    parameter: str,
    parameters: dict[str, Any] | None,
    brokers: BrokerSpec | None,
    name: str | None,
    directory: str | os.PathLike[str] | None,
    tz: str | tzinfo | None,
    options: dict[str, Any],
) -> BatchState:
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(notebook))))
    if path.suffix != ".ipynb" or not path.is_file():
        raise InvalidRequest(f"notebook: {path} is not a notebook file (.ipynb) here")
    if not parameter.isidentifier():
        raise InvalidRequest(f"parameter: {parameter!r} is not a Python name")
    values = [_json_input(v, i) for i, v in enumerate(inputs)]
    if not values:
        raise InvalidRequest("inputs: give at least one input")
    try:
        json.dumps(parameters or {})
    except (TypeError, ValueError):
        raise InvalidRequest("parameters: only JSON-like values can be sent") from None
    stored: dict[str, Any] = {
        "chunk_size": None,
        "max_attempts": DEFAULT_MAX_ATTEMPTS,
        "per_input_s": DEFAULT_PER_INPUT.total_seconds(),
        "windows": [],
    }
    for key, value in {**options, "brokers": brokers}.items():
        if value is not None or key in ("brokers",):
            _set_option(stored, key, value, tz)
    batch_id = new_batch_id(str(path))
    state = BatchState(
        id=batch_id,
        notebook=str(path),
        parameter=parameter,
        parameters=dict(parameters or {}),
        options=stored,
        runs=[
            RunRecord(i, v, rid)
            for i, (v, rid) in enumerate(zip(values, run_ids(values), strict=True))
        ],
        name=name,
        directory=Path(directory).expanduser().absolute() / batch_id if directory else None,
    )
    return state


async def _start(state: BatchState, brokers: list[Broker]) -> BatchEngine:
    """Place the first chunks, then follow in the background."""
    engine = BatchEngine(state, brokers)
    engine.lock.acquire()
    try:
        await engine.place()
    except (EBError, KeyboardInterrupt, asyncio.CancelledError):
        if not engine.in_flight():  # nothing runs: no batch to come back to
            engine.lock.release()
            shutil.rmtree(state.path.parent, ignore_errors=True)
            raise
        engine._warn("placing the first chunks failed; trying again")
    engine.start()
    return engine


_MAP_DOC = """Run ``notebook`` once per input: ``parameter`` (a papermill parameter) is set to
    the input, ``parameters`` are the same for every input. Returns the batch at once; it runs
    in the background (``wait()`` shows a progress bar).

    Runs go to brokers in chunks of ``chunk_size`` inputs (default: about an eighth of them,
    10 to 100, smaller towards the end so the last sessions end together), one each,
    with the ``compute`` each session asks for (default: the broker's, one core). ``start``
    says when the batch may start ("sometime in the next 24 hours"; later chunks start within
    what is left of it, or as soon as possible once it is over). ``per_input`` is how long one
    input may take on one core (default 1 min); a session is booked for its inputs' time with
    room to spare, or for ``duration`` when given. At most ``max_parallel`` sessions at once
    (default: as many as help finish sooner). ``output_dir`` makes the brokers write the
    output notebooks there (a shared file system; default: each session's directory on its
    broker). ``workers`` caps the inputs run at once per session, ``cell_timeout`` the seconds
    one cell may take, ``max_attempts`` the sessions a run may be lost in before it FAILS.

    Raises :class:`eb.InvalidRequest` for what cannot be read, and the brokers' error (e.g.
    :class:`eb.RequestRejected`) when nobody can run even the first chunk."""


async def amap(
    notebook: str | os.PathLike[str],
    inputs: Iterable[Any],
    parameter: str = "input_file",
    parameters: dict[str, Any] | None = None,
    *,
    compute: AbstractComputeResource | dict[str, Any] | None = None,
    start: Start | None = None,
    duration: str | timedelta | None = None,
    per_input: str | timedelta | None = None,
    brokers: BrokerSpec | None = None,
    max_parallel: int | None = None,
    chunk_size: int | None = None,
    name: str | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    kernel: str | None = None,
    workers: int | None = None,
    cell_timeout: float | None = None,
    max_attempts: int | None = None,
    directory: str | os.PathLike[str] | None = None,
    tz: str | tzinfo | None = None,
) -> AsyncBatch:
    options = {
        "compute": compute,
        "start": start,
        "duration": duration,
        "per_input": per_input,
        "max_parallel": max_parallel,
        "chunk_size": chunk_size,
        "output_dir": output_dir,
        "kernel": kernel,
        "workers": workers,
        "cell_timeout": cell_timeout,
        "max_attempts": max_attempts,
    }
    state = _new_state(
        notebook, inputs, parameter, parameters, brokers, name, directory, tz, options
    )
    chosen = resolve_brokers(brokers)  # no broker: fail before anything is saved
    state.save()
    return AsyncBatch(await _start(state, chosen))


amap.__doc__ = _MAP_DOC


def map(
    notebook: str | os.PathLike[str],
    inputs: Iterable[Any],
    parameter: str = "input_file",
    parameters: dict[str, Any] | None = None,
    *,
    compute: AbstractComputeResource | dict[str, Any] | None = None,
    start: Start | None = None,
    duration: str | timedelta | None = None,
    per_input: str | timedelta | None = None,
    brokers: BrokerSpec | None = None,
    max_parallel: int | None = None,
    chunk_size: int | None = None,
    name: str | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    kernel: str | None = None,
    workers: int | None = None,
    cell_timeout: float | None = None,
    max_attempts: int | None = None,
    directory: str | os.PathLike[str] | None = None,
    tz: str | tzinfo | None = None,
) -> Batch:
    values = list(inputs)  # a generator is read here, in the caller's thread
    batch = run_sync(
        amap(
            notebook,
            values,
            parameter,
            parameters,
            compute=compute,
            start=start,
            duration=duration,
            per_input=per_input,
            brokers=brokers,
            max_parallel=max_parallel,
            chunk_size=chunk_size,
            name=name,
            output_dir=output_dir,
            kernel=kernel,
            workers=workers,
            cell_timeout=cell_timeout,
            max_attempts=max_attempts,
            directory=directory,
            tz=tz,
        )
    )
    return Batch(batch._engine)


map.__doc__ = _MAP_DOC

BATCH_COLUMNS = ("id", "notebook", "created", "total", *("COMPLETED", "FAILED", "running"))


class BatchList(list[dict[str, Any]]):
    """The saved batches (newest first) as summaries; a table in a notebook and a terminal."""

    def rows(self) -> list[list[str]]:
        out = []
        for item in self:
            counts = item["counts"]
            active = counts["PENDING"] + counts["WAITING"] + counts["RUNNING"]
            out.append(
                [
                    item["id"],
                    Path(item["notebook"]).name,
                    item["created"][:19].replace("T", " "),
                    str(item["total"]),
                    str(counts["COMPLETED"]),
                    str(counts["FAILED"]),
                    str(active),
                ]
            )
        return out

    def __str__(self) -> str:
        return text_table(BATCH_COLUMNS, self.rows()) if self else "no batches"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))  # IPython's text form: the table, not the dicts

    def _repr_html_(self) -> str:
        return html_table(BATCH_COLUMNS, self.rows()) if self else "<div>No batches.</div>"


def batches() -> BatchList:
    """Every saved batch (``~/.eb/batches`` or ``$EB_BATCHES``), newest first, as its summary:
    ``id``, ``name``, ``notebook``, ``parameter``, ``created``, ``updated``, ``directory``,
    ``total``, ``counts`` (runs per phase), ``done``, ``cancelled``, ``error`` and ``failed``
    (``index``, ``id``, ``input``, ``output``, ``cell``, ``ename``, ``evalue``, ``message``,
    ``broker``, ``session`` of each failed run). Reads files only: no broker is asked."""
    return BatchList(state.summary() for state in list_states())
