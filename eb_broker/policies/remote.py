"""``remote``: ask an HTTP policy service (the "global" policy) and combine it with local rules.

The protocol is a single JSON POST (see docs/policies.md)::

    POST <url>
    {"version": 1, "broker": "site-a", "user": "alice", "groups": ["srcnet"],
     "request": {...ExecutionRequest...}, "duration": "PT2H",
     "accelerator_pools": ["gpu:A100"], "pools": ["local", "national"]}

    200 {"allow": true, "messages": ["..."], "limits": {"cores": 4, "memory_gib": 16},
         "max_duration": "PT4H", "accelerators": ["gpu:*"], "pools": ["national"]}

Everything but ``allow`` is optional. The answer joins the chain like any local policy: a
refusal is a NO, limits cap the request, ``accelerators`` and ``pools`` narrow what the local
rules allow — the most restrictive answer wins, and every reason is shown to the user.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import httpx
from traitlets import Float, Unicode

from eb_sdk._version import __version__
from eb_sdk.model import MessageItem
from eb_sdk.model import messages as msg
from eb_sdk.model.times import format_duration as iso_duration

from ..errors import BrokerError
from ..scheduling import format_duration
from .base import Cap, Decision, Policy, PolicyQuery
from .limits import RESOURCE_KEYS, parse_hours
from .shaping import allowed_pools

#: The protocol version sent as ``version``.
PROTOCOL_VERSION = 1


class PolicyServiceError(BrokerError):
    """The policy service could not be asked, or its answer cannot be read.

    The policy turns it into a refusal or a note (``RemotePolicy.on_error``); should one
    escape, it is the service's unavailability (HTTP 503)."""

    kind = msg.POLICY
    status = 503


def parse_answer(data: Any) -> dict[str, Any]:
    """Check a policy service's answer; :class:`PolicyServiceError` says what is wrong."""
    if not isinstance(data, dict):
        raise PolicyServiceError("the answer is not a JSON object")
    if not isinstance(data.get("allow"), bool):
        raise PolicyServiceError("the answer has no boolean 'allow'")
    messages = data.get("messages", [])
    if not isinstance(messages, list) or not all(isinstance(m, str | dict) for m in messages):
        raise PolicyServiceError("'messages' must be a list of strings")
    limits = data.get("limits", {})
    if not isinstance(limits, dict) or not all(
        k in RESOURCE_KEYS and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in limits.items()
    ):
        raise PolicyServiceError(
            f"'limits' must map {', '.join(RESOURCE_KEYS)} to non-negative integers"
        )
    for key in ("accelerators", "pools"):
        value = data.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise PolicyServiceError(f"'{key}' must be a list of strings")
    if data.get("max_duration") is not None:
        try:
            parse_hours(data["max_duration"], "max_duration")
        except ValueError as exc:
            raise PolicyServiceError(str(exc)) from None
    return data


class RemotePolicy(Policy):
    """Consults an HTTP policy service for every request (see the module docstring)."""

    name = "remote"

    url = Unicode("", config=True, help="The policy service's URL (POSTed to for each request).")
    token = Unicode("", config=True, help="Bearer token sent to the policy service (empty: none).")
    token_env = Unicode(
        "", config=True, help="Read the bearer token from this environment variable instead."
    )
    label = Unicode(
        "global",
        config=True,
        help="How messages name the service's decisions ('policy global: ...').",
    )
    timeout = Float(2.0, config=True, help="Seconds to wait for the policy service.")
    on_error = Unicode(
        "deny",
        config=True,
        help="When the service cannot be asked or answers nonsense: 'deny' (answer NO, the "
        "safe default) or 'allow' (local rules only, with a warning on the offer set).",
    )
    cache_seconds = Float(
        0.0,
        config=True,
        help="Reuse an answer for the same user, groups and request for this long (0: ask "
        "every time).",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = httpx.AsyncClient(
                timeout=self.timeout,
                headers={"User-Agent": f"eb-broker/{__version__}"},
            )
        return client

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    def _headers(self) -> dict[str, str]:
        token = self.token or (os.environ.get(self.token_env, "") if self.token_env else "")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def payload(self, query: PolicyQuery) -> dict[str, Any]:
        """The JSON body sent to the service."""
        return {
            "version": PROTOCOL_VERSION,
            "broker": query.broker,
            "user": query.identity.user,
            "groups": list(query.identity.groups),
            "request": query.request.dump(),
            "duration": iso_duration(query.duration),
            "accelerator_pools": list(query.accelerator_pools),
            "pools": list(query.allocation_pools),
        }

    async def ask(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``body`` and return the checked answer (cached if configured)."""
        if not self.url:
            raise PolicyServiceError("RemotePolicy.url is not configured")
        key = json.dumps(body, sort_keys=True) if self.cache_seconds > 0 else ""
        hit = self._cache.get(key) if key else None
        if hit and hit[0] > time.monotonic():
            return hit[1]
        try:
            response = await self._client().post(self.url, json=body, headers=self._headers())
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise PolicyServiceError(f"cannot reach {self.url}: {reason}") from None
        if response.status_code != 200:
            raise PolicyServiceError(f"{self.url} answered HTTP {response.status_code}")
        try:
            data = parse_answer(response.json())
        except ValueError:
            raise PolicyServiceError(f"{self.url} did not answer JSON") from None
        if key:
            self._cache[key] = (time.monotonic() + self.cache_seconds, data)
        return data

    def _message(self, item: Any, level: str) -> MessageItem:
        text = item.get("message", "") if isinstance(item, dict) else str(item)
        full = f"policy {self.label}: {text}"
        if level == "ERROR":
            return msg.error(msg.POLICY, full, policy=self.label)
        return msg.info(msg.POLICY, full, policy=self.label)

    async def decide(self, query: PolicyQuery) -> Decision:
        decision = Decision()
        try:
            answer = await self.ask(self.payload(query))
        except PolicyServiceError as exc:
            self.log.warning("policy service: %s", exc)
            if self.on_error == "allow":
                decision.notes.append(
                    msg.warn(
                        msg.POLICY,
                        f"policy {self.label}: not consulted ({exc}); local rules only",
                        policy=self.label,
                    )
                )
            else:
                decision.refusals.append(
                    msg.error(
                        msg.POLICY,
                        f"policy {self.label}: cannot decide ({exc}); try again later",
                        policy=self.label,
                    )
                )
            return decision
        level = "INFO" if answer["allow"] else "ERROR"
        texts = [self._message(m, level) for m in answer.get("messages", [])]
        if answer["allow"]:
            decision.notes += texts
        else:
            decision.refusals += texts or [self._message("not allowed", "ERROR")]
        for key, amount in answer.get("limits", {}).items():
            decision.cap(key, Cap(amount, self.label, "the global limit"))
        if answer.get("max_duration") is not None:
            longest = parse_hours(answer["max_duration"], "max_duration")
            if query.duration > longest:
                decision.refusals.append(
                    self._message(
                        f"sessions may last at most {format_duration(longest)}; this one "
                        f"asks for {format_duration(query.duration)}",
                        "ERROR",
                    )
                )
        if answer.get("accelerators") is not None:
            allowed = allowed_pools(answer["accelerators"], query.accelerator_pools)
            decision.restrict("accelerators", allowed, self.label)
        if answer.get("pools") is not None:
            decision.restrict("pools", answer["pools"], self.label)
        return decision

    def summary(self) -> str:
        return f"asks {self.url or '(no URL)'} ({self.on_error} if it cannot be asked)"


__all__ = ["PROTOCOL_VERSION", "PolicyServiceError", "RemotePolicy", "parse_answer"]
