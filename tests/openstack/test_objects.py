"""The OpenStack platform's pure parts, without a cloud: flavors, capacity, cloud-init user
data, server states, and the platform's checks and flavor-shaped demands on a given view."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml

from eb_broker.platforms.base import PlatformState
from eb_broker.platforms.openstack import OpenStackPlatform
from eb_broker.platforms.openstack.objects import (
    Flavor,
    Provider,
    candidate_flavors,
    check_profiles,
    cloud_config,
    cloud_view,
    env_file,
    finished_run,
    merged_profile,
    parse_flavor,
    read_cloud_config,
    read_server,
    server_address,
    server_tag,
    session_program,
    smallest_flavor,
    systemd_quote,
    systemd_unquote,
)
from eb_broker.scheduling import Demand, Resources
from eb_sdk.model import ExecutionRequest
from tests.broker.helpers import COMPUTE, NOTEBOOK, SERVER, session_spec

VM = "urn:jeb:v1:executable:virtual-machine"
CLASSES = {"CUSTOM_GPU_A100": "gpu:A100"}


def flavor(name: str, vcpus: int, ram: int, **extra: str) -> dict[str, Any]:
    return {
        "id": f"id-{name}",
        "name": name,
        "vcpus": vcpus,
        "ram": ram,
        "disk": 10,
        "extra_specs": extra,
    }


FLAVORS = [
    flavor("m1.small", 1, 2048),
    flavor("m1.medium", 2, 4096),
    flavor("m1.large", 4, 8192),
    flavor("m1.xlarge", 8, 16384),
    flavor("g1.a100", 8, 16384, **{"resources:CUSTOM_GPU_A100": "1"}),
    flavor("bm.gpu", 8, 16384, **{"resources:CUSTOM_BAREMETAL": "1"}),
    flavor("pci.gpu", 8, 16384, **{"pci_passthrough:alias": "a100:1"}),
]


def parsed() -> list[Flavor]:
    return [f for f in (parse_flavor(d, CLASSES) for d in FLAVORS) if f is not None]


# -- flavors --------------------------------------------------------------------------------


def test_flavors_as_resources() -> None:
    names = [f.name for f in parsed()]
    assert "bm.gpu" not in names and "pci.gpu" not in names, "untracked resources: never booked"
    gpu = parse_flavor(FLAVORS[4], CLASSES)
    assert gpu is not None and gpu.resources == Resources(8, 16, {"gpu:A100": 1})
    odd = parse_flavor(flavor("odd", 1, 1536), {})
    assert odd is not None and odd.resources.memory_gib == 2, "RAM rounded up to whole GiB"
    assert parse_flavor({**FLAVORS[0], "is_disabled": True}, {}) is None
    assert parse_flavor(flavor("x", 2, 1024, **{"resources:VCPU": "2"}), {}) is not None


def test_smallest_flavor_and_the_offered_ones() -> None:
    flavors = parsed()
    assert smallest_flavor(flavors, Resources(2, 3)).name == "m1.medium"  # type: ignore[union-attr]
    assert smallest_flavor(flavors, Resources(1, 1, {"gpu:A100": 1})).name == "g1.a100"  # type: ignore[union-attr]
    assert smallest_flavor(flavors, Resources(16, 1)) is None

    def offered(minimum: Resources, maximum: Resources, ranged: set[str]) -> list[str]:
        demand = Demand(minimum, maximum, timedelta(hours=1))
        return [f.name for f in candidate_flavors(flavors, demand, ranged=frozenset(ranged))]

    assert offered(Resources(2, 1), Resources(2, 1), set()) == ["m1.medium"]
    assert offered(Resources(1, 1), Resources(4, 1), {"cores"}) == [
        "m1.small",
        "m1.medium",
        "m1.large",
    ], "a cores range: every flavor up to 4 vCPUs (memory grows with it)"
    assert offered(Resources(1, 1), Resources(8, 4), {"cores", "memory_gib"}) == [
        "m1.small",
        "m1.medium",
    ], "4 GiB at most"
    assert offered(
        Resources(1, 1, {"gpu:A100": 1}), Resources(8, 1, {"gpu:A100": 1}), {"cores"}
    ) == ["g1.a100"]


# -- capacity -------------------------------------------------------------------------------

LIMITS = {
    "total_cores": 20,
    "total_cores_used": 6,
    "total_ram": 32768,
    "total_ram_used": 8192,
    "instances": 10,
    "instances_used": 3,
}


def host(name: str, vcpus: int, ram: int, used: tuple[int, int], **more: Any) -> Provider:
    inventories: dict[str, dict[str, Any]] = {
        "VCPU": {"total": vcpus, "reserved": 0, "allocation_ratio": more.pop("ratio", 1.0)},
        "MEMORY_MB": {"total": ram, "reserved": more.pop("reserved_mb", 0), "allocation_ratio": 1},
        "DISK_GB": {"total": 1000, "reserved": 0, "allocation_ratio": 1},
    }
    return Provider(name, name, name, inventories, {"VCPU": used[0], "MEMORY_MB": used[1]})


def ours(vcpus: int, ram: int, status: str = "ACTIVE") -> dict[str, Any]:
    return {"status": status, "flavor": {"vcpus": vcpus, "ram": ram, "extra_specs": {}}}


def test_capacity_from_placement_quota_and_foreign_servers() -> None:
    gpu_child = Provider(
        "gpu0",
        "h1-gpu",
        "h1",
        {"CUSTOM_GPU_A100": {"total": 4, "reserved": 0}},
        {"CUSTOM_GPU_A100": 1},
    )
    view = cloud_view(
        flavors=FLAVORS,
        limits=LIMITS,
        # two of the project's 3 instances (4 of its 6 cores) are ours
        our_servers=[ours(2, 4096), ours(2, 2048), ours(8, 8192, "SHELVED_OFFLOADED")],
        providers=[
            host("h1", 16, 32768, (10, 16384), reserved_mb=1024),
            host("h2", 8, 16384, (0, 0)),
            gpu_child,
        ],
        accelerator_classes=CLASSES,
    )
    # hypervisors: 24 vCPUs, 10 used of which 4 ours -> others 6; quota 20 - (6 - 4) = 18
    # room = min(24 - 6, 18) = 18; external usage E = max(6, 2) = 6 -> capacity 24
    assert view.source == "placement"
    assert view.foreign == Resources(6, 10, {"gpu:A100": 1})
    assert view.capacity.cores == 18 + 6
    # memory: hosts 47 GiB usable (1 GiB reserved), 16 GiB used, 6 ours -> others 10 GiB;
    # quota 32 GiB - (8 - 6) = 30 -> room min(37, 30) = 30, E = 10
    assert view.capacity.memory_gib == 30 + 10
    assert view.capacity.accelerators == {"gpu:A100": 4}
    assert view.largest_host == Resources(16, 31, {"gpu:A100": 4})
    assert view.quota.foreign_instances == 1
    assert "g1.a100" in [f.name for f in view.flavors]


def test_capacity_from_the_quota_alone_or_hypervisor_statistics() -> None:
    view = cloud_view(flavors=FLAVORS, limits=LIMITS, our_servers=[], accelerator_classes={})
    assert view.source == "quota" and view.largest_host is None
    assert view.capacity == Resources(14 + 6, 24 + 8)
    assert any("quota" in note for note in view.notes)

    hypervisors = [
        {
            "hypervisor_hostname": "h1",
            "vcpus": 8,
            "vcpus_used": 2,
            "memory_mb": 16384,
            "memory_mb_used": 4096,
            "state": "up",
            "status": "enabled",
        },
        {"hypervisor_hostname": "h2", "vcpus": 64, "memory_mb": 1 << 20, "state": "down"},
        {"hypervisor_hostname": "other-1", "vcpus": 64, "memory_mb": 1 << 20},
    ]
    view = cloud_view(
        flavors=FLAVORS,
        limits={},
        our_servers=[],
        hypervisors=hypervisors,
        accelerator_classes={},
        hypervisor_patterns=["h*"],
        cores=5,
    )
    assert view.source == "hypervisors"
    assert view.capacity == Resources(5 + 2, 12 + 4), "cores capped by the configuration"
    with pytest.raises(ValueError, match="capacity is unknown"):
        cloud_view(flavors=[], limits={"total_cores": -1}, our_servers=[], accelerator_classes={})


# -- profiles, cloud-init -------------------------------------------------------------------


def test_profiles_merge_and_unknown_keys_are_refused() -> None:
    profiles = {
        "default": {"security_groups": ["ssh"], "metadata": {"site": "x"}},
        "virtual-machine": {"image": "ubuntu", "security_groups": ["web"]},
        "gpu": {"flavors": ["g1.*"], "metadata": {"gpu": "yes"}},
    }
    merged = merged_profile({"image": "", "flavors": []}, profiles, "virtual-machine", ["gpu:A100"])
    assert merged["image"] == "ubuntu" and merged["flavors"] == ["g1.*"]
    assert merged["security_groups"] == ["ssh", "web"]
    assert merged["metadata"] == {"site": "x", "gpu": "yes"}
    # Jupyter servers only in images made for them: their kind's profiles, not 'gpu' or image
    profiles = {
        "default": {"image": "ubuntu"},
        "gpu": {"image": "ubuntu-cuda"},
        "jupyter-server": {"image": "jupyter"},
        "jupyter-server/gpu": {"image": "jupyter-cuda"},
    }
    assert merged_profile({"image": "x"}, profiles, "virtual-machine", ["gpu:T4"])["image"] == (
        "ubuntu-cuda"
    )
    assert merged_profile({"image": "x"}, profiles, "jupyter-server", [])["image"] == "jupyter"
    assert merged_profile({}, profiles, "jupyter-server", ["gpu:T4"])["image"] == "jupyter-cuda"
    assert merged_profile({"image": "x"}, profiles, "jupyter-notebook", ["gpu:T4"])["image"] == ""
    assert check_profiles({"gpu": {"flavour": "x"}}) == [
        "profile 'gpu': unknown key 'flavour'",
        check_profiles({"gpu": {"flavour": "x"}})[-1],
    ]
    with pytest.raises(ValueError, match="unknown key 'imag'"):
        OpenStackPlatform(profiles={"jupyter-server": {"imag": "x"}})
    with pytest.raises(ValueError, match="valid server tag"):
        server_tag("a/b")


def test_systemd_quoting_round_trips() -> None:
    args = ["papermill", "nb 1.ipynb", '{"x": "$HOME 100%"}', "a\\b", 'say "hi"']
    line = systemd_quote(args)
    assert "$$HOME 100%%" in line
    assert systemd_unquote(line) == args
    with pytest.raises(ValueError, match="environment variable"):
        env_file({"BAD-NAME": "x"})


def test_cloud_config_of_a_server_and_a_notebook() -> None:
    profile = {"vm_user": "jovyan", "server_port": 8888, "server_command": ["jupyter", "server"]}
    spec = session_spec(
        {
            "executable": {
                "kind": SERVER,
                "root_dir": "/home/jovyan/work",
                "environment": {"A": 'x "y"'},
            }
        }
    )
    program = session_program(spec, "jupyter-server", profile, token="t0k")
    text = cloud_config(spec, program)
    assert text.startswith("#cloud-config\n")
    settings, command, env = read_cloud_config(text)
    assert command[:2] == ["jupyter", "server"] and "--ServerApp.ip=0.0.0.0" in command
    assert "--ServerApp.root_dir=/home/jovyan/work" in command
    assert env == {"A": 'x "y"', "JUPYTER_TOKEN": "t0k"}
    assert settings["User"] == "jovyan" and settings["Restart"] == "on-failure"
    assert "ExecStopPost" not in settings

    spec = session_spec(
        {
            "executable": {
                "kind": NOTEBOOK,
                "location": "https://h/nb.ipynb",
                "jeb:parameters": {"p": "50%"},
            }
        }
    )
    program = session_program(spec, "jupyter-notebook", {"kernel_name": "python3"}, token="")
    settings, command, _ = read_cloud_config(cloud_config(spec, program))
    assert command == [
        "papermill",
        "https://h/nb.ipynb",
        "/var/lib/eb-broker/u-1.ipynb",
        "--log-output",
        "--kernel",
        "python3",
        "--parameters_yaml",
        '{"p": "50%"}',
    ]
    assert settings["Type"] == "oneshot" and "jeb-exit" in settings["ExecStopPost"]


# -- servers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "interactive", "ready", "state"),
    [
        ("BUILD", True, False, PlatformState.PREPARING),
        ("ACTIVE", False, False, PlatformState.RUNNING),
        ("ACTIVE", True, False, PlatformState.RUNNING),
        ("ACTIVE", True, True, PlatformState.AVAILABLE),
        ("SHUTOFF", True, True, PlatformState.SUCCEEDED),
        ("SHUTOFF", False, False, PlatformState.SUCCEEDED),
        ("ERROR", True, False, PlatformState.FAILED),
        ("DELETED", True, False, PlatformState.GONE),
        ("REBOOT", True, True, PlatformState.AVAILABLE),
        ("PAUSED", True, True, PlatformState.RUNNING),
        ("UNKNOWN", True, True, PlatformState.UNKNOWN),
    ],
)
def test_server_states(status: str, interactive: bool, ready: bool, state: PlatformState) -> None:
    reading = read_server(
        {
            "status": status,
            "task_state": "spawning",
            "launched_at": "2026-11-28T00:49:15.000000",
            "fault": {"message": "No valid host was found. ", "code": 500},
        },
        interactive=interactive,
        ready=ready,
    )
    assert reading.state == state
    assert reading.needs_ready_check == (status == "ACTIVE" and interactive and not ready)
    assert reading.needs_exit_status == (status == "SHUTOFF" and not interactive)
    if status == "ERROR":
        assert str(reading.messages[0]) == "the server failed: No valid host was found. (code 500)"
    if status == "BUILD":
        assert str(reading.messages[0]) == "the server is being built (spawning)"


def test_runs_end_by_their_exit_status_and_addresses() -> None:
    assert finished_run("boot\njeb-exit: 0\n")[0] == PlatformState.SUCCEEDED
    state, messages = finished_run("jeb-exit: 0\n... jeb-exit: 3\nreboot: Power down")
    assert state == PlatformState.FAILED and str(messages[0]) == "the run exited with status 3"
    state, messages = finished_run(None)
    assert state == PlatformState.SUCCEEDED and "no exit status" in str(messages[0])

    server = {
        "access_ipv4": "",
        "addresses": {
            "other": [{"addr": "10.1.0.5", "version": 4}],
            "lab": [{"addr": "fd00::5", "version": 6}, {"addr": "10.0.0.5", "version": 4}],
        },
    }
    assert server_address(server, network="lab") == "10.0.0.5"
    assert server_address(server, floating_ip="203.0.113.9", network="lab") == "203.0.113.9"
    assert server_address({**server, "access_ipv4": "198.51.100.2"}) == "198.51.100.2"
    assert server_address({"addresses": {"v6": [{"addr": "fd00::7", "version": 6}]}}) == "fd00::7"
    assert server_address({}) == ""


# -- the platform's checks on a given view (no cloud) ----------------------------------------


def platform(**options: Any) -> OpenStackPlatform:
    plugin = OpenStackPlatform(accelerators=CLASSES, **options)
    plugin._view = cloud_view(
        flavors=FLAVORS,
        limits={"total_cores": 10, "total_cores_used": 2, "total_ram": 65536},
        our_servers=[],
        providers=[host("h1", 16, 32768, (0, 0))],
        accelerator_classes=CLASSES,
    )
    plugin._images = {"ubuntu": "img-1", "img-1": "img-1"}
    return plugin


def request(executable: dict[str, Any], cores: dict[str, int] | None = None) -> ExecutionRequest:
    body: dict[str, Any] = {"executable": executable}
    if cores is not None:
        body["compute"] = {"kind": COMPUTE, "cores": cores, "memory": {"min": 1}}
    return ExecutionRequest.model_validate(body)


def kinds(messages: list[Any]) -> list[str]:
    return [m.kind for m in messages]


def test_check_says_why_a_request_cannot_run() -> None:
    plugin = platform(images=["ubuntu*", "img-*"])
    assert plugin.check(request({"kind": VM, "image": "ubuntu"})) == []
    assert kinds(plugin.check(request({"kind": VM}))) == ["urn:invalid-request"]
    assert kinds(plugin.check(request({"kind": VM, "image": "windows"}))) == ["urn:policy"]
    assert kinds(plugin.check(request({"kind": VM, "image": "ubuntu-9"}))) == ["urn:not-supported"]
    too_long = {"kind": VM, "image": "ubuntu", "user_data": "#!/bin/sh\n" + "x" * 60000}
    assert "too long" in str(plugin.check(request(too_long))[0])
    bad_key = {"kind": VM, "image": "ubuntu", "ssh_public_key": "not a key"}
    assert "OpenSSH" in str(plugin.check(request(bad_key))[0])
    no_flavor = {"kind": VM, "image": "ubuntu", "flavor": "z9.*"}
    assert "no flavor matches 'z9.*'" in str(plugin.check(request(no_flavor))[0])
    # Jupyter servers need an image the site made for them
    server = plugin.check(request({"kind": SERVER}))
    assert kinds(server) == ["urn:not-supported"] and "profiles['jupyter-server']" in str(server[0])
    assert (
        platform(profiles={"jupyter-server": {"image": "ubuntu"}}).check(request({"kind": SERVER}))
        == []
    )
    assert SERVER not in plugin.executable_kinds() and VM in plugin.executable_kinds()
    # notebook batches run on the platforms of the session runner (local, Slurm) only
    batch = plugin.check(request({"kind": "urn:jeb:v1:executable:notebook-batch"}))
    assert kinds(batch) == ["urn:not-supported"] and "notebook-batch" in str(batch[0])
    # the quota: 10 cores, 2 used by servers the broker did not start
    quota = plugin.check(request({"kind": VM, "image": "ubuntu"}, {"min": 9}))
    assert kinds(quota) == ["urn:resource-limit"]
    assert str(quota[0]) == (
        "the project's quota is exceeded: 9 cores requested, the quota leaves 8 cores for this "
        "broker (maxTotalCores=10, 2 used by servers the broker did not start)"
    )
    plugin._available, plugin._reason = False, "cannot reach OpenStack (list servers): refused"
    assert "urn:platform-unavailable" in kinds(
        plugin.check(request({"kind": VM, "image": "ubuntu"}))
    )


def test_shape_offers_whole_flavors() -> None:
    plugin = platform()
    ask = request({"kind": VM, "image": "ubuntu", "flavor": "m1.*"}, {"min": 2, "max": 8})
    demand = Demand(Resources(2, 1), Resources(8, 1), timedelta(hours=1))
    demands, problems = plugin.shape(ask, [demand])
    assert problems == []
    # up to m1.xlarge: its 8 cores fit the quota room (10 - 2) and the host
    assert [d.minimum for d in demands] == [Resources(2, 4), Resources(4, 8), Resources(8, 16)]
    assert all(d.minimum == d.maximum for d in demands)

    big = Demand(Resources(16, 1), Resources(16, 1), timedelta(hours=1))
    demands, problems = plugin.shape(request({"kind": VM, "image": "ubuntu"}), [big])
    assert demands == [] and "no flavor gives 16 cores" in str(problems[0])

    tight = platform()
    assert tight._view is not None
    tight._view = cloud_view(
        flavors=FLAVORS,
        limits={"total_cores": 3},
        our_servers=[],
        providers=[host("h1", 16, 32768, (0, 0))],
        accelerator_classes=CLASSES,
    )
    three = Demand(Resources(3, 1), Resources(3, 1), timedelta(hours=1))
    demands, problems = tight.shape(request({"kind": VM, "image": "ubuntu"}), [three])
    assert demands == []
    assert "the smallest flavor that fits, m1.large (4 vCPU, 8 GiB)" in str(problems[0])
    assert "3 cores (maxTotalCores=3)" in str(problems[0])


def test_readiness_per_kind() -> None:
    plugin = platform(
        profiles={"jupyter-server": {"image": "j"}, "docker-container": {"image": "d"}}
    )
    vm = plugin.settings(request({"kind": VM, "ssh_public_key": "ssh-ed25519 AAAA"}), [])
    assert (vm.interactive, vm.readiness, vm.ssh, vm.port) == (True, "console", True, 0)
    web = plugin.settings(request({"kind": VM, "http_port": 80, "http_path": "app"}), [])
    assert (web.readiness, web.port, web.path, web.ssh) == ("http", 80, "/app", False)
    server = plugin.settings(request({"kind": SERVER}), [])
    assert (server.readiness, server.port) == ("http", 8888)
    notebook = plugin.settings(request({"kind": NOTEBOOK, "location": "x"}), [])
    assert (notebook.interactive, notebook.readiness) == (False, "")
    active = platform(readiness="active").settings(request({"kind": VM}), [])
    assert active.readiness == "active"


# -- staged data on a volume (eb_broker/platforms/openstack/data.py) -------------------------------


def _staged(name: str, mount: str, readonly: bool = True) -> Any:
    from eb_broker.platforms.base import StagedData

    return StagedData(
        name=name,
        mount=mount,
        readonly=readonly,
        env=f"EB_DATA_{name.upper()}",
        directory=False,
        files=(("", f"/cache/objects/{name}/data"),),
    )


def test_data_image_and_volume_sizes() -> None:
    from eb_broker.platforms.openstack.data import GIB, MIB, image_bytes, volume_gib

    small = image_bytes([10])
    assert small % MIB == 0 and 16 * MIB < small <= 17 * MIB
    big = image_bytes([GIB])
    assert big >= GIB * 1.05 + 16 * MIB and big % MIB == 0
    assert volume_gib(small, 0) == 1  # at least 1 GiB
    assert volume_gib(small, 3) == 3  # what the session booked
    assert volume_gib(big, 1) == 2  # more when the file system needs it


def test_data_block_devices_boot_the_image_and_attach_the_volume() -> None:
    from eb_broker.platforms.openstack.data import block_devices

    boot, data = block_devices("img", "vol")
    assert boot["boot_index"] == 0 and boot["source_type"] == "image" and boot["uuid"] == "img"
    assert data["boot_index"] == -1 and data["source_type"] == data["destination_type"]
    assert data["uuid"] == "vol" and data["delete_on_termination"] is True


def test_data_cloud_config_mounts_links_and_copies() -> None:
    from eb_broker.platforms.openstack.data import (
        data_cloud_config,
        data_label,
        image_layout,
    )

    data = (_staged("obs", "data/obs.fits"), _staged("cal", "work/cal bin", readonly=False))
    assert image_layout(data) == [
        ("data/obs.fits", "/cache/objects/obs/data"),
        ("work/cal bin", "/cache/objects/cal/data"),
    ]
    label = data_label("0b7c4f3e-1111-2222-3333-444455556666")
    assert label == "eb-0b7c4f3e1111" and len(label) <= 16
    config = data_cloud_config(data, label, "ubuntu")
    (command,) = config["runcmd"]
    script = command[2]
    assert f"mount -o ro /dev/disk/by-label/{label} /mnt/eb-data" in script
    assert "ln -sfn /mnt/eb-data/data/obs.fits /data/obs.fits" in script
    assert "cp -a '/mnt/eb-data/work/cal bin' '/work/cal bin'" in script
    assert "chown -R ubuntu '/work/cal bin'" in script
    (env,) = config["write_files"]
    assert "export EB_DATA_OBS=/data/obs.fits\n" in env["content"]
    assert "export EB_MOUNT_ROOT=/\n" in env["content"]


def test_data_cloud_config_merges_before_the_sessions_own() -> None:
    from eb_broker.platforms.openstack.data import merged_cloud_config

    first = {"runcmd": [["sh", "-c", "mount"]], "write_files": [{"path": "/a"}]}
    own = "#cloud-config\nruncmd:\n  - [echo, own]\n"
    merged = yaml.safe_load(merged_cloud_config(first, own))
    assert merged["runcmd"] == [["sh", "-c", "mount"], ["echo", "own"]]
    assert merged["write_files"] == [{"path": "/a"}]
    assert yaml.safe_load(merged_cloud_config(first, ""))["runcmd"] == first["runcmd"]
    script = merged_cloud_config(first, "#!/bin/sh\necho hi\n")
    assert "multipart/mixed" in script and "text/cloud-config" in script
    assert "text/x-shellscript" in script and "echo hi" in script


def test_volume_room_from_the_volume_quota() -> None:
    from eb_broker.platforms.openstack.data import volume_room

    limits = {"maxTotalVolumeGigabytes": 100, "totalGigabytesUsed": 30}
    assert volume_room(limits, ours_gib=10) == 80  # 20 GiB of volumes not the broker's
    assert volume_room({"maxTotalVolumeGigabytes": -1}, 0) is None
    assert volume_room({}, 0) is None
