"""``EBSpawner``: JupyterHub single-user servers in slots offered by Execution Brokers.

The form's offers are *quotes*: they are requested before the hub has made the server's API
token, so their executable cannot carry the hub's environment. Spawning therefore books
again on the chosen broker, with the real executable (``jupyterhub-singleuser`` and the
environment from :meth:`get_env`), and rejects the quote. A later offer is accepted as it is
(a *booking* that holds the capacity); at its slot the bookings service starts the server
through the hub API with the booking in ``user_options``, and the spawner hands the booking
over: it cancels it and books the same broker at once for the rest of the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from jupyterhub.spawner import Spawner
from tornado import web
from traitlets import Float, List, Unicode, default

import eb_sdk as eb
from eb_sdk import aio
from eb_sdk.model import Phase

from . import form as formlib
from .bookings import Booking, list_bookings
from .config import (
    BOOKING_TAG,
    SEAT_TAG,
    SERVER_TAG,
    WHEN_CHOICES,
    EBSettings,
    Profile,
    Tag,
    safe,
    tag_for,
)
from .notify import Notifier

#: Progress (percent) shown for each phase while starting.
PROGRESS = {
    Phase.OFFERED: 10,
    Phase.ACCEPTED: 20,
    Phase.WAITING: 30,
    Phase.PREPARING: 50,
    Phase.AVAILABLE: 100,
    Phase.RUNNING: 100,
}
ALIVE = {Phase.ACCEPTED, Phase.WAITING, Phase.PREPARING, Phase.AVAILABLE, Phase.RUNNING}


class UserError(Exception):
    """An error shown to the user as it is (on the spawn page)."""

    def __init__(self, message: str, html: str | None = None) -> None:
        super().__init__(message)
        self.jupyterhub_message = message
        if html is not None:
            self.jupyterhub_html_message = html


class Booked(UserError):
    """Not an error: a later offer was booked; the form says so instead of spawning."""


class EBSpawner(Spawner, EBSettings):
    """Spawn into an Execution Broker's slot (now), or book one for later."""

    cmd = List(
        ["jupyterhub-singleuser"],
        help="The single-user command the broker runs (the broker adds --ip/--port).",
    ).tag(config=True)

    broker_session_url = Unicode("")
    broker_name = Unicode("")
    session_uuid = Unicode("")
    profile_slug = Unicode("")

    env_passthrough = List(
        Unicode(),
        help="Hub-side variables (from env_keep) passed to the broker's server too; by default "
        "only JUPYTERHUB_*, JPY_* and Spawner.environment are passed (the broker's machine "
        "has its own PATH).",
    ).tag(config=True)

    ready_poll_interval = Float(
        0.2, help="Seconds between the spawner's looks at a starting session."
    ).tag(config=True)

    ready_timeout = Float(0, help="Seconds to wait for AVAILABLE (0: start_timeout).").tag(
        config=True
    )

    @default("start_timeout")
    def _start_timeout(self) -> int:
        return 300

    @default("apply_user_options")
    def _apply_user_options_default(self) -> Any:
        async def check(spawner: EBSpawner, user_options: dict[str, Any]) -> None:
            # the REST API's user_options are checked before the spawn starts (HTTP 400)
            try:
                await spawner.validate_options(dict(user_options or {}))
            except UserError as exc:
                raise web.HTTPError(400, str(exc)) from None

        return check

    @default("options_form")
    def _options_form(self) -> Any:
        return self._render_form

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._events: list[dict[str, Any]] = []
        self._event_signal = asyncio.Event()
        self._starting = False
        self._form_choice: dict[str, str] = {}
        self._form_message = ""
        self._from_booking = False

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

    def my_tag(self, profile: str, kind: str = BOOKING_TAG) -> str:
        return tag_for(self.user_name, self.name or "", profile, kind)

    # -- the form -----------------------------------------------------------------------------

    async def _render_form(self, spawner: Spawner | None = None) -> str:
        profiles = self.my_profiles()
        if not profiles:
            return formlib.no_profiles()
        choice = self._form_choice or {"profile": profiles[0].slug, "when": "now"}
        profile = next((p for p in profiles if p.slug == choice.get("profile")), profiles[0])
        quotes, seat = await asyncio.gather(
            self.quote(profile, choice.get("when", "now"), choice.get("at", "")), self.find_seat()
        )
        return formlib.render(
            profiles,
            profile,
            choice,
            quotes,
            self.tz(),
            self.now_threshold,
            self._form_message,
            seat=seat,
        )

    async def find_seat(self) -> Booking | None:
        """A workshop seat reserved for one of my groups whose window is open now."""
        groups = {safe(g) for g in self.user_groups()}
        if not groups:
            return None
        now = datetime.now(UTC)
        ahead = timedelta(seconds=self.start_ahead)
        for booking in await list_bookings(self):
            if (
                booking.group in groups
                and booking.start
                and booking.end
                and booking.start - ahead <= now < booking.end
            ):
                return booking
        return None

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

    async def quote(self, profile: Profile, when: str, at: str = "") -> formlib.Quotes:
        """Every broker's offers for ``profile`` starting ``when`` (errors become notes)."""
        brokers = self.broker_objects(profile.brokers or None)
        try:
            start = self.start_phrase(when, at)
            offers = await aio.request(
                self.placeholder(profile),
                compute=profile.compute(),
                duration=profile.duration,
                start=start,
                name=self.my_tag(profile.slug),
                brokers=brokers,
                timeout=self.request_timeout,
                tz=self.tz(),
            )
        except UserError as exc:
            return formlib.Quotes([], [], [str(exc)])
        except eb.EBError as exc:
            return formlib.Quotes([], [], [f"No broker could be asked: {exc}"])
        notes = [f"{w.broker} is not answering right now ({w.error})" for w in offers.warnings]
        reasons = [f"{b}: {m.message or m}" for b, m in offers.reasons]
        return formlib.Quotes(list(offers), reasons, notes)

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        def one(key: str) -> str:
            values = formdata.get(key) or [""]
            return str(values[0]).strip()

        return {
            "profile": one("profile"),
            "when": one("when") or "now",
            "at": one("at"),
            "offer": one("offer"),
            "action": one("action"),
        }

    async def run_options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        """Validate the form; refresh the offers, book a later offer, or spawn now."""
        options = self.options_from_form(formdata)
        self._form_choice = {k: options[k] for k in ("profile", "when", "at")}
        if options["action"] == "refresh" or not options["offer"]:
            self._form_message = ""
            raise UserError(
                "Offers refreshed: pick one and press Start."
                if options["action"] == "refresh"
                else "Pick one of the offers (refresh them if none is listed)."
            )
        validated = await self.validate_options(options)
        if "booking" in validated:  # a workshop seat: taken over now
            return {"booking": validated["booking"], "profile": validated["profile"]}
        if validated.get("booking_now"):
            validated.pop("booking_now")
            return validated
        raise await self.book_later(validated)

    async def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Check user_options from anywhere (form or REST API); never trust them."""
        if not isinstance(options, dict):
            raise UserError("user_options must be an object")
        if "booking" in options:
            return await self._validate_booking(options["booking"])
        if str(options.get("offer") or "").startswith("seat|"):
            _, broker_name, uuid = str(options["offer"]).split("|", 2)
            return await self._validate_booking({"broker": broker_name, "session": uuid})
        slug = str(options.get("profile") or "")
        profiles = {p.slug: p for p in self.my_profiles()}
        if slug not in profiles:
            raise UserError(f"You may not use the profile {slug!r}.")
        ref = str(options.get("offer") or "")
        if not ref and str(options.get("when") or "now") == "now":
            seat = await self.find_seat()
            if seat is not None:
                return await self._validate_booking(
                    {"broker": seat.broker, "session": seat.session}
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
        if (
            tag is None
            or tag.kind != BOOKING_TAG
            or tag.user != safe(self.user_name)
            or tag.profile != slug
        ):
            self.log.warning("offer %s is named %r, not for %s", uuid, offer.name, self.user_name)
            raise UserError("That offer was not made for you and this profile.")
        if offer.phase != Phase.OFFERED or offer.is_expired():
            raise UserError("That offer has expired or was taken: refresh the offers.")
        start = offer.start or datetime.now(UTC)
        now = (start - datetime.now(UTC)).total_seconds() <= self.now_threshold
        return {
            "profile": slug,
            "broker": broker_name,
            "offer": uuid,
            "start": start.isoformat(),
            "end": offer.end.isoformat() if offer.end else None,
            "booking_now": now,
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
        mine = tag is not None and tag.kind == BOOKING_TAG and tag.user == safe(self.user_name)
        seat = (
            tag is not None
            and tag.kind == SEAT_TAG
            and tag.group in {safe(g) for g in self.user_groups()}
        )
        if tag is None or not (mine or seat):
            raise UserError("That booking is not yours.")
        if session.phase not in ALIVE:
            raise UserError(f"That booking is {session.phase.value.lower()}.")
        return {
            "booking": {"broker": broker.name, "session": session.uuid},
            "profile": tag.profile,
            "start": session.start.isoformat() if session.start else None,
            "end": session.end.isoformat() if session.end else None,
        }

    async def book_later(self, options: dict[str, Any]) -> Booked:
        """Accept a later offer as a booking; the exception tells the user it is booked."""
        limit = self.bookings_limit(self.user_groups())
        mine = [b for b in await list_bookings(self, user=self.user_name) if b.user]
        if len(mine) >= limit:
            raise UserError(
                f"You already have {len(mine)} booking(s), the most allowed is {limit}. "
                f"Cancel one at /services/{self.service_name}/."
            )
        broker = self.broker_named(options["broker"])
        offer = await aio.find_offer(options["offer"], brokers=[broker] if broker else None)
        try:
            session = await offer.accept()
        except eb.EBError as exc:
            raise self.explain(exc) from None
        when = formlib.when_text(session.start, self.tz())
        msg = f"Your session is booked for {when} on {options['broker']}."
        link = f"{self.hub.base_url.rstrip('/').rsplit('/hub', 1)[0]}/services/{self.service_name}/"
        html = (
            f"{formlib.esc(msg)} It starts by itself then; see or cancel your bookings at "
            f'<a href="{formlib.esc(link)}">{formlib.esc(link)}</a>.'
        )
        self.log.info(
            "%s booked %s on %s for %s", self.user_name, session.uuid, offer.broker_name, when
        )
        self._form_message = msg
        return Booked(msg, html)

    def explain(self, exc: eb.EBError) -> UserError:
        """A broker error in words for the spawn page."""
        if isinstance(exc, eb.OfferExpired):
            return UserError("The offer expired before it was accepted: refresh and pick again.")
        if isinstance(exc, eb.NoCapacity):
            return UserError("Someone took that slot meanwhile: refresh and pick another offer.")
        if isinstance(exc, eb.RequestRejected):
            return UserError(f"No broker can run this now: {exc}")
        if isinstance(exc, eb.PermissionDenied | eb.AuthenticationError):
            return UserError(f"The broker refused: {exc}")
        if isinstance(exc, eb.BrokerUnavailable):
            return UserError(f"The broker is not answering: {exc}")
        return UserError(str(exc))

    # -- what the broker runs ----------------------------------------------------------------

    def broker_env(self, env: dict[str, str]) -> dict[str, str]:
        keep = set(self.environment) | set(self.env_passthrough)
        return {
            k: str(v) for k, v in env.items() if k.startswith(("JUPYTERHUB_", "JPY_")) or k in keep
        }

    def placeholder(self, profile: Profile) -> Any:
        """What quotes and bookings run until the hub takes them over (holds the slot)."""
        return eb.JupyterServer(profile.root_dir or None, command=list(self.placeholder_command))

    def executable(self, profile: Profile, env: dict[str, str]) -> Any:
        command = list(profile.command or self.cmd) + list(self.args)
        return eb.JupyterServer(
            profile.root_dir or (self.notebook_dir or None),
            command=command,
            env={**profile.environment, **env},
        )

    # -- lifecycle -------------------------------------------------------------------------

    def _emit(self, progress: int, message: str) -> None:
        self._events.append({"progress": progress, "message": message})
        self._event_signal.set()

    async def start(self) -> str:
        self._events = []
        self._starting = True
        try:
            return await self._start()
        finally:
            self._starting = False
            self._event_signal.set()

    async def _start(self) -> str:
        options = await self.validate_options(dict(self.user_options or {}))
        profile = {p.slug: p for p in self.all_profiles()}.get(options["profile"])
        if profile is None:
            raise UserError(f"The profile {options['profile']!r} is no longer configured.")
        self._from_booking = "booking" in options
        if "booking" in options:
            broker = self.broker_named(options["booking"]["broker"])
            assert broker is not None
            await self._handover(broker, options)
            end = datetime.fromisoformat(options["end"]) if options.get("end") else None
            duration = (
                end - datetime.now(UTC) if end and end > datetime.now(UTC) else profile.duration
            )
        else:
            if not options.pop("booking_now", False):
                raise await self.book_later(options)
            duration = profile.duration
            broker = self.broker_named(options["broker"]) if options.get("broker") else None
            if broker is not None and options.get("offer"):
                with contextlib.suppress(eb.EBError):
                    quote = await aio.find_offer(options["offer"], brokers=[broker])
                    await quote.reject()
        brokers = [broker] if broker else self.broker_objects(profile.brokers or None)
        where = broker.name if broker else "the brokers"
        self._emit(5, f"Asking {where} for a {profile.display_name} slot now")
        env = self.broker_env(self.get_env())
        try:
            offers = await aio.request(
                self.executable(profile, env),
                compute=profile.compute(),
                duration=duration,
                start="now",
                name=self.my_tag(profile.slug, SERVER_TAG),
                brokers=brokers,
                timeout=self.request_timeout,
            )
            offer = offers.earliest()
            broker = offer.broker
            session = await offer.accept()
        except eb.EBError as exc:
            raise self.explain(exc) from None
        self.broker_name = broker.name
        self.session_uuid = session.uuid
        self.broker_session_url = session.url or ""
        self.profile_slug = profile.slug
        self._emit(20, f"Accepted an offer on {broker.name} ({offer.platform or 'broker'})")
        self.save_state_now()
        return await self._wait_ready(session)

    def save_state_now(self) -> None:
        """Write get_state() to the hub's database at once (a restart can then reattach)."""
        if self.orm_spawner is None:
            return
        try:
            self.orm_spawner.state = self.get_state()
            self.user.db.commit()
        except Exception as exc:  # the hub saves it again when start() returns
            self.log.warning("could not save %s's state early: %s", self._log_name, exc)

    async def _handover(self, broker: eb.Broker, options: dict[str, Any]) -> None:
        uuid = options["booking"]["session"]
        self._emit(3, f"Taking over your booking on {broker.name}")
        try:
            booked = await aio.session(uuid, brokers=[broker])
            if not booked.is_final:
                await booked.cancel()
        except eb.EBError as exc:
            self.log.warning("handing over booking %s: %s", uuid, exc)

    async def _wait_ready(self, session: aio.Session) -> str:
        timeout = self.ready_timeout or float(self.start_timeout)
        deadline = time.monotonic() + timeout
        seen_phase: Phase | None = None
        seen_messages: set[tuple[Any, ...]] = set()
        while True:
            if session.phase != seen_phase:
                seen_phase = session.phase
                self._emit(
                    PROGRESS.get(session.phase, 60),
                    f"Session {session.uuid[:8]} on {session.broker_name}: "
                    f"{session.phase.value.lower()}",
                )
            for item in session.messages:
                key = (item.kind, item.time, item.message)
                if key not in seen_messages:
                    seen_messages.add(key)
                    self._emit(
                        PROGRESS.get(session.phase, 60),
                        f"{session.broker_name}: {item.message or item}",
                    )
            if session.phase in (Phase.AVAILABLE, Phase.RUNNING) and session.connectors:
                break
            if session.phase.is_final:
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(eb.EBError):
                    await session.cancel()
                raise UserError(
                    f"Your server on {session.broker_name} was not ready within {timeout:g} s; "
                    "the session was cancelled."
                )
            # a fixed, short pause: the SDK's backoff would add up to a second to the start
            await asyncio.sleep(self.ready_poll_interval)
            try:
                await session.refresh()
            except eb.BrokerUnavailable as exc:
                self.log.warning("waiting for %s: %s", session.uuid, exc)
        if session.phase not in (Phase.AVAILABLE, Phase.RUNNING):
            reasons = "; ".join(
                str(m.message or m) for m in session.messages if (m.level or "") == "ERROR"
            )
            raise UserError(
                f"Your server on {session.broker_name} could not start "
                f"({session.phase.value.lower()}): {reasons or 'no reason given'}"
            )
        url = next(
            (c.location for c in session.connectors if c.location and "://" in c.location), None
        )
        if not url:
            raise UserError(f"{session.broker_name} reported no address for your server.")
        if self._from_booking:
            await Notifier(self, self.log).ready(self.user_name, session.broker_name, str(url))
        return str(url)

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if not self._starting:
                return
            self._event_signal.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event_signal.wait(), 1.0)

    async def _session(self) -> aio.Session | None:
        if not self.session_uuid:
            return None
        broker = self.broker_named(self.broker_name)
        if broker is None:
            return None
        return await aio.session(self.session_uuid, brokers=[broker])

    async def poll(self) -> int | None:
        if not self.session_uuid:
            return 0
        try:
            session = await self._session()
        except eb.NotFound:
            self.clear_state()
            return 0
        except eb.EBError as exc:
            self.log.warning(
                "poll %s: broker unavailable (%s); assuming alive", self._log_name, exc
            )
            return None
        if session is None:
            return 0
        if session.phase in ALIVE:
            return None
        return 1 if session.phase == Phase.FAILED else 0

    async def stop(self, now: bool = False) -> None:
        try:
            session = await self._session()
            if session is not None and not session.is_final:
                await session.cancel()
                if not now:
                    with contextlib.suppress(eb.EBError):
                        await session.wait(timeout=15)
        except eb.NotFound:
            pass
        except eb.EBError as exc:
            self.log.warning("stopping %s: %s", self._log_name, exc)
        self.clear_state()

    # -- state --------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = super().get_state()
        if self.session_uuid:
            state.update(
                broker=self.broker_name,
                session=self.session_uuid,
                session_url=self.broker_session_url,
                profile=self.profile_slug,
            )
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.broker_name = str(state.get("broker") or "")
        self.session_uuid = str(state.get("session") or "")
        self.broker_session_url = str(state.get("session_url") or "")
        self.profile_slug = str(state.get("profile") or "")

    def clear_state(self) -> None:
        super().clear_state()
        self.broker_name = ""
        self.session_uuid = ""
        self.broker_session_url = ""
        self.profile_slug = ""


def booked_in(start: datetime | None) -> timedelta:
    return (start - datetime.now(UTC)) if start else timedelta(0)
