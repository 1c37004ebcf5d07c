"""Login → form → offers → spawn now → the server answers through the proxy; stop; restart."""

from __future__ import annotations

import time

import httpx

from tests.conftest import BrokerFactory
from tests.spawner.conftest import (
    HubFactory,
    broker_sessions,
    eb_config,
    login,
    offers_in,
    phase_of,
    public,
    wait_ready,
    xsrf,
)


def test_form_spawn_now_proxy_stop(broker_factory: BrokerFactory, hub_factory: HubFactory) -> None:
    broker = broker_factory("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8")
    hub = hub_factory(eb_config([broker], names=["alpha"]))
    client = login(hub, "alice")
    first = offers_in(client.get("/hub/spawn").text)
    page = client.get("/hub/spawn").text  # shown again: the first quotes are rejected
    assert "Small CPU" in page and "Big CPU" not in page  # 'big' is for staff only
    offers = offers_in(page)
    assert offers and offers[0].startswith("alpha|"), page[-3000:]
    assert {phase_of(broker, ref.split("|")[1]) for ref in first} == {"REJECTED"}
    assert {phase_of(broker, ref.split("|")[1]) for ref in offers} == {"OFFERED"}
    response = client.post(
        "/hub/spawn",
        data={"profile": "small", "when": "now", "offer": offers[0], "_xsrf": xsrf(client)},
    )
    assert response.status_code == 200, response.text[-2000:]
    token = hub.user_token("alice")
    with httpx.stream(
        "GET",
        f"{hub.api_url}/users/alice/server/progress",
        headers={"Authorization": f"token {token}"},
        timeout=60,
    ) as stream:
        events = "".join(stream.iter_text())
    assert "Accepted an offer on alpha (local), as you picked" in events, events
    assert "available" in events, events
    server = wait_ready(hub, "alice")
    assert server["state"]["broker"] == "alpha" and server["state"]["session"]
    status = httpx.get(
        f"{public(hub)}/user/alice/api/status",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert status.status_code == 200, status.text
    # the broker runs it: its session is AVAILABLE; no quote of the form is still held
    uuid = server["state"]["session"]
    assert phase_of(broker, uuid) in ("AVAILABLE", "RUNNING")
    assert {phase_of(broker, ref.split("|")[1]) for ref in offers} == {"REJECTED"}
    assert not broker_sessions(broker, "OFFERED")
    # stop cancels the session
    assert hub.api("DELETE", "/users/alice/server").status_code in (202, 204)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        phase = phase_of(broker, uuid)
        if phase in ("CANCELLED", "COMPLETED"):
            break
        time.sleep(0.2)
    assert phase in ("CANCELLED", "COMPLETED")
