"""The broker as a JupyterHub service: hub tokens identify users (a real hub)."""

from __future__ import annotations

import httpx

from tests.broker.helpers import notebook_request
from tests.fixtures.hub import Hub


def test_hub_tokens_identify_users_and_groups(broker_factory, jupyterhub: Hub) -> None:  # type: ignore[no-untyped-def]
    broker = broker_factory(
        "--LocalPlatform.cores=2",
        "--LocalPlatform.memory_gib=4",
        "--EBBroker.authenticators=jupyterhub",
        f"--JupyterHubAuthenticator.api_url={jupyterhub.api_url}",
    )
    alice = jupyterhub.user_token("alice", groups=("astro",))
    bob = jupyterhub.user_token("bob")
    body = notebook_request()
    r = httpx.post(broker.url + "/requests", json=body, headers={"Authorization": f"token {alice}"})
    assert r.status_code == 303 and r.json()["result"] == "YES"
    offerset = r.headers["Location"]
    # the hub says this token is alice's: she sees her offer set, bob does not
    assert httpx.get(offerset, headers={"Authorization": f"Bearer {alice}"}).status_code == 200
    assert httpx.get(offerset, headers={"Authorization": f"Bearer {bob}"}).status_code == 404
    bad = httpx.post(broker.url + "/requests", json=body, headers={"Authorization": "token nope"})
    assert bad.status_code == 401 and "JupyterHub" in bad.json()["message"]
