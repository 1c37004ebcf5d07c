"""The hub notices sessions that end on the broker (poll), and a stop while the broker is down
cancels the session once the broker is back."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from urllib.parse import urlparse

from tests.conftest import BrokerFactory
from tests.fixtures.hub import Hub
from tests.spawner.conftest import (
    HubFactory,
    eb_config,
    hub_log,
    phase_of,
    set_phase,
    stored_state,
    wait_for,
    wait_ready,
)


def running(hub: Hub, user: str = "alice") -> bool:
    return bool((hub.api("GET", f"/users/{user}").json().get("servers") or {}).get(""))


def pids_listening_on(port: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"--port={port}".encode() in cmdline:
                found.append(int(entry))
    return found


def test_poll_notices_a_session_ended_on_the_broker(
    broker_factory: BrokerFactory, hub_factory: HubFactory
) -> None:
    broker = broker_factory("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8")
    hub = hub_factory(eb_config([broker], names=["alpha"], extra="c.Spawner.poll_interval = 1\n"))
    hub.user_token("alice")
    # cancelled on the broker (an admin, the end of its slot): stopped, exit code 0
    assert hub.api("POST", "/users/alice/server", json={"profile": "small"}).status_code in (
        201,
        202,
    )
    uuid = wait_ready(hub, "alice")["state"]["session"]
    assert set_phase(broker, uuid, "CANCELLED").status_code == 200
    wait_for(lambda: not running(hub), 60, "the hub did not notice the cancel")
    assert re.search(rf"session {uuid} is (RELEASING|CANCELLED)", hub_log(hub))
    # the server process dies: the session FAILED, the hub sees exit code 1
    assert hub.api("POST", "/users/alice/server", json={"profile": "small"}).status_code in (
        201,
        202,
    )
    server = wait_ready(hub, "alice")
    uuid = server["state"]["session"]
    with broker.client() as client:
        url = client.get(f"/sessions/{uuid}").json()["connectors"][0]["location"]
    pids = pids_listening_on(urlparse(url).port or 0)
    assert pids, url
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: phase_of(broker, uuid) == "FAILED", 60, "the broker did not see it fail")
    wait_for(lambda: not running(hub), 60, "the hub did not notice the failure")
    assert f"session {uuid} is FAILED" in hub_log(hub)
    assert "exit code: 1" in hub_log(hub)


def test_stop_while_the_broker_is_down_cancels_when_it_is_back(
    broker_factory: BrokerFactory, hub_factory: HubFactory
) -> None:
    broker = broker_factory("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8")
    config = eb_config([broker], names=["alpha"], extra="c.EBSpawner.cancel_retry_interval = 1\n")
    hub = hub_factory(config + "c.EBSpawner.request_timeout = 3\n")
    hub.user_token("alice")
    assert hub.api("POST", "/users/alice/server", json={"profile": "small"}).status_code in (
        201,
        202,
    )
    uuid = wait_ready(hub, "alice")["state"]["session"]
    broker.stop()
    assert hub.api("DELETE", "/users/alice/server").status_code in (202, 204)
    wait_for(lambda: not running(hub), 60, "the hub did not stop the server")
    # the hub forgot the server, not the session it could not cancel
    pending = stored_state(hub, "alice").get("cancel_pending")
    assert pending and pending[0]["session"] == uuid, stored_state(hub, "alice")
    assert "could not be cancelled" in hub_log(hub)
    broker.start()
    wait_for(lambda: phase_of(broker, uuid) in ("CANCELLED", "COMPLETED"), 60, "never cancelled")
    wait_for(lambda: "cancel_pending" not in stored_state(hub, "alice"), 30, "state kept")
