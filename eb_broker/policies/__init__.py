"""Policy plugins: local and global rules about who may run what (group ``eb_broker.policies``).

Policies are configured by name, in order (``c.EBBroker.policies = ["group-allocation",
"limits"]``), and chained: every policy is asked, every refusal is reported, and the most
restrictive caps and pool restrictions win (see :mod:`eb_broker.policies.base`). Shipped:

- ``group-allocation`` — pools of capacity per group, enforced by the scheduling;
- ``limits`` — per-user concurrency, longest and largest session per group;
- ``executables`` — allow/deny lists of kinds, registries, digests and locations;
- ``accelerators`` — which groups may use which accelerator pools;
- ``remote`` — an HTTP policy service (the "global" policy).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eb_sdk.model import ExecutionRequest, MessageItem
from eb_sdk.model import messages as msg

from ..auth import Identity
from ..plugins import available, load_plugin
from ..scheduling.allocations import Allocations
from .base import AcceptQuery, Cap, Decision, Policy, PolicyDenied, PolicyQuery
from .shaping import check_accelerators, shape_request

log = logging.getLogger("eb_broker.policies")

#: Entry point group of policy plugins.
ENTRY_POINT_GROUP = "eb_broker.policies"

# Found in a source checkout without entry point metadata, too.
_BUILTIN = {
    "group-allocation": "eb_broker.policies.allocation:GroupAllocationPolicy",
    "limits": "eb_broker.policies.limits:LimitsPolicy",
    "executables": "eb_broker.policies.executables:ExecutablePolicy",
    "accelerators": "eb_broker.policies.accelerators:AcceleratorPolicy",
    "remote": "eb_broker.policies.remote:RemotePolicy",
}

__all__ = [
    "ENTRY_POINT_GROUP",
    "AcceptQuery",
    "Applied",
    "Cap",
    "Decision",
    "Policy",
    "PolicyChain",
    "PolicyDenied",
    "PolicyQuery",
    "available_policies",
    "builtin_policy_classes",
    "load_policy",
    "shape_request",
]


def available_policies() -> dict[str, str]:
    """Policy names and the ``module:Class`` they load, built-in and installed."""
    return available(ENTRY_POINT_GROUP, _BUILTIN)


def load_policy(name_or_class: str) -> type[Policy]:
    """The policy class for an entry point name (``limits``) or a dotted path."""
    return load_plugin(
        name_or_class, group=ENTRY_POINT_GROUP, builtin=_BUILTIN, base=Policy, what="policy"
    )


def builtin_policy_classes() -> list[type[Policy]]:
    """The shipped policy classes (for ``--help-all`` and the generated config file)."""
    return [load_policy(name) for name in _BUILTIN]


@dataclass
class Applied:
    """A request after the policies: the (possibly capped) request, the combined decision,
    and the messages for the offer set."""

    request: ExecutionRequest
    decision: Decision
    notes: list[MessageItem]
    refusals: list[MessageItem]


class PolicyChain:
    """Asks every policy and combines the answers (the most restrictive wins)."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = list(policies)
        found = [(p.name, a) for p in self.policies if (a := p.allocations()) is not None]
        if len(found) > 1:
            raise ValueError(
                "only one policy may divide the capacity into pools; configured: "
                + ", ".join(name for name, _ in found)
            )
        self.allocations: Allocations | None = found[0][1] if found else None

    @property
    def names(self) -> list[str]:
        return [policy.name for policy in self.policies]

    def summaries(self) -> list[dict[str, str]]:
        """``[{name, summary}]`` for ``/capabilities``."""
        return [{"name": p.name, "summary": p.summary()} for p in self.policies]

    def check(self, identity: Identity, request: ExecutionRequest) -> list[MessageItem]:
        """Every policy's simple :meth:`Policy.check` (no caps, no remote calls)."""
        problems: list[MessageItem] = []
        for policy in self.policies:
            problems.extend(policy.check(identity, request))
        return problems

    async def _decide(self, policy: Policy, query: PolicyQuery) -> Decision:
        try:
            return await policy.decide(query)
        except Exception:
            log.exception("policy %s failed", policy.name)
            return Decision(
                refusals=[policy.refuse("could not decide (an internal error); try again later")]
            )

    async def evaluate(self, query: PolicyQuery) -> Decision:
        """Every policy's decision, combined; remote policies are asked concurrently."""
        merged = Decision()
        if not self.policies:
            return merged
        for decision in await asyncio.gather(*(self._decide(p, query) for p in self.policies)):
            merged.merge(decision)
        merged.refusals += check_accelerators(query.request, merged, query.accelerator_pools)
        if self.allocations is not None:
            self._explain_pools(merged, self.allocations)
        return merged

    @staticmethod
    def _explain_pools(decision: Decision, allocations: Allocations) -> None:
        pools = allocations.known(decision.pools or ())
        sources = decision.sources.get("pools", {})
        why = "; ".join(
            f"{policy}: {', '.join(sorted(values)) or 'none'}" for policy, values in sources.items()
        )
        decision.pools = pools
        if pools:
            decision.notes.append(
                msg.info(
                    msg.POLICY,
                    f"booking from {allocations.label(pools)} ({why}; pools: "
                    f"{allocations.describe()})",
                    pools=",".join(sorted(pools)),
                )
            )
        elif not decision.refusals:
            decision.refusals.append(
                msg.error(msg.POLICY, f"no allocation pool is left for you here ({why})")
            )

    async def apply(
        self, query: PolicyQuery, *, default_cores: int = 1, default_memory_gib: int = 1
    ) -> Applied:
        """:meth:`evaluate`, then the request within the decision's caps (brokers and
        aggregators both start a request with this)."""
        decision = await self.evaluate(query)
        notes, refusals = list(decision.notes), list(decision.refusals)
        request = query.request
        if not refusals:
            request, capped, refused = shape_request(
                request,
                decision,
                default_cores=default_cores,
                default_memory_gib=default_memory_gib,
            )
            notes += capped
            refusals += refused
        return Applied(request, decision, notes, refusals)

    def check_accept(self, query: AcceptQuery) -> list[MessageItem]:
        problems: list[MessageItem] = []
        for policy in self.policies:
            problems.extend(policy.check_accept(query))
        return problems

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.policies), return_exceptions=True)


def make_chain(names: Sequence[str], **kwargs: Any) -> PolicyChain:
    """Instantiate the named policies (``kwargs`` go to each, e.g. ``parent=app``)."""
    return PolicyChain([load_policy(name)(**kwargs) for name in names])
