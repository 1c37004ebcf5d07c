"""The sync facade's engine: one background event-loop thread, as kr8s does.

A notebook cell runs inside ipykernel's event loop, so ``asyncio.run`` (and ``loop.run_until
_complete``) are refused there, and ``nest_asyncio`` patches asyncio globally. Instead every sync
call hands its coroutine to a private loop in a daemon thread and waits for the result. The
caller's thread blocks (as any sync call does) but never its own loop's machinery, so this
works the same in a script, in a notebook cell and inside an ``async def``.

The HTTP clients used by sync calls live on that private loop (see ``_client.client_for``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


class _Portal:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name="eb-sdk-portal", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._thread is not None and threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("eb_sdk sync API called from its own loop: use eb_sdk.aio there")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result()
        except BaseException:  # KeyboardInterrupt in a cell: stop the work, then re-raise
            future.cancel()
            raise

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def close_clients() -> None:
            from ._client import aclose_clients

            await aclose_clients()

        if thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close_clients(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
        if not loop.is_running():
            loop.close()


_portal = _Portal()
atexit.register(_portal.stop)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop and return its result (or raise its error)."""
    return _portal.run(coro)
