"""Pure builders and parsers of the OpenStack platform: no I/O, no SDK calls.

Everything here works on plain dicts as :mod:`.client` returns them (openstacksdk's attribute
names: ``vcpus``, ``ram``, ``extra_specs``, ``status``, ``access_ipv4`` ...), so it is tested
without a cloud:

* flavors → :class:`Flavor` (cores, GiB, accelerator pools from ``resources:<CLASS>`` extra
  specs) and the choice of flavor for a demand (the smallest that gives the resources);
* Placement inventories and usages, hypervisor statistics, the project's limits and our own
  servers → :class:`CloudView` (the capacity the broker offers and the usage of servers it did
  not start);
* a session → its server's name, tags, metadata and cloud-init user data;
* a server (+ its console log) → :class:`ServerReading`, the session's platform state.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import yaml

from eb_sdk.model import (
    DockerContainer,
    ExecutionRequest,
    JupyterNotebook,
    JupyterServer,
    MessageItem,
    VirtualMachine,
)
from eb_sdk.model import messages as msg

from ...scheduling import Demand, Resources
from .._api_objects import jupyter_or_container_kind, parse_api_time
from ..base import PlatformState, SessionSpec

JSON = dict[str, Any]

KIND_VM = "virtual-machine"

#: Server metadata keys (Nova: keys and values at most 255 characters).
META_SESSION = "eb-session"
META_OWNER = "eb-owner"
META_KIND = "eb-kind"
META_START = "eb-start"
META_END = "eb-end"

#: What a session's cloud-init writes to the console when a run ends (read back by poll).
EXIT_MARKER = "jeb-exit:"
_EXIT = re.compile(r"jeb-exit:\s*(\S+)")

MIB_PER_GIB = 1024


def session_kind(request: ExecutionRequest) -> str:
    """The platform's short name of a request's executable ('' when it cannot run it)."""
    if isinstance(request.executable, VirtualMachine):
        return KIND_VM
    return jupyter_or_container_kind(request)


def server_name(uuid: str) -> str:
    """Server, keypair and security group name of a session."""
    return f"eb-{uuid.lower()}"


def server_tag(instance: str) -> str:
    """The tag on every server of one broker instance (poll lists by it).

    Nova tags are at most 60 characters and contain no ``/`` or ``,``.
    """
    tag = f"eb-broker:{instance}"
    if len(tag) > 60 or "/" in tag or "," in tag:
        raise ValueError(
            f"OpenStackPlatform.instance {instance!r} does not make a valid server tag "
            "(at most 49 characters, no '/' or ',')"
        )
    return tag


def server_metadata(spec: SessionSpec, kind: str, extra: Mapping[str, str]) -> dict[str, str]:
    """Metadata of a session's server (visible to the VM through the metadata service)."""
    data = {
        **{str(k): str(v) for k, v in extra.items()},
        META_SESSION: spec.uuid,
        META_OWNER: spec.owner,
        META_KIND: kind,
        META_START: spec.start.isoformat(),
        META_END: spec.end.isoformat(),
    }
    return {k[:255]: v[:255] for k, v in data.items()}


# -- flavors --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flavor:
    """A flavor the broker may book: what it gives, as scheduler resources."""

    id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int = 0
    accelerators: Mapping[str, int] = field(default_factory=dict)

    @property
    def resources(self) -> Resources:
        """Cores, memory (whole GiB, rounded up: never under-booked) and accelerators."""
        return Resources(
            cores=self.vcpus,
            memory_gib=math.ceil(self.ram_mb / MIB_PER_GIB),
            accelerators=dict(self.accelerators),
        )

    def describe(self) -> str:
        parts = [f"{self.vcpus} vCPU", f"{self.ram_mb / MIB_PER_GIB:g} GiB"]
        parts += [f"{n} {pool}" for pool, n in sorted(self.accelerators.items())]
        return f"{self.name} ({', '.join(parts)})"


#: Resource classes a flavor may ask for that the broker does not book (handled by Nova).
_IGNORED_CLASSES = {"VCPU", "MEMORY_MB", "DISK_GB", "PCPU"}


def parse_flavor(data: Mapping[str, Any], accelerator_classes: Mapping[str, str]) -> Flavor | None:
    """A flavor the broker can book, or None.

    ``resources:<CLASS>=N`` extra specs of a class in ``accelerator_classes`` become N of that
    pool (``{"VGPU": "gpu", "CUSTOM_GPU_A100": "gpu:A100"}``). Disabled flavors, and flavors
    asking for resources the broker does not track (other ``resources:`` classes, PCI aliases)
    are left out: booking them would hold resources the ledger cannot see.
    """
    if data.get("is_disabled"):
        return None
    specs = data.get("extra_specs") or {}
    accelerators: dict[str, int] = {}
    for key, value in specs.items():
        if key.startswith("pci_passthrough:"):
            return None
        if not key.startswith("resources"):
            continue
        resource_class = key.split(":", 1)[-1]
        if resource_class in _IGNORED_CLASSES:
            continue
        pool = accelerator_classes.get(resource_class)
        try:
            count = int(value)
        except (TypeError, ValueError):
            return None
        if pool is None:
            if count:
                return None
            continue
        accelerators[pool] = accelerators.get(pool, 0) + count
    return Flavor(
        id=str(data.get("id") or data.get("name")),
        name=str(data.get("name") or data.get("id")),
        vcpus=int(data.get("vcpus") or 0),
        ram_mb=int(data.get("ram") or 0),
        disk_gb=int(data.get("disk") or 0),
        accelerators={k: v for k, v in accelerators.items() if v > 0},
    )


def flavor_size(flavor: Flavor) -> tuple[int, int, int, int, str]:
    """Sort key: fewer accelerators, then fewer vCPUs, less RAM, less disk."""
    return (
        sum(flavor.accelerators.values()),
        flavor.vcpus,
        flavor.ram_mb,
        flavor.disk_gb,
        flavor.name,
    )


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Does ``name`` match one of the shell-style ``patterns`` (all, when there are none)?"""
    patterns = list(patterns)
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _gives(flavor: Flavor, wanted: Resources) -> bool:
    """Does ``flavor`` give at least ``wanted``, and no accelerator pool it did not ask for?
    (Storage is not the flavor's: the staged data's is a volume, see .data.)"""
    have = flavor.resources
    if not replace(wanted, storage_gib=0).fits_in(have):
        return False
    asked = {pool for pool, n in dict(wanted.accelerators).items() if n > 0}
    return set(flavor.accelerators) <= asked


def smallest_flavor(flavors: Iterable[Flavor], wanted: Resources) -> Flavor | None:
    """The smallest flavor that gives ``wanted`` (None when none does)."""
    fitting = [f for f in flavors if _gives(f, wanted)]
    return min(fitting, key=flavor_size) if fitting else None


def candidate_flavors(
    flavors: Sequence[Flavor],
    demand: Demand,
    *,
    ranged: frozenset[str],
    limit: int = 6,
) -> list[Flavor]:
    """The flavors an offer for ``demand`` may book, smallest first.

    Always the smallest flavor that gives the minimum. When the request gave a range
    (``ranged``: the dimensions with an explicit maximum, ``cores``/``memory_gib``), also the
    larger flavors that stay within the maximum in those dimensions — so "2 to 8 cores" is
    offered as the flavors with 2, 4 and 8 vCPUs. At most ``limit``, the largest kept.
    """
    smallest = smallest_flavor(flavors, demand.minimum)
    if smallest is None:
        return []
    if not ranged:
        return [smallest]
    low = smallest.resources
    out = []
    for flavor in flavors:
        if not _gives(flavor, demand.minimum):
            continue
        have = flavor.resources
        if all(have.get(d) <= max(demand.maximum.get(d), low.get(d)) for d in ranged):
            out.append(flavor)
    out.sort(key=flavor_size)
    # one flavor per distinct size (flavors that differ only in disk or name book the same)
    unique: dict[Resources, Flavor] = {}
    for flavor in out:
        unique.setdefault(flavor.resources, flavor)
    chosen = list(unique.values())
    return [chosen[0], *chosen[1:][-(limit - 1) :]] if len(chosen) > limit else chosen


# -- the cloud's capacity -------------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    """One Placement resource provider: inventories and usages by resource class."""

    id: str
    name: str
    root_id: str
    inventories: Mapping[str, Mapping[str, Any]]
    usages: Mapping[str, int]


def usable(inventory: Mapping[str, Any]) -> int:
    """What Placement lets consumers allocate: (total - reserved) * allocation_ratio."""
    total = int(inventory.get("total") or 0)
    reserved = int(inventory.get("reserved") or 0)
    ratio = float(inventory.get("allocation_ratio") or 1.0)
    return max(math.floor((total - reserved) * ratio), 0)


@dataclass(frozen=True)
class Amounts:
    """Raw amounts as OpenStack counts them: vCPUs, MiB of RAM, units of accelerator pools."""

    vcpus: int = 0
    ram_mb: int = 0
    accelerators: Mapping[str, int] = field(default_factory=dict)

    def __add__(self, other: Amounts) -> Amounts:
        pools = set(self.accelerators) | set(other.accelerators)
        return Amounts(
            self.vcpus + other.vcpus,
            self.ram_mb + other.ram_mb,
            {p: self.accelerators.get(p, 0) + other.accelerators.get(p, 0) for p in pools},
        )


@dataclass(frozen=True)
class Quota:
    """The project's Nova limits (None: unlimited) and what servers the broker did not start
    use of them."""

    cores: int | None = None
    ram_mb: int | None = None
    instances: int | None = None
    foreign_cores: int = 0
    foreign_ram_mb: int = 0
    foreign_instances: int = 0

    @property
    def room(self) -> Resources:
        """What the broker may book at most (dimensions without a limit: a huge number)."""
        big = 1 << 40
        cores = big if self.cores is None else max(self.cores - self.foreign_cores, 0)
        ram = big if self.ram_mb is None else max(self.ram_mb - self.foreign_ram_mb, 0)
        return Resources(cores=cores, memory_gib=ram // MIB_PER_GIB)

    def describe(self, dimension: str) -> str:
        """Human text of one limit, e.g. ``maxTotalCores=8, 2 used by other servers``."""
        if dimension == "cores":
            limit, used, key = self.cores, self.foreign_cores, "maxTotalCores"
        else:
            limit, used, key = self.ram_mb, self.foreign_ram_mb, "maxTotalRAMSize"
        text = f"{key}={limit}"
        return text + (f", {used} used by servers the broker did not start" if used else "")


def parse_limits(absolute: Mapping[str, Any], ours: Amounts, our_count: int) -> Quota:
    """The project's limits (``GET /limits``: SDK names ``total_cores`` or Nova's
    ``maxTotalCores``) minus what our own servers use of them."""

    def value(*keys: str) -> int | None:
        for key in keys:
            if absolute.get(key) is not None:
                number = int(absolute[key])
                return None if number < 0 else number
        return None

    def used(*keys: str) -> int:
        return next((int(absolute[k]) for k in keys if absolute.get(k) is not None), 0)

    return Quota(
        cores=value("total_cores", "maxTotalCores"),
        ram_mb=value("total_ram", "maxTotalRAMSize"),
        instances=value("instances", "maxTotalInstances"),
        foreign_cores=max(used("total_cores_used", "totalCoresUsed") - ours.vcpus, 0),
        foreign_ram_mb=max(used("total_ram_used", "totalRAMUsed") - ours.ram_mb, 0),
        foreign_instances=max(used("instances_used", "totalInstancesUsed") - our_count, 0),
    )


#: Nova statuses of servers that hold no resources on a hypervisor.
_NOT_HOLDING = {"DELETED", "SOFT_DELETED", "SHELVED_OFFLOADED"}


def server_amounts(server: Mapping[str, Any], accelerator_classes: Mapping[str, str]) -> Amounts:
    """What one server's flavor (embedded in the server since compute API 2.47) uses."""
    flavor = server.get("flavor") or {}
    parsed = parse_flavor({**flavor, "is_disabled": False}, accelerator_classes)
    if parsed is None:  # asks for things we do not track: count its vCPUs and RAM anyway
        return Amounts(int(flavor.get("vcpus") or 0), int(flavor.get("ram") or 0))
    return Amounts(parsed.vcpus, parsed.ram_mb, dict(parsed.accelerators))


@dataclass(frozen=True)
class CloudView:
    """What the platform knows about the cloud after a refresh."""

    capacity: Resources
    foreign: Resources  # usage of servers the broker did not start (external usage)
    largest_host: Resources | None  # the largest hypervisor (None: unknown)
    flavors: tuple[Flavor, ...]
    quota: Quota
    source: str  # "placement", "hypervisors" or "quota": where the hypervisor capacity came from
    notes: tuple[str, ...] = ()
    #: Does the cloud have Cinder (staged data goes to volumes)?
    block_storage: bool = False


def _host_totals(
    providers: Iterable[Provider],
    accelerator_classes: Mapping[str, str],
    patterns: Sequence[str],
) -> tuple[Amounts, Amounts, Resources | None]:
    """Usable capacity, usage and the largest host from Placement (hosts = root providers)."""
    providers = list(providers)
    names = {p.id: p.name for p in providers}
    total = used = Amounts()
    per_root: dict[str, Amounts] = {}
    for provider in providers:
        if not matches(names.get(provider.root_id, provider.name), patterns):
            continue
        cap = Amounts()
        use = Amounts()
        for resource_class, inventory in provider.inventories.items():
            amount = usable(inventory)
            count = int(provider.usages.get(resource_class, 0))
            if resource_class == "VCPU":
                cap, use = cap + Amounts(vcpus=amount), use + Amounts(vcpus=count)
            elif resource_class == "MEMORY_MB":
                cap, use = cap + Amounts(ram_mb=amount), use + Amounts(ram_mb=count)
            elif resource_class in accelerator_classes:
                pool = accelerator_classes[resource_class]
                cap = cap + Amounts(accelerators={pool: amount})
                use = use + Amounts(accelerators={pool: count})
        total, used = total + cap, used + use
        per_root[provider.root_id] = per_root.get(provider.root_id, Amounts()) + cap
    largest = None
    for host in per_root.values():
        this = Resources(
            cores=host.vcpus,
            memory_gib=host.ram_mb // MIB_PER_GIB,
            accelerators=dict(host.accelerators),
        )
        largest = this if largest is None else largest.componentwise_max(this)
    return total, used, largest


def _hypervisor_totals(
    hypervisors: Iterable[Mapping[str, Any]], patterns: Sequence[str]
) -> tuple[Amounts, Amounts, Resources | None]:
    """The same from Nova's hypervisor statistics (``os-hypervisors/detail``, API ≤ 2.87)."""
    total = used = Amounts()
    largest = None
    for hyp in hypervisors:
        if str(hyp.get("state", "up")) != "up" or str(hyp.get("status", "enabled")) != "enabled":
            continue
        if not matches(str(hyp.get("hypervisor_hostname", "")), patterns):
            continue
        vcpus, ram = int(hyp.get("vcpus") or 0), int(hyp.get("memory_mb") or 0)
        total = total + Amounts(vcpus, ram)
        used = used + Amounts(int(hyp.get("vcpus_used") or 0), int(hyp.get("memory_mb_used") or 0))
        this = Resources(cores=vcpus, memory_gib=ram // MIB_PER_GIB)
        largest = this if largest is None else largest.componentwise_max(this)
    return total, used, largest


def cloud_view(
    *,
    flavors: Iterable[Mapping[str, Any]],
    limits: Mapping[str, Any],
    our_servers: Iterable[Mapping[str, Any]],
    providers: Iterable[Provider] | None = None,
    hypervisors: Iterable[Mapping[str, Any]] | None = None,
    accelerator_classes: Mapping[str, str],
    flavor_patterns: Sequence[str] = (),
    hypervisor_patterns: Sequence[str] = (),
    cores: int = 0,
    memory_gib: int = 0,
) -> CloudView:
    """The capacity the broker offers and the usage it did not book.

    * H: the hypervisors' usable capacity — Placement inventories ((total - reserved) *
      allocation ratio of VCPU, MEMORY_MB and the accelerator classes) of the providers under
      the hosts matching ``hypervisor_patterns``; else Nova's hypervisor statistics; else
      unknown. Hf: what is allocated there minus what our own servers use.
    * Q: the project's quota (maxTotalCores, maxTotalRAMSize); Qf: what the project uses minus
      our servers.
    * ``cores``/``memory_gib`` (configured, 0: none) cap what the broker offers.

    With E = max(Hf, Qf) as the external usage on the broker's timeline, the capacity is
    ``min(H - Hf, Q - Qf, caps) + E`` per dimension: exactly "our bookings fit next to what
    others use on the hypervisors and within the quota".
    """
    ours = Amounts()
    holding = [s for s in our_servers if str(s.get("status", "")).upper() not in _NOT_HOLDING]
    for server in holding:
        ours = ours + server_amounts(server, accelerator_classes)
    quota = parse_limits(limits, ours, len(holding))
    notes: list[str] = []
    if providers is not None:
        host_cap, host_used, largest = _host_totals(
            providers, accelerator_classes, hypervisor_patterns
        )
        source = "placement"
    elif hypervisors is not None:
        host_cap, host_used, largest = _hypervisor_totals(hypervisors, hypervisor_patterns)
        source = "hypervisors"
    else:
        host_cap = host_used = Amounts()
        largest = None
        source = "quota"

    big = 1 << 40

    def room_and_foreign(
        host: int | None, host_used: int, mine: int, limit: int | None, limit_foreign: int, cap: int
    ) -> tuple[int, int]:
        """(what the broker may book, external usage E) in one dimension, in raw units."""
        foreign_host = max(host_used - mine, 0) if host is not None else 0
        room = big
        if host is not None:
            room = min(room, host - foreign_host)
        if limit is not None:
            room = min(room, limit - limit_foreign)
        if cap:
            room = min(room, cap)
        return max(room, 0), max(foreign_host, limit_foreign if limit is not None else 0)

    has_hosts = source != "quota"
    vcpu_room, vcpu_foreign = room_and_foreign(
        host_cap.vcpus if has_hosts else None,
        host_used.vcpus,
        ours.vcpus,
        quota.cores,
        quota.foreign_cores,
        cores,
    )
    ram_room, ram_foreign = room_and_foreign(
        host_cap.ram_mb if has_hosts else None,
        host_used.ram_mb,
        ours.ram_mb,
        quota.ram_mb,
        quota.foreign_ram_mb,
        memory_gib * MIB_PER_GIB,
    )
    if vcpu_room >= big or ram_room >= big:
        raise ValueError(
            "the cloud's capacity is unknown: the hypervisors cannot be read (no Placement or "
            "hypervisor access) and the project's quota is unlimited. Give "
            "OpenStackPlatform.placement_cloud (credentials that may read Placement), or bound "
            "the broker with OpenStackPlatform.cores and memory_gib."
        )
    accelerators: dict[str, int] = {}
    accel_foreign: dict[str, int] = {}
    for pool, amount in host_cap.accelerators.items():
        others = max(host_used.accelerators.get(pool, 0) - ours.accelerators.get(pool, 0), 0)
        accelerators[pool] = max(amount - others, 0) + others
        accel_foreign[pool] = others
    if quota.cores is not None and (
        not has_hosts or quota.cores - quota.foreign_cores < host_cap.vcpus
    ):
        notes.append(f"cores bounded by the project's quota ({quota.describe('cores')})")
    if quota.ram_mb is not None and (
        not has_hosts or quota.ram_mb - quota.foreign_ram_mb < host_cap.ram_mb
    ):
        notes.append(f"memory bounded by the project's quota ({quota.describe('memory')})")

    ram_foreign_gib = math.ceil(ram_foreign / MIB_PER_GIB)
    foreign = Resources(cores=vcpu_foreign, memory_gib=ram_foreign_gib, accelerators=accel_foreign)
    capacity = Resources(
        cores=vcpu_room + vcpu_foreign,
        memory_gib=ram_room // MIB_PER_GIB + ram_foreign_gib,
        accelerators=accelerators,
    )
    parsed = (parse_flavor(f, accelerator_classes) for f in flavors)
    usable_flavors = tuple(
        sorted(
            (
                f
                for f in parsed
                if f is not None and f.vcpus > 0 and matches(f.name, flavor_patterns)
            ),
            key=flavor_size,
        )
    )
    return CloudView(
        capacity=capacity,
        foreign=foreign,
        largest_host=largest,
        flavors=usable_flavors,
        quota=quota,
        source=source,
        notes=tuple(notes),
    )


# -- profiles -------------------------------------------------------------------------------------

#: Keys a profile may set (OpenStackPlatform.profiles); the traitlet of the same name is the
#: default.
PROFILE_KEYS = frozenset(
    {
        "image",
        "images",
        "flavors",
        "network",
        "security_groups",
        "session_security_group",
        "allowed_cidr",
        "floating_network",
        "key_name",
        "availability_zone",
        "metadata",
        "config_drive",
        "vm_user",
        "boot_seconds",
        "readiness",
        "ready_pattern",
        "server_command",
        "server_port",
        "kernel_name",
        "notebook_output_dir",
        "ssh_connector",
    }
)


def profile_names(kind: str, pools: Iterable[str] = ()) -> list[str]:
    """The profiles of a session, in merge order: ``default``, its kind, each accelerator type
    (``gpu``) and pool (``gpu:A100``), then the kind's own for them (``jupyter-server/gpu``,
    ``jupyter-server/gpu:A100``)."""
    accelerators: list[str] = []
    for pool in sorted(pools):
        accelerators += [pool.split(":", 1)[0], pool]
    names = ["default", kind, *accelerators, *(f"{kind}/{a}" for a in accelerators)]
    return list(dict.fromkeys(names))


def merged_profile(
    defaults: Mapping[str, Any],
    profiles: Mapping[str, Mapping[str, Any]],
    kind: str,
    pools: Iterable[str] = (),
) -> dict[str, Any]:
    """A session's settings: the defaults, then its profiles (:func:`profile_names`).

    ``metadata`` merges, ``security_groups`` add up, other keys are replaced. The ``image`` of a
    Jupyter server, notebook or container comes only from the profiles named after its kind
    (``jupyter-server``, ``jupyter-server/gpu``): the defaults' and the others' are plain VM
    images, which cannot run it.
    """
    out = dict(defaults)
    for name in profile_names(kind, pools):
        for key, value in (profiles.get(name) or {}).items():
            if key == "metadata" and isinstance(value, Mapping):
                out[key] = {**out.get(key, {}), **value}
            elif key == "security_groups" and isinstance(value, list):
                out[key] = [*out.get(key, []), *(v for v in value if v not in out.get(key, []))]
            else:
                out[key] = value
    if kind != KIND_VM:
        own = [n for n in profile_names(kind, pools) if n == kind or n.startswith(kind + "/")]
        out["image"] = next(
            (profiles[n]["image"] for n in reversed(own) if (profiles.get(n) or {}).get("image")),
            "",
        )
    return out


def check_profiles(profiles: Mapping[str, Any]) -> list[str]:
    """Problems of the ``profiles`` setting (unknown keys), for a clear start-up error."""
    problems = []
    for name, profile in profiles.items():
        if not isinstance(profile, Mapping):
            problems.append(f"profile {name!r} is not a dict")
            continue
        for key in sorted(set(profile) - PROFILE_KEYS):
            problems.append(f"profile {name!r}: unknown key {key!r}")
    if problems:
        problems.append(f"known keys: {', '.join(sorted(PROFILE_KEYS))}")
    return problems


# -- cloud-init -----------------------------------------------------------------------------------

UNIT = "eb-session.service"
ENV_FILE = "/etc/eb-broker/session.env"


def systemd_quote(args: Sequence[str]) -> str:
    """A command line for a systemd ``ExecStart=``: each argument double-quoted, with ``$`` and
    ``%`` (variable and specifier characters) doubled."""

    def one(arg: str) -> str:
        text = arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%")
        return f'"{text}"'

    return " ".join(one(a) for a in args)


def systemd_unquote(line: str) -> list[str]:
    """Inverse of :func:`systemd_quote` (used by the tests' stand-in guest)."""
    return [a.replace("$$", "$").replace("%%", "%") for a in shlex.split(line)]


def env_file(env: Mapping[str, str]) -> str:
    """A systemd ``EnvironmentFile`` (double-quoted values)."""
    lines = []
    for key, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"not an environment variable name: {key!r}")
        quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'{key}="{quoted}"\n')
    return "".join(lines)


@dataclass(frozen=True)
class SessionProgram:
    """What runs in a session's VM, as the site's image starts it (see :func:`cloud_config`)."""

    command: list[str]
    env: dict[str, str]
    user: str
    workdir: str = "~"
    run: bool = False  # a run: when it ends, its exit status goes to the console and the VM stops
    token: str = ""
    port: int = 0
    output: str = ""


def session_program(
    spec: SessionSpec, kind: str, profile: Mapping[str, Any], token: str
) -> SessionProgram:
    """The command of a Jupyter server, notebook run or container in a site image."""
    request = spec.request
    executable = request.executable
    user = str(profile.get("vm_user") or "root")
    if isinstance(executable, JupyterServer):
        port = int(profile.get("server_port") or 8888)
        env = {str(k): str(v) for k, v in (executable.environment or {}).items()}
        if "JUPYTERHUB_API_TOKEN" not in env:
            env["JUPYTER_TOKEN"] = token
        command = [*(executable.command or profile.get("server_command") or ["jupyter", "server"])]
        command += ["--ServerApp.ip=0.0.0.0", f"--ServerApp.port={port}"]
        command += ["--ServerApp.port_retries=0", "--no-browser"]
        if executable.root_dir:
            command.append(f"--ServerApp.root_dir={executable.root_dir}")
        return SessionProgram(
            command,
            env,
            user,
            executable.root_dir or "~",
            token="" if "JUPYTERHUB_API_TOKEN" in env else token,
            port=port,
        )
    if isinstance(executable, JupyterNotebook):
        out_dir = str(profile.get("notebook_output_dir") or "/var/lib/eb-broker")
        output = f"{out_dir.rstrip('/')}/{spec.uuid}.ipynb"
        command = ["papermill", str(executable.location), output, "--log-output"]
        kernel = executable.kernel or str(profile.get("kernel_name") or "")
        if kernel:
            command += ["--kernel", kernel]
        if executable.parameters:
            command += ["--parameters_yaml", json.dumps(executable.parameters)]
        return SessionProgram(command, {}, user, run=True, output=output)
    if isinstance(executable, DockerContainer):
        image = (executable.image.locations or [""])[0] if executable.image else ""
        command = ["docker", "run", "--rm", "--name", server_name(spec.uuid)]
        if executable.privileged:
            command.append("--privileged")
        for key, value in (executable.environment or {}).items():
            command += ["-e", f"{key}={value}"]
        ports = container_ports(executable)
        for port in ports:
            command += ["-p", f"{port}:{port}"]
        if executable.entrypoint:
            command += ["--entrypoint", executable.entrypoint]
        command += [image.removeprefix("docker://"), *(executable.command or [])]
        return SessionProgram(
            command, {}, "root", "/", run=not ports, port=ports[0] if ports else 0
        )
    raise ValueError(f"no program for executables of kind {getattr(executable, 'kind', None)}")


def container_ports(executable: DockerContainer) -> list[int]:
    """The container ports to publish on the VM (``network.ports`` with access)."""
    ports = []
    for item in (executable.network.ports if executable.network else None) or []:
        if item.access is not False and item.internal and item.internal.port:
            ports.append(int(item.internal.port))
    return ports


def cloud_config(spec: SessionSpec, program: SessionProgram) -> str:
    """cloud-init user data that runs ``program`` as a systemd service of the VM.

    The environment (with a server's token) goes to a root-only file; a run writes
    ``jeb-exit: <status>`` to the console when it ends and powers the VM off, so the broker
    sees SHUTOFF and reads the status from the console log.
    """
    unit = [
        "[Unit]",
        f"Description=Execution Broker session {spec.uuid}",
        "Wants=network-online.target",
        "After=network-online.target cloud-final.service"
        if program.run
        else "After=network-online.target",
        "",
        "[Service]",
        f"Type={'oneshot' if program.run else 'simple'}",
        f"User={program.user}",
        f"WorkingDirectory={program.workdir}",
        f"EnvironmentFile={ENV_FILE}",
        f"ExecStart={systemd_quote(program.command)}",
    ]
    if program.run:
        unit.append(
            'ExecStopPost=+/bin/sh -c \'echo "jeb-exit: $$EXIT_STATUS" >/dev/console; '
            "systemctl --no-block poweroff'"
        )
    else:
        unit.append("Restart=on-failure")
    unit += ["", "[Install]", "WantedBy=multi-user.target", ""]
    config = {
        "write_files": [
            {"path": ENV_FILE, "permissions": "0600", "content": env_file(program.env)},
            {"path": f"/etc/systemd/system/{UNIT}", "content": "\n".join(unit)},
        ],
        "runcmd": [
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", "--no-block", UNIT],
        ],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)


def read_cloud_config(text: str) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """The unit's settings, ExecStart and environment from :func:`cloud_config`'s output (the
    tests' stand-in guest runs what a VM would)."""
    config = yaml.safe_load(text.removeprefix("#cloud-config\n")) or {}
    files = {item["path"]: item.get("content", "") for item in config.get("write_files", [])}
    settings: dict[str, str] = {}
    for line in files.get(f"/etc/systemd/system/{UNIT}", "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key and not key.startswith(("[", "#")):
            settings.setdefault(key.strip(), value.strip())
    env: dict[str, str] = {}
    for line in files.get(ENV_FILE, "").splitlines():
        key, _, value = line.partition("=")
        env[key] = json.loads(value) if value.startswith('"') else value
    return settings, systemd_unquote(settings.get("ExecStart", "")), env


# -- reading servers ------------------------------------------------------------------------------


@dataclass
class ServerReading:
    """What one server says about its session."""

    state: PlatformState
    messages: list[MessageItem] = field(default_factory=list)
    #: ACTIVE and interactive, not answered yet: the platform checks readiness.
    needs_ready_check: bool = False
    #: A run whose VM stopped: the platform reads its exit status from the console log.
    needs_exit_status: bool = False
    active_since: datetime | None = None


#: Statuses in which the server exists and runs, but is busy with an operator's action.
_BUSY = {
    "REBOOT",
    "HARD_REBOOT",
    "REBUILD",
    "RESIZE",
    "VERIFY_RESIZE",
    "REVERT_RESIZE",
    "MIGRATING",
    "PASSWORD",
}
#: Statuses in which it does not run.
_PARKED = {"PAUSED", "SUSPENDED", "SHELVED", "SHELVED_OFFLOADED", "RESCUE"}


def fault_message(server: Mapping[str, Any]) -> MessageItem:
    """Why a server is in ERROR: Nova's fault (message, code)."""
    fault = server.get("fault") or {}
    text = str(fault.get("message") or "no fault recorded").strip()
    code = fault.get("code")
    details = str(fault.get("details") or "").strip()
    message = f"the server failed: {text}" + (f" (code {code})" if code else "")
    if details and details != text and "Traceback" not in details:
        message += f": {details[-500:]}"
    return msg.error(msg.EXECUTION_FAILED, message, fault=text, code=code or "")


def read_server(server: Mapping[str, Any], *, interactive: bool, ready: bool) -> ServerReading:
    """The session state a server shows, for :meth:`OpenStackPlatform.poll`.

    BUILD → PREPARING; ACTIVE → RUNNING, or AVAILABLE for interactive sessions once ``ready``
    (the platform checks readiness while ``needs_ready_check``); SHUTOFF → a run ended (its exit
    status is read from the console), an interactive VM was shut down (SUCCEEDED); ERROR →
    FAILED with Nova's fault; DELETED → GONE; UNKNOWN → UNKNOWN (leave the phase alone).
    """
    status = str(server.get("status") or "UNKNOWN").upper()
    task = server.get("task_state") or ""
    since = parse_api_time(server.get("launched_at"))
    if status == "BUILD":
        doing = f" ({task})" if task else ""
        return ServerReading(
            PlatformState.PREPARING, [msg.info(msg.PLATFORM, f"the server is being built{doing}")]
        )
    if status == "ACTIVE":
        if not interactive:
            return ServerReading(PlatformState.RUNNING, active_since=since)
        if ready:
            return ServerReading(PlatformState.AVAILABLE, active_since=since)
        return ServerReading(
            PlatformState.RUNNING,
            [msg.info(msg.PLATFORM, "the virtual machine runs; waiting for its service")],
            needs_ready_check=True,
            active_since=since,
        )
    if status == "SHUTOFF":
        if interactive:
            return ServerReading(
                PlatformState.SUCCEEDED,
                [msg.info(msg.PLATFORM, "the virtual machine was shut down")],
            )
        return ServerReading(PlatformState.SUCCEEDED, needs_exit_status=True, active_since=since)
    if status == "ERROR":
        return ServerReading(PlatformState.FAILED, [fault_message(server)])
    if status in ("DELETED", "SOFT_DELETED"):
        return ServerReading(
            PlatformState.GONE, [msg.error(msg.PLATFORM, f"the server was {status.lower()}")]
        )
    if status in _BUSY:
        state = PlatformState.AVAILABLE if interactive and ready else PlatformState.RUNNING
        return ServerReading(
            state, [msg.warn(msg.PLATFORM, f"the server is {status}")], active_since=since
        )
    if status in _PARKED:
        return ServerReading(
            PlatformState.RUNNING,
            [msg.warn(msg.PLATFORM, f"the server is {status}: it does not run now")],
            active_since=since,
        )
    return ServerReading(PlatformState.UNKNOWN)


def exit_status(console: str) -> str | None:
    """The last ``jeb-exit: <status>`` a run wrote to the console (None: none written)."""
    found = _EXIT.findall(console or "")
    return found[-1] if found else None


def finished_run(console: str | None) -> tuple[PlatformState, list[MessageItem]]:
    """A run whose VM powered off: SUCCEEDED for exit status 0, FAILED otherwise."""
    status = exit_status(console or "")
    if status is None:
        return PlatformState.SUCCEEDED, [
            msg.warn(
                msg.PLATFORM,
                "the virtual machine powered off; its console log shows no exit status",
            )
        ]
    if status in ("0", "success"):
        return PlatformState.SUCCEEDED, []
    return PlatformState.FAILED, [
        msg.error(msg.EXECUTION_FAILED, f"the run exited with status {status}", status=status)
    ]


def server_address(server: Mapping[str, Any], *, floating_ip: str = "", network: str = "") -> str:
    """How users (and the broker's readiness check) reach a server: our floating IP, else its
    ``accessIPv4``/``accessIPv6``, else a fixed IPv4 on ``network`` (any network when empty or
    not found), else any IPv6 ('' when it has no address yet)."""
    if floating_ip:
        return floating_ip
    for key in ("access_ipv4", "access_ipv6"):
        if server.get(key):
            return str(server[key])
    addresses: Mapping[str, Any] = server.get("addresses") or {}
    order = [network] if network in addresses else []
    order += [n for n in addresses if n not in order]
    for want in (4, 6):
        for name in order:
            for item in addresses.get(name) or []:
                if int(item.get("version") or 4) == want and item.get("addr"):
                    return str(item["addr"])
    return ""


def url_host(address: str) -> str:
    """An address as the host part of a URL (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address else address


def with_pools(spec_resources: Resources) -> list[str]:
    """The accelerator pools a session booked."""
    return [pool for pool, n in dict(spec_resources.accelerators).items() if n > 0]


def booked_flavor(flavors: Iterable[Flavor], resources: Resources) -> Flavor | None:
    """The flavor of a booked session: the smallest that gives what was booked."""
    return smallest_flavor(flavors, resources)


def shaped(demand: Demand, flavor: Flavor) -> Demand:
    """``demand`` for exactly what ``flavor`` gives, and the storage (the data volume) it
    asked for."""
    resources = replace(flavor.resources, storage_gib=demand.minimum.storage_gib)
    return replace(demand, minimum=resources, maximum=resources)
