"""Workshop seats for a hub group; errors users understand."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

from eb_spawner.config import EBSettings
from eb_spawner.workshops import reserve_seats
from tests.conftest import BrokerFactory
from tests.spawner.conftest import HubFactory, eb_config, login, wait_ready, xsrf


def test_workshop_seat_at_login(broker_factory: BrokerFactory, hub_factory: HubFactory) -> None:
    broker = broker_factory("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8")
    hub = hub_factory(eb_config([broker], names=["alpha"]))
    hub.user_token("bob", groups=("students",))
    settings = EBSettings(
        eb_brokers=[{"name": "alpha", "url": broker.url, "token": broker.tokens["alice"]}],
        profiles=[{"slug": "small", "cores": 1, "memory": "1GiB", "duration": "1h"}],
    )
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)

    async def reserve() -> list[str]:
        seats = await reserve_seats(
            settings, "students", 2, start=start, duration="1h", profile="small"
        )
        return [s.session for s in seats]

    seats = asyncio.run(reserve())
    assert len(seats) == 2
    client = login(hub, "bob")
    page = client.get("/hub/spawn").text
    seat = re.search(r'name="offer" value="(seat\|[^"]+)"', page)
    assert seat and "Your workshop seat (students" in page, page[-3000:]
    response = client.post(
        "/hub/spawn",
        data={"profile": "small", "when": "now", "offer": seat.group(1), "_xsrf": xsrf(client)},
    )
    assert response.status_code == 200, response.text[-2000:]
    server = wait_ready(hub, "bob")
    assert server["user_options"]["booking"]["session"] in seats
    claimed = server["user_options"]["booking"]["session"]
    assert broker.client().get(f"/sessions/{claimed}").json()["phase"] in (
        "CANCELLED",
        "COMPLETED",
    )
    # the other seat is still held for the next student
    other = next(s for s in seats if s != claimed)
    assert broker.client().get(f"/sessions/{other}").json()["phase"] in (
        "WAITING",
        "PREPARING",
        "AVAILABLE",
        "RUNNING",
    )
    # alice is not a student: no seat for her
    assert "Your workshop seat" not in login(hub, "alice").get("/hub/spawn").text


def test_errors_users_understand(broker_factory: BrokerFactory, hub_factory: HubFactory) -> None:
    small = broker_factory("--LocalPlatform.cores=1", "--LocalPlatform.memory_gib=1")
    extra = (
        "c.EBSpawner.profiles.append({'slug': 'huge', 'display_name': 'Huge', 'cores': 64, "
        "'memory': '512GiB', 'duration': '1h'})\n"
    )
    hub = hub_factory(eb_config([small], names=["alpha"], extra=extra))
    client = login(hub, "alice")
    page = client.post(
        "/hub/spawn",
        data={"profile": "huge", "when": "now", "action": "refresh", "_xsrf": xsrf(client)},
    ).text
    assert "No broker can offer this" in page and "alpha:" in page, page[-3000:]
    # a forged offer or a profile the user may not use: a clear reason on the spawn page
    page = client.post(
        "/hub/spawn",
        data={"profile": "big", "when": "now", "offer": "alpha|x", "_xsrf": xsrf(client)},
    ).text
    assert "You may not use the profile" in page
    page = client.post(
        "/hub/spawn",
        data={"profile": "small", "when": "now", "offer": "alpha|nope", "_xsrf": xsrf(client)},
    ).text
    assert "no longer known to the broker" in page
