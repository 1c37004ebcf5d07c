"""The bookings service: ``python -m eb_spawner.service --config jupyterhub_config.py``.

A hub-managed service (pages under ``/services/eb/``) that

* lists the logged-in user's bookings and lets them cancel one (``GET /services/eb/``,
  JSON at ``api/bookings``, ``DELETE api/bookings/<broker>/<session>``);
* sends "your session will be available in N minutes" (``notify_lead_time`` before the slot);
* starts the user's server through the hub API at the slot (``start_ahead`` seconds before
  it), with ``{"booking": {"broker": ..., "session": ...}}`` as ``user_options``;
* reserves workshop seats for a hub group (``POST api/workshops``, hub admins only).

It reads the ``c.EBSpawner`` settings from the hub's own config file, so both agree on brokers,
profiles and notifications. The brokers' ledgers are the record of bookings; the service only
remembers (in ``service_state_file``) which notifications and starts it has done.
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
from .workshops import reserve_seats

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
    """Notifies and starts booked servers on time; remembers what it did in a JSON file."""

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
        for booking in await list_bookings(self.settings, seats=False):
            if booking.start is None:
                continue
            done = self.done.setdefault(booking.session, {})
            if not done.get("notified") and booking.start - lead <= now:
                minutes = max(0, round((booking.start - now).total_seconds() / 60))
                await self.notifier.soon(
                    booking.user,
                    booking.broker,
                    minutes,
                    when_text(booking.start, self.settings.tz()),
                )
                done["notified"] = now.isoformat()
                self.save()
            if not done.get("started") and booking.start - ahead <= now:
                await self.start(booking)
                done["started"] = now.isoformat()
                self.save()

    async def start(self, booking: Booking) -> None:
        path = f"/users/{quote(booking.user)}/server"
        if booking.server:
            path = f"/users/{quote(booking.user)}/servers/{quote(booking.server)}"
        options = {"booking": {"broker": booking.broker, "session": booking.session}}
        response = await self.hub("POST", path, json=options)
        if response.status_code >= 400:
            log.warning(
                "starting %s's booked server: %s %s",
                booking.user,
                response.status_code,
                response.text[:300],
            )
        else:
            log.info("started %s's booked server (%s)", booking.user, booking.session)

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            await asyncio.sleep(self.settings.service_interval)


class Base(HubOAuthenticated, web.RequestHandler):
    @property
    def settings_(self) -> EBSettings:
        return self.application.settings["eb_settings"]

    def user_name(self) -> str:
        user = self.current_user
        if not user:
            raise web.HTTPError(403)
        return str(user["name"])

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


class PageHandler(Base):
    @web.authenticated
    async def get(self) -> None:
        await self.page()

    @web.authenticated
    async def post(self) -> None:
        ref = self.get_body_argument("cancel", "")
        broker_name, _, uuid = ref.partition("|")
        await self.cancel(broker_name, uuid)
        await self.page(f"Booking {uuid[:8]} on {broker_name} cancelled.")

    async def page(self, message: str = "") -> None:
        bookings = await self.my_bookings()
        zone = self.settings_.tz()
        rows = "".join(
            f"<tr><td>{esc(when_text(b.start, zone))}</td><td>{esc(when_text(b.end, zone))}</td>"
            f"<td>{esc(b.broker)}</td><td>{esc(b.profile)}</td><td>{esc(b.server or 'default')}"
            f"</td><td>{esc(b.phase.lower())}</td><td><form method='post'>"
            f"<input type='hidden' name='_xsrf' value='{esc(self.xsrf_token.decode())}'>"
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
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            f"<!doctype html><html><head><title>Bookings</title></head><body>{body}</body></html>"
        )


class BookingsAPI(Base):
    def check_xsrf_cookie(self) -> None:  # token-authenticated API
        return None

    @web.authenticated
    async def get(self) -> None:
        self.finish({"bookings": [b.to_dict() for b in await self.my_bookings()]})

    @web.authenticated
    async def delete(self, broker_name: str, uuid: str) -> None:
        self.finish({"cancelled": await self.cancel(broker_name, uuid)})


class WorkshopsAPI(Base):
    def check_xsrf_cookie(self) -> None:
        return None

    @web.authenticated
    async def post(self) -> None:
        user = self.current_user or {}
        if not user.get("admin"):
            raise web.HTTPError(403, "only hub admins reserve workshop seats")
        try:
            body = json.loads(self.request.body or b"{}")
            seats = await reserve_seats(
                self.settings_,
                str(body["group"]),
                int(body["seats"]),
                start=str(body["start"]),
                duration=str(body.get("duration") or "3h"),
                profile=str(body["profile"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise web.HTTPError(400, f"bad workshop: {exc}") from None
        except eb.EBError as exc:
            raise web.HTTPError(409, f"cannot reserve the seats: {exc}") from None
        self.set_status(201)
        self.finish({"seats": [s.to_dict() for s in seats]})


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
        ],
        hub_auth=auth,
        eb_settings=settings,
        cookie_secret=secrets.token_bytes(32),
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
    asyncio.run(amain())


if __name__ == "__main__":
    main()
