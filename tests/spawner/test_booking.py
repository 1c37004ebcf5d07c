"""A later booking: booked from the form, listed and cancellable in the service, started by
the service at its slot (again when the hub refused at first), with notifications by SMTP and
webhook; the service's login survives a restart."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import httpx

from tests.conftest import BrokerFactory
from tests.fixtures.services import free_port
from tests.spawner.conftest import (
    HubFactory,
    eb_config,
    hub_log,
    login,
    offers_in,
    phase_of,
    post_spawn,
    public,
    restart_hub,
    wait_for,
    wait_ready,
    wait_service,
)
from tests.spawner.receivers import Mailbox, Webhook


def test_booking_started_by_service_with_notifications(
    broker_factory: BrokerFactory, hub_factory: HubFactory, mailbox: Mailbox, webhook: Webhook
) -> None:
    broker = broker_factory("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8")
    extra = f"""
c.EBSpawner.timezone = "UTC"
c.EBSpawner.now_threshold = 8
c.EBSpawner.start_ahead = 2
c.EBSpawner.service_interval = 0.5
c.EBSpawner.notify_lead_time = 3600
c.EBSpawner.smtp = {{"host": "127.0.0.1", "port": {mailbox.port}, "from": "hub@example.org"}}
c.EBSpawner.email_domain = "example.org"
c.EBSpawner.webhook_url = "{webhook.url}"
"""
    hub = hub_factory(
        eb_config([broker], names=["alpha"], service=True, service_port=free_port(), extra=extra)
    )
    wait_service(hub)
    client = login(hub, "alice")
    slot = datetime.now().astimezone().replace(microsecond=0) + timedelta(seconds=15)
    at = slot.astimezone(tz=None).replace(tzinfo=None).isoformat()
    # refresh the offers for "a date and time"
    page = post_spawn(client, profile="small", when="at", at=at, action="refresh")
    assert "Offers refreshed" in page
    offers = offers_in(page)
    assert offers and "(booking)" in page, page[-3000:]
    page = post_spawn(client, profile="small", when="at", at=at, offer=offers[0])
    assert re.search(r"Your session is booked for \w{3} \d\d \w{3} \d\d:\d\d", page), page[-3000:]
    assert "on alpha" in page
    for other in offers[1:]:  # the other quotes were let go
        assert phase_of(broker, other.split("|")[1]) == "REJECTED"
    # the service lists it (the user's token works for the service's API)
    token = hub.user_token("alice")
    api = f"{public(hub)}/services/eb/api/bookings"
    listed = httpx.get(api, headers={"Authorization": f"token {token}"}, timeout=30)
    assert listed.status_code == 200, listed.text
    bookings = listed.json()["bookings"]
    assert len(bookings) == 1 and bookings[0]["broker"] == "alpha", bookings
    # the notification "available in N minutes" arrives by email and webhook
    wait_for(lambda: any("available in" in m["data"] for m in mailbox.messages), 20, "email")
    assert mailbox.messages[0]["to"] == ["alice@example.org"]
    wait_for(lambda: any("available in" in p["text"] for p in webhook.posts), 20, "webhook")
    # alice has a server running when the slot comes: the hub refuses the service's start;
    # alice is told, and once she stops that server the service starts the booked one
    assert hub.api("POST", "/users/alice/server", json={"profile": "small"}).status_code in (
        201,
        202,
    )
    first = wait_ready(hub, "alice")["state"]["session"]
    wait_for(lambda: any("could not be started" in m["data"] for m in mailbox.messages), 30, "no")
    wait_for(lambda: any("could not be started" in p["text"] for p in webhook.posts), 30, "no")
    assert "is already running" in hub_log(hub)
    assert hub.api("DELETE", "/users/alice/server").status_code in (202, 204)
    wait_for(lambda: not hub.api("GET", "/users/alice").json()["servers"], 30, "not stopped")
    server = wait_ready(hub, "alice", timeout=60)
    assert server["state"]["session"] != first
    assert server["state"]["broker"] == "alpha"
    assert server["user_options"]["booking"]["session"] == bookings[0]["session"]
    status = httpx.get(
        f"{public(hub)}/user/alice/api/status",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert status.status_code == 200, status.text
    wait_for(lambda: any("is ready" in m["data"] for m in mailbox.messages), 20, "ready email")
    wait_for(lambda: any("is ready" in p["text"] for p in webhook.posts), 20, "ready webhook")
    booked = broker.client().get(f"/sessions/{bookings[0]['session']}").json()
    assert booked["phase"] in ("CANCELLED", "COMPLETED"), booked["phase"]
    assert "started alice's booked server" in hub_log(hub)


def test_cancel_a_booking_in_the_service(
    broker_factory: BrokerFactory, hub_factory: HubFactory
) -> None:
    broker = broker_factory("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8")
    extra = (
        'c.EBSpawner.timezone = "UTC"\nc.EBSpawner.service_interval = 0.5\n'
        "c.EBSpawner.service_cookie_secret_file = __file__ + '.cookie-secret'\n"
    )
    hub = hub_factory(
        eb_config([broker], names=["alpha"], service=True, service_port=free_port(), extra=extra)
    )
    wait_service(hub)
    client = login(hub, "alice")
    at = (datetime.utcnow().replace(microsecond=0) + timedelta(hours=3)).isoformat()
    page = post_spawn(client, profile="small", when="at", at=at, action="refresh")
    offers = offers_in(page)
    page = post_spawn(client, profile="small", when="at", at=at, offer=offers[0])
    assert "Your session is booked for" in page
    # the service's page (OAuth through the hub with the browser's cookies)
    mine = client.get("/services/eb/")
    assert mine.status_code == 200, mine.text[-2000:]
    ref = re.search(r"name='cancel' value='([^']+)'", mine.text)
    assert ref, mine.text
    done = client.post(
        "/services/eb/",
        data={
            "cancel": ref.group(1),
            "_xsrf": client.cookies.get("_xsrf", path="/services/eb/") or "",
        },
    )
    assert done.status_code == 200 and "cancelled" in done.text, done.text[-2000:]
    uuid = ref.group(1).split("|")[1]
    assert broker.client().get(f"/sessions/{uuid}").json()["phase"] == "CANCELLED"
    assert "no-bookings" in client.get("/services/eb/").text
    # the service keeps its cookie secret: after a restart alice is still logged in to it
    hub = restart_hub(hub)
    try:
        wait_service(hub)
        again = client.get("/services/eb/", follow_redirects=False)
        assert again.status_code == 200 and "no-bookings" in again.text, again.headers
    finally:
        hub.stop()
