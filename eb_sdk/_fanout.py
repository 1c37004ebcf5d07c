"""Ask many brokers at once, with one deadline; a broker that fails becomes a warning.

"When and where can I run this?" is a question to every broker, and one broker being down or
slow must not hide the others' answers. So each broker's call runs concurrently, the whole
fan-out stops at the deadline (slow brokers are cancelled), and every failure is kept as a
:class:`BrokerWarning` next to the results instead of being raised. Callers decide what
"everyone failed" means (usually: raise the summarised error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ._client import BrokerClient, client_for
from ._config import Broker
from ._errors import BrokerUnavailable, EBError, Timeout, summarize

__all__ = ["BrokerWarning", "Fanout", "fanout"]

T = TypeVar("T")


@dataclass(frozen=True)
class BrokerWarning:
    """One broker's failure during a fan-out: which broker, and the typed error."""

    broker: str
    error: EBError

    def __str__(self) -> str:
        text = str(self.error)
        return text if text.startswith(f"{self.broker}: ") else f"{self.broker}: {text}"


@dataclass
class Fanout(Generic[T]):
    """Results in the brokers' order, and the failures as warnings."""

    results: list[tuple[Broker, T]] = field(default_factory=list)
    warnings: list[BrokerWarning] = field(default_factory=list)

    def raise_if_all_failed(self) -> None:
        """Raise the (summarised) error when no broker answered at all."""
        if not self.results and self.warnings:
            raise summarize([w.error for w in self.warnings])


async def fanout(
    brokers: Sequence[Broker],
    call: Callable[[BrokerClient], Awaitable[T]],
    deadline: float | None,
    *,
    clients: Callable[[Broker], BrokerClient] = client_for,
) -> Fanout[T]:
    """Run ``call`` against every broker concurrently; stop waiting after ``deadline`` s.

    ``clients`` gives the client for a broker (default: the loop's shared ones; an aggregator
    passes its own, whose settings suit a service: no retries within a deadline).
    """
    tasks = [asyncio.ensure_future(call(clients(b))) for b in brokers]
    if tasks:
        try:
            _, pending = await asyncio.wait(tasks, timeout=deadline)
        finally:  # also when we are cancelled ourselves: leave nothing running
            pending = {t for t in tasks if not t.done()}
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
    out: Fanout[T] = Fanout()
    for broker, task in zip(brokers, tasks, strict=True):
        if task.cancelled():
            error: EBError = Timeout(f"no answer within {deadline:g} s", broker=broker.name)
            out.warnings.append(BrokerWarning(broker.name, error))
            continue
        exc = task.exception()
        if exc is None:
            out.results.append((broker, task.result()))
        elif isinstance(exc, EBError):
            if exc.broker is None:
                exc.broker = broker.name
            out.warnings.append(BrokerWarning(broker.name, exc))
        elif isinstance(exc, Exception):
            wrapped = BrokerUnavailable(f"{type(exc).__name__}: {exc}", broker=broker.name)
            out.warnings.append(BrokerWarning(broker.name, wrapped))
        else:  # KeyboardInterrupt and friends are not a broker's failure
            raise exc
    return out
