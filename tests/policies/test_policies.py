"""Each policy on its own, the chain that combines them, and how a decision shapes a request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from traitlets import TraitError

from eb_broker.auth import Identity
from eb_broker.policies import (
    AcceptQuery,
    Cap,
    Decision,
    Policy,
    PolicyChain,
    PolicyQuery,
    load_policy,
    make_chain,
    shape_request,
)
from eb_broker.policies.accelerators import AcceleratorPolicy
from eb_broker.policies.allocation import GroupAllocationPolicy, parse_pools
from eb_broker.policies.executables import ExecutablePolicy, image_registry, location_source
from eb_broker.policies.limits import LimitsPolicy
from eb_sdk.model import ExecutionRequest, SimpleComputeResource
from tests.broker.helpers import notebook_request

DOCKER = (
    "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/"
    "docker-container.yaml"
)
DIGEST = "sha256:" + "ab" * 32


def query(
    user: str = "alice",
    groups: tuple[str, ...] = (),
    body: dict[str, Any] | None = None,
    *,
    duration: timedelta = timedelta(hours=1),
    pools: tuple[str, ...] = (),
    active: int = 0,
) -> PolicyQuery:
    request = ExecutionRequest.model_validate(body or notebook_request())
    return PolicyQuery(
        identity=Identity(user, groups),
        request=request,
        now=datetime(2026, 11, 23, 9, tzinfo=UTC),
        broker="test",
        duration=duration,
        accelerator_pools=pools,
        active_sessions=lambda _: active,
    )


def texts(items: list[Any]) -> list[str]:
    return [str(m) for m in items]


def gpu_request(model: str | None = None) -> dict[str, Any]:
    body = notebook_request()
    body["compute"]["jeb:accelerators"] = [{"type": "GPU", "model": model, "count": {"min": 1}}]
    return body


def docker_request(*locations: str, digest: str | None = None) -> dict[str, Any]:
    image: dict[str, Any] = {"locations": list(locations)}
    if digest:
        image["digest"] = digest
    return {"executable": {"kind": DOCKER, "image": image}}


# -- limits -----------------------------------------------------------------------------------


async def test_limits_session_length_per_group_most_generous_wins() -> None:
    policy = LimitsPolicy(max_duration={"*": "PT24H", "students": 2, "staff": "PT8H"})
    refused = await policy.decide(query(groups=("students",), duration=timedelta(hours=4)))
    assert texts(refused.refusals) == [
        "policy limits: sessions may last at most 2 h for group students; this one asks for 4 h"
    ]
    both = await policy.decide(query(groups=("students", "staff"), duration=timedelta(hours=4)))
    assert both.allowed  # the longer of the user's groups
    guest = await policy.decide(query(groups=("guests",), duration=timedelta(hours=25)))
    assert "at most 1 day for everyone" in str(guest.refusals[0])  # '*': the default
    unlisted = LimitsPolicy(max_duration={"students": 2})
    assert (await unlisted.decide(query(groups=("guests",), duration=timedelta(days=30)))).allowed


async def test_limits_caps_and_refusals_are_explained() -> None:
    policy = LimitsPolicy(
        max_resources={"students": {"cores": 4, "memory_gib": 8}, "*": {"cores": 2}}
    )
    decision = await policy.decide(query(groups=("students",)))
    assert decision.caps["cores"] == Cap(4, "limits", "the most for group students")
    request = ExecutionRequest.model_validate(notebook_request(2, 1, max_cores=16))
    shaped, notes, refusals = shape_request(request, decision)
    assert not refusals
    assert isinstance(shaped.compute, SimpleComputeResource)
    assert shaped.compute.cores and shaped.compute.cores.max == 4
    assert texts(notes) == [
        "capped to 4 cores (asked up to 16) by policy limits (the most for group students)"
    ]
    assert request.compute.cores.max == 16  # type: ignore[union-attr]  # the original is kept
    big = ExecutionRequest.model_validate(notebook_request(6, 1))
    _, _, refusals = shape_request(big, decision)
    assert texts(refusals) == [
        "policy limits allows at most 4 cores per session (the most for group students); "
        "the request needs at least 6"
    ]
    everyone = await policy.decide(query(groups=("guests",)))
    assert everyone.caps["cores"].amount == 2


async def test_limits_per_user_concurrency_when_asking_and_accepting() -> None:
    policy = LimitsPolicy(max_sessions_per_user=2)
    assert (await policy.decide(query(active=1))).allowed
    refused = await policy.decide(query(active=2))
    assert "you have 2 active sessions and at most 2 per user" in str(refused.refusals[0])
    assert policy.check_accept(AcceptQuery(Identity("alice"), 1)) == []
    assert policy.check_accept(AcceptQuery(Identity("alice"), 2))


def test_limits_bad_configuration_is_a_clear_error() -> None:
    with pytest.raises(TraitError, match="max_duration"):
        LimitsPolicy(max_duration={"x": "soon"})
    with pytest.raises(TraitError, match="unknown keys"):
        LimitsPolicy(max_resources={"x": {"gpus": 1}})


# -- executables ------------------------------------------------------------------------------


def test_image_registries_and_sources() -> None:
    assert image_registry("python:3.11") == "docker.io"
    assert image_registry("ghcr.io/ivoa/x:1") == "ghcr.io"
    assert image_registry("localhost:5000/x") == "localhost:5000"
    assert image_registry("library/python") == "docker.io"
    assert location_source("docker://ghcr.io/a/b:1") == "ghcr.io"
    assert location_source("library://user/c/x:1") == "library"
    assert location_source("https://images.example.org/x.sif") == "images.example.org"
    assert location_source("/srv/images/x.sif") == "file"


def test_executables_registries_digests_kinds_locations() -> None:
    policy = ExecutablePolicy(
        allowed_registries=["ghcr.io", "*.skao.int"],
        denied_registries=["evil.skao.int"],
        require_digest=True,
        allowed_locations=["/srv/notebooks/*"],
        exempt_groups=["admins"],
    )
    alice = Identity("alice", ("astro",))
    ok = ExecutionRequest.model_validate(docker_request(f"ghcr.io/ivoa/x@{DIGEST}"))
    assert policy.check(alice, ok) == []
    pinned = ExecutionRequest.model_validate(docker_request("harbor.skao.int/x:1", digest=DIGEST))
    assert policy.check(alice, pinned) == []
    unpinned = ExecutionRequest.model_validate(docker_request("ghcr.io/ivoa/x:1"))
    assert "must be pinned by digest" in str(policy.check(alice, unpinned)[0])
    other = ExecutionRequest.model_validate(docker_request(f"python@{DIGEST}"))
    assert "registry docker.io, which is not allowed here" in str(policy.check(alice, other)[0])
    denied = ExecutionRequest.model_validate(docker_request(f"evil.skao.int/x@{DIGEST}"))
    assert policy.check(alice, denied)
    assert policy.check(Identity("root", ("admins",)), denied) == []  # exempt
    notebook = ExecutionRequest.model_validate(notebook_request(location="/home/x.ipynb"))
    assert "location /home/x.ipynb is not allowed" in str(policy.check(alice, notebook)[0])
    kinds = ExecutablePolicy(allowed_kinds=["jupyter-notebook"])
    assert kinds.check(alice, ok)[0].kind == "urn:policy"
    assert kinds.check(alice, notebook) == []
    assert ExecutablePolicy(denied_kinds=[DOCKER]).check(alice, ok)
    digests = ExecutablePolicy(allowed_digests=["sha256:" + "cd" * 32])
    assert "not on the allowed list" in str(digests.check(alice, ok)[0])


# -- accelerators -----------------------------------------------------------------------------


async def test_accelerators_per_group() -> None:
    policy = AcceleratorPolicy(groups={"ml": ["gpu:*"], "*": ["gpu:T4"]})
    pools = ("gpu:A100", "gpu:T4")
    ml = await policy.decide(query(groups=("ml",), body=gpu_request("A100"), pools=pools))
    assert ml.allowed and ml.accelerators == frozenset(pools)
    astro = await policy.decide(query(groups=("astro",), body=gpu_request("A100"), pools=pools))
    assert texts(astro.refusals) == [
        "policy accelerators: gpu:A100 accelerators are not available to group astro"
    ]
    any_gpu = await policy.decide(query(groups=("astro",), body=gpu_request(), pools=pools))
    assert any_gpu.allowed and any_gpu.accelerators == frozenset({"gpu:T4"})
    assert "may use gpu:T4 of the gpu accelerators here" in str(any_gpu.notes[0])
    nobody = AcceleratorPolicy(groups={"ml": ["gpu"]})
    assert (await nobody.decide(query(body=gpu_request(), pools=pools))).refusals


# -- group allocation -------------------------------------------------------------------------


def test_allocation_pools_configuration() -> None:
    allocations = parse_pools([{"name": "national", "cores": 500}, {"name": "local", "cores": 500}])
    assert allocations.names == ("local", "national")
    for bad, match in [
        ([{"cores": 5}], "needs a 'name'"),
        ([{"name": "x"}], "at least one amount"),
        ([{"name": "x", "cpus": 1}], "unknown keys"),
        ([{"name": "x", "cores": 1, "start": "tomorrow"}], "pool x"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_pools(bad)
    with pytest.raises(TraitError, match="needs a 'name'"):
        GroupAllocationPolicy(pools=[{"cores": 1}])
    policy = GroupAllocationPolicy(pools=[{"name": "a", "cores": 1}], groups={"g": ["b"]})
    with pytest.raises(ValueError, match="unknown pools"):
        policy.allocations()


async def test_allocation_pools_per_group_and_the_chain_note() -> None:
    policy = GroupAllocationPolicy(
        pools=[{"name": "national", "cores": 500}, {"name": "local", "cores": 500}],
        groups={"srcnet": ["national"], "local": ["national", "local"]},
    )
    chain = PolicyChain([policy])
    national = await chain.evaluate(query(groups=("srcnet",)))
    assert national.pools == frozenset({"national"})
    assert "booking from the national allocation" in str(national.notes[0])
    local = await chain.evaluate(query(groups=("local", "srcnet")))
    assert local.pools == frozenset({"national", "local"})
    assert "the local+national allocations" in str(local.notes[0])
    stranger = await chain.evaluate(query(groups=("guests",)))
    assert "you (group guests) have no allocation here" in str(stranger.refusals[0])
    with pytest.raises(ValueError, match="only one policy may divide"):
        PolicyChain([policy, policy])


# -- the chain --------------------------------------------------------------------------------


class Failing(Policy):
    name = "failing"

    async def decide(self, query: PolicyQuery) -> Decision:
        raise RuntimeError("bug")


async def test_chain_most_restrictive_wins_and_failures_refuse() -> None:
    chain = PolicyChain(
        [
            LimitsPolicy(max_resources={"*": {"cores": 8}}),
            LimitsPolicy(max_resources={"*": {"cores": 4}}),
            AcceleratorPolicy(groups={"*": ["gpu:A100"]}),
        ]
    )
    decision = await chain.evaluate(query(body=gpu_request("T4"), pools=("gpu:A100", "gpu:T4")))
    assert decision.caps["cores"].amount == 4
    assert any("gpu:T4 accelerators are not available" in t for t in texts(decision.refusals))
    broken = await PolicyChain([Failing()]).evaluate(query())
    assert texts(broken.refusals) == [
        "policy failing: could not decide (an internal error); try again later"
    ]
    assert (await PolicyChain([]).evaluate(query())).allowed


def test_policies_load_by_name_and_path() -> None:
    assert load_policy("limits") is LimitsPolicy
    assert load_policy("eb_broker.policies.limits:LimitsPolicy") is LimitsPolicy
    with pytest.raises(ValueError, match=r"unknown policy 'nope'.*group-allocation"):
        load_policy("nope")
    with pytest.raises(ValueError, match="not a Policy"):
        load_policy("eb_broker.policies.base:Decision")
    assert make_chain(["limits", "executables"]).names == ["limits", "executables"]
