"""A card per accepted session: phase with progress, messages, connector link, Cancel.

The card follows its session with :meth:`SessionCard.follow` (``session.events()`` on the
kernel's loop) and only sets widget values. Losing contact with the broker is shown on the
card and retried; it never ends the panel.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

import ipywidgets as w

from .._errors import EBError
from .._format import human_duration, local_time, relative, resources_text
from ..model import Phase
from ..sessions import AsyncSession
from ._runner import error_html, error_text

__all__ = ["SessionCard"]

#: Where each phase puts the progress bar (of 1.0) and its colour.
STEPS: dict[Phase, tuple[float, str]] = {
    Phase.ACCEPTED: (0.1, "info"),
    Phase.WAITING: (0.2, "info"),
    Phase.PREPARING: (0.4, "info"),
    Phase.AVAILABLE: (0.6, "info"),
    Phase.RUNNING: (0.7, "info"),
    Phase.RELEASING: (0.9, "info"),
    Phase.COMPLETED: (1.0, "success"),
    Phase.FAILED: (1.0, "danger"),
    Phase.CANCELLED: (1.0, "warning"),
    Phase.REJECTED: (1.0, "warning"),
    Phase.EXPIRED: (1.0, "warning"),
}
#: Pause before asking again after the broker could not be reached (seconds).
RETRY_PAUSE = 5.0


class SessionCard(w.VBox):
    """One session, kept current by :meth:`follow`."""

    def __init__(
        self,
        session: AsyncSession,
        on_cancel: Callable[[SessionCard], None],
        zone: tzinfo | None = None,
    ) -> None:
        self.session = session
        self.zone = zone  # None: the user's zone ($EB_TIMEZONE, else local)
        self.title = w.HTML("")
        self.phase = w.HTML("")
        self.phase.add_class("eb-phase")
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(width="20em"))
        self.progress.add_class("eb-progress")
        self.detail = w.HTML("")
        self.link = w.HTML("")
        self.link.add_class("eb-connector")
        self.messages = w.HTML("")
        self.messages.add_class("eb-messages")
        self.error = w.HTML("")
        self.error.add_class("eb-card-error")
        self.cancel = w.Button(description="Cancel", button_style="danger", icon="stop")
        self.cancel.add_class("eb-cancel")
        self.cancel.on_click(lambda _b: on_cancel(self))
        super().__init__(
            [
                self.title,
                w.HBox([self.phase, self.progress, self.cancel]),
                self.detail,
                self.link,
                self.messages,
                self.error,
            ],
            layout=w.Layout(border="1px solid #bbb", padding="4px 8px", margin="4px 0"),
        )
        self.add_class("eb-session")
        self.update()

    @property
    def final(self) -> bool:
        return self.session.phase.is_final

    def update(self, now: datetime | None = None) -> None:
        """Show the session as it is now (only sets widget values)."""
        s = self.session
        now = now or datetime.now(UTC)
        self.title.value = (
            f"<b>{html.escape(s.name or 'session')}</b> "
            f"<code>{html.escape(s.uuid[:8])}</code> on "
            f"<b>{html.escape(s.broker_name)}</b>"
            + (f" ({html.escape(s.platform)})" if s.platform else "")
            + f" — {html.escape(resources_text(s.wire.compute))}"
        )
        phase = s.phase
        self.phase.value = f"<b>{html.escape(phase.value)}</b>"
        value, style = STEPS.get(phase, (0.0, "info"))
        self.progress.value = value
        self.progress.bar_style = style
        self.detail.value = html.escape(self._timing(now))
        links = [c.location for c in s.connectors if c.location]
        if phase in (Phase.AVAILABLE, Phase.RUNNING) and links:
            self.link.value = " ".join(
                f"<a href='{html.escape(u)}' target='_blank' rel='noopener'>{html.escape(u)}</a>"
                for u in links
            )
        else:
            self.link.value = ""
        lines = [
            f"<li>{html.escape((m.level or 'INFO').lower())}: {html.escape(str(m))}</li>"
            for m in s.messages[-5:]
        ]
        lines += [
            f"<li>output {html.escape(k)}: <code>{html.escape(str(v))}</code></li>"
            for k, v in s.outputs.items()
        ]
        self.messages.value = f"<ul style='margin:0'>{''.join(lines)}</ul>" if lines else ""
        self.cancel.disabled = phase.is_final

    def tick(self, now: datetime | None = None) -> None:
        """Move the "starts in" / "running for" line (the panel's ticker calls it)."""
        if not self.final:
            self.detail.value = html.escape(self._timing(now or datetime.now(UTC)))

    def _timing(self, now: datetime) -> str:
        s = self.session
        start, duration = s.start, s.duration
        if s.phase.is_final:
            return f"started {local_time(start, self.zone)}, for {human_duration(duration)}"
        if start is not None and start > now:
            when = local_time(start, self.zone)
            return f"{relative(start, now)} ({when}), for {human_duration(duration)}"
        if start is not None and duration:
            ran = min(now - start, duration)
            return f"running {human_duration(ran)} of {human_duration(duration)}"
        return f"from {local_time(start, self.zone)}, for {human_duration(duration)}"

    def show_error(self, text: str) -> None:
        self.error.value = error_html(text) if text else ""

    async def follow(self) -> None:
        """Follow the session to a final phase, showing every change."""
        while not self.final:
            try:
                async for _event in self.session.events():
                    self.show_error("")
                    self.update()
            except EBError as exc:
                self.show_error(f"{error_text(exc)} (trying again)")
                await asyncio.sleep(RETRY_PAUSE)
        self.update()

    async def do_cancel(self) -> None:
        self.cancel.disabled = True
        try:
            await self.session.cancel()
        except EBError as exc:
            self.cancel.disabled = self.final
            self.show_error(error_text(exc))
            return
        self.show_error("")
        self.update()
