"""A session accepted for "as soon as possible" launches at once, not at the next whole second
its start was rounded up to (``Settings.granularity``) — unless something still holds its
resources until then, or it was booked for a later time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from eb_broker.auth import Identity
from eb_broker.core import BrokerCore
from eb_broker.ledger import SessionRow
from eb_broker.scheduling import Resources
from eb_sdk.model import ExecutionRequest
from tests.broker.helpers import notebook_request
from tests.broker.test_core_properties import _core

ALICE = Identity("alice")
#: Half a second past a whole second: offers for "now" start at the next whole second.
T = datetime(2026, 11, 23, 8, 0, 0, 500000, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def _accepted(core: BrokerCore, start: str | None = None) -> SessionRow:
    body = notebook_request(2, 1, start=start)
    _, rows = asyncio.run(core.request_offers(ALICE, ExecutionRequest.model_validate(body), body))
    core.accept(ALICE, rows[0].uuid)
    row = core.ledger.get_session(rows[0].uuid)
    assert row is not None
    return row


def test_a_session_for_now_launches_before_its_rounded_start_and_its_booking_moves() -> None:
    core, now = _core(True)
    now[0] = T
    row = _accepted(core)
    prep = timedelta(seconds=row.preparation_s)
    assert row.start - prep == T.replace(microsecond=0) + SECOND
    assert core.may_launch_early(row, T)
    booked = core.timeline.get(row.uuid)
    assert booked is not None and (booked.start, booked.end) == (T, row.end)


def test_not_while_something_else_holds_the_cores_until_then() -> None:
    core, now = _core(True)
    now[0] = T
    busy_until = T + timedelta(milliseconds=300)  # every core, until 08:00:00.8
    core.timeline.add("other", T - SECOND, busy_until, Resources(cores=8, memory_gib=16))
    row = _accepted(core)
    assert row.start - timedelta(seconds=row.preparation_s) == T.replace(microsecond=0) + SECOND
    assert not core.may_launch_early(row, T)
    booked = core.timeline.get(row.uuid)
    assert booked is not None and booked.start == row.start  # left where it was
    assert core.may_launch_early(row, busy_until)  # once the other one is over


def test_not_a_session_booked_for_a_later_time() -> None:
    core, now = _core(True)
    now[0] = T
    later = T.replace(microsecond=0) + timedelta(minutes=10)
    row = _accepted(core, start=later.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert row.start == later
    due = later - timedelta(seconds=row.preparation_s)
    assert not core.may_launch_early(row, due - timedelta(milliseconds=500))
