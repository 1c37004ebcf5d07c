"""``OpenStackPlatform``: brokered virtual machines (and Jupyter servers, notebook runs and
containers inside them) as Nova servers, through openstacksdk.

See docs/platforms/openstack.md. The I/O is in :mod:`.client`, everything that can be
computed without a cloud in :mod:`.objects`; this class glues them to the broker.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode

from eb_sdk.model import (
    DockerContainer,
    ExecutionRequest,
    JupyterNotebook,
    JupyterServer,
    MessageItem,
    SimpleComputeResource,
    SimpleSessionConnector,
    VirtualMachine,
)
from eb_sdk.model import messages as msg
from eb_sdk.model.executables import USER_DATA_LIMIT
from eb_sdk.model.kinds import kind_label
from eb_sdk.model.sessions import ConnectorStatus

from ...clock import utcnow
from ...scheduling import Capacity, Demand, Resources
from ...staging.mounts import staged_env
from .._api_objects import KIND_CONTAINER, KIND_NOTEBOOK, KIND_SERVER
from .._availability import TracksAvailability
from .._probes import HttpProbe, jupyter_probe_url
from ..base import (
    JUPYTER_SERVER_CONNECTOR,
    Platform,
    PlatformState,
    PlatformStatus,
    PlatformUnavailable,
    ReleaseLeftovers,
    SessionSpec,
)
from .client import JSON, CloudClient, OpenStackError, OpenStackUnavailable
from .data import (
    DATA_PREFIX,
    block_devices,
    data_cloud_config,
    data_label,
    data_name,
    image_bytes,
    image_layout,
    inode_count,
    merged_cloud_config,
    volume_gib,
    volume_room,
)
from .objects import (
    KIND_VM,
    META_SESSION,
    CloudView,
    Flavor,
    candidate_flavors,
    check_profiles,
    cloud_config,
    container_ports,
    finished_run,
    matches,
    merged_profile,
    read_server,
    server_address,
    server_metadata,
    server_name,
    server_tag,
    session_kind,
    session_program,
    shaped,
    smallest_flavor,
    url_host,
    with_pools,
)

HTTP_CONNECTOR = "urn:jeb:v1:connector:http"
SSH_CONNECTOR = "urn:jeb:v1:connector:ssh"

_PUBLIC_KEY = re.compile(
    r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-\S+|sk-\S+)\s+[A-Za-z0-9+/=]+(\s.*)?$"
)


@dataclass(frozen=True)
class SessionSettings:
    """How one session runs, derived from its request and the configuration (deterministic, so
    a launch after a crash derives the same)."""

    kind: str
    profile: dict[str, Any]
    interactive: bool
    readiness: str  # http, console, active (or "" for runs)
    port: int = 0
    path: str = "/"
    ssh: bool = False


@dataclass
class _Extras:
    """What a session's server is created with besides itself."""

    key_name: str = ""
    keypair: str = ""  # created for the session (deleted with it)
    groups: list[dict[str, str]] = field(default_factory=list)
    group: str = ""  # id of the session's own security group
    floating_ip: dict[str, Any] = field(default_factory=dict)
    user_data: str = ""
    token: str = ""
    output: str = ""


class OpenStackPlatform(TracksAvailability, Platform):
    """Runs sessions as Nova servers: virtual machines, and Jupyter servers, notebook runs and
    Docker containers in VM images the site provides."""

    name = "openstack"
    unavailable_log = "OpenStack unavailable: %s"
    available_log = "OpenStack reachable again"
    unavailable_error = OpenStackUnavailable

    refresh_interval = Float(
        30.0,
        config=True,
        help="Seconds between re-reads of flavors, images, the project's limits and the "
        "hypervisors' inventories and usages (the API's health is checked with them, and by "
        "every poll).",
    )

    # -- connection -------------------------------------------------------------------------------

    cloud = Unicode(
        "",
        config=True,
        help="Name of the cloud in clouds.yaml (empty: $OS_CLOUD, or the only cloud there is).",
    )
    clouds_yaml = Unicode(
        "",
        config=True,
        help="Path of a clouds.yaml. Empty: openstacksdk's usual places "
        "($OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack/, /etc/openstack/).",
    )
    cloud_config = Dict(
        {},
        config=True,
        help="clouds.yaml settings over the cloud's entry (or instead of one), e.g. "
        "application credentials: {'auth_type': 'v3applicationcredential', 'auth': "
        "{'auth_url': 'https://keystone.example.org/v3', 'application_credential_id': '…', "
        "'application_credential_secret': '…'}}.",
    )
    region_name = Unicode("", config=True, help="Region (empty: the cloud's default).")
    placement_cloud = Unicode(
        "",
        config=True,
        help="A cloud in clouds.yaml whose credentials may read Placement and the hypervisors "
        "(Placement's admin, service or reader role) for the hypervisors' capacity. Empty: the "
        "broker's own cloud; when that may not read them, the capacity is the project's quota, "
        "bounded by cores and memory_gib.",
    )
    instance = Unicode(
        "eb-broker",
        config=True,
        help="Name of this broker on the cloud: every server it creates is tagged "
        "eb-broker:<instance>. Servers without the tag are usage the broker did not book. "
        "Give each broker sharing a project its own name.",
    )
    api_timeout = Float(
        10.0, config=True, help="Seconds one API call may take before the API counts as down."
    )
    startup_wait = Float(
        30.0,
        config=True,
        help="Seconds to wait at start-up for the APIs to answer (the broker needs the cloud's "
        "capacity before it can start).",
    )

    # -- what runs --------------------------------------------------------------------------------

    image = Unicode(
        "",
        config=True,
        help="Image (name or id) of virtual-machine requests that name none (empty: they must "
        "name one). Jupyter servers, notebooks and containers use the image of their profile.",
    )
    images = List(
        Unicode(),
        [],
        config=True,
        help="Images virtual-machine requests may name (names, ids or patterns like "
        "'ubuntu-*'); empty: any image the project can boot.",
    )
    flavors = List(
        Unicode(),
        [],
        config=True,
        help="Flavors the broker may book (names or patterns like 'm1.*'); empty: every "
        "flavor the project can use. Flavors asking for resources the broker does not track "
        "(resource classes not in 'accelerators', PCI aliases) are never booked.",
    )
    network = Unicode(
        "auto",
        config=True,
        help="Network of the servers: a network name or id, 'auto' (Nova's auto-allocated "
        "network) or 'none' (no network).",
    )
    security_groups = List(
        Unicode(), [], config=True, help="Security groups (names) of every server."
    )
    session_security_group = Bool(
        False,
        config=True,
        help="Create a security group per session that opens its ports (22 when it has an "
        "SSH key, its HTTP port) to allowed_cidr; deleted with the session.",
    )
    allowed_cidr = Unicode(
        "0.0.0.0/0", config=True, help="Where a session's security group lets connections in from."
    )
    floating_network = Unicode(
        "",
        config=True,
        help="External network to give each server a floating IP from once it is ACTIVE "
        "(deleted with the session); empty: none.",
    )
    key_name = Unicode(
        "",
        config=True,
        help="An existing keypair of the broker's user put on servers whose request brings no "
        "SSH key (e.g. operators' access); empty: none.",
    )
    availability_zone = Unicode("", config=True, help="Availability zone of the servers.")
    metadata = Dict({}, config=True, help="Metadata added to every server.")
    config_drive = Bool(False, config=True, help="Give servers a config drive.")
    vm_user = Unicode(
        "ubuntu",
        config=True,
        help="The user of the images (SSH connectors ssh://<vm_user>@<address>; the user "
        "Jupyter servers and notebooks run as).",
    )
    ssh_connector = Bool(
        True,
        config=True,
        help="Report an SSH connector for servers that have a keypair (the request's key or "
        "key_name).",
    )
    profiles = Dict(
        {},
        config=True,
        help="Per-kind settings, merged in order: 'default', the executable kind "
        "('virtual-machine', 'jupyter-server', 'jupyter-notebook', 'docker-container'), the "
        "accelerator type ('gpu') and pool ('gpu:A100') a session booked, then the kind's own "
        "for them ('jupyter-server/gpu'). Keys: the options "
        "image, images, flavors, network, security_groups, session_security_group, "
        "allowed_cidr, floating_network, key_name, availability_zone, metadata, config_drive, "
        "vm_user, boot_seconds, readiness, ready_pattern, server_command, server_port, "
        "kernel_name, notebook_output_dir, ssh_connector. Jupyter servers, notebooks and "
        "containers run only where a profile of their kind names an 'image' able to run them, "
        "e.g. {'jupyter-server': {'image': 'jupyter-vm-2026'}}.",
    )
    allow_privileged = Bool(
        False, config=True, help="Run Docker container requests that ask for privileged mode."
    )

    # -- readiness --------------------------------------------------------------------------------

    readiness = Enum(
        ["auto", "http", "console", "active"],
        "auto",
        config=True,
        help="When an ACTIVE server's session becomes AVAILABLE: 'http' when its service "
        "answers HTTP, 'console' when its console log matches ready_pattern (cloud-init is "
        "done), 'active' at once. 'auto': 'http' for sessions with an HTTP service (Jupyter "
        "servers, VMs with an http_port, containers with ports), else 'console'.",
    )
    ready_pattern = Unicode(
        r"Cloud-init v\. \S+ finished",
        config=True,
        help="Regular expression that marks a booted VM in its console log (cloud-init's "
        "final message by default).",
    )
    ready_check_interval = Float(
        3.0, config=True, help="Seconds between two readiness checks of one server."
    )
    console_lines = Int(
        200, config=True, help="Console log lines read for readiness and exit status."
    )
    boot_seconds = Float(
        120.0,
        config=True,
        help="Preparation planned before each start: the server is created this long before "
        "the booked slot (build, boot, cloud-init).",
    )
    server_start_timeout = Float(
        900.0,
        config=True,
        help="Seconds an ACTIVE server may take to become ready before the session FAILs.",
    )
    server_command = List(
        Unicode(),
        ["jupyter", "server"],
        config=True,
        help="Command of a Jupyter server when the request names none; the broker adds "
        "--ServerApp.ip=0.0.0.0, --ServerApp.port, --ServerApp.port_retries=0, --no-browser.",
    )
    server_port = Int(8888, config=True, help="Port of Jupyter servers in their VMs.")
    server_url_template = Unicode(
        "http://{address}:{port}{path}",
        config=True,
        help="URL of a session's HTTP service as users (and the readiness check) reach it. "
        "Fields: {address} (floating IP, accessIPv4, or the fixed address on 'network'), "
        "{port}, {path} (starts with '/'), {uuid}, {server_id}, {name}.",
    )
    kernel_name = Unicode(
        "python3",
        config=True,
        help="Kernel of notebook runs unless the request names one (empty: the notebook's own).",
    )
    notebook_output_dir = Unicode(
        "/var/lib/eb-broker",
        config=True,
        help="Where papermill writes the executed notebook (<dir>/<uuid>.ipynb) in the VM. The "
        "VM is deleted at the end: point it at storage that outlives it (a shared file system "
        "the image mounts, or an object store URL like s3://bucket/runs).",
    )

    # -- capacity ---------------------------------------------------------------------------------

    accelerators = Dict(
        {"VGPU": "gpu"},
        config=True,
        help="Placement resource classes counted as accelerators: {class: pool}, e.g. "
        "{'VGPU': 'gpu', 'CUSTOM_GPU_A100': 'gpu:A100'}. Their inventories add to the pool; "
        "flavors with the extra spec resources:<class>=N give N of it.",
    )
    hypervisors = List(
        Unicode(),
        [],
        config=True,
        help="Hypervisors (resource provider names or patterns) whose capacity counts; empty: "
        "all of them.",
    )
    cores = Int(
        0, config=True, help="Most cores the broker books at once (0: as the cloud allows)."
    )
    memory_gib = Int(
        0, config=True, help="Most memory (GiB) the broker books at once (0: as the cloud allows)."
    )
    foreign_server_hours = Float(
        336.0,
        config=True,
        help="How long servers the broker did not start are assumed to keep their resources.",
    )

    # -- staged data ------------------------------------------------------------------------------

    data_volumes = Bool(
        True,
        config=True,
        help="Give sessions their staged data on a Cinder volume (packed into an ext4 image "
        "with mkfs.ext4, uploaded to Glance, made a volume of, attached to the server and "
        "mounted by cloud-init). False, or a cloud without Cinder: requests with data get NO.",
    )
    data_volume_type = Unicode(
        "", config=True, help="Cinder volume type of the data volumes (empty: the default)."
    )
    data_volume_timeout = Float(
        900.0,
        config=True,
        help="Seconds a data volume may take to become available (Cinder copies the image's "
        "bytes into it) before the session FAILs.",
    )
    data_release_timeout = Float(
        300.0,
        config=True,
        help="Seconds release waits for a data volume to be detached from the deleted server "
        "(the session stays RELEASING meanwhile). Then the session ends anyway with a warning "
        "naming the volume, left for the cloud's operator.",
    )
    work_dir = Unicode(
        "",
        config=True,
        help="The broker's directory on its host; the staging cache is <work_dir>/.eb-staging "
        "unless DataStaging.staging_dir says otherwise (the broker's own disk: the data goes "
        "to the VMs on volumes). Default: the broker's work_dir.",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        problems = check_profiles(self.profiles)
        if problems:
            raise ValueError("OpenStackPlatform.profiles: " + "; ".join(problems))
        self._tag = server_tag(self.instance)
        try:
            re.compile(self.ready_pattern)
        except re.error as exc:
            raise ValueError(f"OpenStackPlatform.ready_pattern is not a regex: {exc}") from None
        self._client: CloudClient | None = None
        self._placement: CloudClient | None = None
        self._probe = HttpProbe()
        self._view: CloudView | None = None
        self._images: dict[str, str] = {}  # name and id -> id
        self._networks: dict[str, str] = {}  # name or id -> id
        self._host_source_warned = False
        self._next_check: dict[str, float] = {}
        #: session → when release stops waiting for its data volume (time.monotonic)
        self._release_deadlines: dict[str, float] = {}

    # -- helpers ----------------------------------------------------------------------------------

    def _new_client(self, cloud: str) -> CloudClient:
        return CloudClient(
            cloud=cloud,
            config_file=self.clouds_yaml,
            overrides=self.cloud_config if cloud == self.cloud else {},
            region=self.region_name,
            timeout=self.api_timeout,
        )

    @property
    def client(self) -> CloudClient:
        if self._client is None:
            self._client = self._new_client(self.cloud)
        return self._client

    @property
    def placement(self) -> CloudClient:
        """The client that reads Placement and the hypervisors."""
        if not self.placement_cloud:
            return self.client
        if self._placement is None:
            self._placement = self._new_client(self.placement_cloud)
        return self._placement

    def _defaults(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "images": list(self.images),
            "flavors": list(self.flavors),
            "network": self.network,
            "security_groups": list(self.security_groups),
            "session_security_group": self.session_security_group,
            "allowed_cidr": self.allowed_cidr,
            "floating_network": self.floating_network,
            "key_name": self.key_name,
            "availability_zone": self.availability_zone,
            "metadata": dict(self.metadata),
            "config_drive": self.config_drive,
            "vm_user": self.vm_user,
            "boot_seconds": self.boot_seconds,
            "readiness": self.readiness,
            "ready_pattern": self.ready_pattern,
            "server_command": list(self.server_command),
            "server_port": self.server_port,
            "kernel_name": self.kernel_name,
            "notebook_output_dir": self.notebook_output_dir,
            "ssh_connector": self.ssh_connector,
        }

    def _profile(self, kind: str, pools: list[str]) -> dict[str, Any]:
        return merged_profile(self._defaults(), self.profiles, kind, pools)

    def _runs_kind(self, kind: str) -> bool:
        """Does some profile of ``kind`` name an image (for the kind, or an accelerator)?"""
        return any(
            (profile or {}).get("image")
            for name, profile in self.profiles.items()
            if name == kind or name.startswith(kind + "/")
        )

    def settings(self, request: ExecutionRequest, pools: list[str]) -> SessionSettings:
        """How a session of ``request`` runs (booked ``pools``)."""
        kind = session_kind(request)
        profile = self._profile(kind, pools)
        executable = request.executable
        port, path, ssh = 0, "/", False
        if isinstance(executable, JupyterServer):
            port = int(profile["server_port"])
        elif isinstance(executable, VirtualMachine):
            port = executable.http_port or 0
            path = executable.http_path or "/"
            ssh = bool(executable.ssh_public_key or profile["key_name"])
        elif isinstance(executable, DockerContainer):
            ports = container_ports(executable)
            port = ports[0] if ports else 0
        interactive = kind in (KIND_VM, KIND_SERVER) or bool(port)
        readiness = ""
        if interactive:
            readiness = str(profile["readiness"])
            if readiness == "auto":
                readiness = "http" if port else "console"
            elif readiness == "http" and not port:
                readiness = "console"
        return SessionSettings(
            kind=kind,
            profile=profile,
            interactive=interactive,
            readiness=readiness,
            port=port,
            path=path if path.startswith("/") else "/" + path,
            ssh=ssh and bool(profile["ssh_connector"]),
        )

    # -- reading the cloud ------------------------------------------------------------------------

    def _read_hosts(self) -> tuple[Any, Any]:
        """(Placement providers, hypervisor statistics): one of them, or neither when the
        credentials may read neither. Runs in a worker thread."""
        client = self.placement
        try:
            return client.call("read Placement", CloudClient.providers), None
        except OpenStackError as placement_error:
            try:
                return None, client.call("read the hypervisors", CloudClient.hypervisors)
            except OpenStackError as hypervisor_error:
                if not self._host_source_warned:
                    self.log.warning(
                        "cannot read the hypervisors' capacity (Placement: %s; Nova: %s): the "
                        "capacity is the project's quota",
                        placement_error,
                        hypervisor_error,
                    )
                    self._host_source_warned = True
                return None, None

    def _read_view(self) -> tuple[CloudView, dict[str, str]]:
        """Everything a refresh reads (in the calling thread; the API calls one after another)."""
        from .objects import cloud_view

        client = self.client
        flavors = client.call("list flavors", CloudClient.flavors)
        images = client.call("list images", CloudClient.images)
        limits = client.call("read the project's limits", CloudClient.limits)
        servers = client.call("list servers", CloudClient.servers, self._tag)
        providers, hypervisors = self._read_hosts()
        block_storage = self.data_volumes and client.call(
            "read the catalogue", CloudClient.has_block_storage
        )
        view = cloud_view(
            flavors=flavors,
            limits=limits,
            our_servers=servers,
            providers=providers,
            hypervisors=hypervisors,
            accelerator_classes=dict(self.accelerators),
            flavor_patterns=list(self.flavors),
            hypervisor_patterns=list(self.hypervisors),
            cores=self.cores,
            memory_gib=self.memory_gib,
        )
        if block_storage:
            view = self._with_volume_room(view)
        names: dict[str, str] = {}
        for image in images:
            names[str(image["id"])] = str(image["id"])
            if image.get("name"):
                names.setdefault(str(image["name"]), str(image["id"]))
        return view, names

    def _with_volume_room(self, view: CloudView) -> CloudView:
        """``view`` knowing Cinder, its storage the room the volume quota leaves the broker
        (its own data volumes count as its bookings). Runs in a worker thread."""
        client = self.client
        limits = client.call("read the volume limits", CloudClient.volume_limits)
        ours = client.call("list the data volumes", CloudClient.volumes_named, DATA_PREFIX)
        room = volume_room(limits, sum(v["size"] for v in ours))
        capacity = view.capacity if room is None else replace(view.capacity, storage_gib=room)
        return replace(view, capacity=capacity, block_storage=True)

    def _initial_view(self) -> CloudView:
        """Read the cloud once, synchronously (the broker asks for capacity at start-up)."""
        deadline = time.monotonic() + self.startup_wait
        while True:
            try:
                view, self._images = self._read_view()
                return view
            except OpenStackUnavailable as exc:
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"the OpenStack platform cannot read the cloud's capacity: {exc}"
                    ) from exc
                time.sleep(1.0)
            except (OpenStackError, ValueError) as exc:
                raise RuntimeError(
                    f"the OpenStack platform cannot read the cloud's capacity: {exc}"
                ) from exc

    # -- Platform ---------------------------------------------------------------------------------

    def executable_kinds(self) -> list[str]:
        """Virtual machines, and the kinds whose profile names an image able to run them."""
        kinds = [VirtualMachine.KIND]
        for kind, cls in (
            (KIND_SERVER, JupyterServer),
            (KIND_NOTEBOOK, JupyterNotebook),
            (KIND_CONTAINER, DockerContainer),
        ):
            if self._runs_kind(kind):
                kinds.append(cls.KIND)
        return kinds

    def capacity(self) -> Capacity:
        if self._view is None:
            self._view = self._initial_view()
        return Capacity(self._view.capacity)

    def external_usage(self) -> list[tuple[str, datetime, datetime, Resources]]:
        if self._view is None or self._view.foreign.is_zero():
            return []
        now = utcnow()
        end = now + timedelta(hours=self.foreign_server_hours)
        return [("openstack:foreign-servers", now, end, self._view.foreign)]

    async def refresh(self) -> None:
        try:
            view, images = await self.client.offload(self._read_view)
        except OpenStackUnavailable as exc:
            self._mark_unavailable(str(exc))
            return
        except (OpenStackError, ValueError) as exc:
            self._mark_unavailable(f"OpenStack refused to describe the cloud: {exc}")
            return
        self._view, self._images = view, images
        self._mark_available()

    def check(self, request: ExecutionRequest) -> list[MessageItem]:
        problems: list[MessageItem] = []
        executable = request.executable

        def no(message: str, kind: str = msg.NOT_SUPPORTED, **values: Any) -> None:
            problems.append(msg.error(kind, message, **values))

        if not self._available:
            no(
                f"the OpenStack cloud cannot be reached now: {self._reason}",
                msg.PLATFORM_UNAVAILABLE,
            )
        kind = session_kind(request)
        if executable is None:
            no("the request has no executable: say what to run (a virtual machine, a server, ...)")
            return problems
        if not kind:
            no(
                f"the OpenStack platform cannot run executables of kind {executable.kind} "
                f"({kind_label(executable.kind)}); it runs virtual machines, and Jupyter "
                "servers, notebooks and Docker containers in VM images the site provides",
                executable=executable.kind,
            )
            return problems
        profile = self._profile(kind, [])
        if kind != KIND_VM and not self._runs_kind(kind):
            no(
                f"this site runs no {kind_label(executable.kind)} in virtual machines (no image "
                f"for it: OpenStackPlatform.profiles['{kind}']['image'])",
                executable=executable.kind,
            )
        if isinstance(executable, VirtualMachine):
            problems += self._check_vm(executable, profile)
        elif isinstance(executable, JupyterNotebook) and not executable.location:
            no("the notebook has no location: say where the notebook is (a URL the VM can read)")
        elif isinstance(executable, DockerContainer):
            if not executable.image or not executable.image.locations:
                no("the container has no image: give image.locations")
            if executable.privileged and not self.allow_privileged:
                no("privileged containers are not allowed on this broker", msg.POLICY)
        problems += self._check_quota(request)
        if request.data:
            reason = self._data_problem()
            if reason:
                no(reason, data_kinds=", ".join(sorted({d.kind for d in request.data})))
        if request.storage:
            no("this broker offers no volumes: storage requests are not supported yet")
        return problems

    def _data_problem(self) -> str:
        """Why this broker cannot give sessions their data ('' when it can)."""
        if not self.data_volumes:
            return (
                "this broker does not stage data on OpenStack (OpenStackPlatform.data_volumes "
                "is False)"
            )
        if self._view is not None and not self._view.block_storage:
            return (
                "the OpenStack cloud has no block storage (Cinder) in its catalogue: staged "
                "data goes to the servers on volumes (see docs/data.md)"
            )
        if not shutil.which("mkfs.ext4"):
            return "the broker's host has no mkfs.ext4 (Debian e2fsprogs) to pack the data"
        return ""

    def staging_dir(self) -> str | None:
        """``<work_dir>/.eb-staging`` on the broker's host (None without data volumes)."""
        if not self.data_volumes:
            return None
        return str(Path(self.work_dir or ".").expanduser().absolute() / ".eb-staging")

    def _check_quota(self, request: ExecutionRequest) -> list[MessageItem]:
        """A minimum the project's quota can never give: NO, naming the quota."""
        compute = request.compute
        if self._view is None or not isinstance(compute, SimpleComputeResource):
            return []
        quota = self._view.quota
        room = quota.room
        out = []
        for dimension, wanted, left, unit in (
            ("cores", compute.cores.min if compute.cores else None, room.cores, "cores"),
            ("memory", compute.memory.min if compute.memory else None, room.memory_gib, "GiB"),
        ):
            if wanted is not None and wanted > left:
                out.append(
                    msg.error(
                        msg.RESOURCE_LIMIT,
                        f"the project's quota is exceeded: {wanted} {unit} requested, the "
                        f"quota leaves {left} {unit} for this broker "
                        f"({quota.describe(dimension)})",
                        requested=wanted,
                        limit=left,
                    )
                )
        return out

    def _check_vm(self, vm: VirtualMachine, profile: dict[str, Any]) -> list[MessageItem]:
        problems: list[MessageItem] = []
        image = vm.image or str(profile["image"])
        if not image:
            problems.append(
                msg.error(
                    msg.INVALID_REQUEST,
                    "the virtual machine names no image (and the site "
                    "has no default image): give executable.image",
                )
            )
        elif vm.image and not matches(vm.image, profile["images"]):
            problems.append(
                msg.error(
                    msg.POLICY,
                    f"the image {vm.image!r} is not offered here (allowed: "
                    f"{', '.join(profile['images'])})",
                    image=vm.image,
                )
            )
        elif self._images and image not in self._images:
            problems.append(
                msg.error(msg.NOT_SUPPORTED, f"the cloud has no image {image!r}", image=image)
            )
        if vm.user_data is not None:
            size = len(base64.b64encode(vm.user_data.encode()))
            if size > USER_DATA_LIMIT:
                problems.append(
                    msg.error(
                        msg.INVALID_REQUEST,
                        f"the user data is too long: {size} bytes base64-encoded, Nova takes "
                        f"at most {USER_DATA_LIMIT}",
                        size=size,
                        limit=USER_DATA_LIMIT,
                    )
                )
        if vm.ssh_public_key is not None and not _PUBLIC_KEY.match(vm.ssh_public_key.strip()):
            problems.append(
                msg.error(
                    msg.INVALID_REQUEST,
                    "ssh_public_key is not an OpenSSH public key ('ssh-ed25519 AAAA… comment')",
                )
            )
        if vm.flavor and self._view is not None:
            allowed = [f for f in self._view.flavors if matches(f.name, profile["flavors"])]
            if not any(matches(f.name, [vm.flavor]) for f in allowed):
                problems.append(
                    msg.error(
                        msg.NOT_SUPPORTED,
                        f"no flavor matches {vm.flavor!r} (flavors: "
                        f"{', '.join(f.name for f in allowed) or 'none'})",
                        flavor=vm.flavor,
                    )
                )
        return problems

    def _flavors_for(self, request: ExecutionRequest, profile: dict[str, Any]) -> list[Flavor]:
        flavors = list(self._view.flavors if self._view else ())
        flavors = [f for f in flavors if matches(f.name, profile["flavors"])]
        hint = request.executable.flavor if isinstance(request.executable, VirtualMachine) else None
        return [f for f in flavors if matches(f.name, [hint])] if hint else flavors

    def shape(
        self, request: ExecutionRequest, demands: list[Demand]
    ) -> tuple[list[Demand], list[MessageItem]]:
        """One demand per flavor an offer may book (a VM gets a whole flavor: the booked
        resources are the flavor's), or why no flavor fits."""
        view = self._view
        if view is None:
            return demands, []
        kind = session_kind(request)
        ranged = _ranged_dimensions(request)
        out: list[Demand] = []
        problems: list[MessageItem] = []
        room = view.quota.room
        for demand in demands:
            pools = with_pools(demand.minimum)
            profile = self._profile(kind, pools)
            if kind != KIND_VM and not profile["image"]:
                problems.append(
                    msg.error(
                        msg.NOT_SUPPORTED,
                        f"this site has no image for {kind} sessions with "
                        f"{demand.minimum.describe()} (profiles['{kind}'] or "
                        f"profiles['{kind}/<accelerator>'])",
                    )
                )
                continue
            flavors = self._flavors_for(request, profile)
            candidates = candidate_flavors(flavors, demand, ranged=ranged)
            if not candidates:
                largest = max(flavors, key=lambda f: (f.vcpus, f.ram_mb), default=None)
                problems.append(
                    msg.error(
                        msg.RESOURCE_LIMIT,
                        f"no flavor gives {demand.minimum.describe()}"
                        + (f" (the largest: {largest.describe()})" if largest else ""),
                    )
                )
                continue
            within = [f for f in candidates if f.resources.fits_in(_with_accelerators(room, f))]
            if not within:
                problems.append(_quota_message(candidates[0], view))
                continue
            hosts = view.largest_host
            fitting = [f for f in within if hosts is None or f.resources.fits_in(hosts)]
            if not fitting:
                problems.append(
                    msg.error(
                        msg.RESOURCE_LIMIT,
                        f"the flavor {within[0].describe()} is larger than any hypervisor "
                        f"(the largest has {hosts.describe() if hosts else '?'})",
                    )
                )
                continue
            out += [shaped(demand, f) for f in fitting]
        return (out, []) if out else ([], problems)

    def preparation(self, request: ExecutionRequest) -> timedelta:
        kind = session_kind(request)
        return timedelta(seconds=float(self._profile(kind, [])["boot_seconds"]))

    async def book(self, spec: SessionSpec) -> dict[str, Any]:
        """Nothing is held on the cloud (future slots live in the ledger); the session's
        server token is fixed now, so a launch after a crash adopts the server with it."""
        handle = dict(spec.handle)
        if session_kind(spec.request) == KIND_SERVER and "token" not in handle:
            handle["token"] = secrets.token_hex(24)
        return handle

    async def launch(self, spec: SessionSpec) -> dict[str, Any]:
        """Create the session's server with its keypair, security group and floating IP, or
        adopt what exists of them (a launch after a crash creates nothing twice: the server
        and keypair are found by name, the security group by name, the floating IP by its
        description).

        A session with data first gets its data volume (see .data): while Cinder makes it,
        the handle has no server (``data_volume_id``, ``data_deadline``) and poll() calls
        launch again on each pass until the volume is available, then the server is created
        with it; nothing blocks the reconciler's pass meanwhile.

        While the API is down nothing can be created: :class:`OpenStackUnavailable` (a
        ``PlatformUnavailable``) makes the reconciler keep the session PREPARING and call
        ``launch`` again on a later pass.
        """
        settings = self.settings(spec.request, with_pools(spec.resources))
        with self._calling_api():
            found = await self.client.run(
                "look for the server", CloudClient.servers_named, server_name(spec.uuid)
            )
            volume: JSON = {}
            if spec.data and not found:
                volume = await self._data_volume(spec)
                if volume["status"] != "available":
                    return self._volume_handle(spec, volume)  # poll() goes on once it is
            extras = await self._extras(spec, settings)
            if found:
                server = found[0]
                self.log.info("adopting server %s of %s", server["id"], spec.uuid)
            else:
                server = await self._create(spec, settings, extras, str(volume.get("id") or ""))
        profile = settings.profile
        handle = {
            **spec.handle,
            "server_id": server["id"],
            "name": server_name(spec.uuid),
            "flavor": (server.get("flavor") or {}).get("original_name") or "",
            "kind": settings.kind,
            "interactive": settings.interactive,
            "readiness": settings.readiness,
            "ready_pattern": profile["ready_pattern"],
            "port": settings.port,
            "path": settings.path,
            "ssh": settings.ssh,
            "user": profile["vm_user"],
            "network": profile["network"],
            "keypair": extras.keypair,
            "security_group": extras.group,
            "output": extras.output,
            "token": extras.token,
        }
        if spec.data:
            handle["data_volume"] = data_name(spec.uuid)
            handle.pop("data_deadline", None)
        if extras.floating_ip:
            handle.update(floating_ip_id=extras.floating_ip["id"])
            handle.update(floating_ip=extras.floating_ip["address"])
        return handle

    async def _extras(self, spec: SessionSpec, settings: SessionSettings) -> _Extras:
        """What a server is created with besides itself (each made only once, see launch)."""
        profile = settings.profile
        executable = spec.request.executable
        run = self.client.run
        name = server_name(spec.uuid)
        extras = _Extras(key_name=str(profile["key_name"]))
        if isinstance(executable, VirtualMachine) and executable.ssh_public_key:
            key = executable.ssh_public_key.strip()
            await run("create the keypair", CloudClient.create_keypair, name, key)
            extras.keypair = extras.key_name = name
        extras.groups = [{"name": g} for g in profile["security_groups"]]
        if profile["session_security_group"]:
            ports = [p for p in (22 if settings.ssh else 0, settings.port) if p]
            extras.group = await run(
                "create the security group",
                CloudClient.create_security_group,
                name,
                f"Execution Broker session {spec.uuid}",
                [(p, str(profile["allowed_cidr"])) for p in ports],
            )
            extras.groups.append({"name": name})
        if profile["floating_network"]:
            network_id = (await self._networks_of(str(profile["floating_network"])))[0]["uuid"]
            extras.floating_ip = await run(
                "allocate a floating IP",
                CloudClient.create_floating_ip,
                network_id,
                f"Execution Broker session {spec.uuid}",
            )
        if settings.kind in (KIND_SERVER, KIND_NOTEBOOK, KIND_CONTAINER):
            token = str(spec.handle.get("token") or "")
            if settings.kind == KIND_SERVER and not token:  # booked before book() made one
                token = secrets.token_hex(24)
            program = session_program(spec, settings.kind, profile, token)
            program.env.update(staged_env(spec.data, "/"))
            extras.user_data = cloud_config(spec, program)
            extras.output, extras.token = program.output, program.token
        elif isinstance(executable, VirtualMachine):
            extras.user_data = executable.user_data or ""
        if spec.data:
            mounts = data_cloud_config(spec.data, data_label(spec.uuid), str(profile["vm_user"]))
            extras.user_data = merged_cloud_config(mounts, extras.user_data)
        return extras

    async def _create(
        self, spec: SessionSpec, settings: SessionSettings, extras: _Extras, volume_id: str = ""
    ) -> JSON:
        profile = settings.profile
        request = spec.request
        executable = request.executable
        flavors = self._flavors_for(request, profile)
        flavor = smallest_flavor(flavors, spec.resources)
        if flavor is None:
            raise ValueError(
                f"no flavor gives the booked {spec.resources.describe()} (flavors: "
                f"{', '.join(f.describe() for f in flavors) or 'none'})"
            )
        image = (
            executable.image if isinstance(executable, VirtualMachine) and executable.image else ""
        ) or str(profile["image"])
        image_id = self._images.get(image) or (
            (await self.client.run("find the image", CloudClient.find, "image", "image", image))
            or {}
        ).get("id")
        if not image_id:
            raise ValueError(f"the cloud has no image {image!r}")
        attrs = {
            "name": server_name(spec.uuid),
            "image_id": image_id,
            "flavor_id": flavor.id,
            "networks": await self._networks_of(str(profile["network"])),
            "key_name": extras.key_name,
            "security_groups": extras.groups,
            "user_data": extras.user_data,
            "metadata": server_metadata(spec, settings.kind, profile["metadata"]),
            "tags": [self._tag],
            "availability_zone": profile["availability_zone"],
            "config_drive": True if profile["config_drive"] else None,
            "block_device_mapping": block_devices(image_id, volume_id) if volume_id else None,
        }
        server = await self.client.run("create the server", CloudClient.create_server, attrs)
        self.log.info(
            "created server %s (%s, %s) for %s", server["id"], flavor.name, image, spec.uuid
        )
        return {**server, "flavor": {"original_name": flavor.name}}

    # -- staged data on a volume (see .data) ------------------------------------------------------

    def _volume_handle(self, spec: SessionSpec, volume: JSON) -> dict[str, Any]:
        """The handle of a session whose data volume Cinder is still making (no server yet):
        poll() calls launch again until the volume is available, by ``data_deadline``."""
        deadline = spec.handle.get("data_deadline") or time.time() + self.data_volume_timeout
        return {
            **spec.handle,
            "data_volume": data_name(spec.uuid),
            "data_volume_id": volume["id"],
            "data_deadline": deadline,
        }

    async def _data_volume(self, spec: SessionSpec) -> JSON:
        """The session's data volume, made from an image of the staged files (or found by
        name after a crash, or on a later launch while Cinder copies the image into it). The
        image is deleted once the volume holds its bytes. Raises RuntimeError when Cinder
        cannot make it, or not by the handle's ``data_deadline``."""
        run = self.client.run
        name = data_name(spec.uuid)
        found = await run("look for the data volume", CloudClient.volumes_named, name)
        volume = next((v for v in found if v["name"] == name), None)
        if volume is None:
            layout = image_layout(spec.data)
            size = image_bytes(await asyncio.to_thread(_sizes, layout))
            image_id = await self._data_image(spec, name, layout, size)
            volume = await run(
                "create the data volume",
                CloudClient.create_volume,
                name,
                volume_gib(size, spec.data_storage_gib),
                image_id,
                {META_SESSION: spec.uuid},
                self.data_volume_type,
            )
            self.log.info("creating data volume %s (%s GiB)", volume["id"], volume["size"])
        status = volume["status"]
        if status == "error":
            raise RuntimeError(f"Cinder could not make the data volume {name} (status error)")
        if status == "available":
            await self._delete_data_images(name)
        elif time.time() > float(spec.handle.get("data_deadline") or "inf"):
            raise RuntimeError(
                f"the data volume {name} is still {status} after {self.data_volume_timeout:g} s"
            )
        return volume

    def _pack_root(self) -> Path:
        """Where images are packed: beside the staging cache (hard links, no copies)."""
        root = Path(self.configured_staging_dir() or self.staging_dir() or tempfile.gettempdir())
        root.mkdir(parents=True, exist_ok=True)
        return root

    async def _data_image(
        self, spec: SessionSpec, name: str, layout: list[tuple[str, str]], size: int
    ) -> str:
        """The id of the session's data image: its staged files (``layout``, see .data) in an
        ext4 file system of ``size`` bytes, uploaded to Glance (an image left active by a
        crash is used)."""
        run = self.client.run
        for image in await run("look for the data image", CloudClient.images_named, name):
            if image["status"] == "active":
                return str(image["id"])
            await run("delete a partial data image", CloudClient.delete_image, image["id"])
        with tempfile.TemporaryDirectory(prefix="pack-", dir=self._pack_root()) as directory:
            path = await _pack(spec, layout, Path(directory), size)
            image_id = await run(
                "upload the data image",
                CloudClient.upload_image,
                name,
                str(path),
                {"eb_session": spec.uuid},
            )
        self.log.info("uploaded data image %s (%d bytes) for %s", image_id, size, spec.uuid)
        return image_id

    async def _delete_data_images(self, name: str) -> None:
        for image in await self.client.run(
            "look for the data image", CloudClient.images_named, name
        ):
            await self.client.run("delete the data image", CloudClient.delete_image, image["id"])

    async def _delete_data(self, spec: SessionSpec) -> str:
        """Delete the session's data volume and image (after its server; Nova deletes the
        volume with the server, delete_on_termination, so usually it is gone or deleting).
        A volume still attached or detaching is tried again on a later pass, for
        ``data_release_timeout`` seconds; then the session ends without it: the text saying
        which volume is left ('' when none)."""
        run = self.client.run
        name = data_name(spec.uuid)
        await self._delete_data_images(name)
        for volume in await run("look for the data volume", CloudClient.volumes_named, name):
            status = volume["status"]
            if volume["name"] != name or status == "deleting":
                continue
            if status in ("available", "error", "error_deleting"):
                await run("delete the data volume", CloudClient.delete_volume, volume["id"])
                continue
            deadline = self._release_deadlines.setdefault(
                spec.uuid, time.monotonic() + self.data_release_timeout
            )
            if time.monotonic() < deadline:
                raise PlatformUnavailable(
                    f"the data volume of {spec.uuid} is {status}; deleting it later"
                )
            self._release_deadlines.pop(spec.uuid, None)
            return (
                f"the data volume {name} ({volume['id']}) is still {status} "
                f"{self.data_release_timeout:g} s after its server was deleted: it is left "
                "for the cloud's operator to delete"
            )
        self._release_deadlines.pop(spec.uuid, None)
        return ""

    async def _networks_of(self, network: str) -> Any:
        if network in ("", "auto", "none"):
            return network or "auto"
        if network not in self._networks:
            found = await self.client.run(
                "find the network", CloudClient.find, "network", "network", network
            )
            if not found:
                raise ValueError(f"the cloud has no network {network!r}")
            self._networks[network] = str(found["id"])
        return [{"uuid": self._networks[network]}]

    async def poll(self, specs: list[SessionSpec]) -> dict[str, PlatformStatus]:
        """One list call (the servers tagged for this broker) for every session; console reads
        and HTTP probes only for servers whose readiness or exit status is pending.

        While the API is down every session is UNKNOWN: the reconciler leaves its phase as it
        is, and the sessions pick up where they are when the API is back.
        """
        try:
            servers = await self.client.run("list servers", CloudClient.servers, self._tag)
        except OpenStackUnavailable as exc:
            self._mark_unavailable(str(exc))
            return {s.uuid: PlatformStatus(PlatformState.UNKNOWN) for s in specs}
        except OpenStackError as exc:
            self.log.error("listing the broker's servers failed: %s", exc)
            return {s.uuid: PlatformStatus(PlatformState.UNKNOWN) for s in specs}
        self._mark_available()
        by_uuid = {str((s.get("metadata") or {}).get(META_SESSION) or ""): s for s in servers}
        out: dict[str, PlatformStatus] = {}
        pending = []
        for spec in specs:
            if not spec.handle.get("server_id"):
                if spec.handle.get("data_volume_id"):
                    pending.append(self._launch_when_ready(spec))
                continue
            server = by_uuid.get(spec.uuid)
            if server is None:
                out[spec.uuid] = PlatformStatus(
                    PlatformState.GONE,
                    [
                        msg.error(
                            msg.PLATFORM, f"the server {spec.handle.get('name')} no longer exists"
                        )
                    ],
                )
                continue
            pending.append(self._status(spec, server))
        for uuid, status in await asyncio.gather(*pending):
            out[uuid] = status
        return out

    async def _launch_when_ready(self, spec: SessionSpec) -> tuple[str, PlatformStatus]:
        """A session waiting for its data volume: launch again, which creates the server once
        Cinder has made the volume (the reconciler's pass does not wait for Cinder)."""
        try:
            handle = await self.launch(spec)
        except PlatformUnavailable:
            return spec.uuid, PlatformStatus(PlatformState.UNKNOWN)
        except Exception as exc:
            self.log.warning("launching %s failed: %s", spec.uuid, exc)
            problem = msg.error(msg.PLATFORM, f"the platform could not start it: {exc}")
            return spec.uuid, PlatformStatus(PlatformState.FAILED, [problem])
        note = (
            "the data volume is ready; the server is being created"
            if handle.get("server_id")
            else "Cinder is making the data volume"
        )
        status = PlatformStatus(
            PlatformState.PREPARING,
            [msg.info(msg.PLATFORM, note)],
            handle=handle if handle != spec.handle else None,
        )
        return spec.uuid, status

    async def _status(self, spec: SessionSpec, server: JSON) -> tuple[str, PlatformStatus]:
        """The status of one session from its server (plus a readiness check or a console
        read when one is due)."""
        handle = spec.handle
        interactive = bool(handle.get("interactive"))
        readiness = str(handle.get("readiness") or "")
        ready = bool(handle.get("ready")) or (interactive and readiness == "active")
        reading = read_server(server, interactive=interactive, ready=ready)
        state, messages = reading.state, list(reading.messages)
        updates: dict[str, Any] = {}
        now = utcnow()

        if reading.state in (PlatformState.RUNNING, PlatformState.AVAILABLE):
            updates.update(await self._attach_floating_ip(spec, server, messages))
        attached = updates.get("floating_ip_attached") or handle.get("floating_ip_attached")
        address = server_address(
            server,
            floating_ip=str(handle.get("floating_ip") or "") if attached else "",
            network=str(handle.get("network") or ""),
        )
        if reading.needs_ready_check:
            reachable = bool(address) or not (handle.get("port") or handle.get("ssh"))
            ready_now = False
            if not reachable:
                messages.append(msg.info(msg.PLATFORM, "waiting for the server's address"))
            elif self._check_due(spec.uuid, "ready"):
                ready_now = await self._is_ready(spec, server, address, readiness)
            if ready_now:
                state, messages = PlatformState.AVAILABLE, []
                updates["ready"] = True
            elif reading.active_since and now - reading.active_since > timedelta(
                seconds=self.server_start_timeout
            ):
                if not reachable:
                    what = "it got no address"
                elif readiness == "http":
                    what = "its service did not answer"
                else:
                    what = "its console log did not show it booted"
                state = PlatformState.FAILED
                messages = [
                    msg.error(
                        msg.EXECUTION_FAILED,
                        f"the virtual machine is ACTIVE, but {what} within "
                        f"{self.server_start_timeout:g} s",
                    )
                ]
        if reading.needs_exit_status:
            console = await self._console(server["id"])
            state, messages = finished_run(console)

        connectors = self._connectors(spec, address) if state == PlatformState.AVAILABLE else []
        outputs = {"server": str(server["id"])}
        if handle.get("flavor"):
            outputs["flavor"] = str(handle["flavor"])
        if handle.get("output"):
            outputs["notebook"] = str(handle["output"])
        new_handle = {**handle, **updates} if updates else None
        return spec.uuid, PlatformStatus(
            state, messages, connectors=connectors, handle=new_handle, outputs=outputs
        )

    def _check_due(self, uuid: str, what: str) -> bool:
        """Is a check of ``what`` for session ``uuid`` due (at most every
        ``ready_check_interval``)?"""
        now = time.monotonic()
        key = f"{uuid}/{what}"
        if now < self._next_check.get(key, 0.0):
            return False
        self._next_check[key] = now + self.ready_check_interval
        return True

    async def _is_ready(
        self, spec: SessionSpec, server: JSON, address: str, readiness: str
    ) -> bool:
        if readiness == "console":
            pattern = str(spec.handle.get("ready_pattern") or self.ready_pattern)
            console = await self._console(server["id"])
            return console is not None and re.search(pattern, console) is not None
        return await self._probe.answers(self._probe_url(spec, self._url(spec, server, address)))

    async def _console(self, server_id: str) -> str | None:
        try:
            return await self.client.run(
                "read the console log", CloudClient.console, server_id, self.console_lines
            )
        except (OpenStackUnavailable, OpenStackError) as exc:
            self.log.warning("reading the console log of %s failed: %s", server_id, exc)
            return None

    def _url(self, spec: SessionSpec, server: JSON, address: str) -> str:
        return self.server_url_template.format(
            address=url_host(address),
            port=int(spec.handle.get("port") or 0),
            path=str(spec.handle.get("path") or "/"),
            uuid=spec.uuid,
            server_id=server["id"],
            name=server.get("name", ""),
        )

    @staticmethod
    def _probe_url(spec: SessionSpec, url: str) -> str:
        if spec.handle.get("kind") != KIND_SERVER:
            return url
        return jupyter_probe_url(url if url.endswith("/") else url + "/", spec.handle.get("token"))

    def _connectors(self, spec: SessionSpec, address: str) -> list[SimpleSessionConnector]:
        if not address:
            return []
        handle = spec.handle
        out = []
        if handle.get("port"):
            url = self._url(
                spec, {"id": handle.get("server_id", ""), "name": handle.get("name")}, address
            )
            server = handle.get("kind") == KIND_SERVER
            token = handle.get("token") if server else ""
            out.append(
                SimpleSessionConnector(
                    kind=JUPYTER_SERVER_CONNECTOR if server else HTTP_CONNECTOR,
                    protocol="HTTP",
                    location=f"{url}?token={token}" if token else url,
                    status=ConnectorStatus.AVAILABLE,
                )
            )
        if handle.get("ssh"):
            out.append(
                SimpleSessionConnector(
                    kind=SSH_CONNECTOR,
                    protocol="SSH",
                    location=f"ssh://{handle.get('user') or 'root'}@{url_host(address)}",
                    status=ConnectorStatus.AVAILABLE,
                )
            )
        return out

    async def _attach_floating_ip(
        self, spec: SessionSpec, server: JSON, messages: list[MessageItem]
    ) -> dict[str, Any]:
        """Attach the session's floating IP to the ACTIVE server's port (once)."""
        handle = spec.handle
        if not handle.get("floating_ip_id") or handle.get("floating_ip_attached"):
            return {}
        if not self._check_due(spec.uuid, "floating-ip"):
            return {}
        address = handle.get("floating_ip")
        run = self.client.run
        try:
            ports = await run("list the server's ports", CloudClient.ports, server["id"])
            if not ports:
                messages.append(
                    msg.warn(
                        msg.PLATFORM,
                        f"the floating IP {address} waits for the server's network port",
                    )
                )
                return {}
            await run(
                "attach the floating IP",
                CloudClient.attach_floating_ip,
                str(handle["floating_ip_id"]),
                ports[0]["id"],
            )
        except (OpenStackUnavailable, OpenStackError) as exc:
            messages.append(
                msg.warn(msg.PLATFORM, f"the floating IP {address} is not attached: {exc}")
            )
            return {}
        return {"floating_ip_attached": True}

    async def stop(self, spec: SessionSpec) -> None:
        """Delete the server (Nova stops it; the VM gets an ACPI shutdown first where the
        hypervisor does that).

        Raises :class:`OpenStackUnavailable` while the API is down: the session stays RELEASING
        and is stopped when the API is back (``stop`` and ``release`` are idempotent).
        """
        await self._delete_server(spec)

    async def _delete_server(self, spec: SessionSpec) -> None:
        server_id = spec.handle.get("server_id")
        run = self.client.run
        if not server_id:
            found = await run(
                "look for the server", CloudClient.servers_named, server_name(spec.uuid)
            )
            server_id = found[0]["id"] if found else None
        if server_id:
            await run("delete the server", CloudClient.delete_server, str(server_id))

    async def release(self, spec: SessionSpec) -> None:
        """Delete the server, its floating IP, keypair and security group (each only if it
        still exists). A security group still in use by the server's ports (deletion takes a
        moment) is tried again on a later pass."""
        run = self.client.run
        handle = spec.handle
        await self._delete_server(spec)
        leftover = ""
        if spec.data or spec.handle.get("data_volume"):
            leftover = await self._delete_data(spec)
        if handle.get("floating_ip_id"):
            await run(
                "delete the floating IP",
                CloudClient.delete_floating_ip,
                str(handle["floating_ip_id"]),
            )
        if handle.get("keypair"):
            await run("delete the keypair", CloudClient.delete_keypair, str(handle["keypair"]))
        if handle.get("security_group"):
            try:
                await run(
                    "delete the security group",
                    CloudClient.delete_security_group,
                    str(handle["security_group"]),
                )
            except OpenStackError as exc:
                if exc.status != 409:
                    raise
                raise PlatformUnavailable(
                    f"the security group of {spec.uuid} is still in use; deleting it later"
                ) from exc
        for what in ("ready", "floating-ip"):
            self._next_check.pop(f"{spec.uuid}/{what}", None)
        if leftover:
            raise ReleaseLeftovers(leftover)

    async def close(self) -> None:
        for client in (self._client, self._placement):
            if client is not None:
                client.close()
        self._client = self._placement = None
        await self._probe.aclose()


def _ranged_dimensions(request: ExecutionRequest) -> frozenset[str]:
    """The dimensions the request gave a maximum for (offers may then book larger flavors)."""
    compute = request.compute
    if not isinstance(compute, SimpleComputeResource):
        return frozenset()
    out = set()
    if compute.cores and compute.cores.max is not None:
        out.add("cores")
    if compute.memory and compute.memory.max is not None:
        out.add("memory_gib")
    return frozenset(out)


def _with_accelerators(room: Resources, flavor: Flavor) -> Resources:
    """The quota room with the flavor's accelerators (quotas do not limit those)."""
    return Resources(room.cores, room.memory_gib, dict(flavor.accelerators), room.storage_gib)


def _quota_message(flavor: Flavor, view: CloudView) -> MessageItem:
    quota = view.quota
    room = quota.room
    need = flavor.resources
    parts = []
    if need.cores > room.cores:
        parts.append(f"{room.cores} cores ({quota.describe('cores')})")
    if need.memory_gib > room.memory_gib:
        parts.append(f"{room.memory_gib} GiB of memory ({quota.describe('memory')})")
    return msg.error(
        msg.RESOURCE_LIMIT,
        f"the project's quota is exceeded: the smallest flavor that fits, {flavor.describe()}, "
        f"needs more than the quota leaves for this broker: {' and '.join(parts)}",
        flavor=flavor.name,
    )


async def _pack(
    spec: SessionSpec, layout: list[tuple[str, str]], directory: Path, size: int
) -> Path:
    """``spec``'s staged files (``layout``) in a raw ext4 image of ``size`` bytes under
    ``directory`` (``mkfs.ext4 -d`` of a tree of hard links to the cached files: no root
    needed)."""
    tree, image = directory / "tree", directory / "data.img"
    await asyncio.to_thread(_link_tree, layout, tree)
    process = await asyncio.create_subprocess_exec(
        "mkfs.ext4",
        "-q",
        "-F",
        "-O",
        "^has_journal",  # mounted read-only: no journal needed
        "-m",
        "0",
        "-N",
        str(inode_count(len(layout))),
        "-L",
        data_label(spec.uuid),
        "-E",
        "root_owner=0:0",
        "-d",
        str(tree),
        str(image),
        f"{size // 1024}k",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode:
        text = output.decode(errors="replace").strip()[-500:]
        raise RuntimeError(f"mkfs.ext4 could not pack the staged data: {text}")
    return image


def _sizes(layout: list[tuple[str, str]]) -> list[int]:
    return [os.path.getsize(source) for _, source in layout]


def _link_tree(layout: list[tuple[str, str]], tree: Path) -> None:
    """Hard links (copies across file systems) of the cached files at their image paths."""
    for target, source in layout:
        path = tree / target
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, path)
        except OSError:
            shutil.copyfile(source, path)
