"""Inside JupyterHub: the broker is found through the hub's API and the hub token is used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tornado import web

import eb_sdk as eb
from tests.conftest import BrokerFactory
from tests.sdk.reference_quirks import ThreadedApp

PREFIX = "/services/eb-broker/"


class FakeHubService(web.RequestHandler):
    """``GET /hub/api/services/eb-broker``, answered only for the right hub token."""

    def initialize(self, broker_url: str, token: str) -> None:
        self.broker_url, self.token = broker_url, token

    def get(self, name: str) -> None:
        if self.request.headers.get("Authorization") != f"token {self.token}":
            self.set_status(403)
            self.finish(json.dumps({"status": 403, "message": "missing read:services"}))
            return
        self.finish(json.dumps({"name": name, "url": self.broker_url, "prefix": PREFIX}))


def test_hub_service_is_discovered(
    broker_factory: BrokerFactory, monkeypatch: pytest.MonkeyPatch, notebook: Path
) -> None:
    # A broker run as a hub service answers under its prefix; users' hub tokens are its tokens.
    process = broker_factory("--LocalPlatform.cores=2", f"--EBBroker.base_url={PREFIX}")
    token = process.tokens["alice"]
    hub = ThreadedApp(
        [
            (
                r"/hub/api/services/([^/]+)",
                FakeHubService,
                {"broker_url": process.url, "token": token},
            )
        ]
    ).start()
    try:
        monkeypatch.setenv("JUPYTERHUB_API_URL", hub.url + "/hub/api")
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", token)
        (status,) = eb.brokers()
        assert status.name == "hub" and status.ok and status.source == "JupyterHub"
        offers = eb.request(eb.Notebook(notebook), start="in 2 hours")
        assert offers.brokers == ["hub"] and offers[0].url
        assert offers[0].url.startswith(process.url + PREFIX.rstrip("/") + "/sessions/")
        offers.earliest().reject()
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "someone-else")
        eb.reset()  # forget the resolved URL: a new client asks the hub again
        with pytest.raises(eb.ConfigError, match="read:services"):
            eb.request(eb.Notebook(notebook))
    finally:
        hub.stop()
