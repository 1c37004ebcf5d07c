"""The offers the spawn form showed (quotes): held by their brokers until they are rejected.

A broker holds the capacity of every open offer until it expires (minutes), so offers nobody
will take are rejected as soon as the spawner knows it: when the form is shown again, when a
server starts, and after a booking. Rejecting is best effort (the broker may have expired the
offer already) and all at once (:func:`eb_sdk.offers.reject_open`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable
from typing import Any

from eb_sdk.offers import AsyncOffer, reject_open


class QuoteSet:
    """The offers one spawner's form showed last."""

    def __init__(self) -> None:
        self.offers: list[AsyncOffer] = []

    def remember(self, offers: Iterable[AsyncOffer]) -> None:
        self.offers = list(offers)

    async def release(self, keep: Iterable[str] = ()) -> int:
        """Reject the remembered offers still open (but those in ``keep``) and forget them."""
        kept = set(keep)
        offers, self.offers = self.offers, []
        with contextlib.suppress(Exception):  # never let tidying up break a spawn
            return await reject_open(o for o in offers if o.uuid not in kept)
        return 0


#: Tidying-up tasks, referenced until they end.
_BACKGROUND: set[asyncio.Task[Any]] = set()


def in_background(coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` on the running loop without waiting for it (failures are ignored)."""

    async def quietly() -> None:
        with contextlib.suppress(Exception):
            await coro

    task = asyncio.get_running_loop().create_task(quietly())
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
