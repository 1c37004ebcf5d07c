"""HTTP Basic credentials, for clients written against the reference broker."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

import yaml
from traitlets import Unicode

from .base import Authenticator, AuthError, Identity


def hash_password(password: str, salt: bytes | None = None, iterations: int = 200_000) -> str:
    """A ``pbkdf2_sha256$iterations$salt$hash`` string for the users file."""
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def check_password(stored: str, password: str) -> bool:
    """Compare ``password`` with a stored hash (or, for development, a plain text entry)."""
    if stored.startswith("pbkdf2_sha256$"):
        _, iterations, salt, digest = stored.split("$", 3)
        computed = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), bytes.fromhex(salt), int(iterations)
        )
        return hmac.compare_digest(computed.hex(), digest)
    return hmac.compare_digest(stored.encode(), password.encode())


class BasicAuthenticator(Authenticator):
    """``Authorization: Basic`` against a YAML users file::

    users:
      alice: {password: "pbkdf2_sha256$200000$...", groups: [astro]}
    """

    path = Unicode(
        "eb_users.yaml", config=True, help="YAML file of users, password hashes, groups."
    )

    def _users(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data: Any = yaml.safe_load(handle) or {}
        except FileNotFoundError:
            return {}
        return dict(data.get("users") or {})

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        value = headers.get("Authorization") or headers.get("authorization") or ""
        scheme, _, encoded = value.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed Basic credentials") from None
        entry = self._users().get(user)
        if not entry or not check_password(str(entry.get("password", "")), password):
            raise AuthError("wrong user name or password")
        return Identity(user, tuple(entry.get("groups", ())), value.strip())
