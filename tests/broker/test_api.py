"""The broker's HTTP API, against a real eb-broker process."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import yaml

from eb_sdk.model import OfferSetResponse, ScheduledExecutionSession
from tests.broker.helpers import SERVER, accept, notebook_request
from tests.fixtures.services import BrokerProcess


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_request_gives_303_location_and_offers(broker: BrokerProcess) -> None:
    with broker.client() as c:
        r = c.post("/requests", json=notebook_request(2, 2))
        assert r.status_code == 303
        assert r.headers["Location"].startswith(broker.url + "/offersets/")
        answer = OfferSetResponse.model_validate(r.json())
        assert answer.result == "YES"
        assert answer.offers and 1 <= len(answer.offers) <= 4
        offer = answer.offers[0]
        assert isinstance(offer, ScheduledExecutionSession)
        assert offer.phase == "OFFERED" and offer.expires is not None
        assert offer.compute.cores.min == 2  # type: ignore[union-attr]
        options = offer.meta.options  # type: ignore[union-attr]
        assert options and set(options[0].values) == {"ACCEPTED", "REJECTED"}  # type: ignore[attr-defined]
        # the Location answers with the same offer set
        again = c.get(r.headers["Location"])
        assert again.status_code == 200 and again.json()["meta"]["uuid"] == r.json()["meta"]["uuid"]


def test_accept_rejects_siblings_and_then_only_cancel_is_allowed(broker: BrokerProcess) -> None:
    with broker.client() as c:
        start = datetime.now(UTC) + timedelta(hours=2)
        body = notebook_request(1, 1, start=f"{_iso(start)}/PT6H")
        offers = c.post("/requests", json=body).json()["offers"]
        assert len(offers) >= 2
        first = offers[0]["meta"]["url"]
        r = accept(c, first)
        assert r.status_code == 200, r.text
        session = r.json()
        assert session["phase"] in ("ACCEPTED", "WAITING")
        assert session["meta"]["options"][0]["values"] == ["CANCELLED"]
        sibling = c.get(offers[1]["meta"]["url"]).json()
        assert sibling["phase"] == "REJECTED"
        # accepting twice, or accepting a rejected sibling, is a conflict
        assert accept(c, first).status_code == 409
        conflict = accept(c, offers[1]["meta"]["url"])
        assert conflict.status_code == 409 and conflict.json()["kind"] == "urn:invalid-update"
        # a client may not set an arbitrary phase
        bad = accept(c, first, "RUNNING")
        assert bad.status_code == 409
        # cancel a waiting session: CANCELLED at once, capacity free
        cancelled = accept(c, first, "CANCELLED")
        assert cancelled.status_code == 200 and cancelled.json()["phase"] == "CANCELLED"
        listed = c.get("/sessions", params={"phase": "CANCELLED"}).json()
        assert [s["meta"]["uuid"] for s in listed] == [session["meta"]["uuid"]]


def test_path_slash_phase_and_yaml_both_ways(broker: BrokerProcess) -> None:
    with broker.client() as c:
        r = c.post(
            "/requests",
            content=yaml.safe_dump(notebook_request()),
            headers={"Content-Type": "application/yaml", "Accept": "application/yaml"},
        )
        assert r.status_code == 303 and r.headers["Content-Type"].startswith("application/yaml")
        answer = yaml.safe_load(r.text)
        url = answer["offers"][0]["meta"]["url"]
        update = "kind: uri:enum-value-update\npath: /phase\nvalue: ACCEPTED\n"
        r = c.post(url, content=update, headers={"Content-Type": "text/yaml"})
        assert r.status_code == 200, r.text
        assert r.json()["phase"] in ("ACCEPTED", "WAITING", "PREPARING", "FAILED", "RELEASING")


def test_owner_only_and_credentials_required(broker: BrokerProcess) -> None:
    with broker.client("alice") as alice, broker.client("bob") as bob:
        r = alice.post("/requests", json=notebook_request())
        offerset = r.headers["Location"]
        offer = r.json()["offers"][0]["meta"]["url"]
        assert bob.get(offerset).status_code == 404
        assert bob.get(offer).status_code == 404
        assert accept(bob, offer).status_code == 404
        assert bob.get("/sessions").json() == []
    anonymous = httpx.post(broker.url + "/requests", json=notebook_request())
    assert anonymous.status_code == 401 and anonymous.json()["kind"] == "urn:unauthorized"
    wrong = httpx.post(
        broker.url + "/requests", json=notebook_request(), headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    assert httpx.get(broker.url + "/sessions").status_code == 401


def test_no_with_reasons_and_earliest_fit(broker: BrokerProcess) -> None:
    with broker.client() as c:
        too_big = c.post("/requests", json=notebook_request(64)).json()
        assert too_big["result"] == "NO"
        kinds = {m["kind"] for m in too_big["meta"]["messages"]}
        assert "urn:resource-limit" in kinds
        # fill the next 3 hours with 4 cores, then ask for 1 core within the next hour
        start = datetime.now(UTC) + timedelta(minutes=1)
        full = notebook_request(4, 1, start=f"{_iso(start)}/PT0S", duration="PT3H")
        offer = c.post("/requests", json=full).json()["offers"][0]
        assert accept(c, offer["meta"]["url"]).status_code == 200
        busy = notebook_request(1, 1, start=f"{_iso(start + timedelta(minutes=5))}/PT30M")
        answer = c.post("/requests", json=busy).json()
        assert answer["result"] == "NO"
        kinds = [m["kind"] for m in answer["meta"]["messages"]]
        assert "urn:no-capacity" in kinds and "urn:earliest-fit" in kinds


def test_docker_and_unknown_kinds_get_no_not_supported(broker: BrokerProcess) -> None:
    with broker.client() as c:
        body = notebook_request()
        body["executable"] = {
            "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/docker-container.yaml",
            "image": {"locations": ["alpine"]},
        }
        r = c.post("/requests", json=body)
        assert r.status_code == 303 and r.json()["result"] == "NO"
        assert r.json()["meta"]["messages"][0]["kind"] == "urn:not-supported"
        body["executable"] = {"kind": "urn:example:experimental", "x": 1}
        r = c.post("/requests", json=body)
        assert r.status_code == 303 and r.json()["result"] == "NO"
        assert any("urn:example:experimental" in m["message"] for m in r.json()["meta"]["messages"])


def test_bad_input_is_4xx_with_messageitem(broker: BrokerProcess) -> None:
    with broker.client() as c:
        cases = [
            (b"{not json", {"Content-Type": "application/json"}, 400),
            (b"a: [unclosed", {"Content-Type": "application/yaml"}, 400),
            (b"<xml/>", {"Content-Type": "application/xml"}, 415),
            (b"[1, 2]", {"Content-Type": "application/json"}, 400),
            (b"", {"Content-Type": "application/json"}, 400),
            (json.dumps({"compute": {"kind": "x", "cores": 1}}).encode(), {}, 303),
            (json.dumps(notebook_request(-1)).encode(), {}, 400),
            (json.dumps(notebook_request(4, max_cores=2)).encode(), {}, 400),
            (json.dumps(notebook_request(duration="P99999D")).encode(), {}, 303),
            (json.dumps(notebook_request(duration="-PT1H")).encode(), {}, 303),
            (json.dumps(notebook_request(duration="soon")).encode(), {}, 400),
            (json.dumps({"schedule": {"requested": {"start": "yesterday"}}}).encode(), {}, 400),
            (b"x" * (2 * 1024 * 1024), {"Content-Type": "application/json"}, 413),
        ]
        for body, headers, status in cases:
            r = c.post("/requests", content=body, headers=headers)
            assert r.status_code == status, (body[:60], r.status_code, r.text[:300])
            data = r.json()
            if status == 303:
                assert data["result"] == "NO" and data["meta"]["messages"], data
            else:
                assert data["level"] == "ERROR" and data["kind"] and data["message"], data
        r = c.post(
            "/sessions/not-a-uuid",
            json={"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"},
        )
        assert r.status_code == 404
        offer = c.post("/requests", json=notebook_request()).json()["offers"][0]["meta"]["url"]
        r = c.post(offer, json={"kind": "uri:integer-delta-update", "path": "cores", "delta": 1})
        assert r.status_code == 400 and r.json()["kind"] == "urn:invalid-update"
        r = c.post(offer, json={"kind": "uri:enum-value-update", "path": "name", "value": "x"})
        assert r.status_code == 400
        r = c.get("/sessions", params={"phase": "SLEEPING"})
        assert r.status_code == 400
    assert httpx.get(broker.url + "/nowhere").status_code == 404


def test_expired_offer_cannot_be_accepted_and_frees_capacity(broker_factory) -> None:  # type: ignore[no-untyped-def]
    b = broker_factory(
        "--LocalPlatform.cores=2", "--LocalPlatform.memory_gib=4", "--EBBroker.offer_expiry=1"
    )
    with b.client() as c:
        start = datetime.now(UTC) + timedelta(hours=1)
        body = notebook_request(2, 1, start=f"{_iso(start)}/PT0S")
        first = c.post("/requests", json=body).json()
        assert first["result"] == "YES"
        # while the offer holds the capacity, the same slot cannot be offered to bob
        with b.client("bob") as bob:
            assert bob.post("/requests", json=body).json()["result"] == "NO"
            time.sleep(1.6)
            session = c.get(first["offers"][0]["meta"]["url"]).json()
            assert session["phase"] == "EXPIRED"
            r = accept(c, first["offers"][0]["meta"]["url"])
            assert r.status_code == 409 and r.json()["kind"] == "urn:offer-expired"
            # capacity is free again
            assert bob.post("/requests", json=body).json()["result"] == "YES"


def test_capabilities_health_openapi_metrics(broker: BrokerProcess) -> None:
    caps = httpx.get(broker.url + "/capabilities").json()
    assert caps["platform"] == "local" and caps["max_compute"]["cores"] == 4
    assert SERVER in caps["executables"]
    assert caps["offer_expiry"] == "PT5M" and caps["timezone"] == "UTC"
    assert httpx.get(broker.url + "/health").json()["status"] == "ok"
    doc = httpx.get(broker.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.1") and "/requests" in doc["paths"]
    # no network figures configured: jeb:interactivity is not claimed, and not checked
    assert caps["interactivity"] == {} and "jeb:interactivity" not in caps["extensions"]
    assert "jeb:name" in caps["extensions"]
    with broker.client() as c:
        body = {**notebook_request(), "jeb:interactivity": {"bandwidth": {"min": 1e6}}}
        assert c.post("/requests", json=body).json()["result"] == "YES"
        # the session name: jeb:name, and the older plain 'name' is still read
        for key in ("jeb:name", "name"):
            named = c.post("/requests", json={**notebook_request(), key: f"run-{key}"}).json()
            stored = c.get(named["offers"][0]["meta"]["url"]).json()
            assert stored["meta"]["name"] == f"run-{key}", stored["meta"]
    metrics = httpx.get(broker.url + "/metrics").text
    assert "eb_offer_seconds_count" in metrics and "eb_http_requests_total" in metrics


def _next_monday_9(now: datetime) -> datetime:
    days = (7 - now.weekday()) % 7 or 7
    return (now + timedelta(days=days)).replace(hour=9, minute=0, second=0, microsecond=0)


def test_seeds_example_three_mornings(broker_factory) -> None:  # type: ignore[no-untyped-def]
    """A 4 h session starting between 09:00 and 12:00 on Mon, Tue or Wed: offers at 09:00,
    10:00 and 11:00 of each day."""
    b = broker_factory(
        "--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8", "--EBBroker.max_offers=9"
    )
    monday = _next_monday_9(datetime.now(UTC))
    starts = [f"{_iso(monday + timedelta(days=d))}/PT3H" for d in range(3)]
    with b.client() as c:
        answer = c.post(
            "/requests", json=notebook_request(2, 2, starts=starts, duration="PT4H")
        ).json()
    assert answer["result"] == "YES"
    got = sorted(o["schedule"]["available"]["start"].split("/")[0] for o in answer["offers"])
    expected = sorted(_iso(monday + timedelta(days=d, hours=h)) for d in range(3) for h in range(3))
    assert got == expected
    assert {o["schedule"]["available"]["duration"] for o in answer["offers"]} == {"PT4H"}


def test_maintenance_window_from_config_blocks_offers(broker_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    start = (datetime.now(UTC) + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=2)
    config = tmp_path / "maintenance.py"
    config.write_text(
        "c.EBBroker.capacity_periods = [\n"
        f"    {{'start': '{_iso(start)}', 'end': '{_iso(end)}', 'cores': 0}},\n"
        "]\n"
    )
    b = broker_factory(
        "--LocalPlatform.cores=4",
        "--LocalPlatform.memory_gib=8",
        f"--EBBroker.config_file={config}",
    )
    with b.client() as c:
        inside = notebook_request(
            1, 1, start=f"{_iso(start + timedelta(minutes=30))}/PT30M", duration="PT30M"
        )
        answer = c.post("/requests", json=inside).json()
        assert answer["result"] == "NO"
        earliest = [m for m in answer["meta"]["messages"] if m["kind"] == "urn:earliest-fit"]
        assert earliest
        fit_start = datetime.fromisoformat(earliest[0]["values"]["start"])
        fit_end = datetime.fromisoformat(earliest[0]["values"]["end"])
        assert fit_end <= start or fit_start >= end  # never inside the maintenance window
        before = notebook_request(
            1, 1, start=f"{_iso(start - timedelta(hours=1))}/PT0S", duration="PT1H"
        )
        assert c.post("/requests", json=before).json()["result"] == "YES"
        overlapping = notebook_request(
            1, 1, start=f"{_iso(start - timedelta(hours=1))}/PT0S", duration="PT2H"
        )
        assert c.post("/requests", json=overlapping).json()["result"] == "NO"
