"""The policy plugin interface: who may run what, with how much, from which share.

A policy looks at the caller and the request before any offer is computed and answers with a
:class:`Decision`: reasons to say NO, notes explaining what it changed, per-session caps
("at most 4 cores"), the accelerator pools the caller may use and the allocation pools the
caller's booking may draw on. Policies are chained (:class:`~eb_broker.policies.PolicyChain`):
every refusal is reported and the most restrictive answer wins.

The capacity side (group allocations) is a second hook, :meth:`Policy.allocations`: a policy
may divide the platform's capacity into pools; the broker then schedules every booking against
the pools its owner may use (see :mod:`eb_broker.scheduling.allocations`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from traitlets.config import LoggingConfigurable

from eb_sdk.model import ExecutionRequest, MessageItem
from eb_sdk.model import messages as msg

from ..auth import Identity
from ..errors import BrokerError
from ..scheduling.allocations import Allocations

#: Key of the everyone-entry in per-group settings (``{"*": ..., "students": ...}``).
EVERYONE = "*"


@dataclass(frozen=True)
class PolicyQuery:
    """What a policy may look at when a request arrives."""

    identity: Identity
    request: ExecutionRequest
    now: datetime
    #: The broker's name (for remote policy services that serve several brokers).
    broker: str = ""
    #: The session length asked for (the broker's default when the request gives none).
    duration: timedelta = timedelta(hours=1)
    #: The platform's accelerator pools (``gpu:A100``...).
    accelerator_pools: tuple[str, ...] = ()
    #: The allocation pools configured here (group-allocation), for remote policy services.
    allocation_pools: tuple[str, ...] = ()
    #: How many accepted, unfinished sessions a user has (the ledger's count).
    active_sessions: Callable[[str], int] = field(default=lambda user: 0)


@dataclass(frozen=True)
class AcceptQuery:
    """What a policy may look at when an offer is accepted."""

    identity: Identity
    #: Accepted, unfinished sessions of the user, not counting the one being accepted.
    active_sessions: int


@dataclass(frozen=True)
class Cap:
    """A per-session maximum and who set it (for the "capped to ... by ..." message)."""

    amount: int
    policy: str
    why: str = ""


@dataclass
class Decision:
    """One policy's (or the whole chain's) answer for one request.

    ``None`` in ``accelerators`` and ``pools`` means "no opinion"; an empty set means
    "none at all".
    """

    refusals: list[MessageItem] = field(default_factory=list)
    notes: list[MessageItem] = field(default_factory=list)
    #: Per-session maxima: ``cores``, ``memory_gib`` and ``accelerators`` (count per item).
    caps: dict[str, Cap] = field(default_factory=dict)
    accelerators: frozenset[str] | None = None
    pools: frozenset[str] | None = None
    #: Who limited ``accelerators``/``pools`` (policy name → its allowed set), for messages.
    sources: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return not self.refusals

    def restrict(self, what: str, allowed: Iterable[str], policy: str) -> None:
        """Narrow ``accelerators`` or ``pools`` to ``allowed`` (intersection with the rest)."""
        values = frozenset(allowed)
        current: frozenset[str] | None = getattr(self, what)
        setattr(self, what, values if current is None else current & values)
        self.sources.setdefault(what, {})[policy] = values

    def cap(self, dimension: str, cap: Cap) -> None:
        """Keep the smaller of the current cap and ``cap`` for ``dimension``."""
        current = self.caps.get(dimension)
        if current is None or cap.amount < current.amount:
            self.caps[dimension] = cap

    def merge(self, other: Decision) -> Decision:
        """Fold ``other`` into this decision: every reason, the most restrictive limits."""
        self.refusals += other.refusals
        self.notes += other.notes
        for dimension, cap in other.caps.items():
            self.cap(dimension, cap)
        for what in ("accelerators", "pools"):
            for policy, values in other.sources.get(what, {}).items():
                self.restrict(what, values, policy)
        return self


class PolicyDenied(BrokerError):
    """A policy refuses an update (e.g. accepting one session too many): HTTP 403."""

    kind = msg.POLICY
    status = 403

    def __init__(self, reasons: list[MessageItem]) -> None:
        super().__init__("; ".join(str(r) for r in reasons) or "refused by policy")
        self.reasons = reasons


class Policy(LoggingConfigurable):
    """One rule. Subclasses override :meth:`decide` (or the simpler :meth:`check`)."""

    #: Name shown in ``/capabilities`` and in every message the policy writes.
    name: ClassVar[str] = "policy"

    def check(self, identity: Identity, request: ExecutionRequest) -> list[MessageItem]:
        """Reasons to refuse (``urn:policy`` MessageItems); empty to allow."""
        return []

    async def decide(self, query: PolicyQuery) -> Decision:
        """The decision for one request (default: :meth:`check`'s refusals)."""
        return Decision(refusals=self.check(query.identity, query.request))

    def check_accept(self, query: AcceptQuery) -> list[MessageItem]:
        """Reasons to refuse accepting an offer (empty to allow)."""
        return []

    def allocations(self) -> Allocations | None:
        """How this policy divides the capacity into pools (None: it does not)."""
        return None

    def summary(self) -> str:
        """One line for ``/capabilities`` (``jeb:policies``): what this policy enforces."""
        return ""

    async def close(self) -> None:
        """Called when the broker stops."""

    # -- helpers for subclasses ---------------------------------------------------------------

    def refuse(self, text: str, **values: Any) -> MessageItem:
        """An ERROR ``urn:policy`` message naming this policy."""
        return msg.error(msg.POLICY, f"policy {self.name}: {text}", policy=self.name, **values)

    def note(self, text: str, **values: Any) -> MessageItem:
        """An INFO ``urn:policy`` message naming this policy."""
        return msg.info(msg.POLICY, f"policy {self.name}: {text}", policy=self.name, **values)


def for_groups(setting: Mapping[str, Any], groups: Iterable[str]) -> list[tuple[str, Any]]:
    """The ``(group, value)`` entries of a per-group setting that apply to these groups.

    ``"*"`` applies to everyone; entries come in the setting's order.
    """
    mine = set(groups) | {EVERYONE}
    return [(group, value) for group, value in setting.items() if group in mine]


def for_groups_or_default(
    setting: Mapping[str, Any], groups: Iterable[str]
) -> list[tuple[str, Any]]:
    """Like :func:`for_groups`, but ``"*"`` is only the default for users in none of the
    listed groups (so ``{"*": 8, "students": 2}`` gives students 2)."""
    mine = set(groups) - {EVERYONE}
    entries = [(group, value) for group, value in setting.items() if group in mine]
    if entries or EVERYONE not in setting:
        return entries
    return [(EVERYONE, setting[EVERYONE])]


def describe_groups(groups: Iterable[str]) -> str:
    """``"groups a, b"`` / ``"group a"`` / ``"no groups"`` for messages."""
    names = sorted(set(groups) - {EVERYONE})
    if not names:
        return "no groups"
    return ("group " if len(names) == 1 else "groups ") + ", ".join(names)
