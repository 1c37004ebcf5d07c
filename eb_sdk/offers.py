"""Offers from every broker asked: compare them, pick one, accept it.

An :class:`Offers` is what ``eb.request(...)`` returns: every broker's offers in one list
(earliest start first), what brokers that said NO gave as reasons, and a warning for every
broker that failed or did not answer in time. It sorts and filters (``earliest()``,
``cheapest()``, ``on("broker")``), shows itself as a table in a notebook and converts to
pandas.

Accepting one offer rejects the others (best effort, concurrently): offers hold capacity on
their brokers until they expire, and other people are waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

from ._client import Answer, client_for
from ._config import Broker
from ._errors import Conflict, EBError, OfferExpired, RequestRejected
from ._fanout import BrokerWarning
from ._format import html_table, human_duration, local_time, relative, resources_text, text_table
from ._portal import run_sync
from ._wireview import WireView
from .model import (
    ExecutionRequest,
    MessageItem,
    Phase,
    ScheduledExecutionSession,
    SimpleComputeResource,
    SimpleMinMaxFloatCost,
)
from .sessions import AsyncSession, Session

if TYPE_CHECKING:
    import pandas

__all__ = ["AsyncOffer", "AsyncOffers", "Offer", "Offers", "reject_open"]

#: Accepting within this many seconds after ``expires`` is left to the broker to judge
#: (clocks differ); later than that we refuse locally, since some brokers never set EXPIRED.
CLOCK_SKEW = timedelta(seconds=2)

COLUMNS = (
    "#",
    "broker",
    "platform",
    "start",
    "when",
    "duration",
    "resources",
    "cost",
    "expires",
)


class _OfferBase(WireView):
    """One offer: the wire session in phase OFFERED plus the broker it came from."""

    default_phase = Phase.OFFERED

    def __init__(
        self, wire: ScheduledExecutionSession, broker: Broker, offerset: str | None = None
    ) -> None:
        super().__init__(wire, broker)
        self.offerset = offerset
        self._group: _OffersBase[Any] | None = None

    @property
    def expires(self) -> datetime | None:
        return self._wire.expires

    @property
    def cores(self) -> int | None:
        compute = self._wire.compute
        if isinstance(compute, SimpleComputeResource) and compute.cores:
            return compute.cores.min if compute.cores.min is not None else compute.cores.max
        return None

    @property
    def memory(self) -> int | None:
        """Memory in GiB."""
        compute = self._wire.compute
        if isinstance(compute, SimpleComputeResource) and compute.memory:
            return compute.memory.min if compute.memory.min is not None else compute.memory.max
        return None

    @property
    def gpus(self) -> int:
        compute = self._wire.compute
        if not isinstance(compute, SimpleComputeResource):
            return 0
        return sum(a.count.min or 0 for a in compute.accelerators or [] if a.type.value == "GPU")

    @property
    def cost(self) -> float | None:
        """The quoted cost (the lower end of the first cost range), if the broker quotes one."""
        for item in self._wire.costs or []:
            if isinstance(item, SimpleMinMaxFloatCost):
                value = item.min if item.min is not None else item.max
                if value is not None:
                    return value
        return None

    @property
    def resources(self) -> str:
        return resources_text(self._wire.compute)

    def is_expired(self, now: datetime | None = None) -> bool:
        if self.phase == Phase.EXPIRED:
            return True
        return self.expires is not None and (now or datetime.now(UTC)) > self.expires

    def row(self, index: int | str = "", now: datetime | None = None) -> list[str]:
        """The table row shown for this offer (times in the user's zone)."""
        now = now or datetime.now(UTC)
        expires = relative(self.expires, now, verb="expires") if self.expires else "—"
        return [
            str(index),
            self.broker_name,
            self.platform or "—",
            local_time(self.start),
            relative(self.start, now),
            human_duration(self.duration),
            self.resources,
            "—" if self.cost is None else f"{self.cost:g}",
            expires if self.phase == Phase.OFFERED else self.phase.value.lower(),
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "broker": self.broker_name,
            "uuid": self.uuid,
            "url": self.url,
            "phase": self.phase.value,
            "platform": self.platform,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "duration_s": self.duration.total_seconds() if self.duration else None,
            "expires": self.expires.isoformat() if self.expires else None,
            "cores": self.cores,
            "memory_gib": self.memory,
            "gpus": self.gpus,
            "cost": self.cost,
            "offer": self._wire.dump(),
        }

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.uuid[:8]} on {self.broker_name}: "
            f"{local_time(self.start)}, {human_duration(self.duration)}, {self.resources}>"
        )

    def _repr_html_(self) -> str:
        return html_table(COLUMNS[1:], [self.row()[1:]])

    # -- I/O ---------------------------------------------------------------------------------

    async def _aaccept(self, reject_others: bool) -> ScheduledExecutionSession:
        if self.expires is not None and datetime.now(UTC) > self.expires + CLOCK_SKEW:
            raise OfferExpired(
                f"offer {self.uuid[:8]} expired {human_duration(datetime.now(UTC) - self.expires)}"
                " ago: ask again",
                broker=self.broker_name,
            )
        wire = await client_for(self.broker).set_phase(self.uuid or self.url or "", "ACCEPTED")
        self._wire = wire
        if reject_others and self._group is not None:
            await reject_open(o for o in self._group if o is not self)
        return wire

    async def _areject(self) -> None:
        ref = self.uuid or self.url or ""
        self._wire = await client_for(self.broker).set_phase(ref, "REJECTED")

    async def _quiet_reject(self) -> None:
        """Reject, ignoring failures: the broker may have rejected it already (a sibling)."""
        try:
            await asyncio.wait_for(self._areject(), timeout=10)
        except Conflict:
            with contextlib.suppress(EBError):
                self._wire = await client_for(self.broker).session(self.uuid or self.url or "")
        except (EBError, TimeoutError):
            pass


async def reject_open(offers: Iterable[_OfferBase]) -> int:
    """Reject every offer that is still open, all at once, ignoring failures (an offer may
    have expired or been rejected meanwhile); how many the brokers rejected.

    Open offers hold their brokers' capacity until they expire: let go of those not wanted."""
    still_open = [o for o in offers if o.phase == Phase.OFFERED and not o.is_expired()]
    await asyncio.gather(*(o._quiet_reject() for o in still_open))
    return sum(o.phase == Phase.REJECTED for o in still_open)


class AsyncOffer(_OfferBase):
    """An offer with ``async`` accept/reject (``eb_sdk.aio``)."""

    async def accept(self, *, reject_others: bool = True) -> AsyncSession:
        """Book it. Raises :class:`OfferExpired` when too late, :class:`Conflict` when it was
        rejected or taken. The other offers of the same ``request`` are rejected."""
        wire = await self._aaccept(reject_others)
        return AsyncSession(wire, self.broker)

    async def reject(self) -> None:
        """Decline it, freeing the capacity it holds."""
        await self._areject()


class Offer(_OfferBase):
    """An offer with plain accept/reject."""

    def accept(self, *, reject_others: bool = True) -> Session:
        """Book it. Raises :class:`OfferExpired` when too late, :class:`Conflict` when it was
        rejected or taken. The other offers of the same ``request`` are rejected."""
        wire = run_sync(self._aaccept(reject_others))
        return Session(wire, self.broker)

    def reject(self) -> None:
        """Decline it, freeing the capacity it holds."""
        run_sync(self._areject())


OfferT = TypeVar("OfferT", bound=_OfferBase)


def _cost_key(offer: _OfferBase) -> tuple[float, datetime]:
    cost = offer.cost
    return (math.inf if cost is None else cost, offer.start or datetime.max.replace(tzinfo=UTC))


def _start_key(offer: _OfferBase) -> datetime:
    return offer.start or datetime.max.replace(tzinfo=UTC)


class _OffersBase(Generic[OfferT]):
    """A list of offers plus what the brokers said and which failed."""

    def __init__(
        self,
        offers: Sequence[OfferT],
        *,
        answers: Sequence[tuple[Broker, Answer]] = (),
        warnings: Sequence[BrokerWarning] = (),
        request: ExecutionRequest | None = None,
    ) -> None:
        self._offers = list(offers)
        self.answers = list(answers)
        self.warnings = list(warnings)
        self.request = request
        for offer in self._offers:
            offer._group = self

    def _new(self, offers: Sequence[OfferT]) -> Self:
        new = type(self)(offers, answers=self.answers, warnings=self.warnings, request=self.request)
        for offer in offers:  # a filtered view still rejects the whole set on accept
            offer._group = self
        return new

    # -- list behaviour ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._offers)

    def __iter__(self) -> Iterator[OfferT]:
        return iter(self._offers)

    def __bool__(self) -> bool:
        return bool(self._offers)

    @overload
    def __getitem__(self, index: int) -> OfferT: ...
    @overload
    def __getitem__(self, index: slice) -> Self: ...
    def __getitem__(self, index: int | slice) -> OfferT | Self:
        if isinstance(index, slice):
            return self._new(self._offers[index])
        return self._offers[index]

    # -- choosing ------------------------------------------------------------------------------

    @property
    def brokers(self) -> list[str]:
        """The brokers that made offers, in order."""
        return list(dict.fromkeys(o.broker_name for o in self._offers))

    @property
    def reasons(self) -> list[tuple[str, MessageItem]]:
        """What brokers said about the request (why NO, the earliest slot that would fit)."""
        return [(b.name, m) for b, answer in self.answers for m in answer.messages]

    def sorted(
        self, key: str | Callable[[OfferT], Any] = "start", *, reverse: bool = False
    ) -> Self:
        """Sorted by ``"start"``, ``"cost"``, ``"duration"``, ``"cores"``, ``"broker"`` or a
        function of the offer."""
        keys: dict[str, Callable[[OfferT], Any]] = {
            "start": _start_key,
            "cost": _cost_key,
            "duration": lambda o: o.duration or timedelta(0),
            "cores": lambda o: o.cores or 0,
            "memory": lambda o: o.memory or 0,
            "broker": lambda o: o.broker_name,
        }
        if isinstance(key, str):
            if key not in keys:
                raise ValueError(f"cannot sort by {key!r}; use one of {', '.join(keys)}")
            func = keys[key]
        else:
            func = key
        return self._new(sorted(self._offers, key=func, reverse=reverse))

    def filter(self, predicate: Callable[[OfferT], bool]) -> Self:
        return self._new([o for o in self._offers if predicate(o)])

    def on(self, broker: str) -> Self:
        """Only the offers of ``broker`` (its configured name, or the platform's name)."""
        return self.filter(lambda o: broker in (o.broker_name, o.platform, o.broker.url))

    def _first(self, key: Callable[[OfferT], Any], what: str) -> OfferT:
        live = [o for o in self._offers if not o.is_expired()] or self._offers
        if not live:
            raise self._rejected(what)
        return min(live, key=key)

    def earliest(self) -> OfferT:
        """The offer that starts first. Raises :class:`RequestRejected` when there is none."""
        return self._first(_start_key, "earliest")

    def cheapest(self) -> OfferT:
        """The lowest quoted cost (ties and unquoted: earliest start first)."""
        return self._first(_cost_key, "cheapest")

    def _rejected(self, what: str = "") -> RequestRejected:
        parts = [f"{b}: {m}" for b, m in self.reasons if (m.level or "ERROR") != "INFO"]
        parts += [str(w) for w in self.warnings]
        detail = "; ".join(parts[:6]) or "no broker made an offer"
        return RequestRejected(
            f"no offers{f' to choose the {what} from' if what else ''}: {detail}",
            messages=[m for _, m in self.reasons],
        )

    def raise_if_empty(self) -> Self:
        """Raise :class:`RequestRejected` (with every broker's reasons) when there are none."""
        if not self._offers:
            raise self._rejected()
        return self

    # -- showing -------------------------------------------------------------------------------

    def rows(self) -> list[list[str]]:
        now = datetime.now(UTC)
        return [o.row(i, now) for i, o in enumerate(self._offers)]

    def _notes(self) -> list[str]:
        notes = [f"warning: {w}" for w in self.warnings]
        if not self._offers:
            notes += [f"{b}: {m}" for b, m in self.reasons]
        return notes

    def __str__(self) -> str:
        table = text_table(COLUMNS, self.rows()) if self._offers else "no offers"
        return "\n".join([table, *self._notes()])

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self)} from {', '.join(self.brokers) or 'nobody'}>"

    def _repr_html_(self) -> str:
        import html

        notes = "".join(f"<div>{html.escape(n)}</div>" for n in self._notes())
        if not self._offers:
            return f"<div><b>No offers.</b></div>{notes}"
        plural = "offer" if len(self) == 1 else "offers"
        caption = f"{len(self)} {plural} from {', '.join(self.brokers)}"
        return html_table(COLUMNS, self.rows(), caption=caption, notes=notes)

    def to_list(self) -> list[dict[str, Any]]:
        return [o.to_dict() for o in self._offers]

    def to_pandas(self) -> pandas.DataFrame:
        """One row per offer: broker, platform, start (aware), duration, resources, cost."""
        import pandas as pd

        rows = [
            {
                "broker": o.broker_name,
                "platform": o.platform,
                "start": o.start,
                "duration": o.duration,
                "cores": o.cores,
                "memory_gib": o.memory,
                "gpus": o.gpus,
                "cost": o.cost,
                "expires": o.expires,
                "uuid": o.uuid,
            }
            for o in self._offers
        ]
        columns = ["broker", "platform", "start", "duration", "cores", "memory_gib", "gpus"]
        return pd.DataFrame(rows, columns=[*columns, "cost", "expires", "uuid"])


class AsyncOffers(_OffersBase[AsyncOffer]):
    """Offers whose ``accept`` is ``async`` (``eb_sdk.aio.request``)."""


class Offers(_OffersBase[Offer]):
    """Offers whose ``accept`` blocks (``eb.request``)."""
