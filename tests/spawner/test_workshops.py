"""Workshop seats for a hub group: reserved from the SDK (through the bookings service), one
seat for each member who starts a server in the window, listed and cancelled by admins."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest

import eb_sdk as eb
from eb_sdk import workshops
from tests.conftest import BrokerFactory
from tests.fixtures.services import free_port
from tests.spawner.conftest import (
    HubFactory,
    eb_config,
    login,
    phase_of,
    post_spawn,
    sdk_session,
    wait_ready,
    wait_service,
    xsrf,
)

SEAT = re.compile(r'name="offer" value="(seat\|[^"]+)"')


def test_two_members_get_one_seat_each(
    broker_factory: BrokerFactory, hub_factory: HubFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = broker_factory("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8")
    extra = (
        "c.JupyterHub.allow_named_servers = True\n"
        "c.Authenticator.admin_users = {'carol'}\n"
        'c.EBSpawner.timezone = "UTC"\n'
    )
    hub = hub_factory(
        eb_config([broker], names=["alpha"], service=True, service_port=free_port(), extra=extra)
    )
    for member in ("bob", "dave", "erin"):
        hub.user_token(member, groups=("students",))
    carol, alice = hub.user_token("carol"), hub.user_token("alice")
    wait_service(hub)
    # the SDK finds the service through the hub's API, as in an admin's single-user server
    monkeypatch.setenv("JUPYTERHUB_API_URL", hub.api_url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", carol)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=20)
    with pytest.raises(eb.PermissionDenied):
        workshops.reserve("students", 2, start=start, profile="small", token=alice)
    with pytest.raises(eb.InvalidRequest, match="no broker named nope"):
        workshops.reserve("students", 2, start=start, profile="small", brokers=["nope"])
    shop = workshops.reserve(
        "students", 2, start=start, duration="1h", profile="small", brokers=["alpha"]
    )
    seats = [s["session"] for s in shop["seats"]]
    assert len(seats) == 2 and all(phase_of(broker, s) == "WAITING" for s in seats)
    listed = workshops.list_workshops()
    assert [(w["id"], w["free_seats"], w["brokers"]) for w in listed] == [
        (shop["workshop"], 2, ["alpha"])
    ]
    # two members log in at once: each is offered a seat, each gets a different one
    clients = {member: login(hub, member) for member in ("bob", "dave")}
    refs = {m: SEAT.search(c.get("/hub/spawn").text) for m, c in clients.items()}
    assert all(refs.values()), refs
    answers: dict[str, int] = {}

    def start_server(member: str) -> None:
        client = clients[member]
        data = {"profile": "small", "when": "now", "_xsrf": xsrf(client)}
        data["offer"] = refs[member].group(1)  # type: ignore[union-attr]
        answers[member] = client.post("/hub/spawn", data=data).status_code

    threads = [threading.Thread(target=start_server, args=(m,)) for m in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert answers == {"bob": 200, "dave": 200}
    servers = {m: wait_ready(hub, m, timeout=90) for m in clients}
    names = {m: sdk_session(broker, s["state"]["session"]).name for m, s in servers.items()}
    assert names == {
        m: f"jupyterhub-server:{m}:-:small:{shop['workshop']}" for m in ("bob", "dave")
    }
    assert {phase_of(broker, s) for s in seats} <= {"CANCELLED", "COMPLETED"}  # both taken over
    assert workshops.list_workshops() == []
    # a third member: no seat left, the normal offers instead
    page = login(hub, "erin").get("/hub/spawn").text
    assert "Your workshop seat" not in page and 'name="offer" value="alpha|' in page
    # one seat each: not a second one with a named server
    bob = clients["bob"]
    seat_ref = refs["bob"].group(1)  # type: ignore[union-attr]
    page = post_spawn(bob, "/hub/spawn/bob/second", profile="small", offer=seat_ref)
    assert "You already have a seat of this workshop (your default server): one each." in page
    # admins: the service's page lists workshops, reserves and cancels them
    admin = login(hub, "carol")
    page = admin.get("/services/eb/")
    assert page.status_code == 200 and "no-workshops" in page.text, page.text[-2000:]
    later = (datetime.utcnow() + timedelta(hours=5)).replace(microsecond=0).isoformat()
    cookie = admin.cookies.get("_xsrf", path="/services/eb/") or ""
    page = admin.post(
        "/services/eb/",
        data={
            "reserve": "1",
            "group": "physics",
            "seats": "1",
            "start": later,
            "duration": "1h",
            "profile": "small",
            "brokers": "alpha",
            "_xsrf": cookie,
        },
    )
    assert "1 seat(s) reserved for physics" in page.text, page.text[-2000:]
    second = workshops.list_workshops()
    assert [(w["group"], w["free_seats"]) for w in second] == [("physics", 1)]
    assert second[0]["id"] in page.text
    assert workshops.cancel(second[0]["id"]) == 1
    assert phase_of(broker, second[0]["seats"][0]["session"]) == "CANCELLED"
    with pytest.raises(eb.NotFound):
        workshops.cancel(second[0]["id"])
    # a plain API client without the SDK gets MessageItem errors
    answer = httpx.get(
        f"http://127.0.0.1:{hub.port}/services/eb/api/workshops",
        headers={"Authorization": f"token {alice}"},
        timeout=30,
    )
    assert answer.status_code == 403 and answer.json()["kind"] == "urn:forbidden"
