"""The aggregator's pure rules (routing hints, ranking, rewriting) and its circuit breaker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from eb_broker.aggregate.breaker import CircuitBreaker, State
from eb_broker.aggregate.config import downstream_brokers
from eb_broker.aggregate.routing import (
    Candidate,
    choose,
    fit,
    from_broker,
    merge_capabilities,
    namespace,
    offer_start,
    origin,
    proxy_uuid,
    rank,
    rewrite_session,
    server_timing,
    unsuitable,
)
from eb_broker.auth import AggregatorAuthenticator, AuthError, Identity, identity_headers
from eb_sdk.model import Capabilities, ExecutionRequest, ScheduledExecutionSession
from eb_sdk.model import messages as msg
from tests.broker.helpers import NOTEBOOK, SERVER, notebook_request

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)


def caps(**kwargs: Any) -> Capabilities:
    values: dict[str, Any] = {
        "name": "b",
        "platform": "local",
        "version": "1",
        "executables": [NOTEBOOK],
        "max_compute": {"cores": 8, "memory": 32},
        "accelerators": {},
        "timezone": "UTC",
        "offer_expiry": "PT5M",
        "max_offers": 4,
        "max_duration": "PT24H",
    }
    values.update(kwargs)
    return Capabilities.model_validate(values)


def offer(start: datetime, cores: int = 1, **extra: Any) -> ScheduledExecutionSession:
    data: dict[str, Any] = {
        "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/session/"
        "scheduled-execution-session.yaml",
        "meta": {"uuid": "6d3c7f0e-0000-4000-8000-00000000000" + str(cores % 10)},
        "phase": "OFFERED",
        "compute": {
            "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/compute/"
            "simple-compute-resource.yaml",
            "cores": {"min": cores, "max": cores},
        },
        "schedule": {"available": {"start": start.isoformat() + "/PT0S", "duration": "PT1H"}},
        **extra,
    }
    return ScheduledExecutionSession.model_validate(data)


def request(**kwargs: Any) -> ExecutionRequest:
    return ExecutionRequest.model_validate(notebook_request(**kwargs))


def test_unsuitable_brokers_are_named_with_the_reason() -> None:
    assert unsuitable(None, request()) is None
    assert unsuitable(caps(), request()) is None
    server = ExecutionRequest.model_validate({"executable": {"kind": SERVER}})
    assert unsuitable(caps(), server) == (
        "it cannot run jupyter-server executables (it runs jupyter-notebook)"
    )
    gpu = notebook_request()
    gpu["compute"]["jeb:accelerators"] = [{"type": "GPU", "model": "A100"}]
    gpu_request = ExecutionRequest.model_validate(gpu)
    assert unsuitable(caps(), gpu_request) == "it has no gpu:A100 accelerators"
    assert unsuitable(caps(accelerators={"gpu:A100": 2}), gpu_request) is None
    assert "not for you" in str(
        unsuitable(
            caps(accelerators={"gpu:A100": 2}), gpu_request, allowed_accelerators=frozenset()
        )
    )
    assert unsuitable(caps(), request(cores=16)) == (
        "its largest session has 8 cores; the request needs at least 16"
    )
    assert "last at most 1 day" in str(unsuitable(caps(), request(duration="PT48H")))
    # an aggregator that does not know all its brokers yet is never skipped
    assert unsuitable(caps(**{"jeb:partial": True}), request(cores=16)) is None


def test_rank_earliest_then_fit_then_precise_then_broker_order() -> None:
    asked = request(cores=1, max_cores=4)
    later = Candidate("a", 0, offer(T0 + timedelta(hours=1), 4), None)
    small = Candidate("b", 1, offer(T0, 1), None)
    big = Candidate("c", 2, offer(T0, 4), None)
    estimate = Candidate(
        "d",
        3,
        offer(T0, 4, **{"jeb:estimate": {"expected": T0.isoformat()}}),
        None,
    )
    assert [c.broker for c in rank([later, small, estimate, big], asked)] == ["c", "d", "b", "a"]
    assert fit(small.offer, asked) == 0.25 and fit(big.offer, asked) == 1.0
    queued = offer(T0, 1, **{"jeb:estimate": {"expected": (T0 + timedelta(hours=2)).isoformat()}})
    assert offer_start(queued) == T0 + timedelta(hours=2)


def test_choose_spreads_over_origins_then_best_of_the_rest() -> None:
    ranked = [Candidate(b, 0, offer(T0), None) for b in ["x", "x", "x", "y", "z", "y"]]
    keep, drop = choose(ranked, 4)
    assert [c.broker for c in keep] == ["x", "x", "y", "z"]
    assert [c.broker for c in drop] == ["x", "y"]
    assert choose(ranked, 0) == ([], ranked)
    routed = offer(T0, **{"jeb:route": ["leaf-a"]})
    assert origin(routed, "site") == "site/leaf-a" and origin(offer(T0), "leaf") == "leaf"


def test_ids_messages_and_rewriting() -> None:
    space = namespace("top")
    assert proxy_uuid(space, "b", "u1") == proxy_uuid(namespace("top"), "b", "u1")
    assert proxy_uuid(space, "b", "u1") != proxy_uuid(namespace("site"), "b", "u1")
    assert proxy_uuid(space, "b", "u1") != proxy_uuid(space, "c", "u1")
    item = from_broker(msg.warn(msg.NO_CAPACITY, "full", broker="leaf"), "site")
    assert item.message == "site: full" and item.values == {"broker": "leaf"}
    wire = offer(T0, **{"jeb:route": ["leaf-a"]}).dump()
    out = rewrite_session(
        wire, uuid="u", url="http://top/sessions/u", broker="site", messages=[item]
    )
    assert out["meta"]["uuid"] == "u" and out["meta"]["url"] == "http://top/sessions/u"
    assert out["jeb:route"] == ["site", "leaf-a"]
    assert out["meta"]["messages"][0]["message"] == "site: full"
    assert wire["jeb:route"] == ["leaf-a"]  # the cached original is unchanged


def test_server_timing_header() -> None:
    assert server_timing([("fanout", 0.2314, '3 "brokers"'), ("total", 0.25, "")]) == (
        'fanout;dur=231.4;desc="3 brokers", total;dur=250.0'
    )


def test_merged_capabilities() -> None:
    own = caps(name="site", platform="aggregate", executables=[], max_compute={})
    merged = merge_capabilities(
        own,
        [
            ("a", caps(accelerators={"gpu:A100": 2}, max_duration="PT12H")),
            (
                "b",
                caps(
                    executables=[SERVER],
                    max_compute={"cores": 64, "memory": 8},
                    accelerators={"gpu:A100": 1},
                ),
            ),
        ],
    )
    assert merged.executables == sorted([NOTEBOOK, SERVER])
    assert merged.max_compute == {"cores": 64, "memory": 32}
    assert merged.accelerators == {"gpu:A100": 3}
    assert merged.max_duration == "P1D" and merged.name == "site"


def test_circuit_breaker_states() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=10)
    assert breaker.allow(0) and breaker.state(0) == State.CLOSED
    breaker.failure(1, "refused")
    assert breaker.allow(1)
    breaker.failure(2, "refused")
    assert breaker.state(3) == State.OPEN and not breaker.allow(3)
    assert breaker.status(3) == {
        "state": "open",
        "failures": 2,
        "retry_in": 9.0,
        "last_error": "refused",
    }
    assert breaker.state(12) == State.HALF_OPEN
    assert breaker.allow(12) and not breaker.allow(12)  # one trial at a time
    breaker.failure(12.5)
    assert breaker.state(13) == State.OPEN  # the trial failed: open for another cool-down
    assert breaker.allow(23)
    breaker.success()
    assert breaker.state(23) == State.CLOSED and breaker.failures == 0
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=0)


def test_downstream_configuration_errors() -> None:
    ok = downstream_brokers([{"name": "a", "url": "http://a"}], {})
    assert ok[0][0].name == "a" and ok[0][1] == "pass-through"
    env = downstream_brokers(
        [{"name": "a", "url": "http://a", "identity": "service", "token_env": "T"}], {"T": "x"}
    )
    assert env[0][0].token == "x"
    for bad, match in [
        ([{"name": "a"}], "needs a 'url'"),
        ([{"url": "http://a", "identity": "magic"}], "identity must be"),
        ([{"url": "http://a", "identity": "service"}], "needs a token"),
        ([{"url": "http://a", "token_env": "NOPE"}], "not set"),
        ([{"url": "http://a", "tokn": "x"}], "unknown keys"),
        ([{"name": "a", "url": "http://a"}, {"name": "a", "url": "http://b"}], "two brokers"),
    ]:
        with pytest.raises(ValueError, match=match):
            downstream_brokers(bad, {})


async def test_aggregator_headers_are_trusted_only_with_its_token() -> None:
    auth = AggregatorAuthenticator(tokens={"site-token": "site"})
    alice = Identity("alice", ("srcnet", "uk, local"))
    headers = {"Authorization": "Bearer site-token", **identity_headers(alice)}
    assert headers["X-EB-Groups"] == "srcnet,uk%2C%20local"
    assert await auth.authenticate(headers) == Identity("alice", ("srcnet", "uk, local"), None)
    # the same headers with a user's own token: ignored here (the next authenticator decides)
    assert await auth.authenticate({**headers, "Authorization": "Bearer alice-token"}) is None
    assert await auth.authenticate({"X-EB-User": "root"}) is None
    # the aggregator itself (capability probes)
    assert await auth.authenticate({"Authorization": "Bearer site-token"}) == Identity(
        "aggregator:site"
    )
    with pytest.raises(AuthError, match="invalid user name"):
        await auth.authenticate({"Authorization": "Bearer site-token", "X-EB-User": "%0a"})
