"""The tornado application: the API's routes over one :class:`~eb_broker.service.BrokerService`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tornado import web

from ..auth import Authenticator
from ..service import BrokerService
from .archive import ArchiveHandler
from .base import BaseHandler
from .handlers import (
    CapabilitiesHandler,
    DirectHandler,
    HealthHandler,
    MetricsHandler,
    NotFoundHandler,
    OfferSetHandler,
    OpenAPIHandler,
    RequestsHandler,
    SessionHandler,
    SessionListHandler,
)
from .metrics import Metrics


def routes(base_url: str) -> list[tuple[str, type[BaseHandler]]]:
    """URL patterns under ``base_url``."""
    prefix = _prefix(base_url)
    table: list[tuple[str, type[BaseHandler]]] = [
        (r"/archive/?", ArchiveHandler),
        (r"/requests/?", RequestsHandler),
        (r"/offersets/([^/]+)/?", OfferSetHandler),
        (r"/direct/?", DirectHandler),
        (r"/sessions/?", SessionListHandler),
        (r"/sessions/([^/]+)/?", SessionHandler),
        (r"/capabilities/?", CapabilitiesHandler),
        (r"/health/?", HealthHandler),
        (r"/openapi.json", OpenAPIHandler),
        (r"/metrics/?", MetricsHandler),
    ]
    return [(prefix + pattern, handler) for pattern, handler in table]


def _prefix(base_url: str) -> str:
    return "/" + base_url.strip("/") if base_url.strip("/") else ""


def make_app(
    service: BrokerService,
    *,
    authenticators: Sequence[Authenticator] = (),
    base_url: str = "/",
    public_url: str = "",
    max_body_size: int = 1024 * 1024,
    title: str = "Execution Broker",
    log: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
) -> web.Application:
    """The web application answering the API with ``service``.

    ``authenticators`` are tried in order (none: every caller is anonymous); ``public_url``
    is the scheme and host clients use (default: each request's own); ``title`` names the
    OpenAPI document.
    """
    logger = log or logging.getLogger("eb_broker.web")

    def log_request(handler: web.RequestHandler) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        logger.log(
            level,
            "%d %s %s %.1fms",
            status,
            handler.request.method,
            handler.request.uri,
            1000 * handler.request.request_time(),
        )

    return web.Application(
        [*routes(base_url), (r".*", NotFoundHandler)],
        eb_service=service,
        eb_metrics=Metrics(),
        eb_authenticators=list(authenticators),
        eb_max_body_size=max_body_size,
        eb_base_url=_prefix(base_url),
        eb_public_url=public_url,
        eb_title=title,
        default_handler_class=NotFoundHandler,
        log_function=log_request,
    )


__all__ = ["make_app", "routes"]
