"""Workshop seats on a JupyterHub that spawns with ``eb_spawner``, from a notebook.

"20 students, next Tuesday 09:00-12:00": a hub admin reserves seats for a hub group through
the hub's bookings service (``eb_spawner.service``); each member of the group gets one seat
when they start a server during the window.

>>> from eb_sdk import workshops
>>> shop = workshops.reserve("students", 20, start="2026-11-24T09:00", duration="3h",
...                          profile="small")
>>> workshops.list_workshops()
>>> workshops.cancel(shop["workshop"])

The service is found through the hub's API (``$JUPYTERHUB_API_URL`` with
``$JUPYTERHUB_API_TOKEN``, as in a single-user server; the token needs ``read:services``), or
given as ``url`` (its public address, ``https://hub.example.org/services/eb/``). Calls carry
``token`` (default ``$JUPYTERHUB_API_TOKEN``), which must be a hub admin's with access to the
service (``access:services!service=eb``).
Errors are the SDK's typed errors (:class:`eb_sdk.PermissionDenied`, ``InvalidRequest``, ...).
The same functions as coroutines have an ``a`` in front: ``areserve``, ``alist_workshops``,
``acancel``.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from ._client import client_for
from ._config import HUB_SCHEME, Broker
from ._errors import BrokerUnavailable, ConfigError, error_from_response
from ._portal import run_sync

__all__ = ["acancel", "alist_workshops", "areserve", "cancel", "list_workshops", "reserve"]


async def _service_url(service: str, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    hub = Broker(url=f"{HUB_SCHEME}:{service}", name=service)
    return await client_for(hub).base_url()


async def _call(
    method: str,
    path: str,
    *,
    service: str,
    url: str | None,
    token: str | None,
    body: dict[str, Any] | None = None,
) -> Any:
    token = token or os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not token:
        raise ConfigError("no hub token: pass token= or set JUPYTERHUB_API_TOKEN", broker=service)
    target = f"{await _service_url(service, url)}/api/{path}"
    try:
        async with httpx.AsyncClient(timeout=60) as client:
            answer = await client.request(
                method, target, json=body, headers={"Authorization": f"token {token}"}
            )
    except httpx.HTTPError as exc:
        raise BrokerUnavailable(f"cannot reach {target}: {exc}", broker=service) from None
    if answer.status_code >= 400:
        raise error_from_response(
            answer.status_code,
            answer.content,
            answer.headers.get("content-type"),
            broker=service,
            what=f"{method} {path}",
        )
    return answer.json()


async def areserve(
    group: str,
    seats: int,
    *,
    start: str | datetime,
    duration: str = "3h",
    profile: str,
    brokers: list[str] | None = None,
    service: str = "eb",
    url: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Reserve ``seats`` seats of the hub profile ``profile`` for the hub group ``group``,
    from ``start`` (a time in the hub's zone unless it says its own, or a datetime) for
    ``duration``, on ``brokers`` (default: the profile's). Returns ``{"workshop": id,
    "seats": [...]}``; when not every seat can be booked, none is (``Conflict``)."""
    when = start.isoformat() if isinstance(start, datetime) else str(start)
    body: dict[str, Any] = {
        "group": group,
        "seats": seats,
        "start": when,
        "duration": duration,
        "profile": profile,
    }
    if brokers:
        body["brokers"] = list(brokers)
    result: dict[str, Any] = await _call(
        "POST", "workshops", service=service, url=url, token=token, body=body
    )
    return result


async def alist_workshops(
    *, service: str = "eb", url: str | None = None, token: str | None = None
) -> list[dict[str, Any]]:
    """The workshops with free seats: id, group, profile, start, end, free_seats, brokers."""
    result = await _call("GET", "workshops", service=service, url=url, token=token)
    return list(result["workshops"])


async def acancel(
    workshop: str, *, service: str = "eb", url: str | None = None, token: str | None = None
) -> int:
    """Cancel the free seats of ``workshop`` (members' servers keep running); how many."""
    path = f"workshops/{quote(workshop, safe='')}"
    result = await _call("DELETE", path, service=service, url=url, token=token)
    return int(result["cancelled"])


def reserve(group: str, seats: int, **options: Any) -> dict[str, Any]:
    """Blocking :func:`areserve` (the same arguments)."""
    return run_sync(areserve(group, seats, **options))


def list_workshops(
    *, service: str = "eb", url: str | None = None, token: str | None = None
) -> list[dict[str, Any]]:
    """Blocking :func:`alist_workshops`."""
    return run_sync(alist_workshops(service=service, url=url, token=token))


def cancel(
    workshop: str, *, service: str = "eb", url: str | None = None, token: str | None = None
) -> int:
    """Blocking :func:`acancel`."""
    return run_sync(acancel(workshop, service=service, url=url, token=token))
