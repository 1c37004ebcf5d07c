"""``limits``: per-user concurrency, session length and session size per group."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from traitlets import Dict, Int, TraitError, validate

from eb_sdk.model import MessageItem
from eb_sdk.model.times import parse_duration

from ..scheduling import format_duration
from .base import (
    AcceptQuery,
    Cap,
    Decision,
    Policy,
    PolicyQuery,
    describe_groups,
    for_groups_or_default,
)

#: Keys of ``max_resources`` entries.
RESOURCE_KEYS = ("cores", "memory_gib", "accelerators")


def parse_hours(value: Any, what: str) -> timedelta:
    """A duration from config: an ISO-8601 duration (``PT4H``) or a number of hours."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"{what}: the duration must be positive, got {value!r}")
        return timedelta(hours=value)
    try:
        parsed = parse_duration(str(value))
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if parsed <= timedelta(0):
        raise ValueError(f"{what}: the duration must be positive, got {value!r}")
    return parsed


class LimitsPolicy(Policy):
    """Per-user concurrency, the longest session and the largest session, per group.

    A user in several groups gets the most generous of their groups' limits; ``"*"`` is the
    default for users in none of the listed groups.
    """

    name = "limits"

    max_sessions_per_user = Int(
        0,
        config=True,
        help="Most accepted, unfinished sessions (ACCEPTED to RELEASING) one user may have at "
        "once; checked when asking (no offers beyond it) and when accepting. 0: no limit.",
    )
    max_duration = Dict(
        {},
        config=True,
        help="Longest session per group, e.g. {'*': 'PT24H', 'students': 'PT2H'} (ISO-8601 "
        "durations or hours as numbers). A user gets the longest of their groups'; '*' is the "
        "default for users in none of the listed groups (without it, no limit for them).",
    )
    max_resources = Dict(
        {},
        config=True,
        help="Largest session per group, e.g. {'students': {'cores': 4, 'memory_gib': 16, "
        "'accelerators': 1}}. Requests asking for more are capped to it (with a message), or "
        "refused when even their minimum is above it. Per resource, the most generous of the "
        "user's groups applies; '*' is the default for users in none of the listed groups.",
    )

    @validate("max_duration")
    def _check_duration(self, proposal: Any) -> dict[str, Any]:
        value = dict(proposal["value"])
        try:
            for group, item in value.items():
                parse_hours(item, f"LimitsPolicy.max_duration[{group!r}]")
        except ValueError as exc:
            raise TraitError(str(exc)) from None
        return value

    @validate("max_resources")
    def _check_resources(self, proposal: Any) -> dict[str, Any]:
        value = dict(proposal["value"])
        for group, item in value.items():
            if not isinstance(item, dict):
                raise TraitError(f"LimitsPolicy.max_resources[{group!r}] must be a mapping")
            unknown = set(item) - set(RESOURCE_KEYS)
            if unknown:
                raise TraitError(
                    f"LimitsPolicy.max_resources[{group!r}]: unknown keys {sorted(unknown)}; "
                    f"use {', '.join(RESOURCE_KEYS)}"
                )
            for key, amount in item.items():
                if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                    raise TraitError(
                        f"LimitsPolicy.max_resources[{group!r}][{key!r}] must be an int >= 0"
                    )
        return value

    def _too_many(self, active: int) -> list[MessageItem]:
        limit = self.max_sessions_per_user
        if not limit or active < limit:
            return []
        return [
            self.refuse(
                f"you have {active} active session{'s' if active != 1 else ''} and at most "
                f"{limit} per user are allowed: cancel one or wait until one ends",
                active=active,
                limit=limit,
            )
        ]

    async def decide(self, query: PolicyQuery) -> Decision:
        identity = query.identity
        decision = Decision()
        if self.max_sessions_per_user:
            decision.refusals += self._too_many(query.active_sessions(identity.user))
        durations = [
            (group, parse_hours(value, "max_duration"))
            for group, value in for_groups_or_default(self.max_duration, identity.groups)
        ]
        if durations:
            longest = max(d for _, d in durations)
            if query.duration > longest:
                groups = [g for g, d in durations if d == longest]
                decision.refusals.append(
                    self.refuse(
                        f"sessions may last at most {format_duration(longest)} for "
                        f"{describe_groups(groups) if groups != ['*'] else 'everyone'}; "
                        f"this one asks for {format_duration(query.duration)}",
                        requested=query.duration,
                        limit=longest,
                    )
                )
        entries = for_groups_or_default(self.max_resources, identity.groups)
        for key in RESOURCE_KEYS:
            amounts = [(group, item[key]) for group, item in entries if key in item]
            if not amounts:
                continue
            most = max(a for _, a in amounts)
            groups = [g for g, a in amounts if a == most]
            who = "everyone" if groups == ["*"] else describe_groups(groups)
            decision.cap(key, Cap(most, self.name, f"the most for {who}"))
        return decision

    def check_accept(self, query: AcceptQuery) -> list[MessageItem]:
        return self._too_many(query.active_sessions)

    def summary(self) -> str:
        parts = []
        if self.max_sessions_per_user:
            parts.append(f"at most {self.max_sessions_per_user} active sessions per user")
        if self.max_duration:
            parts.append(
                "longest session "
                + ", ".join(
                    f"{g}: {format_duration(parse_hours(v, 'max_duration'))}"
                    for g, v in self.max_duration.items()
                )
            )
        if self.max_resources:
            parts.append(
                "largest session "
                + ", ".join(
                    f"{g}: " + " ".join(f"{k}={v}" for k, v in item.items())
                    for g, item in self.max_resources.items()
                )
            )
        return "; ".join(parts)
