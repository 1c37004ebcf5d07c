"""JWT / OIDC access tokens checked against the issuer's keys (JWKS)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from typing import Any

import httpx
import jwt
from traitlets import Float, List, Unicode

from .base import Authenticator, AuthError, Identity, bearer_token


class JWTAuthenticator(Authenticator):
    """Validates signed JWTs (RS256/ES256...) by issuer, audience and the issuer's JWKS.

    The keys come from ``public_key_file``, else ``jwks_url``, else the ``jwks_uri`` of the
    issuer's OpenID Connect discovery document (``{issuer}/.well-known/openid-configuration``,
    or ``discovery_url``), read once and kept; the JWKS itself is cached and re-read when a
    token names a key id it does not hold (key rotation).
    """

    issuer = Unicode("", config=True, help="Expected 'iss' claim (empty: not checked).")
    audience = Unicode("", config=True, help="Expected 'aud' claim (empty: not checked).")
    jwks_url = Unicode(
        "",
        config=True,
        help="URL of the issuer's JWKS (keys). Empty: found through OIDC discovery of issuer.",
    )
    discovery_url = Unicode(
        "",
        config=True,
        help="OIDC discovery document; empty: {issuer}/.well-known/openid-configuration. "
        "Used only when jwks_url and public_key_file are empty.",
    )
    public_key_file = Unicode(
        "", config=True, help="A PEM public key instead of a JWKS URL (offline deployments)."
    )
    algorithms = List(Unicode(), ["RS256", "ES256"], config=True, help="Accepted algorithms.")
    user_claim = Unicode("preferred_username", config=True, help="Claim holding the user name.")
    groups_claim = Unicode("groups", config=True, help="Claim holding the list of groups.")
    http_timeout = Float(10.0, config=True, help="Seconds for fetching discovery and JWKS.")
    jwks_cache_seconds = Float(300.0, config=True, help="How long the fetched JWKS is kept.")
    jwks_refresh_cooldown = Float(
        30.0,
        config=True,
        help="A token naming a key id the cached JWKS lacks (key rotation) re-reads the JWKS, "
        "at most once per this many seconds (so forged key ids cannot flood the issuer).",
    )

    _jwks: jwt.PyJWKClient | None = None
    _discovered: str | None = None

    def _jwks_uri(self) -> str:
        """The JWKS URL: configured, or from the issuer's discovery document (read once)."""
        if self.jwks_url:
            return self.jwks_url
        if self._discovered:
            return self._discovered
        url = self.discovery_url or (
            self.issuer.rstrip("/") + "/.well-known/openid-configuration" if self.issuer else ""
        )
        if not url:
            raise AuthError("the broker has no JWKS URL, issuer or public key configured for JWTs")
        try:
            response = httpx.get(url, timeout=self.http_timeout, follow_redirects=True)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            self.log.warning("OIDC discovery at %s failed: %s", url, exc)
            raise AuthError(f"cannot read the issuer's OIDC discovery document: {exc}") from None
        if not isinstance(document, dict) or not document.get("jwks_uri"):
            raise AuthError(f"the OIDC discovery document at {url} names no jwks_uri")
        if self.issuer and document.get("issuer", self.issuer).rstrip("/") != self.issuer.rstrip(
            "/"
        ):
            raise AuthError(
                f"the discovery document is for issuer {document.get('issuer')!r}, "
                f"not {self.issuer!r}"
            )
        self._discovered = str(document["jwks_uri"])
        return self._discovered

    def _key(self, token: str) -> Any:
        if self.public_key_file:
            with open(self.public_key_file, encoding="utf-8") as handle:
                return handle.read()
        if self._jwks is None:
            options: dict[str, Any] = {"timeout": self.http_timeout}
            if "cooldown_duration" in inspect.signature(jwt.PyJWKClient).parameters:
                options["cooldown_duration"] = self.jwks_refresh_cooldown  # PyJWT >= 2.11
            self._jwks = jwt.PyJWKClient(
                self._jwks_uri(), cache_keys=True, lifespan=self.jwks_cache_seconds, **options
            )
        return self._jwks.get_signing_key_from_jwt(token).key

    def _decode(self, token: str) -> dict[str, Any]:
        options = {"verify_aud": bool(self.audience), "verify_iss": bool(self.issuer)}
        claims: dict[str, Any] = jwt.decode(
            token,
            self._key(token),
            algorithms=list(self.algorithms),
            audience=self.audience or None,
            issuer=self.issuer or None,
            options=options,  # type: ignore[arg-type]
        )
        return claims

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        token = bearer_token(headers)
        if token is None or token.count(".") != 2:
            return None
        try:
            claims = await asyncio.get_running_loop().run_in_executor(None, self._decode, token)
        except (jwt.PyJWTError, OSError) as exc:
            raise AuthError(f"invalid token: {exc}") from None
        user = claims.get(self.user_claim) or claims.get("sub")
        if not user:
            raise AuthError(f"the token has no {self.user_claim!r} or 'sub' claim")
        groups = claims.get(self.groups_claim) or []
        return Identity(str(user), tuple(str(g) for g in groups), f"Bearer {token}")
