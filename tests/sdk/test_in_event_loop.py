"""The sync facade inside a running event loop (as in a notebook cell), and the async API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import eb_sdk as eb
from eb_sdk import aio
from eb_sdk.model import Phase
from tests.sdk.reference_quirks import QuirksServer


async def test_sync_api_inside_a_running_loop(
    alpha: eb.Broker, beta: eb.Broker, notebook: Path
) -> None:
    asyncio.get_running_loop()  # we are inside a loop, like ipykernel's
    offers = eb.request(eb.Notebook(notebook), start="in 2 hours", brokers=[alpha, beta])
    assert set(offers.brokers) == {"alpha", "beta"}
    session = offers.earliest().accept()  # sync calls from inside the loop: no deadlock
    assert session.phase in (Phase.ACCEPTED, Phase.WAITING)
    assert session.refresh().cancel().phase == Phase.CANCELLED
    assert asyncio.get_running_loop().is_running()  # and the loop still works
    await asyncio.sleep(0)


async def test_async_api(alpha: eb.Broker, beta: eb.Broker, notebook: Path) -> None:
    offers = await aio.request(
        eb.Notebook(notebook), start="in 2 hours", duration="1h", brokers=[alpha, beta]
    )
    assert isinstance(offers, aio.Offers) and set(offers.brokers) == {"alpha", "beta"}
    session = await offers.on("beta").earliest().accept()
    assert isinstance(session, aio.Session) and session.broker_name == "beta"
    assert {o.phase for o in offers if o is not offers.on("beta").earliest()} <= {
        Phase.REJECTED,
        Phase.OFFERED,
    }
    found = await aio.session(session.uuid, brokers=[alpha, beta])
    assert found.broker_name == "beta" and found.uuid == session.uuid
    with pytest.raises(eb.Timeout):
        await session.wait(["RUNNING"], timeout=0.3)
    await session.cancel()
    listed = await aio.sessions("CANCELLED", brokers=[alpha, beta])
    assert session.uuid in {s.uuid for s in listed}
    health = await aio.brokers([alpha, beta])
    assert all(b.ok for b in health)
    await aio.aclose()


async def test_many_sync_calls_from_the_loop_and_threads(reference: QuirksServer) -> None:
    broker = eb.Broker(reference.url.replace("://", "://alice:wonderland@"), name="ref")
    results = await asyncio.gather(
        *(asyncio.to_thread(eb.request, "/a.ipynb", brokers=[broker]) for _ in range(4))
    )
    assert [len(r) for r in results] == [2, 2, 2, 2]
    assert len(eb.request("/a.ipynb", brokers=[broker])) == 2
