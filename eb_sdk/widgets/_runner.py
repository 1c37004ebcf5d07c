"""Run the panel's work as tasks on the kernel's event loop, and show errors as text.

Widget values must only be set from the kernel's own thread (ipykernel 7 sends comm messages
from it), so every update runs in an ``asyncio`` task on the running loop, never in a thread.
A failing task never reaches the output area as a traceback: its error becomes one line.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable, Coroutine
from typing import Any

from .._errors import EBError

__all__ = ["Runner", "error_html", "error_text"]

NO_LOOP = (
    "the panel needs a running event loop: use it in a Jupyter notebook (or create it in a "
    "coroutine)"
)


def error_text(exc: BaseException) -> str:
    """One line for a person: the SDK's own message, or the exception's type and message."""
    if isinstance(exc, EBError | ValueError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def error_html(text: str) -> str:
    return f"<span class='eb-error' style='color:#c62828'>⚠ {html.escape(text)}</span>"


#: Tasks that outlive their panel (kept referenced until they end).
_DETACHED: set[asyncio.Task[Any]] = set()


class Runner:
    """Spawns guarded tasks on the loop the panel was made on and keeps them referenced."""

    def __init__(self) -> None:
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.background: set[asyncio.Task[Any]] = set()  # tickers: not waited for by drain

    def _current_loop(self) -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            # a callback outside a coroutine: the kernel's loop, which it runs on (ipykernel
            # calls widget callbacks on its own thread)
            if self.loop is not None and not self.loop.is_closed():
                return self.loop
            return None

    def spawn(
        self,
        coro: Coroutine[Any, Any, Any],
        on_error: Callable[[str], None],
        *,
        background: bool = False,
    ) -> asyncio.Task[Any] | None:
        """Run ``coro`` as a task; an exception it raises goes to ``on_error`` as text."""
        loop = self._current_loop()
        if loop is None:
            coro.close()
            on_error(NO_LOOP)
            return None
        task = loop.create_task(self._guarded(coro, on_error))
        group = self.background if background else self.tasks
        group.add(task)
        task.add_done_callback(group.discard)
        return task

    @staticmethod
    async def _guarded(coro: Coroutine[Any, Any, Any], on_error: Callable[[str], None]) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # shown inline, never as a traceback
            on_error(error_text(exc))
            return None

    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until no task is left (for tests), at most ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while pending := [t for t in self.tasks if t is not asyncio.current_task()]:
                await asyncio.gather(*pending, return_exceptions=True)

    def detach(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` to its end even after :meth:`cancel` (tidying up when closing);
        failures are ignored. Without a loop it is dropped."""
        loop = self._current_loop()
        if loop is None:
            coro.close()
            return
        task = loop.create_task(self._guarded(coro, lambda _text: None))
        _DETACHED.add(task)
        task.add_done_callback(_DETACHED.discard)

    def cancel(self) -> None:
        for task in [*self.tasks, *self.background]:
            task.cancel()
