"""JupyterHub tokens: the broker runs as a hub service and asks the hub who a token is."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import httpx
from traitlets import Float, Unicode

from .base import Authenticator, AuthError, Identity, bearer_token


class JupyterHubAuthenticator(Authenticator):
    """Checks ``Authorization: token|Bearer X`` with the hub's ``GET /hub/api/user``."""

    api_url = Unicode(
        os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
        config=True,
        help="The hub's API URL (JUPYTERHUB_API_URL when run as a hub service).",
    )
    cache_seconds = Float(60.0, config=True, help="How long a checked token stays trusted.")

    _cache: dict[str, tuple[float, Identity]]

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        token = bearer_token(headers)
        if token is None:
            return None
        cache = self.__dict__.setdefault("_cache", {})
        hit = cache.get(token)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.get(
                    self.api_url.rstrip("/") + "/user", headers={"Authorization": f"token {token}"}
                )
        except httpx.HTTPError as exc:
            raise AuthError(f"cannot reach JupyterHub to check the token: {exc}") from None
        if response.status_code in (401, 403):
            raise AuthError("JupyterHub does not know this token")
        if response.status_code != 200:
            raise AuthError(f"JupyterHub answered {response.status_code}")
        model = response.json()
        identity = Identity(
            str(model["name"]), tuple(str(g) for g in model.get("groups", ())), f"token {token}"
        )
        cache[token] = (time.monotonic() + self.cache_seconds, identity)
        return identity
