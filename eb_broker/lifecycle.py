"""The reconciler: drives accepted sessions through their phases via the platform.

ACCEPTED → WAITING → PREPARING → AVAILABLE/RUNNING → RELEASING → COMPLETED | FAILED | CANCELLED

Every step is written to the ledger before the next platform call, so a broker killed at any
point resumes where it was: a session marked PREPARING whose launch handle is missing is
launched again, and the platform's launch adopts the work it already started (idempotent per
uuid) — nothing is lost and nothing starts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from eb_sdk.model import MessageItem, Phase
from eb_sdk.model import messages as msg

from .core import BrokerCore
from .ledger import SessionRow
from .platforms.base import (
    PlatformState,
    PlatformStatus,
    PlatformUnavailable,
    ReleaseLeftovers,
    SessionSpec,
)
from .staging.service import FAILED as STAGING_FAILED
from .staging.service import STAGED, staged_messages

log = logging.getLogger("eb_broker.lifecycle")

_RUNNING_PHASES = (Phase.PREPARING, Phase.AVAILABLE, Phase.RUNNING)
_STATE_TO_PHASE = {
    PlatformState.PREPARING: Phase.PREPARING,
    PlatformState.AVAILABLE: Phase.AVAILABLE,
    PlatformState.RUNNING: Phase.RUNNING,
}


class Reconciler:
    """Runs :meth:`step` every ``interval`` seconds, or sooner when :meth:`wake` is called."""

    def __init__(self, core: BrokerCore, interval: float = 1.0) -> None:
        self.core = core
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: The earliest moment a waiting session is due to launch, seen by the last pass:
        #: the next pass comes then if that is sooner than ``interval`` (a session accepted
        #: for "now" starts at its offered start, not up to a whole interval later).
        self._next_due: datetime | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    def wake(self) -> None:
        """Reconcile now (after an accept or a cancel)."""
        self._wake.set()

    async def _run(self) -> None:
        last_refresh = float("-inf")
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if loop.time() - last_refresh >= self.core.platform.refresh_interval:
                await self.refresh_platform()
                last_refresh = loop.time()
            try:
                await self.step()
            except Exception:
                log.exception("reconcile step failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._pause())
            self._wake.clear()

    def _pause(self) -> float:
        """Seconds until the next pass: ``interval``, or less when a session is due sooner."""
        if self._next_due is None:
            return self.interval
        due = (self._next_due - self.core.clock()).total_seconds()
        return min(self.interval, max(0.01, due))

    # -- one pass -------------------------------------------------------------------------------

    async def step(self) -> None:
        """One pass over every active session (one batched platform poll)."""
        core = self.core
        core.reap()
        now = core.clock()
        rows = core.ledger.work_list(now)
        to_poll: list[SessionRow] = []
        self._next_due = None
        for row in rows:
            phase = Phase(row.phase)
            if row.stop_requested:
                await self._finish(
                    row, Phase(row.stop_requested), now, stop=row.launched is not None
                )
            elif phase == Phase.ACCEPTED:
                row = await self._book(row, now)
                if row.phase == Phase.WAITING.value:
                    await self._launch_when_due(row, now)
            elif phase == Phase.WAITING:
                await self._launch_when_due(row, now)
            elif phase == Phase.PREPARING and (not row.handle or _unlaunched_data(row)):
                await self._launch(row, now)  # crashed between marking and launching: adopt
            elif phase in _RUNNING_PHASES:
                if now >= _slot_end(row):
                    await self._end_of_slot(row, now)
                else:
                    to_poll.append(row)
            elif phase == Phase.RELEASING:
                await self._finish(row, Phase.COMPLETED, now, stop=False)
        if to_poll:
            await self._poll(to_poll, now)

    async def _launch_when_due(self, row: SessionRow, now: datetime) -> None:
        due = row.start - _prep(row)
        if now >= due or self.core.may_launch_early(row, now):
            await self._launch(row, now)
        elif self._next_due is None or due < self._next_due:
            self._next_due = due

    async def _handle_from(
        self,
        row: SessionRow,
        now: datetime,
        call: Callable[[SessionSpec], Awaitable[dict[str, Any]]],
        doing: str,
    ) -> dict[str, Any] | None:
        """Run a platform call that returns the session's handle; on an error the session
        FAILS with a message saying what the platform could not do (None is returned)."""
        try:
            return await call(self.core.spec_for(row))
        except PlatformUnavailable as exc:
            # Not the session's fault: it stays where it is (ACCEPTED, or PREPARING without a
            # handle) and the same call is made again on a later pass.
            log.warning("%s: cannot %s now (%s); trying again", row.uuid, doing, exc)
            return None
        except Exception as exc:
            log.exception("%s: the platform could not %s", row.uuid, doing)
            problem = msg.error(msg.PLATFORM, f"the platform could not {doing}: {exc}")
            await self._finish(row, Phase.FAILED, now, stop=False, problems=[problem])
            return None

    async def _book(self, row: SessionRow, now: datetime) -> SessionRow:
        """ACCEPTED → WAITING, holding the slot on the platform first (e.g. a reservation)."""
        handle = await self._handle_from(row, now, self.core.platform.book, "book the slot")
        if handle is None:
            return row
        return self.core.ledger.transition(
            row.uuid, Phase.WAITING, now, message="waiting for the slot", handle=handle
        )

    async def refresh_platform(self) -> None:
        """Let the platform re-read its capacity and foreign usage, then update the timeline
        (and clean the staging cache)."""
        try:
            self.core.housekeeping()
        except Exception:
            log.exception("staging cache clean-up failed")
        try:
            await self.core.platform.refresh()
        except Exception:
            log.exception("platform refresh failed")
            return
        self.core.sync_external()

    async def _launch(self, row: SessionRow, now: datetime) -> None:
        core = self.core
        if row.phase != Phase.PREPARING.value:
            row = core.ledger.transition(
                row.uuid, Phase.PREPARING, now, message="preparing", launched=now
            )
        staged = await self._staged(row, now)
        if staged is None:
            return
        row = staged
        handle = await self._handle_from(row, now, core.platform.launch, "start it")
        if handle is not None:
            fields: dict[str, Any] = {"handle": handle}
            if row.staging:  # the platform has it now (see _unlaunched_data)
                fields["staging"] = {**row.staging, "launched": True}
            core.ledger.update_fields(row.uuid, core.clock(), **fields)

    async def _staged(self, row: SessionRow, now: datetime) -> SessionRow | None:
        """Data first: the session once its data is staged (or it has none) and the platform's
        own preparation is due, else None. Starts the staging (a task) when it is not running;
        a staging that failed, or did not finish within the booked slot, FAILS the session."""
        runner = self.core.staging_runner
        record = row.staging or {}
        if runner is None or not record:
            return row
        state = record.get("state")
        if state == STAGED:
            if not record.get("noted"):
                told = [m.dump() for m in staged_messages(record)]
                row = self.core.ledger.update_fields(
                    row.uuid,
                    now,
                    staging={**record, "noted": True},
                    messages=[*(row.messages or []), *told],
                )
            if row.estimate:
                return row  # a queue estimate: into the platform's queue at once
            due = row.start - timedelta(seconds=int(record.get("platform_preparation_s") or 0))
            return row if now >= due else None
        if state == STAGING_FAILED or now >= _slot_end(row):
            reason = record.get("error") or "the data was not staged before the booked slot ended"
            problem = msg.error(msg.DATA_STAGING, f"staging the data failed: {reason}")
            await self._finish(row, Phase.FAILED, now, stop=False, problems=[problem])
            return None
        runner.ensure(row, self.wake)
        return None

    async def _poll(self, rows: list[SessionRow], now: datetime) -> None:
        core = self.core
        try:
            statuses = await core.platform.poll([core.spec_for(r) for r in rows])
        except Exception:
            log.exception("platform poll failed")
            return
        for row in rows:
            status = statuses.get(row.uuid)
            if status is not None:
                await self._apply(row, status, now)

    async def _apply(self, row: SessionRow, status: PlatformStatus, now: datetime) -> None:
        if status.state == PlatformState.UNKNOWN:
            return  # the platform cannot be asked now: not a change of the session
        core = self.core
        fields: dict[str, Any] = {}
        new_messages = _new_messages(row, status.messages)
        connectors = [c.dump() for c in status.connectors]
        if connectors != (row.connectors or []):
            fields["connectors"] = connectors
        if status.outputs and status.outputs != (row.outputs or {}):
            fields["outputs"] = dict(status.outputs)
        if status.handle is not None and status.handle != row.handle:
            fields["handle"] = status.handle
        if status.state in _STATE_TO_PHASE:
            phase = _STATE_TO_PHASE[status.state]
            if phase.value != row.phase or fields or new_messages:
                core.ledger.transition(
                    row.uuid,
                    phase,
                    now,
                    messages=new_messages,
                    message=_summary(new_messages),
                    **fields,
                )
            return
        if fields:
            core.ledger.update_fields(row.uuid, now, **fields)
        if status.state == PlatformState.SUCCEEDED:
            await self._finish(row, Phase.COMPLETED, now, stop=False, problems=status.messages)
        elif status.state == PlatformState.FAILED:
            await self._finish(row, Phase.FAILED, now, stop=False, problems=status.messages)
        elif status.state == PlatformState.GONE:
            await self._finish(
                row,
                Phase.FAILED,
                now,
                stop=False,
                problems=[msg.error(msg.PLATFORM, "the platform lost track of this session")],
            )

    async def _end_of_slot(self, row: SessionRow, now: datetime) -> None:
        """The booked time is over: stop it. A server ends normally; a run that is still going
        did not finish in time."""
        interactive = Phase(row.phase) == Phase.AVAILABLE
        outcome = Phase.COMPLETED if interactive else Phase.FAILED
        note = (
            msg.info(msg.PLATFORM, "the booked time ended")
            if interactive
            else msg.error(msg.RESOURCE_LIMIT, "the run did not finish within the booked duration")
        )
        await self._finish(row, outcome, now, stop=True, problems=[note])

    async def _finish(
        self,
        row: SessionRow,
        outcome: Phase,
        now: datetime,
        *,
        stop: bool,
        problems: list[MessageItem] | None = None,
    ) -> None:
        """RELEASING → outcome: stop and release on the platform, then free the capacity."""
        core = self.core
        new_messages = _new_messages(row, problems or [])
        if row.phase != Phase.RELEASING.value:
            row = core.ledger.transition(
                row.uuid,
                Phase.RELEASING,
                now,
                messages=new_messages,
                message=_summary(new_messages) or "releasing",
                stop_requested=outcome.value,
            )
        if core.staging_runner is not None:
            await core.staging_runner.cancel(row.uuid)
        spec = core.spec_for(row)
        release_problems: list[dict[str, Any]] = []
        try:
            if stop and row.launched is not None:
                await core.platform.stop(spec)
            if row.launched is not None or row.handle:
                await core.platform.release(spec)
        except PlatformUnavailable as exc:
            log.warning("cannot release %s now (%s); trying again", row.uuid, exc)
            return  # stays RELEASING with stop_requested: finished on a later pass
        except ReleaseLeftovers as exc:
            log.warning("released %s with leftovers: %s", row.uuid, exc)
            release_problems = _new_messages(row, [msg.warn(msg.PLATFORM, str(exc))])
        except Exception as exc:
            log.exception("releasing %s failed", row.uuid)
            outcome = Phase.FAILED
            problem = msg.error(msg.PLATFORM, f"releasing the resources failed: {exc}")
            release_problems = _new_messages(row, [problem])
        final = Phase(row.stop_requested) if row.stop_requested else outcome
        if outcome == Phase.FAILED:
            final = Phase.FAILED
        core.ledger.transition(
            row.uuid,
            final,
            core.clock(),
            message=_summary(release_problems) or final.value.lower(),
            messages=release_problems or None,
            connectors=[{**c, "status": "FINISHED"} for c in (row.connectors or [])],
        )
        core.release_capacity(row.uuid)
        if core.staging is not None and row.staging:
            core.staging.release(row.staging)
            core.housekeeping()


def _unlaunched_data(row: SessionRow) -> bool:
    """Preparing with data the platform has not been launched with yet (staging, or waiting
    for the platform's own preparation): the handle may already hold a booking (Slurm)."""
    return bool(row.staging) and not (row.staging or {}).get("launched")


def _prep(row: SessionRow) -> timedelta:
    return timedelta(seconds=row.preparation_s)


def _slot_end(row: SessionRow) -> datetime:
    """When the session must be over: the booked end or, for a queue estimate (the platform's
    queue decides the real start), the latest start plus the duration."""
    latest = (row.estimate or {}).get("latest")
    if not latest:
        return row.end
    return max(row.end, datetime.fromisoformat(str(latest)) + (row.end - row.start))


def _new_messages(row: SessionRow, items: list[MessageItem]) -> list[dict[str, Any]]:
    """Messages not yet recorded on the row (platforms repeat them on every poll)."""
    seen = {(m.get("kind"), m.get("message")) for m in (row.messages or [])}
    out = []
    for item in items:
        key = (item.kind, item.message)
        if key not in seen:
            seen.add(key)
            out.append(item.dump())
    return out


def _summary(messages: list[dict[str, Any]]) -> str | None:
    return "; ".join(str(m.get("message")) for m in messages if m.get("message")) or None
