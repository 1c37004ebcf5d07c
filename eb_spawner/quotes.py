"""The offers the spawn form showed (quotes): held by their brokers until they are rejected.

A broker holds the capacity of every open offer until it expires (minutes), so offers nobody
will take are rejected as soon as the spawner knows it: when the form is shown again, when a
server starts, and after a booking. Rejecting is best effort (the broker may have expired the
offer already) and quick (each broker gets a few seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import eb_sdk as eb
from eb_sdk.model import Phase
from eb_sdk.offers import AsyncOffer

#: Seconds a broker gets to reject one offer.
REJECT_TIMEOUT = 5.0


async def reject_quietly(offers: Iterable[AsyncOffer]) -> int:
    """Reject every offer that is still open, at once; the number the brokers rejected."""

    async def reject(offer: AsyncOffer) -> bool:
        try:
            await asyncio.wait_for(offer.reject(), REJECT_TIMEOUT)
        except (eb.EBError, TimeoutError):
            return False
        return True

    still_open = [o for o in offers if o.phase == Phase.OFFERED and not o.is_expired()]
    done = await asyncio.gather(*(reject(o) for o in still_open))
    return sum(done)


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
            return await reject_quietly(o for o in offers if o.uuid not in kept)
        return 0
