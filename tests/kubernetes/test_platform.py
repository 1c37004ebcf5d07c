"""KubernetesPlatform driven directly (no broker): idempotent launches, one list call per poll,
and what it does when the API server cannot be reached."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from eb_broker.clock import utcnow
from eb_broker.platforms.base import PlatformState, PlatformUnavailable, SessionSpec
from eb_broker.platforms.kubernetes import KubernetesPlatform
from eb_broker.scheduling import Resources
from eb_sdk.model import ExecutionRequest
from tests.broker.helpers import COMPUTE, SERVER
from tests.fixtures.kubernetes import TOKEN
from tests.fixtures.services import free_port
from tests.kubernetes.conftest import Site

BODY = {"executable": {"kind": SERVER}, "compute": {"kind": COMPUTE, "cores": {"min": 1}}}


def spec(uuid: str, handle: dict[str, Any] | None = None) -> SessionSpec:
    now = utcnow()
    return SessionSpec(
        uuid=uuid,
        owner="alice",
        groups=(),
        request=ExecutionRequest.model_validate(BODY),
        resources=Resources(1, 1),
        start=now,
        end=now + timedelta(hours=1),
        preparation=timedelta(seconds=5),
        handle=handle or {},
    )


async def until(check: Callable[[], Awaitable[Any]], seconds: float, what: str) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {seconds} s")


async def test_launch_adopts_and_poll_lists_once(site: Site) -> None:
    site.add_node("a", cpu="4", memory="8Gi")
    platform = KubernetesPlatform(
        kubeconfig=str(site.cluster.kubeconfig), namespace=site.namespace, image_pull_seconds=0
    )
    calls: list[str] = []
    client = platform.client
    original = client._call

    async def counting(method: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(method)
        return await original(method, *args, **kwargs)

    client._call = counting  # type: ignore[method-assign]
    try:
        await platform.refresh()
        first = await platform.launch(spec("aaaa-1"))
        again = await platform.launch(spec("aaaa-1"))  # after a crash: adopt, create nothing
        assert again == first
        assert first["token"] and first["pod"] == "eb-aaaa-1" and first["service"] == "eb-aaaa-1"
        assert len(site.pods("eb-session=aaaa-1")) == 1
        second = await platform.launch(spec("bbbb-2"))

        specs = [spec("aaaa-1", first), spec("bbbb-2", second), spec("cccc-3", {"pod": "eb-x"})]
        calls.clear()
        statuses = await until(
            lambda: _all_available(platform, specs[:2]), 60, "both servers answering"
        )
        assert set(statuses) == {"aaaa-1", "bbbb-2"}
        calls.clear()
        statuses = await platform.poll(specs)
        assert calls == ["list_namespaced_pod"], "one list call for every session"
        assert statuses["cccc-3"].state == PlatformState.GONE
        for uuid in ("aaaa-1", "bbbb-2"):
            assert statuses[uuid].outputs["pod"] == f"{site.namespace}/eb-{uuid}"
        for one in specs[:2]:
            await platform.stop(one)
            await platform.release(one)
            await platform.release(one)  # idempotent
    finally:
        await platform.close()


async def _all_available(platform: KubernetesPlatform, specs: list[SessionSpec]) -> Any:
    statuses = await platform.poll(specs)
    for one in specs:  # the handle update ("answered") is what the reconciler persists
        status = statuses[one.uuid]
        if status.handle:
            one.handle.update(status.handle)
    if all(s.state == PlatformState.AVAILABLE for s in statuses.values()):
        return statuses
    return None


async def test_unreachable_api(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}', "
        "insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    platform = KubernetesPlatform(kubeconfig=str(kubeconfig), api_timeout=2.0, startup_wait=0.5)
    try:
        with pytest.raises(RuntimeError, match="cannot read the cluster's capacity"):
            await asyncio.to_thread(platform.capacity)
        await platform.refresh()
        assert not platform.available
        (problem,) = platform.check(ExecutionRequest.model_validate(BODY))
        assert problem.kind == "urn:platform-unavailable"
        assert f"127.0.0.1:{port}" in (problem.message or "")
        statuses = await platform.poll([spec("dddd-4", {"pod": "eb-dddd-4"})])
        assert statuses["dddd-4"].state == PlatformState.UNKNOWN  # phase left alone
        with pytest.raises(PlatformUnavailable):
            await platform.launch(spec("dddd-4"))
        with pytest.raises(PlatformUnavailable):
            await platform.release(spec("dddd-4", {"pod": "eb-dddd-4"}))
    finally:
        await platform.close()
    # stop and release mark the API down too, like launch and poll
    for step in ("stop", "release"):
        other = KubernetesPlatform(kubeconfig=str(kubeconfig), api_timeout=2.0)
        try:
            assert other.available
            with pytest.raises(PlatformUnavailable):
                await getattr(other, step)(spec("eeee-5", {"pod": "eb-eeee-5"}))
            assert not other.available, step
        finally:
            await other.close()


async def test_launch_waits_for_a_terminating_pod(site: Site) -> None:
    """An earlier pod of the session that is being deleted is not adopted: launch says to
    try again (PlatformUnavailable) until it is gone, then creates a new one."""
    site.add_node("a", cpu="4", memory="8Gi")
    held = site.cluster.create(
        f"/api/v1/namespaces/{site.namespace}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "eb-ffff-6",
                "labels": {
                    "app.kubernetes.io/managed-by": "eb-broker",
                    "eb-broker": "eb-broker",
                    "eb-session": "ffff-6",
                },
                "finalizers": ["eb-test/hold"],  # keeps it terminating until removed
            },
            "spec": {
                "nodeName": "nowhere",  # no kubelet: it never runs
                "containers": [{"name": "notebook", "image": "x", "command": ["true"]}],
            },
        },
    )
    path = f"/api/v1/namespaces/{site.namespace}/pods/eb-ffff-6"
    site.cluster.delete(path)
    assert site.cluster.get(path)["metadata"].get("deletionTimestamp")
    platform = KubernetesPlatform(
        kubeconfig=str(site.cluster.kubeconfig), namespace=site.namespace, image_pull_seconds=0
    )
    try:
        await platform.refresh()
        with pytest.raises(PlatformUnavailable, match="still terminating"):
            await platform.launch(spec("ffff-6"))
        assert platform.available  # the API answered: only this session waits
        site.cluster.patch(path, {"metadata": {"finalizers": None}})
        await until(
            lambda: asyncio.to_thread(lambda: not site.pods("eb-session=ffff-6")), 20, "gone"
        )
        handle = await platform.launch(spec("ffff-6"))
        (pod,) = site.pods("eb-session=ffff-6")
        assert pod["metadata"]["uid"] != held["metadata"]["uid"]
        await platform.release(spec("ffff-6", handle))
    finally:
        await platform.close()


def test_fixture_says_how_to_get_missing_binaries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.fixtures import kubernetes as fixture

    monkeypatch.delenv("K8S_BIN", raising=False)
    monkeypatch.setattr(fixture, "cache_roots", lambda: [tmp_path])
    with pytest.raises(RuntimeError, match=r"not built.*Run ./dev setup"):
        fixture.find_k8s_bin()


async def test_in_cluster_service_account(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a pod: KUBERNETES_SERVICE_HOST/PORT and the service account's token and CA (here
    pointed at the test API server, whose certificate is checked: another CA is refused)."""
    site.add_node("a", cpu="4", memory="8Gi")
    cluster = site.cluster
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(TOKEN)
    (account / "ca.crt").write_bytes((cluster.base / "pki" / "apiserver.crt").read_bytes())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(cluster.api_port))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))  # no fallback
    platform = KubernetesPlatform(
        service_account_dir=str(account),
        namespace=site.namespace,
        node_selector={"eb-test": site.namespace},
    )
    try:
        await platform.refresh()
        assert platform.available, platform._reason
        assert platform.client.server == f"https://127.0.0.1:{cluster.api_port}"
        assert platform.capacity().base == Resources(cores=4, memory_gib=8)
    finally:
        await platform.close()

    other = tmp_path / "other"
    other.mkdir()
    (other / "token").write_text(TOKEN)
    openssl = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=someone-else", "-keyout", str(other / "key"), "-out", str(other / "ca.crt"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await openssl.wait() == 0
    wrong = KubernetesPlatform(service_account_dir=str(other), namespace=site.namespace)
    try:
        await wrong.refresh()
        assert not wrong.available
        assert "certificate" in wrong._reason.lower(), wrong._reason
    finally:
        await wrong.close()
