"""Three real brokers, a site aggregator and a top aggregator on loopback; a broker dies.

leaf-a, leaf-b ── site (aggregator; trusts top's service token) ──┐
                                                                  ├── top (aggregator)
leaf-c (the user's own token, passed through) ────────────────────┘

The site also has a broker that accepts connections and never answers, so every answer from
it shows the deadline and, after two failures, its open circuit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.broker.helpers import COMPUTE, accept, notebook_request
from tests.conftest import BrokerFactory
from tests.fixtures.aggregate import SERVICE_TOKENS, aggregator_config, hung_broker, trusting
from tests.fixtures.services import BrokerProcess

LEAF = ("--LocalPlatform.memory_gib=16",)


@dataclass
class Topology:
    a: BrokerProcess
    b: BrokerProcess
    c: BrokerProcess
    site: BrokerProcess
    top: BrokerProcess


@pytest.fixture
def topology(broker_factory: BrokerFactory) -> Iterator[Topology]:
    site_trust = trusting("site")
    a = broker_factory(
        *LEAF, "--LocalPlatform.cores=4", name="a", broker_name="leaf-a", config=site_trust
    )
    b = broker_factory(
        *LEAF,
        "--LocalPlatform.cores=8",
        name="b",
        broker_name="leaf-b",
        config=site_trust + "c.LocalPlatform.accelerators = {'gpu:A100': 2}\n",
    )
    c = broker_factory(*LEAF, "--LocalPlatform.cores=2", name="c", broker_name="leaf-c")
    with hung_broker() as hung:
        site = broker_factory(
            name="site",
            broker_name="site",
            config=aggregator_config(
                [
                    {"name": "leaf-a", "url": a.url, "token": SERVICE_TOKENS["site"]},
                    {"name": "leaf-b", "url": b.url, "token": SERVICE_TOKENS["site"]},
                    {"name": "hung", "url": hung, "token": SERVICE_TOKENS["site"]},
                    # leaf-c does not trust the site's token: it answers 401
                    {"name": "untrusting", "url": c.url, "token": SERVICE_TOKENS["site"]},
                ],
                deadline=1.5,
                failure_threshold=2,
            )
            + trusting("top"),
        )
        top = broker_factory(
            name="top",
            broker_name="top",
            config=aggregator_config(
                [
                    {
                        "name": "site",
                        "url": site.url,
                        "identity": "service",
                        "token": SERVICE_TOKENS["top"],
                    },
                    {"name": "leaf-c", "url": c.url},
                ],
                deadline=4.0,
                max_offers=6,
            ),
        )
        yield Topology(a, b, c, site, top)


def _later(hours: int = 2) -> str:
    """A start window a few hours ahead, so accepted sessions wait (and never run)."""
    start = datetime.now(UTC) + timedelta(hours=hours)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ") + "/PT6H"


def _ask(client: httpx.Client, body: dict) -> dict:  # type: ignore[type-arg]
    response = client.post("/requests", json=body)
    assert response.status_code == 303, response.text
    assert response.headers["Location"].startswith(str(client.base_url))
    if response.json()["result"] == "YES":  # where the time went
        assert "slowest;dur=" in response.headers["Server-Timing"]
    return response.json()  # type: ignore[no-any-return]


def _texts(answer: dict) -> list[str]:  # type: ignore[type-arg]
    return [m["message"] for m in answer["meta"].get("messages", [])]


def test_top_and_site_aggregators_over_three_brokers(topology: Topology) -> None:
    t = topology
    with t.top.client("alice") as top, t.b.client("alice") as b, t.a.client("alice") as a:
        # -- one request, offers from every leaf, under the top's own ids ------------------
        answer = _ask(top, notebook_request(1, 1, max_cores=2, start=_later()))
        assert answer["result"] == "YES"
        offers = answer["offers"]
        routes = {tuple(o["jeb:route"]) for o in offers}
        assert {("site", "leaf-a"), ("site", "leaf-b"), ("leaf-c",)} <= routes
        assert len(offers) <= 6
        starts = [o["schedule"]["available"]["start"].split("/")[0] for o in offers]
        assert starts == sorted(starts)  # ranked: earliest first
        for offer in offers:
            assert offer["meta"]["url"].startswith(t.top.url + "/sessions/")
        # the hung broker below the site: a WARN naming it, and the answer is still YES
        assert any("broker hung did not answer" in text for text in _texts(answer))
        assert any(
            "site: broker untrusting refused the request: " in text for text in _texts(answer)
        )

        # -- accept one from leaf-b: its siblings everywhere are rejected --------------------
        chosen = next(o for o in offers if o["jeb:route"] == ["site", "leaf-b"])
        accepted = accept(top, chosen["meta"]["url"])
        assert accepted.status_code == 200, accepted.text
        session = accepted.json()
        assert session["phase"] in ("ACCEPTED", "WAITING")
        assert session["meta"]["uuid"] == chosen["meta"]["uuid"]
        on_b = b.get("/sessions").json()
        assert [s["phase"] for s in on_b] in (["ACCEPTED"], ["WAITING"])
        for offer in offers:
            if offer is chosen:
                continue
            assert top.get(offer["meta"]["url"]).json()["phase"] == "REJECTED"
        # the leaves agree (alice sees her offers on leaf-a directly)
        leaf_a_offers = a.get("/sessions", params={"phase": "OFFERED,REJECTED"}).json()
        assert leaf_a_offers and {s["phase"] for s in leaf_a_offers} == {"REJECTED"}

        # -- status, list and cancel through the top --------------------------------------------
        listed = top.get("/sessions").json()
        assert [s["meta"]["uuid"] for s in listed] == [session["meta"]["uuid"]]
        assert listed[0]["jeb:route"] == ["site", "leaf-b"]
        assert top.get(f"/sessions/{session['meta']['uuid']}").json()["phase"] == "WAITING"
        cancelled = accept(top, chosen["meta"]["url"], "CANCELLED")
        assert cancelled.status_code == 200 and cancelled.json()["phase"] == "CANCELLED"
        assert b.get("/sessions", params={"phase": "CANCELLED"}).json()[0]["phase"] == "CANCELLED"

        # another user cannot see or touch alice's sessions through the aggregator
        with t.top.client("bob") as bob:
            assert bob.get(chosen["meta"]["url"]).status_code == 404
            assert accept(bob, chosen["meta"]["url"], "CANCELLED").status_code == 404

        # -- routing hints: GPUs only on leaf-b; the others are not asked ------------------------
        gpu = notebook_request(1, 1)
        gpu["compute"]["jeb:accelerators"] = [{"type": "GPU", "count": {"min": 1}}]
        answer = _ask(top, gpu)
        assert answer["result"] == "YES"
        assert {tuple(o["jeb:route"]) for o in answer["offers"]} == {("site", "leaf-b")}
        assert any(
            "broker leaf-c not asked: it has no gpu accelerators" in m for m in _texts(answer)
        )
        assert any("site: broker leaf-a not asked: it has no gpu" in m for m in _texts(answer))

        # nobody runs docker containers here: NO, with every broker's reason
        docker = {
            "executable": {
                "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"
                "executable/docker-container.yaml",
                "image": {"locations": ["ghcr.io/ivoa/example:1"]},
            },
            "compute": {"kind": COMPUTE, "cores": {"min": 1}},
        }
        answer = _ask(top, docker)
        assert answer["result"] == "NO"
        assert any("cannot run docker-container executables" in m for m in _texts(answer))

        # -- /direct: the best offer of all, booked at once; the others rejected -------------
        direct = top.post("/direct", json=notebook_request(1, 1, start=_later(4)))
        assert direct.status_code == 303, direct.text
        assert direct.headers["Location"].startswith(t.top.url + "/sessions/")
        booked = direct.json()
        assert booked["phase"] in ("ACCEPTED", "WAITING") and booked["jeb:route"]
        waiting = top.get("/sessions", params={"phase": "WAITING,ACCEPTED"}).json()
        assert [s["meta"]["uuid"] for s in waiting] == [booked["meta"]["uuid"]]

        # -- a broker dies mid-test ------------------------------------------------------------
        t.a.kill9()
        answer = _ask(top, notebook_request(1, 1))
        assert answer["result"] == "YES"
        assert {tuple(o["jeb:route"]) for o in answer["offers"]} == {
            ("site", "leaf-b"),
            ("leaf-c",),
        }
        warnings = [m for m in answer["meta"]["messages"] if m["level"] == "WARN"]
        assert any("broker leaf-a did not answer" in m["message"] for m in warnings), warnings
        # a second failure opens leaf-a's circuit at the site: visible in /health, not asked
        _ask(top, notebook_request(1, 1))
        with t.site.client("alice") as site:
            health = {b["name"]: b for b in site.get("/health").json()["brokers"]}
            assert health["leaf-a"]["state"] == "open" and health["leaf-a"]["failures"] >= 2
            assert health["hung"]["state"] == "open"
            assert health["untrusting"]["state"] == "closed"  # a 401 is an answer
            caps = {b["name"]: b for b in site.get("/capabilities").json()["jeb:brokers"]}
            assert caps["leaf-a"]["state"] == "open"
            metrics = site.get("/metrics").text
            assert 'eb_downstream_circuit{broker="leaf-a"} 2.0' in metrics
            assert site.get("/openapi.json").json()["openapi"].startswith("3.1")
        started = time.monotonic()
        answer = _ask(top, notebook_request(1, 1))
        elapsed = time.monotonic() - started
        assert any("broker leaf-a not asked: it failed" in m for m in _texts(answer))
        assert elapsed < 1.5  # nobody waited for the dead or the hung broker this time

        # -- ids survive a restart of the top aggregator -----------------------------------------
        again = _ask(top, notebook_request(1, 1, start=_later()))
        kept = next(o for o in again["offers"] if o["jeb:route"] == ["leaf-c"])
        t.top.stop()
        t.top.start()
        assert top.get(kept["meta"]["url"]).json()["phase"] == "OFFERED"
        assert accept(top, kept["meta"]["url"]).status_code == 200

        # -- the broker holding a session dies: its last known state, with a warning -----------
        t.c.kill9()
        stale = top.get(kept["meta"]["url"]).json()
        assert stale["phase"] in ("ACCEPTED", "WAITING", "PREPARING")
        assert any(
            m["level"] == "WARN" and "leaf-c" in m["message"] for m in stale["meta"]["messages"]
        )
        # forwarding a cancel to a dead broker is an honest 502, not a crash
        failed = accept(top, kept["meta"]["url"], "CANCELLED")
        assert failed.status_code == 502 and failed.json()["kind"] == "urn:platform-unavailable"
