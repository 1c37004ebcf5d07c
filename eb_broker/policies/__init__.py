"""Policy plugins: local rules about who may run what (entry point group ``eb_broker.policies``).

A policy looks at the caller and the request before any offer is computed and returns the
reasons to say NO (empty: no objection). Policies are chained; every objection is reported.
Richer policies (group allocations over time, global + local rules) build on this interface.
"""

from __future__ import annotations

from collections.abc import Sequence

from traitlets.config import LoggingConfigurable

from eb_sdk.model import ExecutionRequest, MessageItem

from ..auth import Identity


class Policy(LoggingConfigurable):
    """One rule. Subclasses override :meth:`check`."""

    #: Name shown in ``/capabilities``.
    name = "policy"

    def check(self, identity: Identity, request: ExecutionRequest) -> list[MessageItem]:
        """Reasons to refuse (``urn:policy`` MessageItems); empty to allow."""
        return []


class PolicyChain:
    """Applies every policy in order and collects all objections."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = list(policies)

    @property
    def names(self) -> list[str]:
        return [policy.name for policy in self.policies]

    def check(self, identity: Identity, request: ExecutionRequest) -> list[MessageItem]:
        problems: list[MessageItem] = []
        for policy in self.policies:
            problems.extend(policy.check(identity, request))
        return problems
