"""JWT / OIDC access tokens checked against the issuer's keys (JWKS)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import jwt
from traitlets import List, Unicode

from .base import Authenticator, AuthError, Identity, bearer_token


class JWTAuthenticator(Authenticator):
    """Validates signed JWTs (RS256/ES256...) by issuer, audience and the issuer's JWKS."""

    issuer = Unicode("", config=True, help="Expected 'iss' claim (empty: not checked).")
    audience = Unicode("", config=True, help="Expected 'aud' claim (empty: not checked).")
    jwks_url = Unicode("", config=True, help="URL of the issuer's JWKS (keys).")
    public_key_file = Unicode(
        "", config=True, help="A PEM public key instead of a JWKS URL (offline deployments)."
    )
    algorithms = List(Unicode(), ["RS256", "ES256"], config=True, help="Accepted algorithms.")
    user_claim = Unicode("preferred_username", config=True, help="Claim holding the user name.")
    groups_claim = Unicode("groups", config=True, help="Claim holding the list of groups.")

    _jwks: jwt.PyJWKClient | None = None

    def _key(self, token: str) -> Any:
        if self.public_key_file:
            with open(self.public_key_file, encoding="utf-8") as handle:
                return handle.read()
        if not self.jwks_url:
            raise AuthError("the broker has no JWKS URL or public key configured")
        if self._jwks is None:
            self._jwks = jwt.PyJWKClient(self.jwks_url, cache_keys=True)
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
