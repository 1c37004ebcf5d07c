"""The seeds' example end to end: a site with 1,000 cores, 500 pledged to the national
allocation and 500 local, booked by national and local users through an aggregator that
passes their groups on (X-EB-Groups), and directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.broker.helpers import accept, notebook_request
from tests.conftest import BrokerFactory
from tests.fixtures.aggregate import SERVICE_TOKENS, aggregator_config, trusting

USERS = {
    "nat1": "nat1-token-000001",
    "nat2": "nat2-token-000002",
    "loc1": "loc1-token-000003",
    "loc2": "loc2-token-000004",
    "guest": "guest-token-000005",
}
GROUPS = {
    "nat1": ["srcnet"],
    "nat2": ["srcnet"],
    "loc1": ["uksrc-local", "srcnet"],
    "loc2": ["uksrc-local"],
    "guest": ["visitors"],
}
SITE = """
c.EBBroker.policies = ["group-allocation"]
c.GroupAllocationPolicy.pools = [
    {"name": "national", "cores": 500},
    {"name": "local", "cores": 500},
]
c.GroupAllocationPolicy.groups = {
    "srcnet": ["national"],
    "uksrc-local": ["national", "local"],
}
"""


def _at(hours: int) -> str:
    start = (datetime.now(UTC) + timedelta(hours=hours)).replace(minute=0, second=0)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ") + "/PT0S"  # exactly then


def _ask(client: httpx.Client, low: int, high: int | None = None, when: str = "") -> Any:
    body = notebook_request(low, 1, max_cores=high, start=when)
    response = client.post("/requests", json=body)
    assert response.status_code == 303, response.text
    return response.json()


def _texts(answer: Any) -> str:
    return " | ".join(m["message"] for m in answer["meta"].get("messages", []))


def _book(client: httpx.Client, low: int, high: int | None, when: str) -> int:
    answer = _ask(client, low, high, when)
    assert answer["result"] == "YES", _texts(answer)
    offer = answer["offers"][0]
    assert accept(client, offer["meta"]["url"]).status_code == 200
    return int(offer["compute"]["cores"]["min"])


def test_thousand_units_national_and_local_users(broker_factory: BrokerFactory) -> None:
    site = broker_factory(
        "--LocalPlatform.cores=1000",
        "--LocalPlatform.memory_gib=4000",
        name="site",
        broker_name="uk-site",
        tokens=USERS,
        groups=GROUPS,
        config=SITE + trusting("top"),
    )
    top = broker_factory(
        name="top",
        broker_name="top",
        tokens=USERS,
        groups=GROUPS,
        config=aggregator_config(
            [
                {
                    "name": "uk-site",
                    "url": site.url,
                    "identity": "service",
                    "token": SERVICE_TOKENS["top"],
                }
            ]
        ),
    )
    t1, t2 = _at(3), _at(6)
    clients = {user: top.client(user) for user in USERS}
    try:
        nat1, nat2, loc1, loc2, guest = (clients[u] for u in USERS)
        # national users book only from the pledged 500
        assert _book(nat1, 400, None, t1) == 400
        refused = _ask(nat2, 200, None, t1)
        assert refused["result"] == "NO"
        assert "200 cores" in _texts(refused) and "the national allocation" in _texts(refused)
        # less than asked, and the answer says why
        partly = _ask(nat2, 50, 200, t1)
        assert partly["result"] == "YES"
        assert partly["offers"][0]["compute"]["cores"]["min"] == 100
        assert "100 cores instead of up to 200" in _texts(partly)
        assert "the national allocation has no more free then" in _texts(partly)
        assert accept(nat2, partly["offers"][0]["meta"]["url"]).status_code == 200
        # local users book from both pools: the local 500 is still theirs
        local = _ask(loc2, 500, None, t1)
        assert local["result"] == "YES", _texts(local)
        assert "booking from the local+national allocations" in _texts(local)
        assert accept(loc2, local["offers"][0]["meta"]["url"]).status_code == 200
        assert _ask(loc1, 1, None, t1)["result"] == "NO"  # all 1,000 booked
        # at another time a local user can have all 1,000; then nobody else gets any
        assert _book(loc1, 1000, None, t2) == 1000
        assert _ask(nat1, 1, None, t2)["result"] == "NO"
        # someone in neither group: NO, and why
        stranger = _ask(guest, 1, None, t1)
        assert stranger["result"] == "NO"
        assert "you (group visitors) have no allocation here" in _texts(stranger)
        # the policy is in /capabilities
        caps = nat1.get("/capabilities").json()
        assert caps["jeb:brokers"][0]["name"] == "uk-site"
        with httpx.Client(base_url=site.url) as direct:
            own = direct.get("/capabilities").json()
            assert own["policies"] == ["group-allocation"]
            assert "national (500 cores)" in own["jeb:policies"][0]["summary"]
    finally:
        for client in clients.values():
            client.close()
    # bookings keep their pools across a restart: the pledge is still full at t1
    site.kill9()
    site.start()
    with site.client("nat2") as direct_nat2, site.client("loc2") as direct_loc2:
        again = _ask(direct_nat2, 1, None, t1)
        assert again["result"] == "NO"
        assert _ask(direct_loc2, 1, None, t1)["result"] == "NO"
        # while later the pledge is free again for national users, directly at the site
        assert _ask(direct_nat2, 500, None, _at(9))["result"] == "YES"
