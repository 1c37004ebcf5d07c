"""A hub restart with a running session: the spawner reattaches from get_state()."""

from __future__ import annotations

import httpx

from tests.conftest import BrokerFactory
from tests.spawner.conftest import (
    HubFactory,
    broker_sessions,
    eb_config,
    hub_log,
    phase_of,
    public,
    restart_hub,
    stored_state,
    wait_for,
    wait_ready,
)


def test_hub_restart_reattaches(broker_factory: BrokerFactory, hub_factory: HubFactory) -> None:
    broker = broker_factory("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8")
    config = eb_config([broker], names=["alpha"]) + "c.JupyterHub.cleanup_servers = False\n"
    hub = hub_factory(config)
    token = hub.user_token("alice")
    # the REST API: a profile and no offer means "now, anywhere allowed"
    bad = hub.api("POST", "/users/alice/server", json={"profile": "big"})
    assert bad.status_code == 400 and "may not use the profile" in bad.text
    assert hub.api("POST", "/users/alice/server", json={"profile": "small"}).status_code in (
        201,
        202,
    )
    before = wait_ready(hub, "alice")
    uuid = before["state"]["session"]
    restarted = restart_hub(hub)
    try:
        after = wait_ready(restarted, "alice")
        assert after["state"]["session"] == uuid
        answer = httpx.get(
            f"{public(restarted)}/user/alice/api/status",
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        phase = broker.client().get(f"/sessions/{uuid}").json()["phase"]
        assert phase in ("AVAILABLE", "RUNNING")
        assert restarted.api("DELETE", "/users/alice/server").status_code in (202, 204)
    finally:
        restarted.stop()


SLOW_PROFILE = (
    "c.EBSpawner.profiles.append({'slug': 'slow', 'display_name': 'Slow start', 'cores': 1, "
    "'memory': '1GiB', 'duration': '1h', 'command': ['sh', '-c', "
    "'sleep 12; exec jupyterhub-singleuser \"$@\"', 'jupyterhub-singleuser']})\n"
)


def test_hub_restart_while_the_server_is_still_preparing(
    broker_factory: BrokerFactory, hub_factory: HubFactory
) -> None:
    broker = broker_factory("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8")
    config = eb_config([broker], names=["alpha"], extra=SLOW_PROFILE)
    hub = hub_factory(config + "c.JupyterHub.cleanup_servers = False\n")
    token = hub.user_token("alice")
    started = hub.api("POST", "/users/alice/server", json={"profile": "slow"})
    assert started.status_code == 202, started.text
    # the session is recorded as soon as it is accepted, while the broker still prepares it
    uuid = wait_for(lambda: stored_state(hub, "alice").get("session"), 30, "no state saved")
    wait_for(lambda: phase_of(broker, uuid) == "PREPARING", 30, "not preparing")
    restarted = restart_hub(hub)
    try:
        # the hub asks the spawner where the server is; it waits for the broker to have it
        # ready and the hub reattaches (the restart took less than the server's start)
        after = wait_ready(restarted, "alice", timeout=120)
        assert after["state"]["session"] == uuid
        assert f"reattaching to session {uuid}, still preparing" in hub_log(restarted)
        answer = httpx.get(
            f"{public(restarted)}/user/alice/api/status",
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        servers = [
            s
            for s in broker_sessions(broker)
            if s["name"].startswith("jupyterhub-server:alice:") and s["phase"] != "CANCELLED"
        ]
        assert [s["uuid"] for s in servers] == [uuid]  # no second session was booked
        assert restarted.api("DELETE", "/users/alice/server").status_code in (202, 204)
    finally:
        restarted.stop()
