"""The REST API the sidebar calls, under ``<base_url>/eb/``; every method is authenticated.

=======  ============================================  ============================================
GET      ``/eb/brokers``                               configured brokers and their health
GET      ``/eb/sessions?finished_hours=24``            my sessions on every broker
POST     ``/eb/sessions/<broker>/<uuid>/cancel``       cancel one
POST     ``/eb/offers``                                offers for a notebook of this server
POST     ``/eb/offers/<set>/<uuid>/accept|reject``     decide one offer (body: ``{"broker": ...}``)
GET      ``/eb/batches``                               my batch runs (``eb.batches()``)
POST     ``/eb/batches/<id>/reopen``                   re-open a failed run (body: ``{"run":…}``)
=======  ============================================  ============================================

Errors are JSON ``{"message": ...}`` with a status that says whose fault it is: 400 for what
the user typed (the SDK's :class:`InvalidRequest` text), 404/409/410 for a session or offer
that is gone, taken or expired, 502/504 when the brokers failed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from eb_sdk._errors import (
    ConfigError,
    Conflict,
    EBError,
    InvalidRequest,
    NotFound,
    OfferExpired,
    Timeout,
)

from . import batches
from .backend import Backend, ExecutionBrokerLab
from .views import session_view

__all__ = ["setup_handlers", "status_of"]


def status_of(exc: EBError) -> int:
    """The HTTP status the browser gets for an SDK error."""
    if isinstance(exc, InvalidRequest | ConfigError):
        return 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, OfferExpired):
        return 410
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, Timeout):
        return 504
    return 502


class EBHandler(APIHandler):
    """JSON in and out; SDK errors become ``{"message": ...}`` with :func:`status_of`."""

    @property
    def backend(self) -> Backend:
        backend: Backend = self.settings["eb_lab_backend"]
        return backend

    def body(self) -> dict[str, Any]:
        if not self.request.body:
            return {}
        try:
            data = json.loads(self.request.body)
        except ValueError:
            raise tornado.web.HTTPError(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise tornado.web.HTTPError(400, "the body must be a JSON object")
        return data

    async def reply(self, work: Awaitable[dict[str, Any]]) -> None:
        try:
            data = await work
        except EBError as exc:
            self.set_status(status_of(exc))
            data = {"message": str(exc)}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))


class BrokersHandler(EBHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.reply(self.backend.brokers())


class SessionsHandler(EBHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        raw = self.get_query_argument("finished_hours", "24")
        try:
            hours = max(0.0, float(raw))
        except ValueError:
            raise tornado.web.HTTPError(400, f"finished_hours: not a number: {raw!r}") from None
        await self.reply(self.backend.sessions(hours))


class CancelHandler(EBHandler):
    @tornado.web.authenticated
    async def post(self, broker: str, uuid: str) -> None:
        await self.reply(self.backend.cancel(broker, uuid))


class OffersHandler(EBHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        await self.reply(self.backend.ask(self.body()))


class OfferDecisionHandler(EBHandler):
    @tornado.web.authenticated
    async def post(self, set_id: str, uuid: str, decision: str) -> None:
        broker = str(self.body().get("broker") or "")
        if decision == "accept":
            await self.reply(self.backend.accept(set_id, uuid, broker))
        else:
            await self.reply(self.backend.reject(set_id, uuid, broker))


class BatchesHandler(EBHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self.reply(batches.list_batches(self.backend.root))


class ReopenHandler(EBHandler):
    @tornado.web.authenticated
    async def post(self, batch_id: str) -> None:
        body = self.body()
        run = str(body.get("run") or body.get("input") or "")
        if not run:
            raise tornado.web.HTTPError(400, 'name the failed run to re-open: {"run": <run id>}')

        async def work() -> dict[str, Any]:
            session = await batches.reopen(batch_id, run)
            return {"session": session_view(session, self.backend.root)}

        await self.reply(work())


def _root(serverapp: Any) -> Path | None:
    """The directory notebooks live in, when the contents manager keeps them as files."""
    root = getattr(serverapp.contents_manager, "root_dir", None) or serverapp.root_dir
    return Path(root).expanduser() if root else None


def setup_handlers(serverapp: Any) -> None:
    web_app = serverapp.web_app
    config = ExecutionBrokerLab(parent=serverapp)
    web_app.settings["eb_lab_backend"] = Backend(config, _root(serverapp))
    base = url_path_join(web_app.settings["base_url"], "eb")
    part = r"([^/]+)"
    routes: list[tuple[str, type[EBHandler]]] = [
        ("brokers", BrokersHandler),
        ("sessions", SessionsHandler),
        (f"sessions/{part}/{part}/cancel", CancelHandler),
        ("offers", OffersHandler),
        (f"offers/{part}/{part}/(accept|reject)", OfferDecisionHandler),
        ("batches", BatchesHandler),
        (f"batches/{part}/reopen", ReopenHandler),
    ]
    web_app.add_handlers(".*$", [(url_path_join(base, path), cls) for path, cls in routes])
    serverapp.log.info("eb_labextension: Execution Broker handlers at %s/", base)
