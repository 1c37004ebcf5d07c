"""A booked session: where it is in its life, how to reach it, how to wait for it.

:class:`Session` (sync, for cells and scripts) and :class:`AsyncSession` (``eb_sdk.aio``) share
everything that does not talk to the broker; only ``refresh``/``wait``/``cancel`` differ in
being plain or ``async``. ``events()`` is an async iterator on both, since a notebook cell
can ``async for`` directly; ``Session.iter_events()`` is its plain-iterator twin.

Waiting polls with backoff (fast at first, when phases change quickly, then slower up to a
few seconds) and resets to fast whenever the phase changes.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import AsyncGenerator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Self

from ._client import client_for
from ._errors import SessionFailed, Timeout
from ._format import human_duration, local_time, relative, resources_text
from ._portal import run_sync
from ._wireview import WireView
from .model import (
    FINAL_PHASES,
    MessageItem,
    Phase,
    SimpleSessionConnector,
)

__all__ = ["AsyncSession", "Event", "PhaseSpec", "Session"]

PhaseSpec = Phase | str | Iterable[Phase | str] | None
"""One phase, several, or None for "any final phase"."""

#: Polling: first pause, growth per unchanged poll, longest pause (seconds).
POLL_MIN, POLL_GROWTH, POLL_MAX = 0.25, 1.5, 5.0


@dataclass(frozen=True)
class Event:
    """A change seen on a session: a new ``phase``, or a new ``message`` from the broker."""

    kind: Literal["phase", "message"]
    phase: Phase
    time: datetime
    message: MessageItem | None = None
    session: Any = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        if self.kind == "phase":
            return f"phase {self.phase.value}"
        return f"{self.message.level or 'INFO'}: {self.message}" if self.message else "message"


def phases_of(spec: PhaseSpec) -> frozenset[Phase]:
    """The phases a ``wait`` target names (``READY`` means AVAILABLE); None: final phases."""
    if spec is None:
        return frozenset(FINAL_PHASES)
    items = [spec] if isinstance(spec, str) else list(spec)
    return frozenset(Phase.parse(str(p)) for p in items)


def _message_key(item: MessageItem) -> tuple[Any, ...]:
    return (item.kind, item.time, item.message, item.template)


class _SessionBase(WireView):
    """Data and presentation of a session; no I/O except through the subclasses."""

    @property
    def connectors(self) -> list[SimpleSessionConnector]:
        """How to reach it (e.g. a Jupyter server's URL once AVAILABLE)."""
        return list(self._wire.connectors or [])

    @property
    def outputs(self) -> dict[str, Any]:
        """Where a finished session's outputs are (``jeb:outputs``: notebook, log, ...)."""
        raw = (self._wire.model_extra or {}).get("jeb:outputs") or {}
        return dict(raw) if isinstance(raw, dict) else {}

    @property
    def messages(self) -> list[MessageItem]:
        return self._wire.messages

    @property
    def is_final(self) -> bool:
        return self.phase.is_final

    def raise_if_failed(self) -> Self:
        """Raise :class:`SessionFailed` (with the broker's messages) if the session FAILED."""
        if self.phase == Phase.FAILED:
            errors = [m for m in self.messages if (m.level or "") == "ERROR"] or self.messages
            detail = "; ".join(str(m) for m in errors[-3:]) or "no reason given"
            raise SessionFailed(
                f"session {self.uuid[:8]} failed: {detail}",
                broker=self.broker_name,
                messages=self.messages,
            )
        return self

    # -- I/O shared by both flavours ---------------------------------------------------------

    async def _arefresh(self) -> None:
        self._wire = await client_for(self.broker).session(self.uuid or self.url or "")

    async def _aset(self, phase: Phase) -> None:
        self._wire = await client_for(self.broker).set_phase(self.uuid or self.url or "", phase)

    async def _await(self, phases: PhaseSpec, limit: float | None) -> None:
        targets = phases_of(phases)
        deadline = None if limit is None else time.monotonic() + limit
        pause = POLL_MIN
        while True:
            before = self.phase
            if before in targets or before.is_final:
                return
            if deadline is not None and time.monotonic() >= deadline:
                wanted = ", ".join(sorted(p.value for p in targets))
                raise Timeout(
                    f"session {self.uuid[:8]} is still {before.value} after {limit:g} s "
                    f"(waited for {wanted})",
                    broker=self.broker_name,
                )
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await asyncio.sleep(pause if left is None else min(pause, left))
            await self._arefresh()
            pause = POLL_MIN if self.phase != before else min(pause * POLL_GROWTH, POLL_MAX)

    async def events(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - same meaning as in wait()
    ) -> AsyncGenerator[Event, None]:
        """Phase changes and new messages as they happen, starting with the current state;
        ends after a final phase. Raises :class:`Timeout` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: set[tuple[Any, ...]] = set()
        last: Phase | None = None
        pause = POLL_MIN
        while True:
            now = datetime.now(UTC)
            changed = self.phase != last
            if changed:
                last = self.phase
                yield Event("phase", self.phase, now, session=self)
            for item in self.messages:
                if _message_key(item) not in seen:
                    seen.add(_message_key(item))
                    yield Event("message", self.phase, item.time or now, item, session=self)
            if self.phase.is_final:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(
                    f"session {self.uuid[:8]} is still {self.phase.value} after {timeout:g} s",
                    broker=self.broker_name,
                )
            pause = POLL_MIN if changed else min(pause * POLL_GROWTH, POLL_MAX)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            await asyncio.sleep(pause if left is None else min(pause, left))
            await self._arefresh()

    # -- presentation ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A flat summary for ``--json`` and scripts (the wire form is under ``session``)."""
        return {
            "broker": self.broker_name,
            "uuid": self.uuid,
            "url": self.url,
            "name": self.name,
            "phase": self.phase.value,
            "platform": self.platform,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "resources": resources_text(self._wire.compute),
            "connectors": [c.dump() for c in self.connectors],
            "outputs": self.outputs,
            "messages": [m.dump() for m in self.messages],
            "session": self._wire.dump(),
        }

    def summary_rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs of what a person wants to know, for text and HTML."""
        start = self.start
        when = local_time(start)
        if start is not None and not self.is_final:
            when += f" ({relative(start)})"
        rows = [
            ("session", self.uuid),
            ("broker", self.broker_name + (f" ({self.platform})" if self.platform else "")),
            ("phase", self.phase.value),
            ("start", when),
            ("duration", human_duration(self.duration)),
            ("resources", resources_text(self._wire.compute)),
        ]
        rows += [("connector", c.location or "") for c in self.connectors if c.location]
        rows += [(f"output {k}", str(v)) for k, v in self.outputs.items()]
        rows += [(f"{m.level or 'INFO'}".lower(), str(m)) for m in self.messages[-5:]]
        return rows

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uuid[:8]} on {self.broker_name}: {self.phase.value}>"

    def __str__(self) -> str:
        width = max(len(k) for k, _ in self.summary_rows())
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in self.summary_rows())

    def _repr_html_(self) -> str:
        def cell(label: str, value: str) -> str:
            text = html.escape(value)
            if label == "connector" and value.startswith(("http://", "https://")):
                text = f"<a href='{html.escape(value)}' target='_blank'>{text}</a>"
            return f"<tr><th style='text-align:left'>{html.escape(label)}</th><td>{text}</td></tr>"

        return "<table>" + "".join(cell(k, v) for k, v in self.summary_rows()) + "</table>"


class AsyncSession(_SessionBase):
    """A session, with ``async`` calls (``eb_sdk.aio``)."""

    async def refresh(self) -> Self:
        """Read the session again from its broker."""
        await self._arefresh()
        return self

    async def wait(
        self,
        phases: PhaseSpec = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the same API as Session.wait
    ) -> Self:
        """Wait until the session is in one of ``phases`` (default: any final phase) or in a
        final phase it cannot leave; :class:`Timeout` after ``timeout`` seconds."""
        await self._await(phases, timeout)
        return self

    async def cancel(self) -> Self:
        """Cancel it (free its booking, or stop it when running)."""
        await self._aset(Phase.CANCELLED)
        return self


class Session(_SessionBase):
    """A session, with plain (blocking) calls that also work inside a notebook cell."""

    def refresh(self) -> Self:
        """Read the session again from its broker."""
        run_sync(self._arefresh())
        return self

    def wait(self, phases: PhaseSpec = None, timeout: float | None = None) -> Self:
        """Wait until the session is in one of ``phases`` (default: any final phase) or in a
        final phase it cannot leave; :class:`Timeout` after ``timeout`` seconds."""
        run_sync(self._await(phases, timeout))
        return self

    def cancel(self) -> Self:
        """Cancel it (free its booking, or stop it when running)."""
        run_sync(self._aset(Phase.CANCELLED))
        return self

    def iter_events(self, *, timeout: float | None = None) -> Iterator[Event]:
        """``events()`` as a plain iterator, for scripts without an event loop."""
        stream = self.events(timeout=timeout)

        async def step() -> Event | None:
            try:
                return await anext(stream)
            except StopAsyncIteration:
                return None

        try:
            while (event := run_sync(step())) is not None:
                yield event
        finally:
            run_sync(stream.aclose())
