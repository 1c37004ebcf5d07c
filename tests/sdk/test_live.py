"""The sync API against two real eb-broker processes on loopback."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import nbformat
import pytest

import eb_sdk as eb
from eb_sdk.model import Phase
from tests.conftest import BrokerFactory
from tests.sdk.reference_quirks import QuirksServer


def test_request_asks_both_brokers_and_choosing_works(
    alpha: eb.Broker, beta: eb.Broker, notebook: Path
) -> None:
    offers = eb.request(
        eb.Notebook(notebook),
        compute=eb.Compute(cores=1, memory="1GiB"),
        duration="30 min",
        start="within 3 hours",
        brokers=[alpha, beta],
    )
    assert not offers.warnings, offers.warnings
    assert set(offers.brokers) == {"alpha", "beta"}
    assert all(o.platform == "local" and o.phase == Phase.OFFERED for o in offers)
    starts = [o.start for o in offers]
    assert starts == sorted(starts)  # earliest first, across brokers
    assert offers.earliest().start == starts[0]
    on_beta = offers.on("beta")
    assert len(on_beta) >= 1 and {o.broker_name for o in on_beta} == {"beta"}
    assert offers.cheapest() in list(offers)  # no broker quotes costs: the earliest
    assert offers.sorted("start", reverse=True)[0].start == starts[-1]
    first = offers[0]
    assert first.cores == 1 and first.memory == 1 and first.duration and first.expires
    # the notebook view: broker, platform, start, "starts in", duration, resources, cost, expires
    page = offers._repr_html_()
    for column in ("broker", "platform", "start", "when", "duration", "resources", "cost"):
        assert f">{column}<" in page
    assert ">expires<" in page and ">starts in " in page  # the later offers
    assert "alpha" in page and "beta" in page and "starts in" in str(offers)
    frame = offers.to_pandas()
    assert len(frame) == len(offers) and set(frame["broker"]) == {"alpha", "beta"}
    for offer in offers:
        offer.reject()
    assert {o.phase for o in offers} == {Phase.REJECTED}


def test_accept_runs_the_notebook_and_rejects_the_others(
    alpha: eb.Broker, beta: eb.Broker, notebook: Path
) -> None:
    offers = eb.request(
        eb.Notebook(notebook, parameters={"n": 21}),
        compute=eb.Compute(cores=1),
        start="within 3 hours",
        brokers=[alpha, beta],
    )
    mine = offers.on("alpha").earliest()
    session = mine.accept()
    assert isinstance(session, eb.Session) and session.broker_name == "alpha"
    assert session.phase in (Phase.ACCEPTED, Phase.WAITING, Phase.PREPARING, Phase.RUNNING)
    others = [o for o in offers if o is not mine]
    assert others and {o.phase for o in others} == {Phase.REJECTED}  # both brokers
    session.wait(timeout=60).raise_if_failed()
    assert session.phase == Phase.COMPLETED
    output = nbformat.read(session.outputs["notebook"], as_version=4)
    assert "n is 42" in json.dumps([cell.get("outputs") for cell in output.cells])
    assert "output notebook" in str(session) and "COMPLETED" in session._repr_html_()
    listed = eb.sessions(brokers=[alpha, beta])
    assert session.uuid in {s.uuid for s in listed} and not listed.warnings
    assert session.uuid in {s.uuid for s in eb.sessions("COMPLETED", brokers=[alpha])}
    assert session.uuid not in {s.uuid for s in eb.sessions(["WAITING"], brokers=[alpha])}


async def test_events_follow_a_session_to_its_end(alpha: eb.Broker, notebook: Path) -> None:
    session = eb.direct(eb.Notebook(notebook), compute=eb.Compute(cores=1), brokers=[alpha])
    seen = [event async for event in session.events(timeout=60)]
    phases = [e.phase for e in seen if e.kind == "phase"]
    assert phases[-1] == Phase.COMPLETED and len(phases) >= 2
    assert len(set(phases)) == len(phases)  # one event per change
    session.wait(timeout=1)  # already final: returns at once


def test_waiting_session_timeout_and_cancel(alpha: eb.Broker, notebook: Path) -> None:
    offers = eb.request(eb.Notebook(notebook), start="in 3 hours", brokers=[alpha])
    session = offers.earliest().accept()
    assert session.phase in (Phase.ACCEPTED, Phase.WAITING)
    started = time.monotonic()
    with pytest.raises(eb.Timeout, match="still") as info:
        session.wait("RUNNING", timeout=0.6)
    assert 0.5 < time.monotonic() - started < 5 and info.value.broker == "alpha"
    session.cancel()
    assert session.phase == Phase.CANCELLED
    assert session.refresh().phase == Phase.CANCELLED
    with pytest.raises(eb.Conflict):
        session.cancel()  # a finished session cannot be cancelled again
    with pytest.raises(eb.Conflict):
        offers.earliest().accept()  # accepted already, now cancelled


def test_direct_books_at_once_or_says_why_not(alpha: eb.Broker, beta: eb.Broker) -> None:
    later = eb.direct(
        eb.Notebook("/nonexistent.ipynb"), start="tomorrow 09:00", brokers=[beta, alpha]
    )
    assert later.broker_name == "beta" and later.phase in (Phase.ACCEPTED, Phase.WAITING)
    later.cancel()
    with pytest.raises(eb.RequestRejected) as info:
        eb.direct(eb.Notebook("/x.ipynb"), compute=eb.Compute(cores=64), brokers=[alpha, beta])
    assert info.value.messages and "alpha" in str(info.value) and "beta" in str(info.value)


def test_a_dead_broker_is_a_warning_not_an_exception(
    alpha: eb.Broker, dead_url: str, notebook: Path
) -> None:
    offers = eb.request(
        eb.Notebook(notebook), start="within 3 hours", brokers=[alpha, f"dead={dead_url}"]
    )
    assert offers.brokers == ["alpha"]
    (warning,) = offers.warnings
    assert warning.broker == "dead" and isinstance(warning.error, eb.BrokerUnavailable)
    assert "dead" in offers._repr_html_() and "warning" in str(offers)
    health = eb.brokers([alpha, f"dead={dead_url}"])
    assert [(b.name, b.ok) for b in health] == [("alpha", True), ("dead", False)]
    assert health[0].platform == "local" and "cannot connect" in health[1].error
    # every broker failing is an error, of the failure's own type
    with pytest.raises(eb.BrokerUnavailable):
        eb.request(eb.Notebook(notebook), brokers=[dead_url])


def test_nobody_can_run_it(alpha: eb.Broker, beta: eb.Broker, notebook: Path) -> None:
    offers = eb.request(eb.Notebook(notebook), compute=eb.Compute(cores=64), brokers=[alpha, beta])
    assert not offers and not offers.warnings
    assert {b for b, _ in offers.reasons} == {"alpha", "beta"}
    assert any(m.kind == "urn:resource-limit" for _, m in offers.reasons)
    with pytest.raises(eb.RequestRejected, match="64 cores") as info:
        offers.earliest()
    assert info.value.exit_code == 3 and "No offers" in offers._repr_html_()


def test_bad_phrase_fails_before_any_http(reference: QuirksServer) -> None:
    with pytest.raises(eb.InvalidRequest, match="Phrases that work"):
        eb.request("a.ipynb", start="when the moon is blue", brokers=[reference.url])
    with pytest.raises(eb.InvalidRequest, match="duration"):
        eb.request("a.ipynb", duration="a fortnight-ish", brokers=[reference.url])
    assert reference.state.log == []  # nothing reached the broker


def test_wrong_token_and_unknown_session(alpha: eb.Broker, notebook: Path) -> None:
    wrong = eb.Broker(alpha.url, name="alpha", token="not-a-token")
    with pytest.raises(eb.AuthenticationError) as info:
        eb.request(eb.Notebook(notebook), brokers=[wrong])
    assert "alpha" in str(info.value) and info.value.exit_code == 5
    with pytest.raises(eb.NotFound) as missing:
        eb.session(str(uuid.uuid4()), brokers=[alpha])
    assert missing.value.exit_code == 4
    with pytest.raises(eb.NotFound):
        eb.find_offer(f"{alpha.url}/sessions/{uuid.uuid4()}", brokers=[alpha])


def test_accepting_an_expired_offer(broker_factory: BrokerFactory, notebook: Path) -> None:
    process = broker_factory(
        "--LocalPlatform.cores=2", "--LocalPlatform.memory_gib=4", "--EBBroker.offer_expiry=1"
    )
    broker = eb.Broker(process.url, name="quick", token=process.tokens["alice"])
    offers = eb.request(eb.Notebook(notebook), start="in 2 hours", brokers=[broker])
    time.sleep(1.5)
    with pytest.raises(eb.OfferExpired) as info:
        offers.earliest().accept()
    assert info.value.exit_code == 6 and info.value.status == 409
    assert "quick" in str(info.value)


def test_configured_brokers_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, two_brokers: tuple, notebook: Path
) -> None:
    first, second = two_brokers
    monkeypatch.setenv("EB_BROKERS", f"alpha={first.url},beta={second.url}")
    monkeypatch.setenv("EB_TOKEN", first.tokens["alice"])
    assert [b.name for b in eb.brokers()] == ["alpha", "beta"]
    offers = eb.request(eb.Notebook(notebook), start="in 2 hours", brokers="beta")
    assert offers.brokers == ["beta"]
    offers.earliest().reject()


def test_gpus_of_a_model_on_a_broker_with_an_accelerator_pool(
    broker_factory: BrokerFactory, notebook: Path
) -> None:
    process = broker_factory(
        "--LocalPlatform.cores=8",
        '--LocalPlatform.accelerators={"gpu:A100": 2, "gpu:T4": 1}',
        "--EBBroker.interactivity_bandwidth_mbit=1000",
        "--EBBroker.interactivity_latency_ms=25",
    )
    broker = eb.Broker(process.url, name="gpu", token=process.tokens["alice"])
    (status,) = eb.brokers([broker])
    assert status.ok
    caps = httpx.get(process.url + "/capabilities", timeout=10).json()
    assert caps["accelerators"] == {"gpu:A100": 2, "gpu:T4": 1}
    assert caps["interactivity"] == {"bandwidth": 1000, "latency": 25}
    assert "jeb:interactivity" in caps["extensions"]
    when = "tomorrow 10:00"
    compute = eb.Compute(cores=1, gpus=1, gpu_model="A100")
    first = eb.request(eb.Notebook(notebook), compute=compute, start=when, brokers=[broker])
    assert first and first.earliest().gpus == 1
    (accel,) = first.earliest().wire.compute.accelerators  # type: ignore[union-attr]
    assert accel.model == "A100" and accel.count.min == 1
    first.earliest().accept()
    # the second A100 is still free at that time; the third is not
    second = eb.request(eb.Notebook(notebook), compute=compute, start=when, brokers=[broker])
    second.earliest().accept()
    third = eb.request(eb.Notebook(notebook), compute=compute, start=when, brokers=[broker])
    assert not third and any("A100" in m.message or "" for _, m in third.reasons)
    # any GPU model: the T4 is free
    anything = eb.request(
        eb.Notebook(notebook), compute=eb.Compute(gpus=1), start=when, brokers=[broker]
    )
    assert anything and anything.earliest().wire.compute.accelerators[0].model == "T4"  # type: ignore[union-attr]
    # jeb:interactivity is checked against the figures the broker was given
    needs = eb.Interactivity(bandwidth="10 Gbit/s", latency=10)
    refused = eb.request(eb.Notebook(notebook), interactivity=needs, brokers=[broker])
    texts = " ".join(m.message or "" for _, m in refused.reasons)
    assert not refused and "10000 Mbit/s" in texts and "at most 10 ms" in texts
    fine = eb.Interactivity(bandwidth=100, latency="50 ms")
    assert eb.request(eb.Notebook(notebook), interactivity=fine, brokers=[broker])
