"""Users named by a trusted aggregator: a service token plus ``X-EB-User``/``X-EB-Groups``.

An aggregator that cannot pass its user's own token down (the user's token is only valid at
the top, or the user came through another aggregator) calls with *its* service token and names
the user in headers. Those headers are believed only together with a token configured here:
from anyone else they are ignored (this authenticator returns None and the next one in the
chain checks the token as usual), so a user cannot claim to be someone else.

Header format: ``X-EB-User: alice``; ``X-EB-Groups: srcnet,uksrc-local`` (comma separated).
Both are percent-decoded (``%2C`` for a comma inside a group name).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from traitlets import Dict, Unicode

from .base import Authenticator, AuthError, Identity, bearer_token

#: Longest user or group name accepted from a header.
MAX_NAME = 255


def identity_headers(
    identity: Identity, user_header: str = "X-EB-User", groups_header: str = "X-EB-Groups"
) -> dict[str, str]:
    """The headers an aggregator sends to name ``identity`` (the inverse of this module)."""
    return {
        user_header: quote(identity.user, safe="@.-_+:"),
        groups_header: ",".join(quote(g, safe="@.-_+:") for g in identity.groups),
    }


def _name(value: str, what: str) -> str:
    text = unquote(value).strip()
    if not text or len(text) > MAX_NAME or any(ord(c) < 32 for c in text):
        raise AuthError(f"invalid {what} in the aggregator's header: {value[:40]!r}")
    return text


class AggregatorAuthenticator(Authenticator):
    """Believes ``X-EB-User``/``X-EB-Groups`` from callers with a trusted aggregator token."""

    tokens = Dict(
        {},
        config=True,
        help="Service tokens of the aggregators trusted to name their users: {token: "
        "aggregator name}. Calls with another token go to the next authenticator (the "
        "headers are then ignored).",
    )
    user_header = Unicode("X-EB-User", config=True, help="Header naming the user.")
    groups_header = Unicode(
        "X-EB-Groups", config=True, help="Header listing the user's groups (comma separated)."
    )

    def _aggregator(self, token: str) -> str | None:
        found = None
        for known, name in self.tokens.items():
            if hmac.compare_digest(str(known).encode(), token.encode()):
                found = str(name)
        return found

    async def authenticate(self, headers: Mapping[str, Any]) -> Identity | None:
        token = bearer_token(headers)
        if token is None:
            return None
        aggregator = self._aggregator(token)
        if aggregator is None:
            return None
        raw_user = headers.get(self.user_header)
        if raw_user is None:
            # The aggregator itself (its /capabilities and /health probes).
            return Identity(f"aggregator:{aggregator}")
        user = _name(str(raw_user), "user name")
        raw_groups = str(headers.get(self.groups_header) or "")
        groups = tuple(_name(g, "group") for g in raw_groups.split(",") if g.strip())
        self.log.debug("aggregator %s acts for %s %s", aggregator, user, groups)
        return Identity(user, groups, None)
