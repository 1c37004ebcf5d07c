"""A batch's state on disk: ``~/.eb/batches/<id>/batch.json``, written atomically.

Everything a restarted kernel needs to carry on lives in this one JSON document: what to run
(notebook, parameter, inputs and options), every run's phase and result, and every chunk (one
session running some of the runs) with its broker and session. It is replaced atomically (a
temporary file, fsync, ``os.replace``), so a client killed at any moment leaves either the old
or the new state, never half of one.

The rule that makes resuming safe: a chunk is written down (state ``accepting``, with the offer
it is about to accept) *before* the offer is accepted. A client killed between the two leaves a
record that names the offer, and the next :meth:`BatchState.load` finds out from the broker
whether it became a session. So a run is never in two sessions at once, and a finished run is
never started again.

Format (version 1) — documented in docs/batch.md::

    {"version": 1, "id": ..., "name": ..., "created": iso, "updated": iso,
     "notebook": path, "parameter": "input_file", "parameters": {...},
     "options": {"compute": {...}, "start": "...", "windows": [...], "duration_s": ...,
                 "per_input_s": ..., "chunk_size": null, "max_parallel": null,
                 "max_attempts": 3, "kernel": null, "output_dir": null, "brokers": [...]},
     "runs": [{"index": 0, "input": "data/a.fits", "id": "00000-a", "phase": "COMPLETED",
               "attempts": 1, "chunk": 0, "broker": "local", "session": uuid,
               "output": path, "started": iso, "finished": iso, "duration": 1.2,
               "error": {"message": ..., "ename": ..., "evalue": ..., "cell": 3}}, ...],
     "chunks": [{"id": 0, "runs": [0, 1, ...], "state": "accepting" | "accepted" | "done",
                 "broker": "local", "broker_url": url, "session": uuid, "url": url,
                 "phase": "RUNNING", "cores": 1, "start": iso, "expected_end": iso,
                 "message": why it ended badly, "others": [[url, uuid], ...]}, ...],
     "next_chunk": 1, "cancelled": false, "error": null, "error_type": null}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from ._errors import Conflict, InvalidRequest, NotFound

__all__ = [
    "FINAL_RUN_PHASES",
    "RUN_PHASES",
    "BatchState",
    "ChunkRecord",
    "RunRecord",
    "batches_dir",
    "new_batch_id",
    "run_ids",
]

STATE_FILE = "batch.json"
LOCK_FILE = "lock"
VERSION = 1

#: A run's phases, in the order a run goes through them.
RUN_PHASES = ("PENDING", "WAITING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")
#: Phases a run stays in unless it is retried.
FINAL_RUN_PHASES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def batches_dir() -> Path:
    """Where batches are kept: ``$EB_BATCHES``, else ``~/.eb/batches``."""
    configured = os.environ.get("EB_BATCHES", "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".eb" / "batches"


def _safe(text: str, limit: int) -> str:
    return _UNSAFE.sub("-", text).strip("-._")[:limit].strip("-._")


def new_batch_id(notebook: str, now: datetime | None = None) -> str:
    """``<notebook stem>-<yyyymmdd-HHMMSS>-<4 hex>``: sortable, readable, unique."""
    stem = _safe(Path(notebook).stem, 40) or "batch"
    when = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{stem}-{when}-{secrets.token_hex(2)}"


def run_ids(inputs: list[Any]) -> list[str]:
    """A file-safe id per input: its zero-padded index, then the input's file stem if it has
    one (``00017-obs-0017``); unique because of the index."""
    width = max(5, len(str(len(inputs) - 1)))
    out = []
    for index, value in enumerate(inputs):
        stem = _safe(Path(value).stem, 100) if isinstance(value, str | os.PathLike) else ""
        out.append(f"{index:0{width}d}" + (f"-{stem}" if stem else ""))
    return out


@dataclass
class RunRecord:
    """One input and what became of it."""

    index: int
    input: Any
    id: str
    phase: str = "PENDING"
    #: sessions it was in that ended without a result for it (a lost or stopped chunk)
    attempts: int = 0
    chunk: int | None = None
    broker: str | None = None
    session: str | None = None
    output: str | None = None
    started: str | None = None
    finished: str | None = None
    duration: float | None = None
    error: dict[str, Any] | None = None

    @property
    def is_final(self) -> bool:
        return self.phase in FINAL_RUN_PHASES

    def reset(self) -> None:
        """Back to PENDING for another try (the last output and error stay until replaced)."""
        self.phase = "PENDING"
        self.attempts = 0
        self.chunk = None


@dataclass
class ChunkRecord:
    """Some runs given to one session: ``accepting`` (the offer is being accepted),
    ``accepted`` (a session that runs them), ``done`` (that session ended)."""

    id: int
    runs: list[int]
    state: str
    broker: str
    broker_url: str
    session: str
    url: str | None = None
    phase: str | None = None
    cores: int | None = None
    start: str | None = None
    expected_end: str | None = None
    message: str | None = None
    #: the other offers of the request, ``[broker URL, uuid]``: rejected when a client killed
    #: while accepting comes back (they hold capacity until they expire)
    others: list[list[str]] | None = None

    @property
    def in_flight(self) -> bool:
        return self.state != "done"


#: The field names of the records kept in a state file, in their order.
_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in (RunRecord, ChunkRecord)
}


def _from_dict(cls: type[Any], data: dict[str, Any]) -> Any:
    known = _FIELDS[cls]
    return cls(**{k: v for k, v in data.items() if k in known})


def _compact(obj: RunRecord | ChunkRecord) -> dict[str, Any]:
    """The record's set fields, shallow: ``dataclasses.asdict`` deep-copies every value, and
    the state of a batch of thousands of runs is written every second while it runs."""
    return {name: value for name in _FIELDS[type(obj)] if (value := getattr(obj, name)) is not None}


@dataclass
class BatchState:
    """Everything about one batch; see the module docstring for the format."""

    id: str
    notebook: str
    parameter: str
    parameters: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    runs: list[RunRecord] = field(default_factory=list)
    chunks: list[ChunkRecord] = field(default_factory=list)
    name: str | None = None
    created: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)
    next_chunk: int = 0
    cancelled: bool = False
    error: str | None = None
    #: the class of ``error`` (``RequestRejected``, ...), so it is raised again as itself
    error_type: str | None = None
    directory: Path | None = field(default=None, repr=False, compare=False)

    # -- files -------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        base = self.directory or batches_dir() / self.id
        return base / STATE_FILE

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "id": self.id,
            "name": self.name,
            "created": self.created,
            "updated": self.updated,
            "notebook": self.notebook,
            "parameter": self.parameter,
            "parameters": self.parameters,
            "options": self.options,
            "runs": [_compact(r) for r in self.runs],
            "chunks": [_compact(c) for c in self.chunks],
            "next_chunk": self.next_chunk,
            "cancelled": self.cancelled,
            "error": self.error,
            "error_type": self.error_type,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], directory: Path | None = None) -> Self:
        if data.get("version") != VERSION:
            raise InvalidRequest(
                f"batch state version {data.get('version')!r} is not {VERSION}: written by "
                "another version of eb_sdk"
            )
        return cls(
            id=str(data["id"]),
            notebook=str(data["notebook"]),
            parameter=str(data["parameter"]),
            parameters=dict(data.get("parameters") or {}),
            options=dict(data.get("options") or {}),
            runs=[_from_dict(RunRecord, r) for r in data.get("runs") or []],
            chunks=[_from_dict(ChunkRecord, c) for c in data.get("chunks") or []],
            name=data.get("name"),
            created=str(data.get("created") or now_iso()),
            updated=str(data.get("updated") or now_iso()),
            next_chunk=int(data.get("next_chunk") or 0),
            cancelled=bool(data.get("cancelled")),
            error=data.get("error"),
            error_type=data.get("error_type"),
            directory=directory,
        )

    def save(self) -> None:
        """Write the state atomically (readers see the old or the new document)."""
        self.updated = now_iso()
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".batch.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                # dumps, not dump: json.dump encodes in Python, piece by piece (4x slower)
                fh.write(json.dumps(self.to_dict(), separators=(",", ":"), default=str))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, ref: str | os.PathLike[str]) -> Self:
        """A batch by id (in :func:`batches_dir`), by its directory or its ``batch.json``."""
        path = locate(ref)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise NotFound(f"cannot read the batch {ref}: {exc.strerror}") from None
        except ValueError as exc:
            raise InvalidRequest(f"{path} is not a batch state (JSON): {exc}") from None
        if not isinstance(data, dict):
            raise InvalidRequest(f"{path} is not a batch state")
        return cls.from_dict(data, directory=path.parent)

    # -- views -------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Runs per phase (every phase present, zeros included), in life order."""
        out = dict.fromkeys(RUN_PHASES, 0)
        for run in self.runs:
            out[run.phase] = out.get(run.phase, 0) + 1
        return out

    @property
    def done(self) -> bool:
        """No run waits for anything and no session is in flight."""
        return all(r.is_final for r in self.runs) and not any(c.in_flight for c in self.chunks)

    def summary(self) -> dict[str, Any]:
        """The stable summary of :func:`eb_sdk.batches` (documented in docs/batch.md)."""
        failed = [
            {
                "index": r.index,
                "id": r.id,
                "input": r.input,
                "output": r.output,
                "cell": (r.error or {}).get("cell"),
                "ename": (r.error or {}).get("ename"),
                "evalue": (r.error or {}).get("evalue"),
                "message": (r.error or {}).get("message"),
                "broker": r.broker,
                "session": r.session,
            }
            for r in self.runs
            if r.phase == "FAILED"
        ]
        return {
            "id": self.id,
            "name": self.name,
            "notebook": self.notebook,
            "parameter": self.parameter,
            "created": self.created,
            "updated": self.updated,
            "directory": str(self.path.parent),
            "total": len(self.runs),
            "counts": self.counts(),
            "done": self.done,
            "cancelled": self.cancelled,
            "error": self.error,
            "failed": failed,
        }


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def locate(ref: str | os.PathLike[str]) -> Path:
    """The ``batch.json`` of a batch id, directory or file."""
    text = os.fspath(ref)
    path = Path(text).expanduser()
    if path.name == STATE_FILE and path.is_file():
        return path
    if (path / STATE_FILE).is_file():
        return path / STATE_FILE
    candidate = batches_dir() / text / STATE_FILE
    if "/" not in text and candidate.is_file():
        return candidate
    raise NotFound(f"no batch {text!r} (looked in {batches_dir()})")


def list_states() -> list[BatchState]:
    """Every readable batch in :func:`batches_dir`, newest first (unreadable ones skipped)."""
    base = batches_dir()
    found = []
    for path in base.glob(f"*/{STATE_FILE}") if base.is_dir() else []:
        try:
            found.append(BatchState.load(path))
        except (NotFound, InvalidRequest, KeyError, TypeError):
            continue
    return sorted(found, key=lambda s: s.created, reverse=True)


class StateLock:
    """An exclusive ``flock`` on a batch's directory: one process follows a batch at a time."""

    def __init__(self, state: BatchState) -> None:
        self.path = state.path.parent / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise Conflict(
                f"the batch in {self.path.parent} is followed by another process"
                + (f" (pid {holder})" if holder else "")
                + ": stop it first, or look without following (eb batch show)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
