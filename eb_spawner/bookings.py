"""Bookings: the later sessions the spawner accepted, as the brokers list them.

A booking is a broker session named ``jupyterhub-booking:<user>:<server>:<profile>`` (or a
workshop seat, ``jupyterhub-seat:<group>:<id>:<n>:<profile>``) that has not been taken over by
a server yet (see :mod:`eb_spawner.config` for how the names are encoded). The brokers'
ledgers are the only record: nothing is lost when the hub or the service restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import eb_sdk as eb
from eb_sdk import aio
from eb_sdk.model import Phase

from .config import BOOKING_TAG, SEAT_TAG, EBSettings, Tag, encode

#: A booking is alive in these phases (AVAILABLE/RUNNING: its placeholder holds the slot).
BOOKED = (Phase.ACCEPTED, Phase.WAITING, Phase.PREPARING, Phase.AVAILABLE, Phase.RUNNING)


@dataclass
class Booking:
    broker: str
    session: str
    user: str
    server: str
    profile: str
    start: datetime | None
    end: datetime | None
    phase: str
    group: str = ""
    workshop: str = ""

    @property
    def ref(self) -> str:
        """How the spawn form names it: ``seat|<group>|<workshop>`` (any free seat of that
        workshop) or ``booking|<broker>|<session>``."""
        if self.group:
            return f"seat|{encode(self.group)}|{encode(self.workshop)}"
        return f"booking|{self.broker}|{self.session}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "session": self.session,
            "user": self.user,
            "server": self.server,
            "profile": self.profile,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "phase": self.phase,
            "group": self.group,
            "workshop": self.workshop,
        }


async def hub_sessions(
    settings: EBSettings, phases: tuple[Phase, ...] = BOOKED, brokers: list[str] | None = None
) -> list[tuple[Tag, aio.AsyncSession]]:
    """The hub's named sessions on every configured broker (or ``brokers``) in ``phases``.

    Brokers that cannot be asked are left out (an empty list when none answers)."""
    chosen = settings.broker_objects(brokers)
    if not chosen:
        return []
    try:
        found = await aio.sessions(list(phases), brokers=chosen, timeout=settings.request_timeout)
    except eb.EBError:
        return []
    return [(tag, s) for s in found if (tag := Tag.parse(s.name)) is not None]


def as_booking(tag: Tag, s: aio.AsyncSession) -> Booking:
    return Booking(
        s.broker_name,
        s.uuid,
        tag.user,
        tag.server,
        tag.profile,
        s.start,
        s.end,
        s.phase.value,
        tag.group,
        tag.workshop,
    )


def bookings_in(
    found: list[tuple[Tag, aio.AsyncSession]], *, user: str | None = None, seats: bool = True
) -> list[Booking]:
    """The bookings (and workshop seats) among ``found``, of ``user`` when given, earliest
    first."""
    out = [
        as_booking(tag, s)
        for tag, s in found
        if tag.kind in (BOOKING_TAG, SEAT_TAG)
        and (seats or not tag.group)
        and (user is None or tag.user == user)
    ]
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(out, key=lambda b: b.start or far)


async def list_bookings(
    settings: EBSettings,
    *,
    user: str | None = None,
    seats: bool = True,
    phases: tuple[Phase, ...] = BOOKED,
) -> list[Booking]:
    """Bookings on every configured broker (those of ``user`` when given), earliest first."""
    return bookings_in(await hub_sessions(settings, phases), user=user, seats=seats)
