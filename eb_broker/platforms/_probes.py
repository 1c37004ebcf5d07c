"""Does a session's HTTP service answer? The readiness probe the cloud platforms share.

A Jupyter server (or any HTTP service) in a pod or a VM counts as AVAILABLE once it answers;
Kubernetes and OpenStack probe it the same way: one shared client (created when first
needed, TLS not verified: sessions often have self-signed certificates), 3 s per probe, any
status below 500 is an answer.
"""

from __future__ import annotations

import asyncio

import httpx

#: Seconds one probe may take.
PROBE_TIMEOUT = 3.0


def jupyter_probe_url(url: str, token: object) -> str:
    """The URL that tells whether the Jupyter server at ``url`` (ending in ``/``) answers:
    ``api/status`` with the session's token, else ``api`` (which needs none)."""
    return f"{url}api/status?token={token}" if token else f"{url}api"


class HttpProbe:
    """Probes HTTP services with one client, made at the first probe; :meth:`aclose` at the
    end (a platform's ``close``)."""

    def __init__(self) -> None:
        self._http: httpx.AsyncClient | None = None

    async def answers(self, url: str) -> bool:
        """Does the service answer HTTP (any status below 500) within ``PROBE_TIMEOUT``?"""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=PROBE_TIMEOUT, verify=False)
        try:
            return (await self._http.get(url)).status_code < 500
        except httpx.HTTPError:
            return False

    async def answers_all(self, urls: dict[str, str]) -> dict[str, bool]:
        """:meth:`answers` for each ``key: url``, all at once."""
        keys = list(urls)
        results = await asyncio.gather(*(self.answers(urls[k]) for k in keys))
        return dict(zip(keys, results, strict=True))

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
