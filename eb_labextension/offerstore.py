"""The offer sets the sidebar is showing, kept on the server so that Accept can reject the rest.

Accepting an offer through the SDK rejects the other offers of the same request (they hold
capacity on their brokers until they expire). That needs the :class:`~eb_sdk.aio.Offers` the
request returned, which cannot travel to the browser and back; so the server keeps the last
few here, under a random id. Old sets are dropped (the oldest first); an unknown id is
answered by finding the offer on its broker, which still books it, only without rejecting
its siblings.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass

from eb_sdk.offers import AsyncOffer, AsyncOffers

__all__ = ["OfferSet", "OfferStore"]


@dataclass
class OfferSet:
    id: str
    what: str
    offers: AsyncOffers

    def find(self, uuid: str) -> AsyncOffer | None:
        return next((o for o in self.offers if o.uuid == uuid), None)


class OfferStore:
    """At most ``size`` offer sets, the most recently asked kept."""

    def __init__(self, size: int = 20) -> None:
        self.size = max(1, size)
        self._sets: OrderedDict[str, OfferSet] = OrderedDict()

    def add(self, what: str, offers: AsyncOffers) -> OfferSet:
        entry = OfferSet(secrets.token_hex(8), what, offers)
        self._sets[entry.id] = entry
        while len(self._sets) > self.size:
            self._sets.popitem(last=False)
        return entry

    def get(self, set_id: str) -> OfferSet | None:
        return self._sets.get(set_id)

    def __len__(self) -> int:
        return len(self._sets)
