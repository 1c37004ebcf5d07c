"""Policies over HTTP: a real broker with local rules and a real remote policy service."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.broker.helpers import accept, notebook_request
from tests.conftest import BrokerFactory
from tests.fixtures.policy_service import PolicyService, start_policy_service

GROUPS = {"alice": ["students"], "bob": ["ml", "staff"], "carol": ["staff"]}
RULES = {
    "users": {"carol": {"allow": False, "messages": ["carol has no SRCNet account yet"]}},
    "groups": {"ml": {"allow": True, "limits": {"cores": 6}}},
    "default": {"allow": True},
}


def config(service_url: str) -> str:
    return f"""
c.EBBroker.policies = ["limits", "executables", "accelerators", "remote"]
c.LimitsPolicy.max_sessions_per_user = 1
c.LimitsPolicy.max_duration = {{"students": "PT2H", "staff": "PT12H"}}
c.LimitsPolicy.max_resources = {{"students": {{"cores": 2}}, "*": {{"cores": 8}}}}
c.ExecutablePolicy.allowed_locations = ["/srv/notebooks/*"]
c.AcceleratorPolicy.groups = {{"ml": ["gpu:*"], "*": ["gpu:T4"]}}
c.LocalPlatform.accelerators = {{"gpu:A100": 2, "gpu:T4": 2}}
c.RemotePolicy.url = "{service_url}"
c.RemotePolicy.token_env = "EB_TEST_POLICY_TOKEN"
"""


@pytest.fixture
def service(tmp_path: Path) -> Iterator[PolicyService]:
    svc = start_policy_service(tmp_path / "policy", RULES, token="global-secret")
    yield svc
    svc.stop()


def _later() -> str:
    start = datetime.now(UTC) + timedelta(hours=2)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ") + "/PT4H"


def _ask(client: httpx.Client, body: dict[str, Any]) -> Any:
    response = client.post("/requests", json=body)
    assert response.status_code == 303, response.text
    return response.json()


def _texts(answer: Any) -> list[str]:
    return [m["message"] for m in answer["meta"].get("messages", [])]


def _notebook(cores: int = 1, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("location", "/srv/notebooks/a.ipynb")
    kwargs.setdefault("start", _later())
    return notebook_request(cores, 1, **kwargs)


def test_local_and_global_rules_over_http(
    broker_factory: BrokerFactory, service: PolicyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EB_TEST_POLICY_TOKEN", "global-secret")
    broker = broker_factory(
        "--LocalPlatform.cores=16",
        "--LocalPlatform.memory_gib=32",
        groups=GROUPS,
        config=config(service.url),
    )
    with broker.client("alice") as alice, broker.client("bob") as bob:
        caps = alice.get("/capabilities").json()
        assert caps["policies"] == ["limits", "executables", "accelerators", "remote"]
        summaries = {p["name"]: p["summary"] for p in caps["jeb:policies"]}
        assert "at most 1 active sessions per user" in summaries["limits"]

        # a student asking for up to 8 cores: capped to 2, and told so
        capped = _ask(alice, _notebook(1, max_cores=8))
        assert capped["result"] == "YES"
        assert capped["offers"][0]["compute"]["cores"]["max"] == 2
        assert any(
            "capped to 2 cores (asked up to 8) by policy limits" in t for t in _texts(capped)
        )
        # too long for a student
        long = _ask(alice, _notebook(1, duration="PT3H"))
        assert long["result"] == "NO"
        assert "sessions may last at most 2 h for group students" in " ".join(_texts(long))
        # a notebook outside the allowed places
        elsewhere = _ask(alice, _notebook(1, location="/tmp/x.ipynb"))
        assert elsewhere["result"] == "NO"
        assert elsewhere["meta"]["messages"][0]["kind"] == "urn:policy"

        # one active session per user: the second accept and the next request are refused
        first = _ask(alice, _notebook(1))
        assert accept(alice, first["offers"][0]["meta"]["url"]).status_code == 200
        refused = accept(alice, capped["offers"][0]["meta"]["url"])
        assert refused.status_code == 403 and refused.json()["kind"] == "urn:policy"
        again = _ask(alice, _notebook(1))
        assert again["result"] == "NO"
        assert "you have 1 active session and at most 1 per user" in " ".join(_texts(again))

        # accelerators per group: students may use the T4s only
        gpu = _notebook(1)
        gpu["compute"]["jeb:accelerators"] = [{"type": "GPU", "model": "A100"}]
        assert accept(alice, first["offers"][0]["meta"]["url"], "CANCELLED").status_code == 200
        no_a100 = _ask(alice, gpu)
        assert no_a100["result"] == "NO"
        assert "gpu:A100 accelerators are not available to group students" in " ".join(
            _texts(no_a100)
        )
        gpu["compute"]["jeb:accelerators"] = [{"type": "GPU"}]
        any_gpu = _ask(alice, gpu)
        assert any_gpu["result"] == "YES"
        assert {
            a["model"] for o in any_gpu["offers"] for a in o["compute"]["jeb:accelerators"]
        } == {"T4"}

        # the global policy: bob (group ml) is capped to 6 cores by it, below the local 8
        ml = _ask(bob, _notebook(1, max_cores=16))
        assert ml["offers"][0]["compute"]["cores"]["max"] == 6
        assert any("capped to 6 cores (asked up to 16) by policy global" in t for t in _texts(ml))
        gpu["compute"]["jeb:accelerators"] = [{"type": "GPU", "model": "A100"}]
        assert _ask(bob, gpu)["result"] == "YES"  # ml may use the A100s
    # carol: allowed locally, refused by the global policy, with its reason
    with broker.client("carol") as carol:
        refused = _ask(carol, _notebook(1))
        assert refused["result"] == "NO"
        assert "policy global: carol has no SRCNet account yet" in _texts(refused)
    asked = service.asked()
    assert {a["user"] for a in asked} >= {"alice", "bob", "carol"}
    assert asked[0]["broker"] == "test-broker" and asked[0]["request"]["executable"]
    # the policy service goes away: fail closed, with a clear reason
    service.stop()
    with broker.client("bob") as bob:
        closed = _ask(bob, _notebook(1))
        assert closed["result"] == "NO"
        assert any("policy global: cannot decide" in t for t in _texts(closed))
