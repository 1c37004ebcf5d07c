"""The bookings service: ``python -m eb_spawner.service --config jupyterhub_config.py``.

A hub-managed service (pages under ``/services/eb/``) that

* lists the logged-in user's bookings and lets them cancel one (``GET /services/eb/``,
  JSON at ``api/bookings``, ``DELETE api/bookings/<broker>/<session>``);
* sends "your session will be available in N minutes" (``notify_lead_time`` before the slot);
* starts the user's server through the hub API at the slot (``start_ahead`` seconds before
  it), with ``{"booking": {"broker": ..., "session": ...}}`` as ``user_options``; a start the
  hub refuses is retried, and the user told;
* lists, reserves and cancels workshop seats for a hub group (hub admins: on the page, or
  ``GET``/``POST api/workshops``, ``DELETE api/workshops/<id>``).

It reads the ``c.EBSpawner`` settings from the hub's own config file, so both agree on brokers,
profiles and notifications. The brokers' ledgers are the record of bookings; the service only
remembers (in ``service_state_file``) which notifications and starts it has done, and keeps
its cookie secret in ``service_cookie_secret_file``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import httpx
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets.config import Config, PyFileConfigLoader

import eb_sdk as eb
from eb_sdk import aio

from .bookings import Booking, list_bookings
from .config import EBSettings
from .form import esc, when_text
from .notify import Notifier
from .workshops import Workshop, cancel_workshop, list_workshops, reserve_seats

log = logging.getLogger("eb_spawner.service")


def load_settings(path: str | None) -> EBSettings:
    """The ``c.EBSpawner`` (and ``c.Spawner``) settings of a hub config file."""
    config = Config()
    if path:
        loader = PyFileConfigLoader(os.path.basename(path), os.path.dirname(os.path.abspath(path)))
        config = loader.load_config()
    # a class named EBSpawner picks up c.EBSpawner.* (traitlets sections are class names)
    settings_class = type("EBSpawner", (EBSettings,), {})
    return settings_class(config=config)


class Scheduler:
    """Notifies and starts booked servers on time; remembers what it did in a JSON file.

    A start counts as done only when the hub accepted it (HTTP 201 or 202). Otherwise the user
    is told once ("could not be started: …") and the start is tried again, waiting twice as
    long each time (at most ``RETRY_MAX`` seconds), until the booking's slot is over.
    """

    def __init__(self, settings: EBSettings, hub_api: str, token: str) -> None:
        self.settings = settings
        self.hub_api = hub_api.rstrip("/")
        self.token = token
        self.path = Path(settings.service_state_file)
        self.done: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(OSError, ValueError):
            self.done = json.loads(self.path.read_text())
        self.notifier = Notifier(settings, log)

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.done, indent=1))
        os.replace(tmp, self.path)

    async def hub(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.request(
                method,
                self.hub_api + path,
                headers={"Authorization": f"token {self.token}"},
                **kwargs,
            )

    async def tick(self) -> None:
        now = datetime.now(UTC)
        lead = timedelta(seconds=self.settings.notify_lead_time)
        ahead = timedelta(seconds=self.settings.start_ahead)
        zone = self.settings.tz()
        for booking in await list_bookings(self.settings, seats=False):
            if booking.start is None:
                continue
            done = self.done.setdefault(booking.session, {})
            if not done.get("notified") and booking.start - lead <= now:
                minutes = max(0, round((booking.start - now).total_seconds() / 60))
                when = when_text(booking.start, zone)
                await self.notifier.soon(booking.user, booking.broker, minutes, when)
                done["notified"] = now.isoformat()
                self.save()
            due = booking.start - ahead <= now
            if done.get("started") or not due or now < _instant(done.get("retry_at"), now):
                continue
            error = await self.start(booking)
            if error is None:
                done["started"] = now.isoformat()
                done.pop("retry_at", None)
            else:
                failures = int(done.get("failures") or 0) + 1
                wait = min(RETRY_MAX, self.settings.service_interval * 2**failures)
                done.update(
                    failures=failures,
                    error=error,
                    retry_at=(now + timedelta(seconds=wait)).isoformat(),
                )
                if failures == 1:
                    await self.notifier.failed(
                        booking.user, booking.broker, when_text(booking.start, zone), error
                    )
            self.save()
        self.forget_old(now)

    def forget_old(self, now: datetime) -> None:
        """Drop what was done for bookings more than a week ago."""
        old = now - timedelta(days=7)
        stale = [
            uuid
            for uuid, done in self.done.items()
            if all(_instant(done.get(k), now) < old for k in ("notified", "started", "retry_at"))
            and any(done.get(k) for k in ("notified", "started", "retry_at"))
        ]
        for uuid in stale:
            del self.done[uuid]
        if stale:
            self.save()

    async def start(self, booking: Booking) -> str | None:
        """Ask the hub to start the booked server; None when it did, else why not.

        The hub answers 202 also to a start of that server that was already under way (the
        user started it), so a start counts only once the server's ``user_options`` name this
        booking; a 400 "already running" for a server of this booking (an earlier try that was
        not recorded) counts too."""
        path = f"/users/{quote(booking.user)}/server"
        if booking.server:
            path = f"/users/{quote(booking.user)}/servers/{quote(booking.server)}"
        options = {"booking": {"broker": booking.broker, "session": booking.session}}
        try:
            response = await self.hub("POST", path, json=options)
            ours = response.status_code in (201, 202, 400) and await self.starts(booking)
        except httpx.HTTPError as exc:
            reason = f"the hub is not answering ({exc})"
            log.warning("starting %s's booked server: %s", booking.user, reason)
            return reason
        if ours:
            log.info("started %s's booked server (%s)", booking.user, booking.session)
            return None
        reason = _hub_reason(response)
        if response.status_code in (201, 202):
            reason = "another start of that server was under way"
        log.warning("starting %s's booked server: %s", booking.user, reason)
        return reason

    async def starts(self, booking: Booking) -> bool:
        """Whether the user's server is being started (or runs) with this booking."""
        response = await self.hub("GET", f"/users/{quote(booking.user)}")
        if response.status_code != 200:
            return False
        server = (response.json().get("servers") or {}).get(booking.server) or {}
        chosen = (server.get("user_options") or {}).get("booking") or {}
        return bool(chosen.get("session") == booking.session)

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            await asyncio.sleep(self.settings.service_interval)


#: Longest pause between two tries of a booked start that the hub refused (seconds).
RETRY_MAX = 60.0


def _instant(text: Any, default: datetime) -> datetime:
    """An ISO time from the state file; ``default`` when there is none."""
    try:
        return datetime.fromisoformat(str(text)) if text else default
    except ValueError:
        return default


def _hub_reason(response: httpx.Response) -> str:
    try:
        message = str(response.json().get("message") or "")
    except ValueError:
        message = ""
    return f"the hub answered {response.status_code}" + (f": {message}" if message else "")


class Base(HubOAuthenticated, web.RequestHandler):
    @property
    def settings_(self) -> EBSettings:
        return self.application.settings["eb_settings"]

    def user_name(self) -> str:
        user = self.current_user
        if not user:
            raise web.HTTPError(403)
        return str(user["name"])

    def is_admin(self) -> bool:
        return bool((self.current_user or {}).get("admin"))

    def require_admin(self) -> None:
        if not self.is_admin():
            raise web.HTTPError(403, "only hub admins manage workshops")

    async def my_bookings(self) -> list[Booking]:
        return await list_bookings(self.settings_, user=self.user_name(), seats=False)

    async def cancel(self, broker_name: str, uuid: str) -> str:
        mine = {(b.broker, b.session) for b in await self.my_bookings()}
        if (broker_name, uuid) not in mine:
            raise web.HTTPError(404, "no such booking of yours")
        broker = self.settings_.broker_named(broker_name)
        try:
            session = await aio.session(uuid, brokers=[broker] if broker else None)
            await session.cancel()
        except eb.EBError as exc:
            raise web.HTTPError(502, f"{broker_name}: {exc}") from None
        return uuid

    async def reserve(self, body: dict[str, Any]) -> list[Booking]:
        """Reserve a workshop's seats from a JSON body or the page's form (admins)."""
        self.require_admin()
        brokers = body.get("brokers") or None
        if brokers is not None and not isinstance(brokers, list):
            raise web.HTTPError(400, "brokers: a list of broker names")
        try:
            return await reserve_seats(
                self.settings_,
                str(body["group"]),
                int(body["seats"]),
                start=str(body["start"]),
                duration=str(body.get("duration") or "3h"),
                profile=str(body["profile"]),
                brokers=[str(b) for b in brokers] if brokers else None,
            )
        except KeyError as exc:
            raise web.HTTPError(400, f"bad workshop: {exc.args[0]} is missing") from None
        except (ValueError, TypeError) as exc:
            raise web.HTTPError(400, f"bad workshop: {exc}") from None
        except eb.EBError as exc:
            raise web.HTTPError(409, f"cannot reserve the seats: {exc}") from None

    async def cancel_workshop(self, workshop: str) -> int:
        self.require_admin()
        try:
            return await cancel_workshop(self.settings_, workshop)
        except eb.NotFound as exc:
            raise web.HTTPError(404, str(exc)) from None


class PageHandler(Base):
    @web.authenticated
    async def get(self) -> None:
        await self.page()

    @web.authenticated
    async def post(self) -> None:
        if ref := self.get_body_argument("cancel", ""):
            broker_name, _, uuid = ref.partition("|")
            await self.cancel(broker_name, uuid)
            await self.page(f"Booking {uuid[:8]} on {broker_name} cancelled.")
        elif workshop := self.get_body_argument("cancel_workshop", ""):
            count = await self.cancel_workshop(workshop)
            await self.page(f"Workshop {workshop}: {count} seat(s) cancelled.")
        elif self.get_body_argument("reserve", ""):
            fields: dict[str, Any] = {
                k: self.get_body_argument(k, "") for k in ("group", "seats", "start")
            }
            fields.update(
                duration=self.get_body_argument("duration", "3h"),
                profile=self.get_body_argument("profile", ""),
                brokers=self.get_body_arguments("brokers"),
            )
            try:
                seats = await self.reserve(fields)
            except web.HTTPError as exc:
                await self.page(f"Not reserved: {exc.log_message}")
                return
            await self.page(f"{len(seats)} seat(s) reserved for {fields['group']}.")
        else:
            raise web.HTTPError(400, "nothing to do")

    async def page(self, message: str = "") -> None:
        bookings = await self.my_bookings()
        zone = self.settings_.tz()
        xsrf = f"<input type='hidden' name='_xsrf' value='{esc(self.xsrf_token.decode())}'>"
        rows = "".join(
            f"<tr><td>{esc(when_text(b.start, zone))}</td><td>{esc(when_text(b.end, zone))}</td>"
            f"<td>{esc(b.broker)}</td><td>{esc(b.profile)}</td><td>{esc(b.server or 'default')}"
            f"</td><td>{esc(b.phase.lower())}</td><td><form method='post'>{xsrf}"
            f"<button name='cancel' value='{esc(b.broker)}|{esc(b.session)}'>Cancel</button>"
            "</form></td></tr>"
            for b in bookings
        )
        body = (
            f"<h1>Your bookings, {esc(self.user_name())}</h1>"
            + (f"<p class='message'>{esc(message)}</p>" if message else "")
            + (
                "<table id='bookings'><tr><th>start</th><th>end</th><th>broker</th>"
                f"<th>profile</th><th>server</th><th>state</th><th></th></tr>{rows}</table>"
                if bookings
                else "<p id='no-bookings'>You have no bookings. Book a slot on the hub's "
                "spawn page by choosing a later time.</p>"
            )
        )
        if self.is_admin():
            body += workshops_section(
                await list_workshops(self.settings_), self.settings_, zone, xsrf
            )
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            f"<!doctype html><html><head><title>Bookings</title></head><body>{body}</body></html>"
        )


def workshops_section(shops: list[Workshop], settings: EBSettings, zone: Any, xsrf: str) -> str:
    """The admins' part of the page: the workshops with seats left, and a reserve form."""
    rows = "".join(
        f"<tr><td><code>{esc(w.id)}</code></td><td>{esc(w.group)}</td><td>{esc(w.profile)}</td>"
        f"<td>{esc(when_text(w.start, zone))}</td><td>{esc(when_text(w.end, zone))}</td>"
        f"<td>{len(w.seats)}</td><td>{esc(', '.join(sorted({s.broker for s in w.seats})))}</td>"
        f"<td><form method='post'>{xsrf}<button name='cancel_workshop' value='{esc(w.id)}'>"
        "Cancel the free seats</button></form></td></tr>"
        for w in shops
    )
    table = (
        "<table id='workshops'><tr><th>id</th><th>group</th><th>profile</th><th>start</th>"
        f"<th>end</th><th>free seats</th><th>brokers</th><th></th></tr>{rows}</table>"
        if shops
        else "<p id='no-workshops'>No workshop has free seats.</p>"
    )
    profiles = "".join(
        f"<option value='{esc(p.slug)}'>{esc(p.display_name)}</option>"
        for p in settings.all_profiles()
    )
    brokers = "".join(
        f"<label><input type='checkbox' name='brokers' value='{esc(b.name)}'> {esc(b.name)}"
        "</label> "
        for b in settings.broker_objects()
    )
    reserve = (
        f"<form method='post' id='reserve'>{xsrf}<h3>Reserve seats for a group</h3>"
        "<label>group <input name='group' required></label> "
        "<label>seats <input name='seats' type='number' min='1' value='20' required></label> "
        "<label>start <input name='start' type='datetime-local' required></label> "
        "<label>duration <input name='duration' value='3h'></label> "
        f"<label>profile <select name='profile'>{profiles}</select></label> "
        f"<span>brokers (none: the profile's) {brokers}</span> "
        "<button name='reserve' value='1'>Reserve</button></form>"
    )
    return f"<h2>Workshops</h2>{table}{reserve}"


class API(Base):
    """JSON handlers: token-authenticated (no XSRF), errors as IVOA MessageItems."""

    def check_xsrf_cookie(self) -> None:
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        kinds = {400: "urn:invalid-request", 403: "urn:forbidden", 404: "urn:not-found"}
        self.finish(
            {
                "kind": kinds.get(status_code, "urn:conflict" if status_code == 409 else None),
                "level": "ERROR",
                "message": message,
            }
        )


class BookingsAPI(API):
    @web.authenticated
    async def get(self) -> None:
        self.finish({"bookings": [b.to_dict() for b in await self.my_bookings()]})

    @web.authenticated
    async def delete(self, broker_name: str, uuid: str) -> None:
        self.finish({"cancelled": await self.cancel(broker_name, uuid)})


class WorkshopsAPI(API):
    @web.authenticated
    async def get(self) -> None:
        self.require_admin()
        shops = await list_workshops(self.settings_)
        self.finish({"workshops": [w.to_dict() for w in shops]})

    @web.authenticated
    async def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        seats = await self.reserve(body)
        self.set_status(201)
        workshop = seats[0].workshop if seats else ""
        self.finish({"workshop": workshop, "seats": [s.to_dict() for s in seats]})

    @web.authenticated
    async def delete(self, workshop: str) -> None:
        self.finish({"workshop": workshop, "cancelled": await self.cancel_workshop(workshop)})


def cookie_secret(settings: EBSettings) -> bytes:
    """The service's cookie secret: ``$EB_SERVICE_COOKIE_SECRET`` (hex), else the file
    ``service_cookie_secret_file`` (made with a new secret, mode 0600, the first time).

    Kept across restarts, so the users' service cookies (hub OAuth) stay valid."""
    if text := os.environ.get("EB_SERVICE_COOKIE_SECRET", "").strip():
        return bytes.fromhex(text)
    path = Path(settings.service_cookie_secret_file)
    with contextlib.suppress(FileNotFoundError):
        return bytes.fromhex(path.read_text().strip())
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret.hex())
    return secret


def make_app(settings: EBSettings, prefix: str) -> web.Application:
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    auth = HubOAuth(api_token=os.environ["JUPYTERHUB_API_TOKEN"], cache_max_age=60)
    return web.Application(
        [
            (prefix, PageHandler),
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
            (prefix + "api/bookings", BookingsAPI),
            (prefix + r"api/bookings/([^/]+)/([^/]+)", BookingsAPI),
            (prefix + "api/workshops", WorkshopsAPI),
            (prefix + r"api/workshops/([^/]+)", WorkshopsAPI),
        ],
        hub_auth=auth,
        eb_settings=settings,
        cookie_secret=cookie_secret(settings),
        xsrf_cookies=True,
    )


async def amain(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eb_spawner.service")
    parser.add_argument("--config", help="the hub's jupyterhub_config.py")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings(args.config)
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL") or "http://127.0.0.1:10101")
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or f"/services/{settings.service_name}/"
    server = HTTPServer(make_app(settings, prefix), xheaders=True)
    server.listen(url.port or 80, url.hostname or "127.0.0.1")
    log.info("bookings service on %s%s", url.geturl().rstrip("/"), prefix)
    scheduler = Scheduler(
        settings, os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"]
    )
    await scheduler.run()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):  # the hub stops its services with SIGINT
        asyncio.run(amain())


if __name__ == "__main__":
    main()
