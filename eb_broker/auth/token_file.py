"""Static tokens from a YAML file: the simplest way to give people access."""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from typing import Any

import yaml
from traitlets import Unicode

from .base import Authenticator, AuthError, Identity, bearer_token


class TokenFileAuthenticator(Authenticator):
    """Bearer tokens listed in a YAML file, re-read when the file changes.

    The file looks like::

        tokens:
          3f1c...e9: {user: alice, groups: [astro, uksrc]}
          77aa...01: {user: bob}
    """

    path = Unicode(
        "eb_tokens.yaml",
        config=True,
        help="YAML file mapping tokens to users and groups (re-read when it changes).",
    )

    _mtime: float = -1.0
    _tokens: dict[str, Identity]

    def _load(self) -> dict[str, Identity]:
        try:
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            self._tokens = {}
            return self._tokens
        if mtime != self._mtime:
            with open(self.path, encoding="utf-8") as handle:
                data: Any = yaml.safe_load(handle) or {}
            tokens: dict[str, Identity] = {}
            for token, entry in (data.get("tokens") or {}).items():
                entry = entry or {}
                tokens[str(token)] = Identity(
                    user=str(entry["user"]), groups=tuple(str(g) for g in entry.get("groups", ()))
                )
            self._tokens, self._mtime = tokens, mtime
        return self._tokens

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        token = bearer_token(headers)
        if token is None:
            return None
        for known, identity in self._load().items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return Identity(identity.user, identity.groups, f"Bearer {token}")
        raise AuthError("unknown token")
