"""What goes wrong, over real HTTP: a slow broker past the deadline, 403, credentials that
must not leave for a URL nobody configured, and shared clients closed when forgotten."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import eb_sdk as eb
from eb_sdk import _client, aio
from tests.fixtures.services import BrokerProcess
from tests.sdk.reference_quirks import QuirksServer


def _reference(server: QuirksServer) -> eb.Broker:
    return eb.Broker(server.url.replace("://", "://alice:wonderland@"), name="reference")


def test_a_slow_broker_becomes_a_timeout_warning_within_the_deadline(
    reference: QuirksServer, alpha: eb.Broker, notebook: Path
) -> None:
    reference.state.delay = 5.0
    started = time.monotonic()
    offers = eb.request(
        eb.Notebook(notebook),
        start="in 2 hours",
        brokers=[alpha, _reference(reference)],
        timeout=1.5,
    )
    took = time.monotonic() - started
    assert took < 3.0, f"eb.request took {took:.1f} s with a 1.5 s deadline"
    assert offers.brokers == ["alpha"] and len(offers) > 0
    (warning,) = offers.warnings
    assert warning.broker == "reference" and isinstance(warning.error, eb.Timeout)
    assert "no answer within 1.5 s" in str(warning)
    # health: the slow broker is reported, not waited for
    started = time.monotonic()
    health = eb.brokers([alpha, _reference(reference)], timeout=1.0)
    assert time.monotonic() - started < 2.5
    assert [(b.name, b.ok) for b in health] == [("alpha", True), ("reference", False)]
    # only slow brokers: the summarised error is a Timeout
    with pytest.raises(eb.Timeout):
        eb.request(eb.Notebook(notebook), brokers=[_reference(reference)], timeout=0.5)


def test_forbidden_is_permission_denied(reference: QuirksServer) -> None:
    reference.state.forbidden = True
    with pytest.raises(eb.PermissionDenied) as info:
        eb.request("/data/a.ipynb", brokers=[_reference(reference)])
    assert info.value.status == 403 and "HTTP 403" in str(info.value)
    assert str(info.value).startswith("reference: asking for offers: ")
    assert info.value.exit_code == 5


def test_environment_tokens_never_reach_an_unconfigured_url(
    monkeypatch: pytest.MonkeyPatch,
    two_brokers: tuple[BrokerProcess, BrokerProcess],
    reference: QuirksServer,
    notebook: Path,
) -> None:
    first, _ = two_brokers
    monkeypatch.setenv("EB_BROKERS", f"alpha={first.url}")
    monkeypatch.setenv("EB_TOKEN", first.tokens["alice"])
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "the-users-hub-token")
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://hub.invalid:8081/hub/api")
    with pytest.raises(eb.AuthenticationError, match="no credentials were sent") as info:
        eb.request(eb.Notebook(notebook), brokers=[reference.url])
    assert info.value.exit_code == 5
    assert reference.state.authorizations == [None]  # neither EB_TOKEN nor the hub token
    # the configured broker's own URL, given explicitly, still gets its token
    offers = eb.request(eb.Notebook(notebook), start="in 2 hours", brokers=[first.url])
    assert offers.brokers == ["alpha"] and len(offers) > 0


def test_forgotten_clients_are_closed_on_their_loops(
    alpha: eb.Broker, beta: eb.Broker, notebook: Path
) -> None:
    eb.brokers([alpha, beta])  # clients on the sync facade's loop
    (portal_clients,) = [list(c.values()) for c in _client._CLIENTS.values()]
    assert len(portal_clients) == 2 and not any(c._http.is_closed for c in portal_clients)

    async def own_loop() -> list[_client.BrokerClient]:
        await aio.brokers([alpha])
        mine = list(_client._CLIENTS[asyncio.get_running_loop()].values())
        eb.configure(timeout=12.0)  # a sync call inside a running loop, as in a notebook
        await asyncio.sleep(0.2)  # the loop closes its own clients
        return mine

    mine = asyncio.run(own_loop())
    assert mine and all(c._http.is_closed for c in mine)
    assert all(c._http.is_closed for c in portal_clients)
    assert not _client._CLIENTS
    assert len(eb.brokers([alpha])) == 1  # and new clients work
