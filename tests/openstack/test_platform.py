"""OpenStackPlatform driven directly (no broker), on the real cloud: idempotent launches, one
list call per poll, the capacity with and without Placement access, and what it does when the
cloud cannot be reached."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from eb_broker.platforms.base import (
    PlatformState,
    PlatformUnavailable,
    ReleaseLeftovers,
    SessionSpec,
    StagedData,
)
from eb_broker.platforms.openstack import OpenStackPlatform
from eb_broker.platforms.openstack.client import CloudClient
from eb_broker.scheduling import Resources
from eb_sdk.model import ExecutionRequest
from tests.broker.helpers import COMPUTE, session_spec
from tests.fixtures.kubernetes import wait_for
from tests.fixtures.openstack import ADMIN_CLOUD
from tests.fixtures.services import free_port
from tests.openstack.conftest import Site

VM = {
    "executable": {"kind": "urn:jeb:v1:executable:virtual-machine", "image": "eb-cirros"},
    "compute": {"kind": COMPUTE, "cores": {"min": 1}, "memory": {"min": 1}},
}


def spec(uuid: str, handle: dict[str, Any] | None = None) -> SessionSpec:
    return session_spec(VM, uuid, handle)


def platform_for(site: Site, **options: Any) -> OpenStackPlatform:
    settings: dict[str, Any] = {
        "clouds_yaml": str(site.project.clouds_yaml),
        "cloud": "project",
        "network": "none",
        "api_timeout": 5.0,
        "startup_wait": 1.0,
        **options,
    }
    return OpenStackPlatform(**settings)


def count_calls(platform: OpenStackPlatform) -> list[str]:
    """Record what each API call of the platform's client was for."""
    calls: list[str] = []
    client = platform.client
    original = client.call

    def counting(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(what)
        return original(what, fn, *args, **kwargs)

    client.call = counting  # type: ignore[method-assign]
    return calls


async def test_launch_adopts_and_poll_lists_once(os_site: Site) -> None:
    platform = platform_for(
        os_site,
        placement_cloud=ADMIN_CLOUD,
        readiness="active",
        session_security_group=True,
        floating_network="eb-public",
    )
    member = os_site.project.member()
    try:
        await asyncio.to_thread(platform.capacity)
        calls = count_calls(platform)
        first = await platform.launch(spec("aaaa-1"))
        again = await platform.launch(spec("aaaa-1"))  # after a crash: adopt, create nothing
        assert again == first
        assert first["flavor"] == "eb.1c1g" and first["name"] == "eb-aaaa-1"
        assert calls.count("create the server") == 1
        assert len([s for s in os_site.project.servers() if s.name == "eb-aaaa-1"]) == 1
        assert len(list(member.network.security_groups(name="eb-aaaa-1"))) == 1
        description = "Execution Broker session aaaa-1"
        assert len(list(member.network.ips(description=description))) == 1
        second = await platform.launch(spec("bbbb-2"))
        specs = [spec("aaaa-1", first), spec("bbbb-2", second), spec("cccc-3", {"server_id": "x"})]

        async def all_available() -> bool:
            statuses = await platform.poll(specs)
            return all(statuses[s.uuid].state == PlatformState.AVAILABLE for s in specs[:2])

        await until(all_available, 60, "both servers ACTIVE")
        await platform.poll(specs)  # may look for the servers' ports (floating IPs)
        calls.clear()
        statuses = await platform.poll(specs)  # those checks are not due again yet
        assert calls == ["list servers"], "one list call for every session"
        assert statuses["cccc-3"].state == PlatformState.GONE
        assert statuses["aaaa-1"].outputs == {"server": first["server_id"], "flavor": "eb.1c1g"}
        for one in specs[:2]:
            await platform.stop(one)
            await platform.release(one)
            await platform.release(one)  # idempotent
        wait_for(lambda: not os_site.project.servers(), 30, "the servers deleted")
        assert not list(member.network.security_groups(name="eb-aaaa-1"))
        assert not list(member.network.ips(description=description))
    finally:
        member.close()
        await platform.close()


async def test_release_gives_up_on_a_stuck_data_volume(os_site: Site) -> None:
    """A data volume that stays attached (here: reserved, "attaching", by hand) keeps the
    session RELEASING (PlatformUnavailable: tried again) for data_release_timeout; then release
    gives up, naming the volume (ReleaseLeftovers: the session ends with a warning). Once the
    volume is free, release deletes it."""
    platform = platform_for(os_site, data_release_timeout=1.0)
    member = os_site.project.member()
    name = "eb-data-dddd-4"
    try:
        volume = member.block_storage.create_volume(size=1, name=name)
        member.block_storage.wait_for_status(volume, "available", wait=60)
        member.block_storage.reserve_volume(volume)
        stuck = spec("dddd-4", {"data_volume": name})
        with pytest.raises(PlatformUnavailable, match="is attaching; deleting it later"):
            await platform.release(stuck)
        await asyncio.sleep(1.2)
        with pytest.raises(ReleaseLeftovers, match=rf"{name} \({volume.id}\) is still attaching"):
            await platform.release(stuck)
        member.block_storage.unreserve_volume(volume)
        await platform.release(stuck)
        wait_for(
            lambda: all(v.name != name for v in os_site.project.volumes()), 60, "volume deleted"
        )
    finally:
        member.close()
        await platform.close()


async def test_launch_does_not_wait_for_the_data_volume(os_site: Site) -> None:
    """With data, launch returns a handle without a server while the session's data volume
    is not available (here one of its name held "attaching" by hand); poll keeps the session
    PREPARING and launches again each time; past ``data_deadline`` the session FAILs, saying
    what the volume is still doing, and no server was created."""
    platform = platform_for(os_site)
    member = os_site.project.member()
    name = "eb-data-eeee-5"
    try:
        await asyncio.to_thread(platform.capacity)
        volume = member.block_storage.create_volume(size=1, name=name)
        member.block_storage.wait_for_status(volume, "available", wait=60)
        member.block_storage.reserve_volume(volume)
        staged = StagedData("obs", "data/obs.bin", True, "EB_DATA_OBS", False, (("", "/none"),))
        waiting = replace(spec("eeee-5"), data=(staged,))
        handle = await platform.launch(waiting)
        assert "server_id" not in handle and handle["data_volume_id"] == volume.id, handle
        assert handle["data_deadline"] > time.time() + 800  # data_volume_timeout: 900 s
        status = (await platform.poll([replace(waiting, handle=handle)]))["eeee-5"]
        assert status.state == PlatformState.PREPARING and status.handle is None
        assert [m.message for m in status.messages] == ["Cinder is making the data volume"]
        late = replace(waiting, handle={**handle, "data_deadline": time.time() - 1})
        status = (await platform.poll([late]))["eeee-5"]
        assert status.state == PlatformState.FAILED
        (problem,) = status.messages
        assert f"the data volume {name} is still attaching after 900 s" in problem.message
        assert os_site.project.server("eb-eeee-5") is None
    finally:
        member.close()
        await platform.close()


async def until(check: Any, seconds: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what}: not within {seconds} s")


async def test_capacity_from_placement_or_the_quota(os_site: Site) -> None:
    """With Placement: the hypervisor's 10 vCPUs and 8 GiB minus a server of another project,
    within the quota. Without Placement access (the member user may not read it, nor the
    hypervisors): the quota alone."""
    admin = os_site.cloud.admin()
    try:
        admin.compute.update_quota_set(os_site.project.id, cores=9, ram=6144)
        image = admin.image.find_image("eb-cirros", ignore_missing=False)
        flavor = admin.compute.find_flavor("eb.4c4g", ignore_missing=False)
        other = admin.compute.create_server(
            name=f"other-{os_site.project.name}",
            image_id=image.id,
            flavor_id=flavor.id,
            networks="none",
        )
        admin.compute.wait_for_server(other, wait=60)
    except BaseException:
        admin.close()
        raise
    try:
        with_placement = platform_for(os_site, placement_cloud=ADMIN_CLOUD)
        quota_only = platform_for(os_site)
        try:
            capacity = await asyncio.to_thread(with_placement.capacity)
            assert with_placement._view is not None and with_placement._view.source == "placement"
            # 10 vCPUs - 4 of the other project's server; 8 GiB - 4 GiB; GPU pool untracked
            assert (capacity.base.cores, capacity.base.memory_gib) == (6 + 4, 4 + 4)
            assert with_placement.external_usage()[0][3] == Resources(4, 4)
            capacity = await asyncio.to_thread(quota_only.capacity)
            assert quota_only._view is not None and quota_only._view.source == "quota"
            assert (capacity.base.cores, capacity.base.memory_gib) == (9, 6)
            assert quota_only.external_usage() == []
        finally:
            await with_placement.close()
            await quota_only.close()
    finally:
        admin.compute.delete_server(other)
        admin.compute.wait_for_delete(other, wait=60)
        admin.close()


async def test_unreachable_cloud(tmp_path: Path) -> None:
    """Keystone unreachable: no capacity at start-up (a clear error), requests get
    urn:platform-unavailable, polls say UNKNOWN and launches raise PlatformUnavailable."""
    port = free_port()  # nothing listens there
    clouds = tmp_path / "clouds.yaml"
    auth = {
        "auth_url": f"http://127.0.0.1:{port}/v3",
        **dict.fromkeys(("username", "password", "project_name"), "x"),
        **dict.fromkeys(("user_domain_name", "project_domain_name"), "Default"),
    }
    clouds.write_text(yaml.safe_dump({"clouds": {"gone": {"auth": auth}}}))
    platform = OpenStackPlatform(
        clouds_yaml=str(clouds), cloud="gone", api_timeout=2.0, startup_wait=0.5
    )
    try:
        with pytest.raises(RuntimeError, match="cannot read the cloud's capacity"):
            await asyncio.to_thread(platform.capacity)
        await platform.refresh()
        assert not platform.available
        problems = platform.check(ExecutionRequest.model_validate(VM))
        assert [p.kind for p in problems] == ["urn:platform-unavailable"], problems
        assert "cannot reach OpenStack" in str(problems[0])
        statuses = await platform.poll([spec("x", {"server_id": "s"})])
        assert statuses["x"].state == PlatformState.UNKNOWN
        with pytest.raises(PlatformUnavailable):
            await platform.launch(spec("x"))
        with pytest.raises(PlatformUnavailable):
            await platform.release(spec("x", {"server_id": "s"}))
    finally:
        await platform.close()


def test_client_reads_flavors_with_extra_specs(os_site: Site) -> None:
    """Flavors come with their extra specs in one list call (compute API ≥ 2.61)."""
    client = CloudClient(config_file=str(os_site.project.clouds_yaml), cloud="project")
    try:
        flavors = {f["name"]: f for f in client.call("list flavors", CloudClient.flavors)}
        assert flavors["eb.magic"]["extra_specs"] == {"resources:CUSTOM_MAGIC": "1"}
        assert flavors["eb.2c4g"]["vcpus"] == 2 and flavors["eb.2c4g"]["ram"] == 4096
    finally:
        client.close()


async def test_application_credentials_without_clouds_yaml(os_site: Site, tmp_path: Path) -> None:
    """The broker's credentials as an application credential given inline (cloud_config), no
    clouds.yaml entry: it reads the cloud and creates servers with it."""
    member = os_site.project.member()
    try:
        credential = member.identity.create_application_credential(
            user=os_site.project.user_id, name="eb-broker"
        )
    finally:
        member.close()
    empty = tmp_path / "empty-clouds.yaml"
    empty.write_text("clouds: {}\n")
    platform = OpenStackPlatform(
        clouds_yaml=str(empty),
        cloud_config={
            "auth_type": "v3applicationcredential",
            "auth": {
                "auth_url": os_site.cloud.auth_url,
                "application_credential_id": credential.id,
                "application_credential_secret": credential.secret,
            },
            "region_name": "RegionOne",
        },
        network="none",
        readiness="active",
    )
    try:
        capacity = await asyncio.to_thread(platform.capacity)
        assert capacity.base.cores > 0
        handle = await platform.launch(spec("appc-1"))
        assert handle["flavor"] == "eb.1c1g"
        await platform.release(spec("appc-1", handle))
        wait_for(lambda: not os_site.project.servers(), 30, "the server deleted")
    finally:
        await platform.close()
