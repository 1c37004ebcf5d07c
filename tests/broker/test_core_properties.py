"""Property: whatever sequence of requests, accepts, rejects, cancels and expiries happens,
the booked sessions never exceed the platform's capacity at any instant."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eb_broker.auth import Identity
from eb_broker.core import BrokerCore, Settings
from eb_broker.ledger import Ledger, LedgerError, make_engine, migrate, row_resources
from eb_broker.platforms.local import LocalPlatform
from eb_broker.scheduling import Resources, Timeline
from eb_broker.translate import Limits
from eb_sdk.model import ExecutionRequest, Phase
from tests.broker.helpers import notebook_request

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
USERS = [Identity("alice"), Identity("bob")]

actions = st.lists(
    st.one_of(
        st.tuples(
            st.just("request"),
            st.integers(0, 1),  # user
            st.integers(1, 5),  # cores
            st.integers(1, 9),  # memory
            st.integers(0, 20),  # start offset (hours)
            st.integers(0, 4),  # window width (hours)
            st.integers(1, 6),  # duration (hours)
            st.booleans(),  # accept the first offer at once
        ),
        st.tuples(st.just("accept-any"), st.integers(0, 1000)),
        st.tuples(st.just("cancel-any"), st.integers(0, 1000)),
        st.tuples(st.just("advance"), st.integers(1, 400)),  # seconds
    ),
    min_size=1,
    max_size=40,
)


def _core(hold: bool) -> tuple[BrokerCore, list[datetime]]:
    path = Path(tempfile.mkdtemp()) / "ledger.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    platform = LocalPlatform(cores=8, memory_gib=16)
    now = [T0]
    core = BrokerCore(
        ledger=Ledger(engine),
        platform=platform,
        limits=Limits(max_resources=Resources(cores=8, memory_gib=16)),
        settings=Settings(
            offer_expiry=timedelta(minutes=5),
            max_offers=3,
            step=timedelta(hours=1),
            hold_offers=hold,
        ),
        clock=lambda: now[0],
    )
    core.load()
    return core, now


def _booked_never_exceeds_capacity(core: BrokerCore) -> None:
    timeline = Timeline()
    for row in core.ledger.active_sessions():
        timeline.add(row.uuid, row.start, row.end, row_resources(row))
    for booking in list(timeline.items()):
        free = timeline.free_min(core.capacity, booking.start, booking.end)
        assert free.is_nonnegative(), (booking, free)


def _run(hold: bool, steps: list[tuple[object, ...]]) -> None:
    core, now = _core(hold)
    offers: list[tuple[Identity, str]] = []
    accepted: list[tuple[Identity, str]] = []
    for step in steps:
        kind = step[0]
        if kind == "request":
            _, user, cores, memory, offset, width, hours, accept_now = step
            identity = USERS[int(user)]  # type: ignore[call-overload]
            start = now[0] + timedelta(hours=int(offset))  # type: ignore[call-overload]
            body = notebook_request(
                int(cores),  # type: ignore[call-overload]
                int(memory),  # type: ignore[call-overload]
                start=f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')}/PT{int(width)}H",  # type: ignore[call-overload]
                duration=f"PT{int(hours)}H",  # type: ignore[call-overload]
            )
            _, rows = asyncio.run(
                core.request_offers(identity, ExecutionRequest.model_validate(body), body)
            )
            offers += [(identity, row.uuid) for row in rows]
            if accept_now and rows:
                core.accept(identity, rows[0].uuid)
                accepted.append((identity, rows[0].uuid))
        elif kind == "accept-any" and offers:
            identity, uuid = offers[int(step[1]) % len(offers)]  # type: ignore[call-overload]
            try:
                core.accept(identity, uuid)
                accepted.append((identity, uuid))
            except LedgerError:
                pass
        elif kind == "cancel-any" and accepted:
            identity, uuid = accepted[int(step[1]) % len(accepted)]  # type: ignore[call-overload]
            with contextlib.suppress(LedgerError):
                core.cancel(identity, uuid)
        elif kind == "advance":
            now[0] += timedelta(seconds=int(step[1]))  # type: ignore[call-overload]
            core.reap()
        _booked_never_exceeds_capacity(core)
    for row in core.ledger.list_sessions(phases=[Phase.EXPIRED.value]):
        assert row.uuid not in core.timeline


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=actions)
def test_bookings_never_exceed_capacity_with_holds(steps: list[tuple[object, ...]]) -> None:
    _run(True, steps)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=actions)
def test_bookings_never_exceed_capacity_without_holds(steps: list[tuple[object, ...]]) -> None:
    _run(False, steps)
