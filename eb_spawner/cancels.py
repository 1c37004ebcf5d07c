"""Cancels that failed (the broker was down when a server stopped), retried until done.

JupyterHub forgets a stopped server whatever ``Spawner.stop()`` says, so a session whose cancel
failed would run on at its broker, unseen, until its booked end. Instead it is remembered here
(per user and server, shared by every spawner object of the hub process), written to the
spawner's state, and its cancel is retried in the background every ``cancel_retry_interval``
seconds, and again before that server starts next. An entry is dropped once the broker has
ended the session, or when its booked end has passed (the broker ends it then by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import eb_sdk as eb
from eb_sdk import aio

Key = tuple[str, str]  # (user, server name)

#: Pending cancels: {(user, server): {session uuid: {"broker", "session", "until"}}}.
PENDING: dict[Key, dict[str, dict[str, str]]] = {}
_TASKS: dict[Key, asyncio.Task[None]] = {}


def add(key: Key, broker: str, session: str, until: datetime | None) -> None:
    PENDING.setdefault(key, {})[session] = {
        "broker": broker,
        "session": session,
        "until": until.isoformat() if until else "",
    }


def merge(key: Key, entries: Any) -> None:
    """Entries from a saved spawner state (after a hub restart)."""
    for item in entries if isinstance(entries, list) else []:
        if isinstance(item, dict) and item.get("session") and item.get("broker"):
            add(key, str(item["broker"]), str(item["session"]), _instant(item.get("until")))


def entries(key: Key) -> list[dict[str, str]]:
    return list(PENDING.get(key, {}).values())


def _instant(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


async def retry(key: Key, brokers: Callable[[str], eb.Broker | None], log: Any = None) -> int:
    """Try every pending cancel of ``key`` once; how many are still pending."""
    log = log or logging.getLogger("eb_spawner")
    now = datetime.now(UTC)
    for uuid, item in list(PENDING.get(key, {}).items()):
        until = _instant(item.get("until"))
        broker = brokers(item["broker"])
        done = broker is None or (until is not None and until < now)
        if not done and broker is not None:
            try:
                session = await aio.session(uuid, brokers=[broker])
                if not session.is_final:
                    await session.cancel()
                done = True
                log.info("cancelled session %s on %s (its stop had failed)", uuid, broker.name)
            except (eb.NotFound, eb.Conflict):
                done = True  # gone, or already ending
            except eb.EBError as exc:
                log.warning("cancelling session %s on %s again: %s", uuid, item["broker"], exc)
        if done:
            PENDING.get(key, {}).pop(uuid, None)
    if not PENDING.get(key):
        PENDING.pop(key, None)
    return len(PENDING.get(key, {}))


def keep_retrying(
    key: Key,
    brokers: Callable[[str], eb.Broker | None],
    interval: float,
    saved: Callable[[], None],
    log: Any = None,
) -> None:
    """Retry ``key``'s pending cancels every ``interval`` seconds in the background (once per
    key); ``saved()`` writes the spawner's state after each round."""
    if key in _TASKS and not _TASKS[key].done():
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop here: the next start retries

    async def run() -> None:
        while PENDING.get(key):
            await asyncio.sleep(interval)
            left = await retry(key, brokers, log)
            with contextlib.suppress(Exception):
                saved()
            if not left:
                return

    _TASKS[key] = loop.create_task(run())
