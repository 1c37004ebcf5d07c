"""The configuration of an aggregator (``eb-broker --platform aggregate``, ``eb-aggregator``).

An aggregator runs no sessions itself: it is not a platform. :class:`Aggregator` holds its
settings (``c.Aggregator.brokers = [...]``); ``c.AggregatePlatform.*``, the name of earlier
releases, still works (:class:`AggregatePlatform`). See docs/aggregator.md.
"""

from __future__ import annotations

import os
from typing import Any

from traitlets import Dict, Float, Int, List, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from eb_sdk._config import Broker
from eb_sdk._errors import ConfigError

from ..configuration import config_entries
from .downstream import Patience

#: The ``EBBroker.platform`` that makes ``eb-broker`` an aggregator.
AGGREGATE = "aggregate"

#: How a downstream broker learns who the user is.
IDENTITY_MODES = ("pass-through", "service")
_BROKER_KEYS = {"name", "url", "identity", "token", "token_env"}


class Aggregator(LoggingConfigurable):
    """Settings of an aggregator: which brokers it asks, and how patiently."""

    brokers = List(
        Dict(),
        [],
        config=True,
        help="The brokers (or aggregators) below this one: [{'name': 'leaf-a', 'url': "
        "'https://...', 'identity': 'pass-through' | 'service', 'token': '...' or "
        "'token_env': 'VAR'}]. 'pass-through' forwards the user's own Authorization; "
        "'service' sends this aggregator's token plus X-EB-User/X-EB-Groups (the broker must "
        "trust the token: AggregatorAuthenticator). A pass-through broker with a token falls "
        "back to 'service' for users whose own token this aggregator does not hold.",
    )
    deadline = Float(
        5.0,
        config=True,
        help="Seconds any one downstream call may take; a fan-out answers with what arrived "
        "by then (a missing broker becomes a WARN message).",
    )
    failure_threshold = Int(
        3, config=True, help="Failures in a row after which a broker is not asked (circuit open)."
    )
    cooldown = Float(
        30.0, config=True, help="Seconds a broker's circuit stays open before one retry."
    )
    capabilities_ttl = Float(
        60.0,
        config=True,
        help="Seconds a downstream broker's /capabilities (routing hints) are reused; they are "
        "also refreshed in the background at this interval.",
    )
    user_header = Unicode("X-EB-User", config=True, help="Header naming the user ('service').")
    groups_header = Unicode(
        "X-EB-Groups", config=True, help="Header listing the user's groups ('service')."
    )

    @validate("brokers")
    def _check_brokers(self, proposal: Any) -> list[dict[str, Any]]:
        value = list(proposal["value"])
        try:
            downstream_brokers(value, os.environ)
        except (ConfigError, ValueError) as exc:
            raise TraitError(f"{type(self).__name__}.brokers: {exc}") from None
        return value

    def downstream(self) -> list[tuple[Broker, str]]:
        """The configured brokers with their identity modes."""
        return downstream_brokers(self.brokers, os.environ)

    def patience(self) -> Patience:
        """Deadlines, circuits and identity headers for the calls to the brokers below."""
        return Patience(
            deadline=self.deadline,
            failure_threshold=self.failure_threshold,
            cooldown=self.cooldown,
            capabilities_ttl=self.capabilities_ttl,
            user_header=self.user_header,
            groups_header=self.groups_header,
        )


class AggregatePlatform(Aggregator):
    """The earlier name of :class:`Aggregator`'s settings: ``c.AggregatePlatform.brokers``
    and friends still configure an aggregator (and win over ``c.Aggregator.*``). Not a
    platform: an aggregator runs no sessions."""


def downstream_brokers(
    items: list[dict[str, Any]], environ: dict[str, str] | Any
) -> list[tuple[Broker, str]]:
    """``(Broker, identity mode)`` for each configured entry (clear errors)."""
    out: list[tuple[Broker, str]] = []
    names: set[str] = set()
    for number, item in config_entries(items, _BROKER_KEYS, "entry"):
        if not item.get("url"):
            raise ValueError(f"entry {number}: every broker needs a 'url'")
        mode = str(item.get("identity") or "pass-through")
        if mode not in IDENTITY_MODES:
            raise ValueError(f"entry {number}: identity must be one of {IDENTITY_MODES}")
        token = item.get("token")
        if token is None and item.get("token_env"):
            token = environ.get(str(item["token_env"]))
            if token is None:
                raise ValueError(f"entry {number}: ${item['token_env']} is not set")
        broker = Broker(url=str(item["url"]), name=str(item.get("name") or ""), token=token)
        if mode == "service" and not broker.token:
            raise ValueError(f"broker {broker.name}: 'service' identity needs a token")
        if broker.name in names:
            raise ValueError(f"two brokers are named {broker.name!r}")
        names.add(broker.name)
        out.append((broker, mode))
    return out
