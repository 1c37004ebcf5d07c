"""Workshops: N seats for a hub group ("20 students, next Tuesday 09:00-12:00").

Each seat is one broker session named ``jupyterhub-seat:<group>:<id>:<n>:<profile>`` that
runs the placeholder until a member of the group logs in during the window: the spawner then
hands the seat over to that member's server (one seat each). From Python::

    from eb_spawner.workshops import reserve_seats
    await reserve_seats(settings, "students", 20, start="2026-11-24T09:00", duration="3h",
                        profile="small")

or ``POST /services/eb/api/workshops`` (hub admins) with the same fields as JSON.
"""

from __future__ import annotations

import contextlib
import secrets
from datetime import datetime
from typing import Any

import eb_sdk as eb
from eb_sdk import aio

from .bookings import Booking
from .config import EBSettings, seat_tag


async def reserve_seats(
    settings: EBSettings,
    group: str,
    seats: int,
    *,
    start: str | datetime,
    duration: str,
    profile: str,
    brokers: list[str] | None = None,
) -> list[Booking]:
    """Book ``seats`` sessions of ``profile`` for ``group``; raises ``eb.EBError`` when a seat
    cannot be booked (the seats booked so far are cancelled again)."""
    chosen = {p.slug: p for p in settings.all_profiles()}.get(profile)
    if chosen is None:
        raise eb.InvalidRequest(f"no profile {profile!r}")
    if seats < 1:
        raise eb.InvalidRequest("seats must be at least 1")
    workshop = secrets.token_hex(4)
    when: Any = start if isinstance(start, datetime) else str(start)
    if isinstance(when, str) and "T" in when and "/" not in when:
        moment = datetime.fromisoformat(when)
        when = moment if moment.tzinfo else moment.replace(tzinfo=settings.tz())
    booked: list[aio.Session] = []
    try:
        for n in range(seats):
            offers = await aio.request(
                eb.JupyterServer(
                    chosen.root_dir or None, command=list(settings.placeholder_command)
                ),
                compute=chosen.compute(),
                duration=duration,
                start=when,
                name=seat_tag(group, workshop, n, profile),
                brokers=settings.broker_objects(brokers or chosen.brokers or None),
                timeout=settings.request_timeout,
                tz=settings.tz(),
            )
            booked.append(await offers.earliest().accept())
    except eb.EBError:
        for session in booked:
            with contextlib.suppress(eb.EBError):
                await session.cancel()
        raise
    return [
        Booking(
            s.broker_name,
            s.uuid,
            "",
            "",
            profile,
            s.start,
            s.end,
            s.phase.value,
            group=group,
            workshop=workshop,
        )
        for s in booked
    ]
