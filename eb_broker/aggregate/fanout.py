"""An aggregator's fan-out: one request asked of every suitable broker at once.

:func:`ask` sends the request to the brokers whose circuit lets us and whose capabilities do not
rule them out, and collects what arrives within the budget; brokers not asked or not heard from
become WARN/INFO messages, never errors. :func:`reject_offers` takes back offers the
aggregator did not pass on. Ranking and merging are pure rules in :mod:`.routing`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from eb_sdk._client import Answer, BrokerClient, on_behalf_of
from eb_sdk._errors import EBError, Timeout
from eb_sdk._fanout import fanout
from eb_sdk.model import ExecutionRequest, MessageItem, Phase
from eb_sdk.model import messages as msg

from ..auth import Identity
from ..policies import Decision
from . import routing
from .downstream import Downstream, Downstreams, is_fault

log = logging.getLogger("eb_broker.aggregate")


@dataclass
class Asked:
    """What a fan-out brought back."""

    #: The brokers that answered, with their answers (in the order they were asked).
    answers: list[tuple[Downstream, Answer]] = field(default_factory=list)
    #: Why the others are missing (WARN: not asked or did not answer; INFO: not suitable).
    notes: list[MessageItem] = field(default_factory=list)
    #: How long each broker that answered took (seconds).
    took: dict[str, float] = field(default_factory=dict)


def _not_asked(
    brokers: Downstreams, identity: Identity, now: float
) -> tuple[list[Downstream], list[MessageItem]]:
    """The brokers that may be asked now, and a WARN for each one that may not."""
    asked: list[Downstream] = []
    notes: list[MessageItem] = []
    for d in brokers.all:
        if brokers.headers(identity, d) is None:
            notes.append(
                msg.warn(
                    msg.UNAUTHORIZED,
                    f"broker {d.name} not asked: this aggregator cannot pass your identity "
                    "on to it (no token of yours, no service token)",
                    broker=d.name,
                )
            )
        elif not d.breaker.allow(now):
            notes.append(
                msg.warn(
                    msg.PLATFORM_UNAVAILABLE,
                    f"broker {d.name} not asked: it failed {d.breaker.failures} times in a "
                    f"row (last: {d.breaker.last_error or 'unknown'}); next try in "
                    f"{d.breaker.retry_in(now):.0f} s",
                    broker=d.name,
                )
            )
        else:
            asked.append(d)
    return asked, notes


async def ask(
    brokers: Downstreams,
    identity: Identity,
    request: ExecutionRequest,
    decision: Decision,
    started: float,
    default_duration: timedelta,
) -> Asked:
    """Every suitable broker's answer; WARN/INFO messages for the ones not heard from; how
    long each broker that answered took.

    The slowest brokers (by their recent answer times) are asked first: sending 50 requests
    takes a while, and the last one sent should not be the one everybody waits for. The
    fan-out ends ``budget`` seconds after ``started``.
    """
    asked, notes = _not_asked(brokers, identity, brokers.monotonic())
    asked.sort(key=lambda d: -(d.latency if d.latency is not None else float("inf")))
    by_name = {d.name: d for d in asked}
    out = Asked(notes=notes)

    async def call(client: BrokerClient) -> Answer | str:
        d = by_name[client.name]
        sent = brokers.monotonic()
        with on_behalf_of(brokers.headers(identity, d) or {}):
            reason = routing.unsuitable(
                await brokers.capabilities_of(d, client),
                request,
                default_duration=default_duration,
                allowed_accelerators=decision.accelerators,
            )
            if reason:
                return reason
            answer = await client.request(request)
        out.took[d.name] = brokers.monotonic() - sent
        d.observe(out.took[d.name])
        return answer

    wait = max(0.01, brokers.budget - (brokers.monotonic() - started))
    result = await fanout([d.broker for d in asked], call, wait, clients=brokers.client)
    for broker, value in result.results:
        d = by_name[broker.name]
        brokers.record(d, None)
        if isinstance(value, str):
            out.notes.append(
                msg.info(msg.NOT_SUPPORTED, f"broker {d.name} not asked: {value}", broker=d.name)
            )
        else:
            out.answers.append((d, value))
    deadline = brokers.patience.deadline
    for warning in result.warnings:
        d = by_name[warning.broker]
        brokers.record(d, warning.error)
        why = warning.error.message
        if isinstance(warning.error, Timeout):
            d.observe(deadline)
            why = f"no answer within the deadline ({deadline:g} s)"
        if is_fault(warning.error):
            text, kind = f"broker {d.name} did not answer: {why}", msg.PLATFORM_UNAVAILABLE
        else:  # it answered, with an error (e.g. 401: it does not accept who you are)
            text, kind = f"broker {d.name} refused the request: {why}", msg.CONFLICT
        out.notes.append(msg.warn(kind, text, broker=d.name))
    return out


def nothing_offered(brokers: Downstreams, answered: int) -> MessageItem:
    """The reason of a NO: no brokers, none heard from, or none that can run it."""
    if not brokers.all:
        return msg.error(msg.NOT_SUPPORTED, "this aggregator has no brokers configured")
    if not answered:
        return msg.error(
            msg.PLATFORM_UNAVAILABLE,
            "no broker could be asked or answered in time (see the warnings)",
        )
    return msg.error(
        msg.NO_CAPACITY,
        f"none of the {answered} broker{'s' if answered != 1 else ''} that answered can "
        "run this (their reasons follow)",
    )


async def reject_offers(
    brokers: Downstreams, identity: Identity, refs: list[tuple[str, str]]
) -> None:
    """Reject offers on their brokers (best effort: they expire anyway), a few at a time so
    that a burst of them does not slow down the next request."""
    gate = asyncio.Semaphore(8)

    async def one(broker: str, ref: str) -> None:
        d = brokers.by_name.get(broker)
        if d is None:
            return
        async with gate:
            try:
                await brokers.call(d, identity, lambda c: c.set_phase(ref, Phase.REJECTED))
            except EBError as exc:
                log.info("could not reject %s on %s: %s", ref, broker, exc)

    await asyncio.gather(*(one(b, r) for b, r in refs))


__all__ = ["Asked", "ask", "nothing_offered", "reject_offers"]
