"""The API's handlers: parse, authenticate, ask the service, render its answer. Nothing else.

Every handler speaks only :class:`~eb_broker.service.BrokerService`, so a broker and an
aggregator share them all.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache

from eb_sdk.model import EnumValueUpdate, ExecutionRequest
from eb_sdk.model import messages as msg
from eb_sdk.model.components import AbstractUpdate
from eb_sdk.model.openapi import build_openapi

from ..service import OfferSetAnswer
from .base import BaseHandler, phases_argument, uuid_argument
from .errors import ApiError


class RequestsHandler(BaseHandler):
    """``POST /requests``: offers for a request (303 + Location + body, YES or NO)."""

    async def post(self) -> None:
        identity = self.require_identity()
        request, raw = self.read_model(ExecutionRequest)
        started = time.perf_counter()
        answer = await self.service.request_offers(identity, request, raw, self.links)
        self.metrics.offer_latency.observe(time.perf_counter() - started)
        self.set_header("Location", answer.url)
        respond_offerset(self, answer, 303)


def respond_offerset(handler: BaseHandler, answer: OfferSetAnswer, status: int = 200) -> None:
    """An offer set, with the ``Server-Timing`` of its making when the service measured it."""
    if answer.server_timing:
        handler.set_header("Server-Timing", answer.server_timing)
    handler.respond(answer.offerset, status)


class OfferSetHandler(BaseHandler):
    async def get(self, uuid: str) -> None:
        identity = self.require_identity()
        answer = await self.service.get_offerset(identity, uuid_argument(uuid), self.links)
        respond_offerset(self, answer)


class SessionHandler(BaseHandler):
    async def get(self, uuid: str) -> None:
        identity = self.require_identity()
        self.respond(await self.service.get_session(identity, uuid_argument(uuid), self.links))

    async def post(self, uuid: str) -> None:
        identity = self.require_identity()
        uuid = uuid_argument(uuid)
        # 404 before body errors for others' ids
        await self.service.get_session(identity, uuid, self.links)
        update, _ = self.read_model(AbstractUpdate)
        if not isinstance(update, EnumValueUpdate):
            raise ApiError(
                400,
                msg.INVALID_UPDATE,
                f"unsupported update kind {update.kind}: use uri:enum-value-update on phase",
            )
        if update.normalized_path not in ("phase", "state"):
            raise ApiError(
                400, msg.INVALID_UPDATE, f"path {update.path!r} cannot be updated; use 'phase'"
            )
        self.respond(await self.service.update_phase(identity, uuid, update.value, self.links))


class SessionListHandler(BaseHandler):
    async def get(self) -> None:
        identity = self.require_identity()
        phases = phases_argument(self)
        self.respond(await self.service.list_sessions(identity, phases, self.links))


class DirectHandler(BaseHandler):
    """``POST /direct``: book the first offer at once (303 to the session)."""

    async def post(self) -> None:
        identity = self.require_identity()
        request, raw = self.read_model(ExecutionRequest)
        session = await self.service.direct(identity, request, raw, self.links)
        self.set_header("Location", self.links.session(str(session.uuid)))
        self.respond(session, 303)


class CapabilitiesHandler(BaseHandler):
    async def get(self) -> None:
        self.respond(await self.service.capabilities())


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        health = await self.service.health()
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(health.dump()))


@lru_cache(maxsize=16)
def _openapi(server_url: str, title: str) -> str:
    return json.dumps(build_openapi(server_url=server_url, title=title))


class OpenAPIHandler(BaseHandler):
    async def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(_openapi(self.url_for(""), self.settings["eb_title"]))


class MetricsHandler(BaseHandler):
    async def get(self) -> None:
        gauges = await self.service.gauges()
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(self.metrics.render(gauges))


class NotFoundHandler(BaseHandler):
    async def prepare(self) -> None:
        raise ApiError(404, msg.NOT_FOUND, f"no such endpoint: {self.request.path}")


__all__ = [
    "CapabilitiesHandler",
    "DirectHandler",
    "HealthHandler",
    "MetricsHandler",
    "NotFoundHandler",
    "OfferSetHandler",
    "OpenAPIHandler",
    "RequestsHandler",
    "SessionHandler",
    "SessionListHandler",
]
