"""The rules of a batch, without I/O: chunks, how long they take, where they go, what a
session's report means for its runs. Unit-tested alone (tests/batch/test_plan.py).

Placement is greedy by earliest expected finish: for each chunk every broker is asked for
offers, and the offer whose start plus the chunk's expected duration (at the offered cores) is
earliest wins. A chunk is placed only while that helps: when some chunks are in flight, an
offer that starts after the first of them is expected to end is declined — the next chunk is
asked for again when a chunk ends, and a broker whose sessions finish early then offers an
earlier start than it could promise before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from ._batch_state import BatchState, ChunkRecord, RunRecord

__all__ = [
    "apply_report",
    "booking_duration",
    "choose",
    "expected_duration",
    "seconds_per_input",
]

#: Chunks of an automatic size (no ``chunk_size``): about an eighth of the runs, at least
#: ``AUTO_CHUNK_MIN`` and at most ``AUTO_CHUNK_MAX`` — big enough that starting a session
#: (negotiating, a runner process) is small next to running it, small enough that the work
#: spreads over brokers. Towards the end, what is left is shared between the sessions running
#: and the next one (down to ``AUTO_CHUNK_MIN``), so the last sessions end at about the same
#: time. (Each session costs a few seconds: negotiation, the runner's start, its end being
#: seen; benchmarks/RESULTS.md.)
AUTO_CHUNK_MIN, AUTO_CHUNK_MAX, AUTO_CHUNKS = 10, 100, 8
#: An offer that starts within this of now is "now" for placement, whatever is in flight.
SOON = timedelta(minutes=1)
#: Default time one input may take on one core, before any input of the batch has finished.
DEFAULT_PER_INPUT = timedelta(minutes=1)
#: A session is booked for this many times the inputs' expected time, plus the margin:
#: an input that takes longer than expected must not make the whole chunk run out of time.
BOOKING_FACTOR = 1.5
BOOKING_MARGIN = timedelta(minutes=2)
#: Sessions a run may be lost in (a chunk stopped, lost or run out of time) before it FAILS.
DEFAULT_MAX_ATTEMPTS = 3

#: What a session's phase means for its runs that have no result yet.
_WAITING_PHASES = {"OFFERED", "ACCEPTED", "WAITING", "INITIAL"}
_RUNNING_PHASES = {"PREPARING", "AVAILABLE", "RUNNING", "RELEASING"}


class OfferLike(Protocol):
    @property
    def start(self) -> datetime | None: ...
    @property
    def cores(self) -> int | None: ...


def chunk_of(state: BatchState, in_flight: int = 0) -> list[RunRecord]:
    """The next chunk: the first PENDING runs, in input order — ``chunk_size`` of them, or with
    an automatic size (see ``AUTO_CHUNKS``) at most an equal share of what is left with the
    sessions running."""
    pending = [r for r in state.runs if r.phase == "PENDING"]
    given = state.options.get("chunk_size")
    if given:
        return pending[: int(given)]
    size = min(AUTO_CHUNK_MAX, max(AUTO_CHUNK_MIN, math.ceil(len(state.runs) / AUTO_CHUNKS)))
    tail = max(AUTO_CHUNK_MIN, math.ceil(len(pending) / (in_flight + 1)))
    return pending[: min(size, tail)]


def seconds_per_input(state: BatchState) -> float:
    """Expected core-seconds of one input: observed on the chunks that finished (their wall
    time times their cores, over their finished runs), else the batch's ``per_input``."""
    by_chunk: dict[int, list[RunRecord]] = {}
    for run in state.runs:
        if run.chunk is not None and run.started and run.finished:
            by_chunk.setdefault(run.chunk, []).append(run)
    chunks = {c.id: c for c in state.chunks}
    spent, count = 0.0, 0
    for chunk_id, runs in by_chunk.items():
        chunk = chunks.get(chunk_id)
        if chunk is None:
            continue
        first = min(_instant(r.started) for r in runs)
        last = max(_instant(r.finished) for r in runs)
        spent += max(0.0, (last - first).total_seconds()) * (chunk.cores or 1)
        count += len(runs)
    if count >= 3 and spent > 0:
        return spent / count
    return float(state.options.get("per_input_s") or DEFAULT_PER_INPUT.total_seconds())


def expected_duration(runs: int, cores: int | None, per_input_s: float) -> timedelta:
    """How long ``runs`` inputs take on ``cores`` cores (one input per core at a time)."""
    return timedelta(seconds=per_input_s * math.ceil(runs / max(1, cores or 1)))


def booking_duration(state: BatchState, runs: int, cores_min: int) -> timedelta:
    """The duration to book for a chunk: ``duration`` when the batch gives one, else the
    inputs' time at ``per_input`` on the fewest cores asked for, with room to spare."""
    if state.options.get("duration_s"):
        return timedelta(seconds=float(state.options["duration_s"]))
    per_input = float(state.options.get("per_input_s") or DEFAULT_PER_INPUT.total_seconds())
    expected = expected_duration(runs, cores_min, per_input)
    return expected * BOOKING_FACTOR + BOOKING_MARGIN


@dataclass(frozen=True)
class Choice:
    """The offer to accept for a chunk, and when the chunk is expected to end there."""

    index: int
    expected_end: datetime


def choose(
    offers: Sequence[OfferLike],
    runs: int,
    per_input_s: float,
    now: datetime,
    in_flight_ends: Iterable[datetime] = (),
) -> Choice | None:
    """The offer with the earliest expected finish, or None when placing now does not help
    (no offers, or the best starts after the first chunk in flight is expected to end — and
    not within a minute: a chunk that runs late is expected to end any moment)."""
    best: Choice | None = None
    for index, offer in enumerate(offers):
        start = max(offer.start or now, now)
        end = start + expected_duration(runs, offer.cores, per_input_s)
        if best is None or end < best.expected_end:
            best = Choice(index, end)
    if best is None:
        return None
    first_end = min(in_flight_ends, default=None)
    start = max(offers[best.index].start or now, now)
    if first_end is not None and start > max(first_end, now + SOON):
        return None
    return best


def _instant(text: str | None) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


# -- what a session reports ---------------------------------------------------------------------


def apply_report(
    state: BatchState,
    chunk: ChunkRecord,
    phase: str,
    results: Iterable[dict[str, Any]],
    *,
    reason: str | None = None,
) -> bool:
    """Update the runs of ``chunk`` from its session: ``phase`` and the per-input ``results``
    (the values of its ``urn:jeb:v1:batch-input`` messages, or the runner's records). Returns
    True when anything changed.

    When the session has ended, its runs without a result did not finish there: they go back
    to PENDING (another session runs them), or FAIL with ``reason`` once they were lost in
    ``max_attempts`` sessions; in a CANCELLED session (or a cancelled batch) they are
    CANCELLED.
    """
    runs = {state.runs[i].id: state.runs[i] for i in chunk.runs if i < len(state.runs)}
    changed = False
    for result in results:
        run = runs.get(str(result.get("id")))
        if run is None or run.session != chunk.session or run.is_final:
            continue
        changed |= _apply_result(run, result)
    if chunk.phase != phase:
        chunk.phase = phase
        changed = True
    final = phase in {"COMPLETED", "FAILED", "CANCELLED", "EXPIRED", "REJECTED"}
    for run in runs.values():
        if run.session != chunk.session or run.is_final:
            continue
        if not final:
            new = "RUNNING" if phase in _RUNNING_PHASES else "WAITING"
            if run.phase != new:
                run.phase, changed = new, True
            continue
        changed = True
        if phase == "CANCELLED" or state.cancelled:
            run.phase = "CANCELLED"
            continue
        run.attempts += 1
        run.chunk = None
        limit = int(state.options.get("max_attempts") or DEFAULT_MAX_ATTEMPTS)
        if run.attempts >= limit:
            run.phase = "FAILED"
            run.error = {
                "message": f"did not finish in {run.attempts} sessions; the last ended "
                f"{phase}: {reason or 'no reason given'}"
            }
        else:
            run.phase = "PENDING"
    if final and chunk.state != "done":
        chunk.state = "done"
        chunk.message = reason if phase != "COMPLETED" else None
        changed = True
    return changed


def _apply_result(run: RunRecord, result: dict[str, Any]) -> bool:
    state = str(result.get("state") or "")
    if state not in ("SUCCEEDED", "FAILED"):
        return False
    run.phase = "COMPLETED" if state == "SUCCEEDED" else "FAILED"
    run.output = str(result.get("output") or "") or run.output
    run.started = result.get("started") or run.started
    run.finished = result.get("finished") or run.finished
    duration = result.get("duration_s")
    try:
        run.duration = float(duration) if duration not in (None, "") else None
    except (TypeError, ValueError):
        run.duration = None
    if state == "SUCCEEDED":
        run.error = None
        return True
    error: dict[str, Any] = dict(result.get("error") or {})
    for key, source in (("ename", "ename"), ("evalue", "evalue"), ("message", "reason")):
        if result.get(source) not in (None, "") and key not in error:
            error[key] = result[source]
    cell = result.get("cell", error.get("cell"))
    try:
        error["cell"] = int(cell) if cell not in (None, "") else None
    except (TypeError, ValueError):
        error["cell"] = None
    run.error = {k: v for k, v in error.items() if k != "traceback" or v}
    return True


def release_chunk(state: BatchState, chunk: ChunkRecord, phase: str) -> None:
    """The offer of ``chunk`` never became a session (expired, rejected, taken): its runs go
    back to PENDING as they were (no attempt is counted) and the chunk is done."""
    for index in chunk.runs:
        run = state.runs[index]
        if run.session == chunk.session and not run.is_final:
            run.phase = "CANCELLED" if state.cancelled else "PENDING"
            run.chunk, run.session, run.broker = None, None, None
    chunk.state, chunk.phase = "done", phase


def assign(state: BatchState, chunk: ChunkRecord) -> None:
    """Give the runs of ``chunk`` to its session (WAITING until it reports)."""
    for index in chunk.runs:
        run = state.runs[index]
        run.phase, run.chunk = "WAITING", chunk.id
        run.session, run.broker = chunk.session, chunk.broker
