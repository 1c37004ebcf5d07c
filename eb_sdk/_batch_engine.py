"""The engine of a batch: negotiates its chunks with the brokers and follows their sessions.

One :class:`BatchEngine` per batch and process, with one background task (:meth:`run`) that
alternates between following the sessions in flight (one ``GET /sessions/{uuid}`` each,
concurrently) and placing the next chunks (one fan-out to every broker per chunk, the offer
with the earliest expected finish accepted, see :mod:`eb_sdk._batch_plan`). Every change is
saved to the batch's state file; the writes that matter for resuming (a chunk about to be
accepted, a chunk accepted) are saved before the next step, the rest at most once a second.

The engine holds the batch's lock (:class:`~eb_sdk._batch_state.StateLock`) while it runs, so
two processes never place the same runs.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import os
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import aio
from ._batch_plan import (
    apply_report,
    assign,
    booking_duration,
    choose,
    chunk_of,
    release_chunk,
    seconds_per_input,
)
from ._batch_state import BatchState, ChunkRecord, RunRecord, StateLock, read_json
from ._client import client_for
from ._config import Broker, resolve_brokers
from ._errors import (
    AuthenticationError,
    ConfigError,
    Conflict,
    EBError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RequestRejected,
)
from ._request import build_request
from .model import BatchInput, NotebookBatch, Phase
from .model.messages import BATCH_INPUT
from .model.times import Interval, format_interval, parse_interval
from .offers import AsyncOffer
from .sessions import AsyncSession

log = logging.getLogger("eb_sdk.batch")

__all__ = ["BatchEngine"]

#: Pauses between two rounds of following: ``POLL_MIN`` after a change (progress is shown a
#: second late at most), slower while nothing moves; ``POLL_ENDING`` while a chunk is in its last
#: stretch — its session may end any moment, and its cores are then free for the next chunk.
POLL_MIN, POLL_MAX, POLL_ENDING = 1.0, 5.0, 0.2
#: A chunk is in its last stretch when at most this many of its runs a core are left: the
#: runner runs two inputs a core at once (``LocalPlatform.batch_workers_per_core``).
ENDING_RUNS_PER_CORE = 2
#: Least seconds between two attempts to place chunks when no chunk ended meanwhile; after
#: each attempt that placed nothing (every broker busy until the chunks in flight end) the
#: pause doubles, up to ``PLACE_INTERVAL_MAX``: each attempt is a request and its offers
#: rejected again, on every broker, for as long as the batch runs.
PLACE_INTERVAL, PLACE_INTERVAL_MAX = 5.0, 60.0
#: Least seconds between two saves of the state for changes that need no immediate save.
SAVE_INTERVAL = 1.0
#: Errors after which asking again cannot help: the batch stops and says why.
FATAL = (RequestRejected, InvalidRequest, AuthenticationError, PermissionDenied, ConfigError)

_LIVE: dict[str, BatchEngine] = {}


def live_engine(state_path: Path) -> BatchEngine | None:
    """The engine of this process that follows the batch at ``state_path``, if any."""
    return _LIVE.get(str(state_path))


class BatchEngine:
    """Places and follows the chunks of one batch (all calls on one event loop)."""

    def __init__(self, state: BatchState, brokers: list[Broker] | None = None) -> None:
        self.state = state
        self._brokers = brokers
        self.lock = StateLock(state)
        self.warnings: deque[str] = deque(maxlen=20)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._last_save = 0.0
        self._dirty = False
        self._last_place = float("-inf")
        self._place_pause = PLACE_INTERVAL
        #: what stopped the background task, if it was not the end of the batch (a bug, a
        #: state file that cannot be written): ``wait()`` raises it
        self.crash: BaseException | None = None

    # -- brokers -----------------------------------------------------------------------------

    @property
    def brokers(self) -> list[Broker]:
        """The brokers asked for offers: given ones, else the batch's saved choice, else the
        configured ones (names and URLs get their credentials from the configuration)."""
        if self._brokers is None:
            self._brokers = resolve_brokers(self.state.options.get("brokers") or None)
        return self._brokers

    def _broker_of(self, url: str, name: str = "") -> Broker:
        """The broker at ``url``: one of the batch's, else a configured one, else one made from
        the URL (with the credentials the environment has for it)."""
        for known in (lambda: self.brokers, resolve_brokers):
            try:
                for broker in known():
                    if broker.url == url:
                        return broker
            except ConfigError:  # nothing configured: the URL alone will do
                pass
        return Broker(url, name=name).with_defaults(os.environ)

    # -- saving ------------------------------------------------------------------------------

    def save(self, *, now: bool = False) -> None:
        """Save the state: at once when ``now``, else when a second passed since the last."""
        self._dirty = True
        if now or time.monotonic() - self._last_save >= SAVE_INTERVAL:
            self.state.save()
            self._last_save = time.monotonic()
            self._dirty = False

    def flush(self) -> None:
        if self._dirty:
            self.save(now=True)

    # -- placing -----------------------------------------------------------------------------

    def _windows(self, now: datetime) -> list[Interval] | None:
        """What is left of the batch's start windows (None: as soon as possible)."""
        left = []
        for text in self.state.options.get("windows") or []:
            window = parse_interval(text)
            if window.end > now:
                left.append(Interval(max(window.start, now), window.end))
        return left or None

    def _request(self, runs: list[RunRecord], chunk_id: int) -> Any:
        options = self.state.options
        executable = NotebookBatch(
            location=self.state.notebook,
            parameter=self.state.parameter,
            parameters=self.state.parameters or None,
            inputs=[BatchInput(id=r.id, value=r.input) for r in runs],
            output_dir=options.get("output_dir"),
            kernel=options.get("kernel"),
            workers=options.get("workers"),
            cell_timeout=options.get("cell_timeout"),
        )
        compute = options.get("compute")
        cores = ((compute or {}).get("cores") or {}).get("min") or 1
        now = datetime.now(UTC)
        return build_request(
            executable,
            compute=compute,
            duration=booking_duration(self.state, len(runs), int(cores)),
            start=self._windows(now),
            name=f"{self.state.name or self.state.id} #{chunk_id}",
        )

    def in_flight(self) -> list[ChunkRecord]:
        return [c for c in self.state.chunks if c.in_flight]

    async def place(self) -> int:
        """Place chunks while there are PENDING runs and placing helps; the number placed.

        Raises the brokers' error when no chunk is in flight and none could be placed (nobody
        can run it, or nobody answered): the caller decides what that means.
        """
        placed = 0
        self._last_place = time.monotonic()
        while not self.state.cancelled:
            limit = self.state.options.get("max_parallel")
            in_flight = self.in_flight()
            if limit and len(in_flight) >= int(limit):
                break
            runs = chunk_of(self.state, len(in_flight))
            if not runs:
                break
            if not await self._place_one(runs, in_flight):
                break
            placed += 1
        return placed

    async def _place_one(self, runs: list[RunRecord], in_flight: list[ChunkRecord]) -> bool:
        state = self.state
        chunk_id = state.next_chunk
        request = self._request(runs, chunk_id)
        asked = await aio.ask(request, self.brokers, None)
        for warning in asked.warnings:
            self._warn(str(warning))
        offers = [AsyncOffer(wire, b, url) for b, wire, url in asked.offers()]
        if state.cancelled:  # cancelled while the brokers were asked: cancel() never saw these
            await asyncio.gather(*(o._quiet_reject() for o in offers))
            return False
        group = aio.Offers(offers, answers=asked.answers, warnings=asked.warnings, request=request)
        now = datetime.now(UTC)
        ends = [_parse(c.expected_end) or now for c in in_flight]
        choice = choose(offers, len(runs), seconds_per_input(state), now, ends)
        if choice is None:
            await asyncio.gather(*(o._quiet_reject() for o in offers))
            if not in_flight:
                raise group._rejected()
            return False
        offer = offers[choice.index]
        chunk = ChunkRecord(
            id=chunk_id,
            runs=[r.index for r in runs],
            state="accepting",
            broker=offer.broker_name,
            broker_url=offer.broker.url,
            session=offer.uuid,
            url=offer.url,
            phase=Phase.OFFERED.value,
            cores=offer.cores,
            start=_iso(offer.start),
            expected_end=_iso(choice.expected_end),
            others=[[o.broker.url, o.uuid] for o in offers if o is not offer],
        )
        state.chunks.append(chunk)
        state.next_chunk = chunk_id + 1
        assign(state, chunk)
        self.save(now=True)  # before accepting: a client killed now finds the offer again
        try:
            session = await offer.accept()
        except Conflict as exc:  # expired or taken meanwhile: ask again, in the next round
            self._warn(f"chunk {chunk_id}: {exc}")
            release_chunk(state, chunk, offer.phase.value)
            self.save(now=True)
            return False
        except EBError as exc:  # did it reach the broker? following the chunk finds out
            self._warn(f"chunk {chunk_id}: accepting {offer.uuid[:8]}: {exc}")
            return True
        chunk.state, chunk.phase, chunk.others = "accepted", session.phase.value, None
        self.save(now=True)
        if state.cancelled:  # cancelled during the accept: make sure the session is cancelled
            with contextlib.suppress(EBError):
                await client_for(offer.broker).set_phase(chunk.session, Phase.CANCELLED)
        log.info("chunk %d (%d runs) on %s: %s", chunk_id, len(runs), chunk.broker, chunk.session)
        return True

    # -- following ---------------------------------------------------------------------------

    async def follow(self) -> bool:
        """Read every chunk in flight from its broker; True when anything changed."""
        changed = await asyncio.gather(*(self._follow(c) for c in self.in_flight()))
        return any(changed)

    async def _follow(self, chunk: ChunkRecord) -> bool:
        broker = self._broker_of(chunk.broker_url, chunk.broker)
        try:
            wire = await client_for(broker).session(chunk.session)
        except NotFound:
            if chunk.state == "accepting":
                release_chunk(self.state, chunk, "REJECTED")
                return True
            return apply_report(
                self.state, chunk, "FAILED", [], reason="the broker no longer knows the session"
            )
        except EBError as exc:
            self._warn(f"chunk {chunk.id}: {exc}")
            return False
        session = AsyncSession(wire, broker)
        if chunk.state == "accepting":
            await self._reject_others(chunk)
            if session.phase == Phase.OFFERED:
                try:
                    wire = (await AsyncOffer(wire, broker).accept(reject_others=False)).wire
                    session = AsyncSession(wire, broker)
                except Conflict:
                    release_chunk(self.state, chunk, "EXPIRED")
                    return True
            if session.phase in (Phase.EXPIRED, Phase.REJECTED, Phase.OFFERED):
                release_chunk(self.state, chunk, session.phase.value)
                return True
            chunk.state = "accepted"
            self.save(now=True)
        results = self._results(chunk, session)
        reason = _failure(session)
        if session.phase == Phase.CANCELLED and not self.state.cancelled:
            reason = reason or "the session was cancelled"
        changed = apply_report(self.state, chunk, session.phase.value, results, reason=reason)
        if not chunk.in_flight:
            log.info("chunk %d ended %s on %s", chunk.id, session.phase.value, chunk.broker)
        return changed

    async def _reject_others(self, chunk: ChunkRecord) -> None:
        """Reject the other offers of an interrupted accept (best effort)."""

        async def reject(url: str, uuid: str) -> None:
            with contextlib.suppress(EBError):
                await client_for(self._broker_of(url)).set_phase(uuid, Phase.REJECTED)

        await asyncio.gather(*(reject(url, uuid) for url, uuid in chunk.others or []))
        chunk.others = None

    def _results(self, chunk: ChunkRecord, session: AsyncSession) -> list[dict[str, Any]]:
        """The per-input results a session reports (its ``urn:jeb:v1:batch-input`` messages);
        once it ended, the runner's own records fill in what the messages missed, when its
        directory is readable here (a shared file system)."""
        found = [
            dict(m.values or {})
            for m in session.messages
            if m.kind == BATCH_INPUT and m.values and m.values.get("id")
        ]
        if not session.is_final:
            return found
        records = session.outputs.get("inputs")
        if not isinstance(records, str) or not os.path.isdir(records):
            return found
        known = {str(r.get("id")) for r in found}
        for index in chunk.runs:
            run = self.state.runs[index]
            if run.id in known:
                continue
            record = read_json(Path(records) / f"{run.id}.json")
            if record is not None:
                found.append(record)
        return found

    # -- the background task -----------------------------------------------------------------

    def start(self) -> None:
        """Start following in the background (on the running loop); idempotent."""
        if self._task is not None and not self._task.done():
            self.wake()
            return
        if not self.lock.held:
            self.lock.acquire()
        _LIVE[str(self.state.path)] = self
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self.run())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Follow and place until every run is final (or the batch stopped with an error)."""
        try:
            await self._follow_and_place()
        except Exception as exc:
            log.exception("batch %s: following stopped", self.state.id)
            self.crash = exc
        finally:
            with contextlib.suppress(OSError):
                self.flush()
            self.lock.release()  # another process may follow it now (retry() takes it again)

    async def _follow_and_place(self) -> None:
        pause = POLL_MIN
        while True:
            before = len(self.in_flight())
            changed = await self.follow()
            finished = len(self.in_flight()) < before
            if self._should_place(finished):
                changed |= await self._place_guarded()
            if changed:
                self.save()
            if self.state.done or (self.state.error and not self.in_flight()):
                break
            pause = POLL_MIN if changed else min(pause * 1.5, POLL_MAX)
            if any(self._ending(c) for c in self.in_flight()):
                pause = POLL_ENDING
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            self._wake.clear()

    def _ending(self, chunk: ChunkRecord) -> bool:
        """``chunk`` is in its last stretch: no more of its runs are left than it runs at once
        (``ENDING_RUNS_PER_CORE`` a core), so its session may end any moment and its cores be
        free for the next chunk."""
        if chunk.state != "accepted":
            return False
        runs = self.state.runs
        left = sum(
            1 for i in chunk.runs if not runs[i].is_final and runs[i].session == chunk.session
        )
        return left <= ENDING_RUNS_PER_CORE * max(1, chunk.cores or 1)

    def _should_place(self, finished: bool) -> bool:
        if self.state.cancelled or self.state.error:
            return False
        if not any(r.phase == "PENDING" for r in self.state.runs):
            return False
        if finished:
            self._place_pause = PLACE_INTERVAL
            return True
        return time.monotonic() - self._last_place >= self._place_pause

    async def _place_guarded(self) -> bool:
        """Place, keeping the loop alive through a broker's failure; a fatal answer while
        nothing is in flight stops the batch with ``error``."""
        try:
            placed = await self.place()
            if placed:
                self._place_pause = PLACE_INTERVAL
            else:
                self._place_pause = min(PLACE_INTERVAL_MAX, self._place_pause * 2)
            return placed > 0
        except FATAL as exc:
            if self.in_flight():
                self._warn(str(exc))
                return False
            self.state.error, self.state.error_type = str(exc), type(exc).__name__
            self.save(now=True)
            return True
        except EBError as exc:
            self._warn(str(exc))
            return False

    async def stop(self) -> None:
        """Stop the background task (the sessions keep running) and release the lock."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.flush()
        self.lock.release()
        _LIVE.pop(str(self.state.path), None)

    # -- actions -----------------------------------------------------------------------------

    async def cancel(self) -> None:
        """Cancel the batch: PENDING runs are CANCELLED, sessions in flight are cancelled
        (their unfinished runs become CANCELLED), finished runs keep their results."""
        self.state.cancelled = True
        for run in self.state.runs:
            if run.phase == "PENDING":
                run.phase = "CANCELLED"
        self.save(now=True)

        async def cancel_one(chunk: ChunkRecord) -> None:
            client = client_for(self._broker_of(chunk.broker_url, chunk.broker))
            target = Phase.REJECTED if chunk.state == "accepting" else Phase.CANCELLED
            try:
                await client.set_phase(chunk.session, target)
            except Conflict:  # it ended (or was accepted) meanwhile: following settles it
                with contextlib.suppress(EBError):
                    await client.set_phase(chunk.session, Phase.CANCELLED)
            except EBError as exc:
                self._warn(f"cancelling chunk {chunk.id}: {exc}")

        await asyncio.gather(*(cancel_one(c) for c in self.in_flight()))
        await self.follow()
        self.save(now=True)

    def retry(self, *, failed_only: bool = True) -> list[int]:
        """Make FAILED runs (and with ``failed_only=False`` also CANCELLED ones) PENDING
        again; the indexes of those runs. COMPLETED runs are never run again."""
        again = {"FAILED"} if failed_only else {"FAILED", "CANCELLED"}
        indexes = []
        for run in self.state.runs:
            if run.phase in again:
                run.reset()
                indexes.append(run.index)
        if indexes or not failed_only:
            self.state.cancelled = False
        self.state.error = self.state.error_type = None
        self.save(now=True)
        return indexes

    def _warn(self, text: str) -> None:
        log.warning("batch %s: %s", self.state.id, text)
        self.warnings.append(text)


@atexit.register
def _stop_at_exit() -> None:
    """At interpreter exit, stop following (and save) the batches of the sync API's loop;
    their sessions keep running and ``Batch.load`` follows them again."""
    for engine in list(_LIVE.values()):
        loop = engine._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            continue
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(engine.stop(), loop).result(timeout=5)


# -- helpers --------------------------------------------------------------------------------------


def _failure(session: AsyncSession) -> str | None:
    """Why a session ended badly, in the broker's words (its last errors)."""
    if session.phase not in (Phase.FAILED, Phase.CANCELLED, Phase.EXPIRED, Phase.REJECTED):
        return None
    errors = [m for m in session.messages if (m.level or "") == "ERROR" and m.kind != BATCH_INPUT]
    return "; ".join(str(m) for m in errors[-2:]) or None


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat() if when is not None else None


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def resolve_windows(start: Any, tz: Any = None) -> list[str]:
    """The batch's start windows as ISO intervals (kept in its options), from anything
    ``eb.request`` takes as ``start``."""
    from ._request import windows

    return [format_interval(w) for w in windows(start, tz=tz)]


def seconds(value: str | timedelta | float | None, what: str) -> float | None:
    """A duration option in seconds ("1 min", "PT1M", a timedelta or a number of seconds)."""
    from ._request import duration_of

    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidRequest(f"{what}: expected a duration, not {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            raise InvalidRequest(f"{what}: must be a positive number of seconds, not {value!r}")
        return float(value)
    try:
        return duration_of(value).total_seconds()
    except InvalidRequest as exc:
        raise InvalidRequest(f"{what}: {exc}") from None
