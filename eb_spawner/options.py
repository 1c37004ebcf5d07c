"""Who the user is and what they may ask for: ``user_options`` checked from anywhere.

The form's choices and the REST API's ``user_options`` go through :meth:`UserOptions.
validate_options` (never trusted): the profile must be the user's, the broker configured and
allowed, an offer made for this user and profile and still open, a booking the user's own, a
workshop seat one of the user's groups' during its window.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import eb_sdk as eb
from eb_sdk import aio
from eb_sdk.model import Phase

from .bookings import BOOKED, Booking, hub_sessions
from .config import BOOKING_TAG, SEAT_TAG, WHEN_CHOICES, EBSettings, Profile, Tag, decode, tag_for
from .errors import UserError
from .workshops import held_seat, open_seats

#: A session in these phases is alive (booked, starting or running).
ALIVE = set(BOOKED)
#: Seconds a validation of user_options is reused (see UserOptions.validate_options).
VALIDATION_REUSE = 10.0


class UserOptions(EBSettings):
    """The spawner's checks of what a user asks for (a mixin of ``EBSpawner``)."""

    # provided by JupyterHub's Spawner
    user: Any
    name: str
    log: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._validated: dict[str, tuple[float, dict[str, Any]]] = {}

    # -- who ------------------------------------------------------------------------------------

    @property
    def user_name(self) -> str:
        return str(self.user.name) if self.user is not None else ""

    def user_groups(self) -> list[str]:
        return [g.name for g in getattr(self.user, "groups", None) or []]

    def is_admin(self) -> bool:
        return bool(getattr(self.user, "admin", False))

    def my_profiles(self) -> list[Profile]:
        return self.profiles_for(self.user_groups(), self.is_admin())

    def my_tag(self, profile: str, kind: str = BOOKING_TAG, workshop: str = "") -> str:
        return tag_for(self.user_name, self.name or "", profile, kind, workshop)

    async def find_seat(self) -> Booking | None:
        """A workshop seat reserved for one of my groups whose window is open now."""
        if not self.user_groups():
            return None
        found = await hub_sessions(self)
        seats = open_seats(found, self.user_name, self.user_groups(), self.start_ahead)
        return seats[0] if seats else None

    def start_phrase(self, when: str, at: str) -> Any:
        if when == "at":
            if not at:
                raise UserError("Pick a date and time, or another 'when'.")
            try:
                moment = datetime.fromisoformat(at)
            except ValueError:
                raise UserError(f"Cannot read the date and time {at!r}.") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self.tz())
            return moment.isoformat()
        if when not in WHEN_CHOICES:
            raise UserError(f"Unknown choice of when: {when!r}.")
        return WHEN_CHOICES[when]

    async def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Check user_options from anywhere (form or REST API); never trust them.

        A spawn from the form checks the same options three times within a second (the form,
        JupyterHub's ``apply_user_options``, ``start()``): a result is reused for
        ``VALIDATION_REUSE`` seconds, for the options as given and as checked."""
        if not isinstance(options, dict):
            raise UserError("user_options must be an object")
        key = json.dumps(options, sort_keys=True, default=str)
        remembered = self._validated.get(key)
        if remembered and time.monotonic() - remembered[0] < VALIDATION_REUSE:
            return dict(remembered[1])
        result = await self._validate(options)
        now = time.monotonic()
        self._validated = {key: (now, result)}
        self._validated[json.dumps(result, sort_keys=True, default=str)] = (now, result)
        return dict(result)

    async def _validate(self, options: dict[str, Any]) -> dict[str, Any]:
        ref = str(options.get("offer") or "")
        if "booking" in options:
            return await self._validate_booking(options["booking"])
        if ref.startswith("seat|") or "seat" in options:
            seat = options.get("seat")
            if ref.startswith("seat|"):
                _, group, workshop = [*ref.split("|", 2), "", ""][:3]
                seat = {"group": decode(group), "workshop": decode(workshop)}
            return await self._validate_seat(seat)
        slug = str(options.get("profile") or "")
        profiles = {p.slug: p for p in self.my_profiles()}
        if slug not in profiles:
            raise UserError(f"You may not use the profile {slug!r}.")
        if ref.startswith("fit|"):
            return self._validate_fit(profiles[slug], ref)
        if not ref and str(options.get("when") or "now") == "now":
            seat_booking = await self.find_seat()
            if seat_booking is not None:
                return await self._validate_seat(
                    {"group": seat_booking.group, "workshop": seat_booking.workshop}
                )
            # the REST API without an offer: the earliest slot now on any allowed broker
            return {"profile": slug, "broker": None, "offer": None, "booking_now": True}
        if "|" not in ref and options.get("broker"):
            ref = f"{options['broker']}|{ref}"
        if "|" not in ref:
            raise UserError("No offer chosen.")
        broker_name, uuid = ref.split("|", 1)
        broker = self.broker_named(broker_name)
        if broker is None:
            raise UserError(f"Unknown broker {broker_name!r}.")
        try:
            offer = await aio.find_offer(uuid, brokers=[broker])
        except eb.NotFound:
            raise UserError("That offer is no longer known to the broker; refresh.") from None
        except eb.EBError as exc:
            raise UserError(f"{broker_name} cannot be reached: {exc}") from None
        tag = Tag.parse(offer.name)
        if tag is None or tag.kind != BOOKING_TAG or tag.user != self.user_name:
            self.log.warning("offer %s is named %r, not for %s", uuid, offer.name, self.user_name)
            raise UserError("That offer was not made for you.")
        if tag.profile != slug:
            shown = profiles[tag.profile].display_name if tag.profile in profiles else tag.profile
            raise UserError(
                f"That offer is for the profile {shown!r}, not {profiles[slug].display_name!r}: "
                "the offers were not refreshed after the profile changed. Refresh them."
            )
        if offer.phase != Phase.OFFERED or offer.is_expired():
            raise UserError("That offer has expired or was taken: refresh the offers.")
        if profiles[slug].brokers and broker_name not in profiles[slug].brokers:
            raise UserError(f"{profiles[slug].display_name} may not run on {broker_name}.")
        start = offer.start or datetime.now(UTC)
        now = (start - datetime.now(UTC)).total_seconds() <= self.now_threshold
        return {
            "profile": slug,
            "broker": broker_name,
            "offer": uuid,
            "platform": offer.platform,
            "start": start.isoformat(),
            "end": offer.end.isoformat() if offer.end else None,
            "booking_now": now,
        }

    def _validate_fit(self, profile: Profile, ref: str) -> dict[str, Any]:
        """``fit|<broker>|<start>``: book the earliest slot a broker said would fit."""
        parts = ref.split("|", 2)
        broker_name = parts[1] if len(parts) == 3 else ""
        if self.broker_named(broker_name) is None:
            raise UserError(f"Unknown broker {broker_name!r}.")
        if profile.brokers and broker_name not in profile.brokers:
            raise UserError(f"{profile.display_name} may not run on {broker_name}.")
        try:
            start = datetime.fromisoformat(parts[2])
        except ValueError:
            raise UserError(f"Cannot read the time {parts[2]!r}.") from None
        if start.tzinfo is None:
            raise UserError("The slot's time needs a time zone.")
        return {
            "profile": profile.slug,
            "broker": broker_name,
            "fit": start.astimezone(UTC).isoformat(),
            "booking_now": False,
        }

    async def _validate_booking(self, booking: Any) -> dict[str, Any]:
        if not isinstance(booking, dict):
            raise UserError("booking must be an object")
        broker = self.broker_named(str(booking.get("broker") or ""))
        if broker is None:
            raise UserError("Unknown broker in the booking.")
        try:
            session = await aio.session(str(booking.get("session") or ""), brokers=[broker])
        except eb.EBError as exc:
            raise UserError(f"The booking cannot be found: {exc}") from None
        tag = Tag.parse(session.name)
        if tag is not None and tag.kind == SEAT_TAG:  # any free seat of that workshop
            return await self._validate_seat({"group": tag.group, "workshop": tag.workshop})
        if tag is None or tag.kind != BOOKING_TAG or tag.user != self.user_name:
            raise UserError("That booking is not yours.")
        if session.phase not in ALIVE:
            raise UserError(f"That booking is {session.phase.value.lower()}.")
        return {
            "booking": {"broker": broker.name, "session": session.uuid},
            "profile": tag.profile,
            "start": session.start.isoformat() if session.start else None,
            "end": session.end.isoformat() if session.end else None,
        }

    async def _validate_seat(self, seat: Any) -> dict[str, Any]:
        """A seat of a workshop for one of my groups, while its window is open, if I hold
        none of that workshop yet."""
        if not isinstance(seat, dict) or not seat.get("workshop"):
            raise UserError("seat must be an object with the workshop")
        group, workshop = str(seat.get("group") or ""), str(seat["workshop"])
        if group not in self.user_groups():
            raise UserError("That workshop is not for your groups.")
        found = await hub_sessions(self)
        server = held_seat(found, self.user_name, workshop)
        if server is not None and server != (self.name or ""):
            where = f"server {server!r}" if server else "your default server"
            raise UserError(f"You already have a seat of this workshop ({where}): one each.")
        seats = [
            s
            for s in open_seats(found, self.user_name, [group], self.start_ahead)
            if s.workshop == workshop
        ]
        if not seats:
            raise UserError(
                "No seat of this workshop is free now: all are taken, or its time has not come."
            )
        return {"seat": {"group": group, "workshop": workshop}, "profile": seats[0].profile}
