"""A tiny broker that behaves like the IVOA reference broker where it differs from ours.

Quirks reproduced (the SDK must cope with each):

* ``POST /requests`` always answers ``303`` with the offer set as the body (or, when
  ``empty_303_body`` is set, an empty body and only the ``Location``);
* compute kinds spelled ``.../kinds/computer/...``, session kinds as ``.../types/...-1.0``;
* zero-width start intervals ``T/PT0S`` in ``schedule.available.start``;
* offers without ``meta.options``; the broker never sets ``EXPIRED`` (even when ``expires`` is
  long past) and does not reject siblings on accept;
* GETs are public; POSTs need HTTP Basic credentials, and a 401 body is not a MessageItem;
* no ``/health`` (only ``/capabilities``), and the spec's ``READY`` for AVAILABLE.

Knobs for failures: ``delay`` holds every answer back (a slow broker past the SDK's deadline)
and ``forbidden`` refuses POSTs with 403 (a Spring error body, not a MessageItem).

Runs tornado on its own event loop in a thread, so sync SDK calls made from a test's loop
cannot deadlock with it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tornado import web

from tests.fixtures.services import free_port
from tests.fixtures.threaded import ThreadedApp

IVOA = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds"
COMPUTER = f"{IVOA}/computer/simple-compute-resource.yaml"
SESSION = "https://www.purl.org/ivoa.net/EB/schema/types/session/scheduled-execution-session-1.0"
USERS = {"alice": "wonderland"}
# Each GET of an accepted session moves it one step on (the spec's own phase names).
PROGRESS = ["ACCEPTED", "WAITING", "PREPARING", "READY", "RUNNING", "COMPLETED"]


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class QuirksState:
    port: int
    empty_303_body: bool = False
    expires_in: float = 300.0
    #: Seconds every answer is held back (a slow or overloaded broker).
    delay: float = 0.0
    #: Refuse every POST with 403 (valid credentials, but not allowed), as Spring answers it.
    forbidden: bool = False
    offers_per_request: int = 2
    log: list[tuple[str, str]] = field(default_factory=list)
    #: The Authorization header of every request (None when there was none).
    authorizations: list[str | None] = field(default_factory=list)
    offersets: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def make_offers(self, request: dict[str, Any]) -> dict[str, Any]:
        set_id = str(uuidlib.uuid4())
        now = datetime.now(UTC).replace(microsecond=0)
        offers = []
        for i in range(self.offers_per_request):
            sid = str(uuidlib.uuid4())
            start = now + timedelta(hours=i)
            offer = {
                "kind": SESSION,
                "meta": {"uuid": sid, "url": f"{self.url}/sessions/{sid}"},
                "phase": "OFFERED",
                "expires": _iso(now + timedelta(seconds=self.expires_in)),
                "executable": request.get("executable"),
                "compute": {"kind": COMPUTER, "cores": {"min": 2, "max": 2}, "memory": {"min": 4}},
                "schedule": {
                    "preparing": {"start": _iso(start - timedelta(minutes=1)), "duration": "PT1M"},
                    "available": {"start": f"{_iso(start)}/PT0S", "duration": "PT1H"},
                    "releasing": {"start": _iso(start + timedelta(hours=1))},
                },
            }
            self.sessions[sid] = offer
            offers.append(offer)
        answer = {
            "meta": {"uuid": set_id, "url": f"{self.url}/offersets/{set_id}"},
            "result": "YES",
            "offers": offers,
        }
        self.offersets[set_id] = answer
        return answer


class Base(web.RequestHandler):
    state: QuirksState

    def initialize(self, state: QuirksState) -> None:
        self.state = state

    async def prepare(self) -> None:
        self.state.log.append((self.request.method or "", self.request.path))
        self.state.authorizations.append(self.request.headers.get("Authorization"))
        if self.state.delay:
            await asyncio.sleep(self.state.delay)

    def check_basic(self) -> bool:
        scheme, _, value = (self.request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            user, _, password = base64.b64decode(value).decode().partition(":")
            if USERS.get(user) == password:
                return True
        self.set_status(401)
        self.set_header("WWW-Authenticate", 'Basic realm="reference"')
        self.set_header("Content-Type", "application/json")
        body = {"timestamp": _iso(datetime.now(UTC)), "status": 401, "error": "Unauthorized"}
        self.finish(json.dumps(body))
        return False

    def check_post(self) -> bool:
        """HTTP Basic, then (when ``forbidden``) 403 for a user who may not do this."""
        if not self.check_basic():
            return False
        if self.state.forbidden:
            self.set_status(403)
            self.set_header("Content-Type", "application/json")
            body = {"timestamp": _iso(datetime.now(UTC)), "status": 403, "error": "Forbidden"}
            self.finish(json.dumps(body))
            return False
        return True

    def send(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))


class Requests(Base):
    def post(self) -> None:
        if not self.check_post():
            return
        answer = self.state.make_offers(json.loads(self.request.body or b"{}"))
        self.set_status(303)
        self.set_header("Location", answer["meta"]["url"])
        if self.state.empty_303_body:
            self.finish()
        else:
            self.send(answer, 303)


class OfferSet(Base):
    def get(self, set_id: str) -> None:  # public, as on the reference broker
        if set_id not in self.state.offersets:
            self.send({"message": "not found"}, 404)
            return
        self.send(self.state.offersets[set_id])


class Session(Base):
    def get(self, sid: str) -> None:  # public
        session = self.state.sessions.get(sid)
        if session is None:
            self.send({"message": f"no session {sid}"}, 404)
            return
        if session["phase"] in PROGRESS[:-1]:
            session["phase"] = PROGRESS[PROGRESS.index(session["phase"]) + 1]
        self.send(session)

    def post(self, sid: str) -> None:
        if not self.check_post():
            return
        session = self.state.sessions.get(sid)
        if session is None:
            self.send({"message": f"no session {sid}"}, 404)
            return
        update = json.loads(self.request.body)
        value = update.get("value")
        allowed = {"OFFERED": {"ACCEPTED", "REJECTED"}, "ACCEPTED": {"CANCELLED"}}
        if value not in allowed.get(session["phase"], set()):
            self.send({"message": f"cannot go from {session['phase']} to {value}"}, 409)
            return
        session["phase"] = value  # never EXPIRED; siblings left alone
        self.send(session)


class Capabilities(Base):
    def get(self) -> None:
        self.send({"name": "reference", "platform": "reference", "version": "1.0"})


class QuirksServer:
    """Start with :meth:`start`, stop with :meth:`stop`; ``state`` holds the knobs and log."""

    def __init__(self) -> None:
        self.state = QuirksState(port=free_port())
        args = {"state": self.state}
        self.app = ThreadedApp(
            [
                (r"/requests", Requests, args),
                (r"/offersets/([^/]+)", OfferSet, args),
                (r"/sessions/([^/]+)", Session, args),
                (r"/capabilities", Capabilities, args),
            ],
            self.state.port,
        )

    @property
    def url(self) -> str:
        return self.state.url

    def start(self) -> QuirksServer:
        self.app.start()
        return self

    def stop(self) -> None:
        self.app.stop()
