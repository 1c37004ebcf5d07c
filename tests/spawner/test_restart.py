"""A hub restart with a running session: the spawner reattaches from get_state()."""

from __future__ import annotations

import httpx

from tests.conftest import BrokerFactory
from tests.spawner.conftest import HubFactory, eb_config, public, restart_hub, wait_ready


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
