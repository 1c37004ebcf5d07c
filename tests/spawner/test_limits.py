"""Per-group limits on a real hub: which profiles, capped resources and duration, at most N
bookings."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import httpx

from tests.conftest import BrokerFactory
from tests.spawner.conftest import HubFactory, eb_config, login, offers_in, post_spawn, sdk_session

LIMITS = """
c.EBSpawner.timezone = "UTC"
c.EBSpawner.profiles.append({'slug': 'medium', 'display_name': 'Medium', 'cores': 2,
                             'memory': '2GiB', 'duration': '2h'})
c.EBSpawner.group_limits = {
    'students': {'profiles': ['small', 'medium'], 'cores': 1, 'memory': '4GiB',
                 'max_duration': '30 min', 'max_bookings': 1},
}
"""


def offers_for(client: httpx.Client, profile: str, at: str = "") -> str:
    when = "at" if at else "now"
    return post_spawn(client, profile=profile, when=when, at=at, action="refresh")


def test_group_limits_cap_profiles_and_bookings(
    broker_factory: BrokerFactory, hub_factory: HubFactory
) -> None:
    broker = broker_factory("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8")
    hub = hub_factory(eb_config([broker], names=["alpha"], extra=LIMITS))
    hub.user_token("bob", groups=("students", "staff"))
    bob = login(hub, "bob")
    page = offers_for(bob, "medium")
    # 'big' is a staff profile, but the students' limit allows only small and medium
    assert "Medium" in page and "Small CPU" in page and "Big CPU" not in page
    row = re.search(r"<td>alpha</td>.*?<td>(\d+ \w+)</td><td>([^<]*)</td>", page, re.S)
    assert row and row.groups() == ("30 min", "1 core, 2 GiB"), page[-3000:]  # capped, not raised
    # alice is in no limited group: the profile as configured
    alice = login(hub, "alice")
    page = offers_for(alice, "medium")
    row = re.search(r"<td>alpha</td>.*?<td>(\d+ \w+)</td><td>([^<]*)</td>", page, re.S)
    assert row and row.groups() == ("2 h", "2 cores, 2 GiB"), page[-3000:]
    # one booking at most for students
    later = datetime.utcnow().replace(microsecond=0) + timedelta(hours=3)
    for n, expected in ((0, "Your session is booked for"), (1, "the most allowed is 1")):
        at = (later + timedelta(hours=n)).isoformat()
        offers = offers_in(offers_for(bob, "small", at))
        page = post_spawn(bob, profile="small", when="at", at=at, offer=offers[0])
        assert expected in page, page[-3000:]
    uuid = offers[0].split("|")[1]
    assert sdk_session(broker, uuid).phase.value == "REJECTED"  # the refused quote is let go
