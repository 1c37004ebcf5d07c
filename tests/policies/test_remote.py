"""The remote policy against a real little HTTP policy service (in this process)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tornado.httpserver import HTTPServer

from eb_broker.policies import PolicyChain
from eb_broker.policies.allocation import GroupAllocationPolicy
from eb_broker.policies.limits import LimitsPolicy
from eb_broker.policies.remote import PolicyServiceError, RemotePolicy, parse_answer
from tests.fixtures.policy_service import make_app
from tests.fixtures.services import free_port
from tests.policies.test_policies import gpu_request, query, texts

RULES: dict[str, Any] = {
    "users": {
        "mallory": {"allow": False, "messages": ["mallory's SRCNet allocation is used up"]},
        "dave": {"allow": True, "limits": {"cores": 2}, "max_duration": "PT2H"},
        "erin": {"allow": True, "pools": ["local"], "accelerators": ["gpu:T4"]},
        "broken": {"messages": "no allow field"},
    },
    "default": {"allow": True, "messages": ["ok by the global policy"]},
}


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    server = HTTPServer(make_app(RULES, tmp_path / "asked.jsonl", token="s3cret"))
    server.listen(port, "127.0.0.1")
    yield f"http://127.0.0.1:{port}/decide"
    server.stop()


def remote(url: str, **kwargs: Any) -> RemotePolicy:
    return RemotePolicy(url=url, token="s3cret", **kwargs)


async def test_allow_deny_and_limits(service: str, tmp_path: Path) -> None:
    policy = remote(service)
    try:
        ok = await policy.decide(query("alice", ("astro",)))
        assert ok.allowed and texts(ok.notes) == ["policy global: ok by the global policy"]
        no = await policy.decide(query("mallory"))
        assert texts(no.refusals) == ["policy global: mallory's SRCNet allocation is used up"]
        dave = await policy.decide(query("dave"))
        assert dave.caps["cores"].amount == 2 and dave.caps["cores"].policy == "global"
        long = await policy.decide(query("dave", duration=timedelta(hours=3)))
        assert "sessions may last at most 2 h" in texts(long.refusals)[0]
        broken = await policy.decide(query("broken"))
        assert "cannot decide" in texts(broken.refusals)[0]
        asked = [line for line in (tmp_path / "asked.jsonl").read_text().splitlines()]
        assert '"user": "alice"' in asked[0] and '"groups": ["astro"]' in asked[0]
        assert '"version": 1' in asked[0] and '"request": {' in asked[0]
    finally:
        await policy.close()


async def test_combined_with_local_rules(service: str) -> None:
    chain = PolicyChain(
        [
            GroupAllocationPolicy(
                pools=[{"name": "national", "cores": 500}, {"name": "local", "cores": 500}],
                groups={"local": ["national", "local"]},
            ),
            LimitsPolicy(max_resources={"*": {"cores": 8}}),
            remote(service),
        ]
    )
    try:
        # the global service narrows erin's pools and accelerators; local rules still apply
        erin = await chain.evaluate(
            query("erin", ("local",), gpu_request(), pools=("gpu:A100", "gpu:T4"))
        )
        assert erin.allowed and erin.pools == frozenset({"local"})
        assert erin.accelerators == frozenset({"gpu:T4"})
        assert erin.caps["cores"].amount == 8
        assert (
            "booking from the local allocation (group-allocation: local, national; global: local"
            in (texts(erin.notes)[-1])
        )
        # dave: the global limit (2 cores) is stricter than the local one (8)
        dave = await chain.evaluate(query("dave", ("local",)))
        assert dave.caps["cores"].amount == 2
        # mallory: refused globally, even though the local rules would allow her
        assert not (await chain.evaluate(query("mallory", ("local",)))).allowed
    finally:
        await chain.close()


async def test_unreachable_service_denies_or_warns() -> None:
    dead = f"http://127.0.0.1:{free_port()}/decide"
    strict = RemotePolicy(url=dead, timeout=1.0)
    lenient = RemotePolicy(url=dead, timeout=1.0, on_error="allow")
    try:
        refused = await strict.decide(query())
        assert "policy global: cannot decide (cannot reach" in texts(refused.refusals)[0]
        allowed = await lenient.decide(query())
        assert allowed.allowed and allowed.notes[0].level == "WARN"
        assert "not consulted" in texts(allowed.notes)[0]
    finally:
        await strict.close()
        await lenient.close()


async def test_wrong_token_and_cache(service: str, tmp_path: Path) -> None:
    wrong = RemotePolicy(url=service, token="nope")
    cached = remote(service, cache_seconds=60)
    try:
        assert "answered HTTP 401" in texts((await wrong.decide(query())).refusals)[0]
        await cached.decide(query("alice"))
        await cached.decide(query("alice"))
        lines = (tmp_path / "asked.jsonl").read_text().splitlines()
        assert len(lines) == 1
    finally:
        await wrong.close()
        await cached.close()


def test_answers_are_checked() -> None:
    assert parse_answer({"allow": True})["allow"] is True
    for bad in [
        [],
        {},
        {"allow": "yes"},
        {"allow": True, "limits": {"gpus": 1}},
        {"allow": True, "pools": "local"},
        {"allow": True, "max_duration": "soon"},
    ]:
        with pytest.raises(PolicyServiceError):
            parse_answer(bad)
