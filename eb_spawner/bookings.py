"""Bookings: the later sessions the spawner accepted, as the brokers list them.

A booking is a broker session named ``jupyterhub:<user>:<server>:<profile>`` (or a workshop
seat, ``jupyterhub-seat:<group>:<id>:<n>:<profile>``) that has not started yet. The brokers'
ledgers are the only record: nothing is lost when the hub or the service restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import eb_sdk as eb
from eb_sdk import aio
from eb_sdk.model import Phase

from .config import BOOKING_TAG, SEAT_TAG, EBSettings, Tag

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


async def list_bookings(
    settings: EBSettings,
    *,
    user: str | None = None,
    seats: bool = True,
    phases: tuple[Phase, ...] = BOOKED,
) -> list[Booking]:
    """Bookings on every configured broker (those of ``user`` when given), earliest first."""
    brokers = settings.broker_objects()
    if not brokers:
        return []
    try:
        found = await aio.sessions(list(phases), brokers=brokers, timeout=settings.request_timeout)
    except eb.EBError:
        return []
    out = []
    for s in found:
        tag = Tag.parse(s.name)
        if tag is None or tag.kind not in (BOOKING_TAG, SEAT_TAG) or (tag.group and not seats):
            continue
        if user is not None and tag.user != user:
            continue
        out.append(
            Booking(
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
        )
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(out, key=lambda b: b.start or far)
