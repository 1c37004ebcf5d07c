"""The web layer over the :class:`~eb_broker.service.BrokerService` seam, in process.

A small in-memory service (a real implementation of the protocol, not a mock) serves the whole
API through :func:`eb_broker.web.application.make_app`: so the handlers need nothing but the
protocol. And every :class:`~eb_broker.errors.BrokerError` the service raises is answered with
its own status and a MessageItem body, in whichever class it was raised.
"""

from __future__ import annotations

import importlib
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

import eb_broker.app
from eb_broker.aggregate import DownstreamError
from eb_broker.auth import Authenticator, Identity
from eb_broker.errors import BrokerError, NothingOffered
from eb_broker.policies import PolicyDenied
from eb_broker.service import (
    ArchivePage,
    ArchiveQuery,
    BrokerService,
    Gauges,
    Health,
    Links,
    OfferSetAnswer,
    Profile,
)
from eb_broker.translate import client_phase, offerset_to_wire
from eb_broker.web.application import make_app
from eb_broker.web.errors import ApiError
from eb_sdk._errors import BrokerUnavailable
from eb_sdk.model import Capabilities, ExecutionRequest, Phase, ScheduledExecutionSession
from eb_sdk.model import messages as msg
from tests.broker.helpers import notebook_request

# Platform plugins whose errors derive from BrokerError too (when their extras are installed).
for _module in (
    "eb_broker.platforms.slurm",
    "eb_broker.platforms.kubernetes",
    "eb_broker.platforms.openstack",
):
    with suppress(ImportError):
        importlib.import_module(_module)


class HeaderAuthenticator(Authenticator):
    """Whoever ``X-Test-User`` names (tests only)."""

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        user = headers.get("X-Test-User")
        return Identity(user) if user else None


class MemoryService:
    """A broker in memory: every request gets one offer for one core, now; nothing runs.

    ``failure`` (when set) is raised by every session read, so the tests can send any
    :class:`BrokerError` through the web layer.
    """

    def __init__(self) -> None:
        self.sessions: dict[str, tuple[str, Phase]] = {}
        self.offersets: dict[str, tuple[str, list[str]]] = {}
        self.failure: BrokerError | None = None
        self.started = self.closed = False

    def _wire(self, uuid: str, links: Links) -> ScheduledExecutionSession:
        _, phase = self.sessions[uuid]
        return ScheduledExecutionSession.model_validate(
            {"phase": phase.value, "meta": {"uuid": uuid, "url": links.session(uuid)}}
        )

    def _mine(self, identity: Identity, uuid: str) -> str:
        if self.failure is not None:
            raise self.failure
        owner, _ = self.sessions.get(uuid, ("", Phase.OFFERED))
        if owner != identity.user:
            raise BrokerError(f"no session {uuid}", kind=msg.NOT_FOUND, status=404)
        return uuid

    def _answer(self, uuid: str, links: Links) -> OfferSetAnswer:
        _, offers = self.offersets[uuid]
        wire = offerset_to_wire(
            uuid=uuid,
            url=links.offerset(uuid),
            created=datetime(2026, 1, 1, tzinfo=UTC),
            result="YES" if offers else "NO",
            messages=[] if offers else [msg.error(msg.NO_CAPACITY, "nothing fits").dump()],
            offers=[self._wire(o, links) for o in offers],
        )
        return OfferSetAnswer(wire, server_timing='fanout;dur=1.0;desc="memory"')

    async def request_offers(
        self, identity: Identity, request: ExecutionRequest, raw: dict[str, Any], links: Links
    ) -> OfferSetAnswer:
        offers: list[str] = []
        if request.name != "impossible":
            offers.append(str(uuidlib.uuid4()))
            self.sessions[offers[0]] = (identity.user, Phase.OFFERED)
        uuid = str(uuidlib.uuid4())
        self.offersets[uuid] = (identity.user, offers)
        return self._answer(uuid, links)

    async def direct(
        self, identity: Identity, request: ExecutionRequest, raw: dict[str, Any], links: Links
    ) -> ScheduledExecutionSession:
        answer = await self.request_offers(identity, request, raw, links)
        if not answer.offerset.offers:
            raise NothingOffered(answer.offerset.messages or [])
        return await self.update_phase(
            identity, str(answer.offerset.offers[0].uuid), "ACCEPTED", links
        )

    async def get_offerset(self, identity: Identity, uuid: str, links: Links) -> OfferSetAnswer:
        if self.offersets.get(uuid, ("", []))[0] != identity.user:
            raise BrokerError(f"no offer set {uuid}", kind=msg.NOT_FOUND, status=404)
        return self._answer(uuid, links)

    async def get_session(
        self, identity: Identity, uuid: str, links: Links
    ) -> ScheduledExecutionSession:
        return self._wire(self._mine(identity, uuid), links)

    async def list_sessions(
        self, identity: Identity, phases: Sequence[str] | None, links: Links
    ) -> list[ScheduledExecutionSession]:
        return [
            self._wire(uuid, links)
            for uuid, (owner, phase) in self.sessions.items()
            if owner == identity.user and (phases is None or phase.value in phases)
        ]

    async def update_phase(
        self, identity: Identity, uuid: str, value: str, links: Links
    ) -> ScheduledExecutionSession:
        self.sessions[self._mine(identity, uuid)] = (identity.user, client_phase(value))
        return self._wire(uuid, links)

    async def capabilities(self) -> Capabilities:
        profile = Profile("memory", "memory", "UTC", timedelta(minutes=5), 4, timedelta(days=1))
        return profile.capabilities(executables=[], max_compute={"cores": 1})

    async def health(self) -> Health:
        return Health(status="ok", platform="memory", bookings=len(self.sessions))

    async def archive(self, identity: Identity, query: ArchiveQuery) -> ArchivePage:
        if query.format == "json":
            return ArchivePage(total=1, items=[{"uuid": "x", "owner": identity.user}])
        return ArchivePage(total=1, data=b"uuid\nx\n")

    async def gauges(self) -> Gauges:
        accepted = sum(1 for _, phase in self.sessions.values() if phase == Phase.ACCEPTED)
        return Gauges(sessions={"ACCEPTED": accepted}, circuits={"below": "open"})

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True


def _conforms(service: BrokerService) -> BrokerService:
    """mypy checks that the in-memory service is a BrokerService."""
    return service


@asynccontextmanager
async def served(service: BrokerService) -> AsyncIterator[httpx.AsyncClient]:
    """``service`` behind the web app on a loopback port of its own, and a client for it."""
    app = make_app(_conforms(service), authenticators=[HeaderAuthenticator()], base_url="/eb")
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app)
    server.add_sockets(sockets)
    base = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/eb"
    try:
        async with httpx.AsyncClient(base_url=base, headers={"X-Test-User": "alice"}) as client:
            yield client
    finally:
        server.stop()
        await server.close_all_connections()


async def test_a_small_service_serves_the_whole_api() -> None:
    service = MemoryService()
    async with served(service) as c:
        base = str(c.base_url).rstrip("/")
        answer = await c.post("/requests", json=notebook_request())
        assert answer.status_code == 303
        assert answer.headers["Location"].startswith(base + "/offersets/")
        assert answer.headers["Server-Timing"] == 'fanout;dur=1.0;desc="memory"'
        offer = answer.json()["offers"][0]
        offer["uuid"] = offer["meta"]["uuid"]
        assert offer["meta"]["url"] == f"{base}/sessions/{offer['uuid']}"
        again = await c.get(answer.headers["Location"])
        assert (
            again.status_code == 200 and again.json()["offers"][0]["meta"]["uuid"] == offer["uuid"]
        )

        update = {"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"}
        accepted = await c.post(f"/sessions/{offer['uuid']}", json=update)
        assert accepted.status_code == 200 and accepted.json()["phase"] == "ACCEPTED"
        listed = await c.get("/sessions", params={"phase": "ACCEPTED"})
        assert [s["meta"]["uuid"] for s in listed.json()] == [offer["uuid"]]
        assert (await c.get("/sessions", params={"phase": "RUNNING"})).json() == []

        direct = await c.post("/direct", json=notebook_request())
        assert direct.status_code == 303 and direct.json()["phase"] == "ACCEPTED"
        assert direct.headers["Location"] == direct.json()["meta"]["url"]
        nothing = await c.post("/direct", json={**notebook_request(), "name": "impossible"})
        assert nothing.status_code == 409
        assert nothing.json()["kind"] == msg.NO_CAPACITY
        assert nothing.json()["jeb:details"][0]["message"] == "nothing fits"

        assert (await c.get("/capabilities")).json()["name"] == "memory"
        assert (await c.get("/health")).json() == {
            "status": "ok",
            "version": eb_broker.app.__version__,
            "platform": "memory",
            "bookings": 2,
        }
        metrics = (await c.get("/metrics")).text
        assert 'eb_sessions{phase="ACCEPTED"} 2.0' in metrics
        assert 'eb_downstream_circuit{broker="below"} 2.0' in metrics
        assert 'eb_http_requests_total{handler="DirectHandler",method="POST",status="303"}' in (
            metrics
        )
        page = (await c.get("/archive")).json()
        assert page["items"] == [{"uuid": "x", "owner": "alice"}] and page["total"] == 1
        export = await c.get("/archive", params={"format": "csv"})
        assert export.content == b"uuid\nx\n" and export.headers["X-Total-Count"] == "1"
        spec = (await c.get("/openapi.json")).json()
        assert spec["servers"][0]["url"] == base

        # Others' sessions are not found; without credentials, 401.
        bob = {"X-Test-User": "bob"}
        assert (await c.get(f"/sessions/{offer['uuid']}", headers=bob)).status_code == 404
        assert (await c.get("/sessions", headers={"X-Test-User": ""})).status_code == 401
    assert not service.started  # the web app only asks; starting is the application's job


def _instances() -> dict[type[BrokerError], Callable[[], BrokerError]]:
    """One way to make each BrokerError class whose constructor is not ``cls(message)``."""
    return {
        ApiError: lambda: ApiError(418, msg.INVALID_REQUEST, "no tea here"),
        PolicyDenied: lambda: PolicyDenied([msg.error(msg.POLICY, "one session too many")]),
        NothingOffered: lambda: NothingOffered([msg.error(msg.NO_CAPACITY, "nothing fits")]),
        DownstreamError: lambda: DownstreamError("leaf", BrokerUnavailable("down")),
    }


def _subclasses(cls: type[BrokerError]) -> list[type[BrokerError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _subclasses(sub)
    return out


ERRORS = sorted(set(_subclasses(BrokerError)), key=lambda c: f"{c.__module__}.{c.__name__}")


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
async def test_every_broker_error_is_its_status_and_a_message_item(
    cls: type[BrokerError],
) -> None:
    make = _instances().get(cls, lambda: cls(f"a {cls.__name__} happened"))
    error = make()
    assert 400 <= error.status < 600, error.status
    service = MemoryService()
    service.failure = error
    async with served(service) as c:
        answer = await c.get(f"/sessions/{uuidlib.uuid4()}", headers={"Accept": "application/json"})
    assert answer.status_code == error.status
    body = answer.json()
    assert body["kind"] == error.kind and body["level"] == "ERROR"
    assert body["message"] == str(error)
    if error.details:
        assert [d["message"] for d in body["jeb:details"]] == [str(d) for d in error.details]


def test_the_errors_that_used_to_be_ledger_errors_are_not() -> None:
    from eb_broker.ledger import LedgerError, NotFoundError
    from eb_broker.platforms.base import PlatformUnavailable

    assert not issubclass(PolicyDenied, LedgerError)
    assert not issubclass(DownstreamError, LedgerError)
    assert issubclass(PlatformUnavailable, BrokerError)
    assert (NotFoundError.status, NotFoundError.kind) == (404, msg.NOT_FOUND)
    assert (PolicyDenied.status, PlatformUnavailable.status) == (403, 503)
