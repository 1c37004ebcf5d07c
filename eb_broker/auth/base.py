"""Who is asking: the "I" in "when, and where, can I run this?"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from traitlets.config import LoggingConfigurable

from eb_sdk.model import messages as msg

from ..errors import BrokerError


@dataclass(frozen=True)
class Identity:
    """An authenticated caller."""

    user: str
    groups: tuple[str, ...] = ()
    #: The credential as presented, for passing on to downstream brokers (aggregators).
    authorization: str | None = None


class AuthError(BrokerError):
    """Credentials were presented but are not valid (HTTP 401)."""

    kind = msg.UNAUTHORIZED
    status = 401


class Authenticator(LoggingConfigurable):
    """Turns request headers into an :class:`Identity`.

    ``authenticate`` returns None when the request carries no credentials this authenticator
    understands (the next one in the chain may), and raises :class:`AuthError` when it carries
    credentials of its kind that are wrong.
    """

    async def authenticate(self, headers: Mapping[str, str]) -> Identity | None:
        raise NotImplementedError


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer X`` (or JupyterHub's ``token X``) header."""
    value = headers.get("Authorization") or headers.get("authorization") or ""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() in ("bearer", "token") and token.strip():
        return token.strip()
    return None
