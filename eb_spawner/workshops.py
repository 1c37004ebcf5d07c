"""Workshops: N seats for a hub group ("20 students, next Tuesday 09:00-12:00").

Each seat is one broker session named ``jupyterhub-seat:<group>:<id>:<n>:<profile>`` that
runs the placeholder until a member of the group starts a server during the window: the
spawner then claims a free seat and hands it over to that member's server, whose session is
named ``jupyterhub-server:<user>:<server>:<profile>:<id>`` (so each member gets one seat,
whichever server they start it from).

Reserve seats from a notebook with the SDK (``eb_sdk.workshops.reserve``, through the
bookings service), from the service's page or API (hub admins), or in Python on the hub's
machine::

    from eb_spawner.service import load_settings
    from eb_spawner.workshops import reserve_seats

    await reserve_seats(load_settings("jupyterhub_config.py"), "students", 20,
                        start="2026-11-24T09:00", duration="3h", profile="small")
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import eb_sdk as eb
from eb_sdk import aio

from .bookings import Booking, as_booking, bookings_in, hub_sessions
from .config import SERVER_TAG, EBSettings, Tag, seat_tag


@dataclass
class Workshop:
    """The seats of one workshop that are still held (free, not yet taken over)."""

    id: str
    group: str
    profile: str
    start: datetime | None
    end: datetime | None
    seats: list[Booking] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group": self.group,
            "profile": self.profile,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "free_seats": len(self.seats),
            "brokers": sorted({s.broker for s in self.seats}),
            "seats": [s.to_dict() for s in self.seats],
        }


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
    """Book ``seats`` sessions of ``profile`` for ``group`` on ``brokers`` (default: the
    profile's); raises ``eb.EBError`` when a seat cannot be booked (the seats booked so far
    are cancelled again)."""
    chosen = {p.slug: p for p in settings.all_profiles()}.get(profile)
    if chosen is None:
        raise eb.InvalidRequest(f"no profile {profile!r}")
    if seats < 1:
        raise eb.InvalidRequest("seats must be at least 1")
    if not group:
        raise eb.InvalidRequest("say which hub group the seats are for")
    unknown = sorted(set(brokers or ()) - {str(b.get("name")) for b in settings.eb_brokers})
    if unknown:
        raise eb.InvalidRequest(f"no broker named {', '.join(unknown)}")
    workshop = secrets.token_hex(4)
    when: Any = start if isinstance(start, datetime) else str(start)
    if isinstance(when, str) and "T" in when and "/" not in when:
        moment = datetime.fromisoformat(when)
        when = moment if moment.tzinfo else moment.replace(tzinfo=settings.tz())
    booked: list[aio.AsyncSession] = []
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
    return [as_booking(Tag.parse(s.name) or _seat(group, workshop, profile), s) for s in booked]


def _seat(group: str, workshop: str, profile: str) -> Tag:
    return Tag("jupyterhub-seat", "", "", profile, group=group, workshop=workshop)


def workshops_in(found: list[tuple[Tag, aio.AsyncSession]]) -> list[Workshop]:
    """The workshops whose seats are among ``found``, earliest first."""
    out: dict[str, Workshop] = {}
    for seat in bookings_in(found):
        if not seat.group:
            continue
        shop = out.setdefault(
            seat.workshop, Workshop(seat.workshop, seat.group, seat.profile, seat.start, seat.end)
        )
        shop.seats.append(seat)
    return list(out.values())


async def list_workshops(settings: EBSettings) -> list[Workshop]:
    return workshops_in(await hub_sessions(settings))


async def cancel_workshop(settings: EBSettings, workshop: str) -> int:
    """Cancel every seat of ``workshop`` still held; the number cancelled (servers that took
    a seat over keep running)."""
    shops = [w for w in await list_workshops(settings) if w.id == workshop]
    if not shops:
        raise eb.NotFound(f"no workshop {workshop!r} with seats left")

    async def cancel(seat: Booking) -> bool:
        try:
            brokers = settings.broker_objects([seat.broker])
            session = await aio.session(seat.session, brokers=brokers)
            await session.cancel()
        except eb.EBError:
            return False
        return True

    done = await asyncio.gather(*(cancel(s) for s in shops[0].seats))
    return sum(done)


def open_seats(
    found: list[tuple[Tag, aio.AsyncSession]],
    user: str,
    groups: list[str],
    ahead: float,
    now: datetime | None = None,
) -> list[Booking]:
    """The seats ``user`` may take now: of the user's groups, inside the window (from
    ``ahead`` seconds before the start to the end), of workshops where the user holds no seat
    yet. Earliest first."""
    now = now or datetime.now(UTC)
    early = timedelta(seconds=ahead)
    holding = {
        tag.workshop
        for tag, s in found
        if tag.kind == SERVER_TAG and tag.user == user and tag.workshop and not s.is_final
    }
    return [
        b
        for b in bookings_in(found)
        if b.group in groups
        and b.workshop not in holding
        and b.start is not None
        and b.end is not None
        and b.start - early <= now < b.end
    ]


def held_seat(found: list[tuple[Tag, aio.AsyncSession]], user: str, workshop: str) -> str | None:
    """The server name (``""``: the default one) with which ``user`` holds a seat of
    ``workshop``, or None."""
    for tag, s in found:
        mine = tag.kind == SERVER_TAG and tag.user == user and tag.workshop == workshop
        if mine and not s.is_final:
            return tag.server
    return None
