"""The SDK against a server with the reference broker's quirks (see reference_quirks.py)."""

from __future__ import annotations

import pytest

import eb_sdk as eb
from eb_sdk.model import Phase, SimpleComputeResource
from tests.sdk.reference_quirks import QuirksServer


def _broker(server: QuirksServer, password: str = "wonderland") -> eb.Broker:
    return eb.Broker(server.url.replace("://", f"://alice:{password}@"), name="reference")


def test_request_offers_accept_against_the_reference_broker(reference: QuirksServer) -> None:
    broker = _broker(reference)
    assert broker.username == "alice" and "wonderland" not in broker.url  # HTTP Basic
    offers = eb.request("/data/a.ipynb", start="within 10 min", brokers=[broker])
    assert len(offers) == 2 and offers.brokers == ["reference"]
    first = offers.earliest()
    assert isinstance(first.wire.compute, SimpleComputeResource)  # ".../kinds/computer/..."
    assert first.wire.compute.kind.endswith("/compute/simple-compute-resource.yaml")
    assert first.start is not None and first.cores == 2  # zero-width start "T/PT0S"
    assert first.wire.meta is not None and first.wire.meta.options is None  # no options
    assert "starts now" in str(offers)
    session = first.accept()
    assert session.phase == Phase.ACCEPTED
    # the reference broker leaves siblings alone: the SDK rejects them
    assert offers[1].phase == Phase.REJECTED
    assert ("POST", f"/sessions/{offers[1].uuid}") in reference.state.log
    # its GETs are public; its phases include the spec's READY for AVAILABLE
    seen = [e.phase for e in session.iter_events(timeout=20) if e.kind == "phase"]
    assert seen == [
        Phase.ACCEPTED,
        Phase.WAITING,
        Phase.PREPARING,
        Phase.AVAILABLE,
        Phase.RUNNING,
        Phase.COMPLETED,
    ]


def test_303_with_an_empty_body_follows_the_location(reference: QuirksServer) -> None:
    reference.state.empty_303_body = True
    offers = eb.request("/data/a.ipynb", brokers=[_broker(reference)])
    assert len(offers) == 2
    assert [m for m, path in reference.state.log if path.startswith("/offersets/")] == ["GET"]


def test_expired_offer_is_refused_locally(reference: QuirksServer) -> None:
    reference.state.expires_in = -60  # the reference broker never marks offers EXPIRED
    offers = eb.request("/data/a.ipynb", brokers=[_broker(reference)])
    posts = len(reference.state.log)
    with pytest.raises(eb.OfferExpired, match="ask again"):
        offers.earliest().accept()
    assert len(reference.state.log) == posts  # no HTTP for a hopeless accept


def test_basic_credentials_refused(reference: QuirksServer) -> None:
    with pytest.raises(eb.AuthenticationError, match="HTTP 401"):
        eb.request("/data/a.ipynb", brokers=[_broker(reference, "wrong")])


def test_health_falls_back_to_capabilities(reference: QuirksServer) -> None:
    (status,) = eb.brokers([_broker(reference)])
    assert status.ok and status.platform == "reference" and status.version == "1.0"
