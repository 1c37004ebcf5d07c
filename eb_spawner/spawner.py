"""``EBSpawner``: JupyterHub single-user servers in slots offered by Execution Brokers.

The form's offers are *quotes*: they are requested before the hub has made the server's API
token, so their executable cannot carry the hub's environment, and a broker only lets a
client change a session's phase, never its executable. Spawning "now" therefore rejects the
quotes and at once asks the broker the user picked again, with the real executable
(``jupyterhub-singleuser`` and the environment from :meth:`get_env`); it takes that broker's
offer only if it still starts now, and says so when it differs from the one picked. A later
offer is accepted as it is (a *booking* that holds the capacity); at its slot the bookings
service starts the server through the hub API with the booking in ``user_options``, and the
spawner hands the booking over: it cancels it and books the same broker at once for the rest
of the slot. Workshop seats are handed over the same way.
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
from eb_sdk.model.times import Interval
from eb_sdk.offers import AsyncOffer, AsyncOffers, reject_open

from . import cancels
from . import form as formlib
from .bookings import Booking, bookings_in, hub_sessions
from .config import (
    SERVER_TAG,
    Profile,
)
from .errors import Booked, Notice, UserError
from .notify import Notifier
from .options import ALIVE, UserOptions
from .quotes import QuoteSet, in_background
from .workshops import open_seats

#: Progress (percent) shown for each phase while starting.
PROGRESS = {
    Phase.OFFERED: 10,
    Phase.ACCEPTED: 20,
    Phase.WAITING: 30,
    Phase.PREPARING: 50,
    Phase.AVAILABLE: 100,
    Phase.RUNNING: 100,
}
#: A booked slot is looked for this long after the time the broker named (minutes).
FIT_WINDOW = timedelta(minutes=15)
#: Seconds a handed-over booking or seat may take to end (its capacity is free only then).
HANDOVER_TIMEOUT = 30.0

#: News for a user's next form ({user name: html}), shown once. Kept per user, not per
#: spawner: after a form post JupyterHub shows the default server's form again, whichever
#: server the form was for.
NEWS: dict[str, str] = {}
#: Seats being handed over in this hub process (two members never take the same seat).
_CLAIMED: set[str] = set()
_SEAT_LOCK = asyncio.Lock()


class EBSpawner(Spawner, UserOptions):
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

    cancel_retry_interval = Float(
        30.0,
        help="When stopping a server could not cancel its session (the broker was down), try "
        "again this often (seconds) until the broker has ended it.",
    ).tag(config=True)

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
        self._from_booking = False
        self._quotes = QuoteSet()

    @property
    def cancel_key(self) -> cancels.Key:
        return (self.user_name, self.name or "")

    def service_url(self) -> str:
        base = self.hub.base_url.rstrip("/").rsplit("/hub", 1)[0] if self.hub else ""
        return f"{base}/services/{self.service_name}/"

    # -- the form -----------------------------------------------------------------------------

    async def _render_form(self, spawner: Spawner | None = None) -> str:
        profiles = self.my_profiles()
        if not profiles:
            return formlib.no_profiles()
        choice = self._choice_from_request() or self._form_choice
        if not choice:
            choice = {"profile": profiles[0].slug, "when": "now"}
        self._form_choice = choice
        profile = next((p for p in profiles if p.slug == choice.get("profile")), profiles[0])
        await self._quotes.release()  # the offers shown before are not wanted any more
        quotes, found = await asyncio.gather(
            self.quote(profile, choice.get("when", "now"), choice.get("at", "")),
            hub_sessions(self),
        )
        seats = open_seats(found, self.user_name, self.user_groups(), self.start_ahead)
        news = NEWS.pop(self.user_name, "")
        return formlib.render(
            profiles,
            profile,
            choice,
            quotes,
            self.tz(),
            self.now_threshold,
            news,
            seat=seats[0] if seats else None,
            bookings=bookings_in(found, user=self.user_name, seats=False),
            service_url=self.service_url(),
        )

    def _choice_from_request(self) -> dict[str, str]:
        """The choice the form's script sent with its GET (never a stale request's)."""
        handler = getattr(self, "handler", None)
        if handler is None or getattr(handler, "_finished", True):
            return {}
        if handler.request.method != "GET":
            return {}
        return formlib.parse_choice(handler.request.headers.get(formlib.CHOICE_HEADER))

    async def quote(self, profile: Profile, when: str, at: str = "") -> formlib.Quotes:
        """Every broker's offers for ``profile`` starting ``when`` (errors become notes)."""
        brokers = self.broker_objects(profile.brokers or None)
        if not brokers:
            return formlib.Quotes([], [], [f"No broker is configured for {profile.display_name}."])
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
        self._quotes.remember(offers)
        notes = [f"{w.broker} is not answering right now ({w.error})" for w in offers.warnings]
        reasons, fits = formlib.reasons_and_fits(offers.reasons, set(offers.brokers))
        return formlib.Quotes(list(offers), reasons, notes, fits)

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
        try:
            if options["action"] == "refresh":
                raise Notice("Offers refreshed: pick one and press Start.")
            if not options["offer"]:
                raise UserError("Pick one of the offers (refresh them if none is listed).")
            validated = await self.validate_options(options)
            if "seat" in validated or "booking" in validated or validated.get("booking_now"):
                return validated
            raise await self.book_later(validated)
        except Notice as news:
            NEWS[self.user_name] = news.html
            raise

    async def book_later(self, options: dict[str, Any]) -> Booked:
        """Accept a later offer as a booking; the exception tells the user it is booked."""
        limit = self.bookings_limit(self.user_groups())
        found = await hub_sessions(self)
        mine = bookings_in(found, user=self.user_name, seats=False)
        if len(mine) >= limit:
            raise UserError(
                f"You already have {len(mine)} booking(s), the most allowed is {limit}. "
                f"Cancel one at {self.service_url()}."
            )
        broker = self.broker_named(options["broker"])
        if broker is None:
            raise UserError(f"Unknown broker {options['broker']!r}.")
        try:
            if options.get("fit"):
                await self._quotes.release()
                offer = await self._offer_at(options, broker)
            else:
                offer = await aio.find_offer(options["offer"], brokers=[broker])
            session = await offer.accept()
        except eb.EBError as exc:
            raise self.explain(exc) from None
        finally:
            await self._quotes.release(keep=[str(options.get("offer") or "")])
        when = formlib.when_text(session.start, self.tz())
        msg = f"Your session is booked for {when} on {options['broker']}."
        link = self.service_url()
        html = (
            f"{formlib.esc(msg)} It starts by itself then; see or cancel your bookings at "
            f'<a href="{formlib.esc(link)}">{formlib.esc(link)}</a>.'
        )
        self.log.info(
            "%s booked %s on %s for %s", self.user_name, session.uuid, offer.broker_name, when
        )
        return Booked(msg, html)

    async def _offer_at(self, options: dict[str, Any], broker: eb.Broker) -> AsyncOffer:
        """An offer of ``broker`` starting at the slot it said would fit (or soon after)."""
        profile = {p.slug: p for p in self.my_profiles()}[options["profile"]]
        start = datetime.fromisoformat(options["fit"])
        offers = await aio.request(
            self.placeholder(profile),
            compute=profile.compute(),
            duration=profile.duration,
            start=Interval(start, start + FIT_WINDOW),
            name=self.my_tag(profile.slug),
            brokers=[broker],
            timeout=self.request_timeout,
            tz=self.tz(),
        )
        fitting = [o for o in offers if o.start is not None and o.start < start + FIT_WINDOW]
        if not fitting:
            raise UserError(
                f"The slot on {broker.name} at {formlib.when_text(start, self.tz())} was taken "
                "meanwhile: refresh the offers for the next one."
            )
        return min(fitting, key=lambda o: o.start or start)

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
        if cancels.entries(self.cancel_key):
            await cancels.retry(self.cancel_key, self.broker_named, self.log)
        options = await self.validate_options(dict(self.user_options or {}))
        await self._quotes.release()  # no quote is accepted as it is (see the module's text)
        handed = "seat" in options or "booking" in options  # checked when it was booked
        profiles = {p.slug: p for p in self.my_profiles()}
        if handed:
            profiles = {p.slug: p for p in self.all_profiles()} | profiles
        profile = profiles.get(options["profile"])
        if profile is None:
            raise UserError(f"The profile {options['profile']!r} is no longer yours to use.")
        self._from_booking = handed
        end: datetime | None = None
        workshop = ""
        picked: dict[str, Any] = {}
        if "seat" in options:
            broker, seat = await self._claim_seat(options["seat"])
            end, workshop = seat.end, seat.workshop
        elif "booking" in options:
            found = self.broker_named(options["booking"]["broker"])
            if found is None:
                raise UserError("Unknown broker in the booking.")
            broker = found
            await self._handover(broker, options["booking"]["session"])
            end = datetime.fromisoformat(options["end"]) if options.get("end") else None
        else:
            if not options.get("booking_now"):  # the REST API with a later offer
                booked = await self.book_later(options)
                raise UserError(f"{booked} This is a booking: the server starts then.")
            named = self.broker_named(options["broker"]) if options.get("broker") else None
            picked = options if named is not None else {}
            broker = named  # type: ignore[assignment]
        now = datetime.now(UTC)
        duration: Any = end - now if end and end > now + timedelta(minutes=1) else profile.duration
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
                name=self.my_tag(profile.slug, SERVER_TAG, workshop),
                brokers=brokers,
                timeout=self.request_timeout,
            )
            offer = await self._now_offer(offers, where)
            session = await offer.accept(reject_others=False)
        except eb.EBError as exc:
            raise self.explain(exc) from None
        # the other offers are let go meanwhile: the server's start does not wait for that
        in_background(reject_open(o for o in offers if o is not offer))
        self.broker_name = offer.broker.name
        self.session_uuid = session.uuid
        self.broker_session_url = session.url or ""
        self.profile_slug = profile.slug
        self._emit(20, self._accepted_text(offer, picked))
        self.save_state_now()
        return await self._wait_ready(session)

    async def _now_offer(self, offers: AsyncOffers, where: str) -> AsyncOffer:
        """The earliest offer that starts now (within ``now_threshold``); none: say when."""
        horizon = datetime.now(UTC) + timedelta(seconds=self.now_threshold)
        now = [o for o in offers.raise_if_empty() if o.start is None or o.start <= horizon]
        if now:
            return min(now, key=lambda o: o.start or horizon)
        await reject_open(offers)
        first = formlib.when_text(offers.earliest().start, self.tz())
        raise UserError(
            f"Asked again, {where} cannot start this now any more (the earliest is {first}): "
            "pick again on the spawn page."
        )

    def _accepted_text(self, offer: AsyncOffer, picked: dict[str, Any]) -> str:
        """What was accepted, and how it differs from the offer the user picked."""
        text = f"Accepted an offer on {offer.broker_name} ({offer.platform or 'broker'})"
        if not picked:
            return text
        differences = []
        if picked.get("platform") and offer.platform and picked["platform"] != offer.platform:
            differences.append(f"platform {offer.platform}, not {picked['platform']}")
        if picked.get("start") and offer.start:
            shift = (offer.start - datetime.fromisoformat(picked["start"])).total_seconds()
            if abs(shift) >= 60:
                differences.append(f"starting {formlib.when_text(offer.start, self.tz())}")
        if differences:
            return f"{text}: it differs from the offer you picked ({'; '.join(differences)})"
        return f"{text}, as you picked"

    async def _claim_seat(self, seat: dict[str, Any]) -> tuple[eb.Broker, Booking]:
        """Take over a free seat of the workshop (the next one when another member was
        quicker)."""
        tried: set[str] = set()
        while True:
            async with _SEAT_LOCK:
                found = await hub_sessions(self)
                free = [
                    s
                    for s in open_seats(found, self.user_name, [seat["group"]], self.start_ahead)
                    if s.workshop == seat["workshop"]
                    and s.session not in _CLAIMED
                    and s.session not in tried
                ]
                if not free:
                    raise UserError("All seats of this workshop are taken.")
                chosen = free[0]
                _CLAIMED.add(chosen.session)
            tried.add(chosen.session)
            broker = self.broker_named(chosen.broker)
            if broker is not None and await self._handover(broker, chosen.session):
                return broker, chosen

    async def _handover(self, broker: eb.Broker, uuid: str) -> bool:
        """Cancel a booking or seat so that its capacity is this server's; False when it was
        gone already."""
        self._emit(3, f"Taking over your booking on {broker.name}")
        try:
            booked = await aio.session(uuid, brokers=[broker])
            if booked.is_final:
                return False
            await booked.cancel()
            if not booked.is_final:  # launched already: its capacity is free once it ended
                with contextlib.suppress(eb.EBError):
                    await booked.wait(timeout=HANDOVER_TIMEOUT)
        except (eb.NotFound, eb.Conflict):
            return False
        except eb.EBError as exc:
            self.log.warning("handing over booking %s: %s", uuid, exc)
        return True

    def save_state_now(self) -> None:
        """Write get_state() to the hub's database at once (a restart can then reattach)."""
        if self.orm_spawner is None:
            return
        try:
            self.orm_spawner.state = self.get_state()
            self.user.db.commit()
        except Exception as exc:  # the hub saves it again when start() returns
            self.log.warning("could not save %s's state early: %s", self._log_name, exc)

    async def _wait_ready(self, session: aio.AsyncSession) -> str:
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

    async def get_url(self) -> str:
        """The server's address from its session. After a hub restart during a start, the
        hub asks this of a server that poll() says is alive: wait until the broker has it
        ready (as start() would have), so the hub reattaches to it instead of giving up."""
        stored = str(self.server.url) if self.server else ""
        try:
            session = await self._session()
            if session is None or session.phase not in ALIVE:
                return stored
            if session.phase not in (Phase.AVAILABLE, Phase.RUNNING) or not session.connectors:
                self.log.info(
                    "%s: reattaching to session %s, still %s",
                    self._log_name,
                    session.uuid,
                    session.phase.value.lower(),
                )
            return await self._wait_ready(session)
        except (eb.EBError, UserError) as exc:
            self.log.warning("%s: no address from its session: %s", self._log_name, exc)
            return stored

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

    async def _session(self) -> aio.AsyncSession | None:
        if not self.session_uuid:
            return None
        broker = self.broker_named(self.broker_name)
        if broker is None:
            return None
        return await aio.session(self.session_uuid, brokers=[broker])

    async def poll(self) -> int | None:
        """None while the session is alive (ACCEPTED … RUNNING) or its broker cannot be
        reached; 1 once it FAILED; 0 once it ended otherwise, or is unknown."""
        if not self.session_uuid:
            return 0
        try:
            session = await self._session()
        except eb.NotFound:
            self._forget_session()
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
        self.log.info("%s: session %s is %s", self._log_name, session.uuid, session.phase.value)
        return 1 if session.phase == Phase.FAILED else 0

    async def stop(self, now: bool = False) -> None:
        """Cancel the session; if its broker cannot be reached, keep retrying the cancel in
        the background (JupyterHub forgets the server either way)."""
        await self._quotes.release()
        end: datetime | None = None
        try:
            session = await self._session()
            if session is not None and not session.is_final:
                end = session.end
                await session.cancel()
                if not now:
                    with contextlib.suppress(eb.EBError):
                        await session.wait(timeout=15)
        except (eb.NotFound, eb.Conflict):
            pass
        except eb.EBError as exc:
            self.log.error(
                "stopping %s: session %s on %s could not be cancelled (%s); trying again every "
                "%g s",
                self._log_name,
                self.session_uuid,
                self.broker_name,
                exc,
                self.cancel_retry_interval,
            )
            cancels.add(self.cancel_key, self.broker_name, self.session_uuid, end)
            self._retry_cancels()
        self._forget_session()

    def _retry_cancels(self) -> None:
        cancels.keep_retrying(
            self.cancel_key,
            self.broker_named,
            self.cancel_retry_interval,
            self._save_pending,
            self.log,
        )

    def _save_pending(self) -> None:
        """Write the pending cancels into the stored state (the rest of it as it is)."""
        if self.orm_spawner is None:
            return
        state = dict(self.orm_spawner.state or {})
        pending = cancels.entries(self.cancel_key)
        if pending:
            state["cancel_pending"] = pending
        else:
            state.pop("cancel_pending", None)
        self.orm_spawner.state = state
        self.user.db.commit()

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
        pending = cancels.entries(self.cancel_key)
        if pending:
            state["cancel_pending"] = pending
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.broker_name = str(state.get("broker") or "")
        self.session_uuid = str(state.get("session") or "")
        self.broker_session_url = str(state.get("session_url") or "")
        self.profile_slug = str(state.get("profile") or "")
        if state.get("cancel_pending"):
            cancels.merge(self.cancel_key, state["cancel_pending"])
            self._retry_cancels()

    def _forget_session(self) -> None:
        self.broker_name = ""
        self.session_uuid = ""
        self.broker_session_url = ""
        self.profile_slug = ""

    def clear_state(self) -> None:
        """Forget the session (the pending cancels stay: get_state() still writes them)."""
        super().clear_state()
        self._forget_session()
