"""Inside JupyterHub: the broker is a hub service, found through a real hub's API, and the
user's hub token is the credential (the broker checks it with the hub)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

import eb_sdk as eb
from tests.conftest import BrokerFactory
from tests.fixtures.hub import start_hub

PREFIX = "/services/eb-broker/"


def test_hub_service_is_discovered(
    broker_factory: BrokerFactory, monkeypatch: pytest.MonkeyPatch, notebook: Path
) -> None:
    base = Path(tempfile.mkdtemp(prefix="eb-hub-sdk-"))
    # The broker's URL must be known to the hub's config, and the hub's API URL to the broker:
    # start the hub first with a placeholder port for the service, then the broker on it.
    from tests.fixtures.services import free_port

    broker_port = free_port()
    hub = start_hub(
        base,
        extra_config=f"""
c.JupyterHub.services.append({{"name": "eb-broker", "url": "http://127.0.0.1:{broker_port}"}})
c.JupyterHub.load_roles.append({{"name": "user", "scopes": ["self", "read:services"]}})
""",
    )
    try:
        process = broker_factory(
            "--LocalPlatform.cores=2",
            f"--EBBroker.base_url={PREFIX}",
            "--EBBroker.authenticators=jupyterhub",
            f"--JupyterHubAuthenticator.api_url={hub.api_url}",
            port=broker_port,
        )
        alice = hub.user_token("alice")
        monkeypatch.setenv("JUPYTERHUB_API_URL", hub.api_url)
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", alice)
        eb.reset()
        (status,) = eb.brokers()
        assert status.name == "hub" and status.ok and status.source == "JupyterHub"
        offers = eb.request(eb.Notebook(notebook), start="in 2 hours")
        assert offers.brokers == ["hub"] and offers[0].url
        assert offers[0].url.startswith(process.url + PREFIX.rstrip("/") + "/sessions/")
        session = offers.earliest().accept()
        assert session.phase in ("ACCEPTED", "WAITING")
        session.cancel()
        # a token the hub does not know cannot even find the service
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "someone-else")
        eb.reset()  # forget the resolved URL: a new client asks the hub again
        with pytest.raises(eb.ConfigError):
            eb.request(eb.Notebook(notebook))
    finally:
        eb.reset()
        hub.stop()
