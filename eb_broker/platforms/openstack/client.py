"""The one module that talks to OpenStack, through openstacksdk.

openstacksdk is synchronous (keystoneauth sessions over requests); every call runs in a small
thread pool, each thread with a connection of its own, so the broker's event loop never
blocks. Objects come out as plain dicts (openstacksdk's attribute names), which the pure
parsers in :mod:`.objects` work on; no SDK resource leaks out of here.

Errors are sorted into two kinds:

* :class:`OpenStackUnavailable` — an API cannot be reached: connection refused, a timeout,
  TLS/DNS trouble, failed endpoint discovery or a 5xx answer. The platform then answers new
  requests with NO (``urn:platform-unavailable``) and leaves running sessions alone.
* :class:`OpenStackError` — an API answered and refused (400, 403 quota exceeded, 404, 409 ...),
  with the status and the service's message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..base import PlatformUnavailable
from .objects import Provider

T = TypeVar("T")
JSON = dict[str, Any]

#: The server fields the platform reads (the rest of openstacksdk's Server is dropped).
SERVER_FIELDS = (
    "id",
    "name",
    "status",
    "task_state",
    "vm_state",
    "power_state",
    "fault",
    "addresses",
    "access_ipv4",
    "access_ipv6",
    "metadata",
    "tags",
    "flavor",
    "launched_at",
    "created_at",
    "key_name",
)


#: The absolute limits the platform reads (openstacksdk's names of maxTotalCores ...).
LIMIT_FIELDS = (
    "total_cores",
    "total_cores_used",
    "total_ram",
    "total_ram_used",
    "instances",
    "instances_used",
)


class OpenStackUnavailable(PlatformUnavailable):
    """An OpenStack API cannot be reached (or answers 5xx).

    A :class:`~eb_broker.platforms.base.PlatformUnavailable`: the reconciler keeps a session
    whose launch, stop or release raised it where it is and tries again on a later pass.
    """


class OpenStackError(Exception):
    """An OpenStack API refused a call."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


def classify(exc: BaseException, what: str) -> Exception:
    """The platform's error for an exception of openstacksdk, keystoneauth or requests."""
    from keystoneauth1 import exceptions as ks
    from openstack import exceptions as sdk

    unreachable = (ks.ConnectionError, ks.DiscoveryFailure, ConnectionError, TimeoutError)
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for item in chain:
        if isinstance(item, unreachable) or type(item).__module__.startswith("requests."):
            return OpenStackUnavailable(f"cannot reach OpenStack ({what}): {_text(item)}")
    if isinstance(exc, sdk.HttpException):
        status = int(exc.status_code or 0)
        detail = _text(exc.details or exc.message or exc)
        if status == 0 or status >= 500:
            return OpenStackUnavailable(
                f"OpenStack answered {status or 'nothing'} ({what}): {detail}"
            )
        return OpenStackError(status, detail)
    if isinstance(exc, ks.http.HttpError):
        status = int(exc.http_status or 0)
        if status >= 500:
            return OpenStackUnavailable(f"OpenStack answered {status} ({what}): {exc.message}")
        return OpenStackError(status, str(exc.message or exc))
    if isinstance(exc, ks.EndpointNotFound):
        return OpenStackError(0, f"the cloud has no endpoint for {what}: {exc}")
    if isinstance(exc, ks.ClientException | sdk.SDKException):
        return OpenStackError(0, f"{what}: {_text(exc)}")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


def _text(exc: object) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 600 else text[:600] + "…"


def server_dict(server: Any) -> JSON:
    """The fields of an openstacksdk Server the platform reads, as plain data."""
    data = server.to_dict(computed=False) if hasattr(server, "to_dict") else dict(server)
    out = {key: data.get(key) for key in SERVER_FIELDS}
    flavor = data.get("flavor") or {}
    if isinstance(flavor, Mapping):
        out["flavor"] = {
            k: flavor.get(k)
            for k in ("name", "original_name", "vcpus", "ram", "disk", "extra_specs")
        }
    return out


class CloudClient:
    """A small async facade over one cloud (and optionally a second one for Placement).

    Connections are made lazily, one per worker thread, from ``clouds.yaml`` (``config_file``
    or openstacksdk's usual places and ``OS_CLIENT_CONFIG_FILE``) and the cloud ``cloud``,
    overridden by ``overrides`` (any clouds.yaml setting, e.g. an ``auth`` section with
    application credentials). Constructing one does no I/O.
    """

    def __init__(
        self,
        *,
        cloud: str = "",
        config_file: str = "",
        overrides: Mapping[str, Any] | None = None,
        region: str = "",
        timeout: float = 10.0,
        workers: int = 4,
    ) -> None:
        self.cloud = cloud
        self.config_file = config_file
        self.overrides = dict(overrides or {})
        self.region = region
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="eb-openstack")
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------------

    def connect(self) -> Any:
        """A new openstacksdk Connection (in the calling thread)."""
        from openstack import connection
        from openstack.config import loader

        config = loader.OpenStackConfig(
            config_files=[self.config_file] if self.config_file else None
        )
        settings: dict[str, Any] = {"api_timeout": self.timeout}
        if self.region:
            settings["region_name"] = self.region
        region = config.get_one(cloud=self.cloud or None, **{**settings, **self.overrides})
        return connection.Connection(config=region)

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(connection, *args, **kwargs)`` in the calling thread, errors classified."""
        try:
            return fn(self._conn(), *args, **kwargs)
        except Exception as exc:
            raise classify(exc, what) from exc

    async def run(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """:meth:`call` in the pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, functools.partial(self.call, what, fn, *args, **kwargs)
        )

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the pool (for a sequence of :meth:`call` s)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(Exception):  # closing is best effort
                conn.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- reads (sync: call them through run() or call()) -----------------------------------------

    @staticmethod
    def flavors(conn: Any) -> list[JSON]:
        """Flavors with their extra specs (compute API ≥ 2.61 lists them with the flavor)."""
        return [f.to_dict(computed=False) for f in conn.compute.flavors(details=True)]

    @staticmethod
    def images(conn: Any) -> list[JSON]:
        """Active images the project may boot: id, name and properties."""
        out = []
        for image in conn.image.images():
            if image.status == "active":
                out.append({"id": image.id, "name": image.name, "visibility": image.visibility})
        return out

    @staticmethod
    def limits(conn: Any) -> JSON:
        """The project's absolute compute limits the platform reads (SDK names)."""
        absolute = conn.compute.get_limits().absolute
        return {key: getattr(absolute, key, None) for key in LIMIT_FIELDS}

    @staticmethod
    def providers(conn: Any) -> list[Provider]:
        """Every Placement resource provider with its inventories and usages."""
        out = []
        for rp in conn.placement.resource_providers():
            inventories = {
                inv.resource_class: {
                    "total": inv.total,
                    "reserved": inv.reserved,
                    "allocation_ratio": inv.allocation_ratio,
                    "max_unit": inv.max_unit,
                }
                for inv in conn.placement.resource_provider_inventories(rp)
            }
            usages: dict[str, int] = {}
            if inventories:
                answer = conn.placement.get(f"/resource_providers/{rp.id}/usages")
                if answer.status_code >= 400:
                    from openstack import exceptions as sdk

                    sdk.raise_from_response(answer)
                usages = dict(answer.json().get("usages") or {})
            out.append(
                Provider(
                    id=rp.id,
                    name=rp.name,
                    root_id=rp.root_provider_id or rp.id,
                    inventories=inventories,
                    usages=usages,
                )
            )
        return out

    @staticmethod
    def hypervisors(conn: Any) -> list[JSON]:
        """Nova's hypervisor statistics (vcpus, memory_mb and their use: compute API 2.87,
        the last version that reports them)."""
        answer = conn.compute.get("/os-hypervisors/detail", microversion="2.87")
        if answer.status_code >= 400:
            from openstack import exceptions as sdk

            sdk.raise_from_response(answer)
        return list(answer.json().get("hypervisors") or [])

    @staticmethod
    def servers(conn: Any, tag: str) -> list[JSON]:
        """The project's servers with ``tag`` — one list call, paginated by the SDK."""
        return [server_dict(s) for s in conn.compute.servers(details=True, tags=tag)]

    @staticmethod
    def servers_named(conn: Any, name: str) -> list[JSON]:
        """Servers named exactly ``name`` (Nova filters names by regular expression)."""
        return [
            server_dict(s)
            for s in conn.compute.servers(details=True, name=f"^{name}$")
            if s.name == name
        ]

    @staticmethod
    def console(conn: Any, server_id: str, lines: int) -> str:
        """The last ``lines`` of a server's console log ('' when it has none)."""
        answer = conn.compute.get_server_console_output(server_id, length=lines)
        return str((answer or {}).get("output") or "")

    @staticmethod
    def ports(conn: Any, server_id: str) -> list[JSON]:
        return [
            {"id": p.id, "network_id": p.network_id}
            for p in conn.network.ports(device_id=server_id)
        ]

    @staticmethod
    def find(conn: Any, service: str, kind: str, name_or_id: str) -> JSON | None:
        """``conn.<service>.find_<kind>(name_or_id)`` as a dict (None: not found)."""
        found = getattr(getattr(conn, service), f"find_{kind}")(name_or_id, ignore_missing=True)
        return None if found is None else {"id": found.id, "name": found.name}

    # -- writes ------------------------------------------------------------------------------------

    @staticmethod
    def create_server(conn: Any, attrs: Mapping[str, Any]) -> JSON:
        """Create a server (``user_data`` is given as text and base64-encoded here)."""
        attrs = {k: v for k, v in attrs.items() if v not in (None, "", [], {})}
        if "user_data" in attrs:
            attrs["user_data"] = base64.b64encode(str(attrs["user_data"]).encode()).decode()
        return server_dict(conn.compute.create_server(**attrs))

    @staticmethod
    def delete_server(conn: Any, server_id: str) -> bool:
        """Delete a server; False when it did not exist."""
        from openstack import exceptions as sdk

        try:
            conn.compute.delete_server(server_id, ignore_missing=False)
        except sdk.NotFoundException:
            return False
        return True

    @staticmethod
    def create_keypair(conn: Any, name: str, public_key: str) -> None:
        """Import a public key as keypair ``name`` (an existing one of that name is kept)."""
        from openstack import exceptions as sdk

        with contextlib.suppress(sdk.ConflictException):
            conn.compute.create_keypair(name=name, public_key=public_key)

    @staticmethod
    def delete_keypair(conn: Any, name: str) -> None:
        conn.compute.delete_keypair(name, ignore_missing=True)

    @staticmethod
    def create_security_group(
        conn: Any, name: str, description: str, rules: Iterable[tuple[int, str]]
    ) -> str:
        """A security group ``name`` opening TCP ``rules`` ((port, remote CIDR)); an existing
        group of that name is reused. Returns its id."""
        group = conn.network.find_security_group(name, ignore_missing=True)
        if group is None:
            group = conn.network.create_security_group(name=name, description=description)
            for port, cidr in rules:
                conn.network.create_security_group_rule(
                    security_group_id=group.id,
                    direction="ingress",
                    ethertype="IPv6" if ":" in cidr else "IPv4",
                    protocol="tcp",
                    port_range_min=port,
                    port_range_max=port,
                    remote_ip_prefix=cidr,
                )
        return str(group.id)

    @staticmethod
    def delete_security_group(conn: Any, group_id: str) -> None:
        conn.network.delete_security_group(group_id, ignore_missing=True)

    @staticmethod
    def create_floating_ip(conn: Any, network_id: str, description: str) -> JSON:
        """A floating IP from ``network_id`` described as ``description``: the one that
        exists (a launch after a crash), else a new one. Not attached to anything yet."""
        found = list(conn.network.ips(floating_network_id=network_id, description=description))
        ip = found[0] if found else None
        if ip is None:
            ip = conn.network.create_ip(floating_network_id=network_id, description=description)
        return {"id": ip.id, "address": ip.floating_ip_address, "port_id": ip.port_id or ""}

    @staticmethod
    def attach_floating_ip(conn: Any, ip_id: str, port_id: str) -> None:
        conn.network.update_ip(ip_id, port_id=port_id)

    @staticmethod
    def delete_floating_ip(conn: Any, ip_id: str) -> None:
        conn.network.delete_ip(ip_id, ignore_missing=True)

    # -- staged data: images and volumes (see .data) -----------------------------------------------

    @staticmethod
    def has_block_storage(conn: Any) -> bool:
        """Does the catalogue have Cinder (block-storage, or its old name volumev3)?"""
        return bool(conn.has_service("block-storage") or conn.has_service("volumev3"))

    @staticmethod
    def volume_limits(conn: Any) -> JSON:
        """The project's volume gigabytes quota and use (Cinder's absolute limits)."""
        absolute = conn.block_storage.get_limits().absolute
        return {
            "maxTotalVolumeGigabytes": getattr(absolute, "max_total_volume_gigabytes", None),
            "totalGigabytesUsed": getattr(absolute, "total_gigabytes_used", None),
        }

    @staticmethod
    def volumes_named(conn: Any, prefix: str) -> list[JSON]:
        """The project's volumes whose name starts with ``prefix``."""
        return [
            _volume(v)
            for v in conn.block_storage.volumes(details=True)
            if (v.name or "").startswith(prefix)
        ]

    @staticmethod
    def create_volume(
        conn: Any,
        name: str,
        size: int,
        image_id: str,
        metadata: Mapping[str, str],
        volume_type: str = "",
    ) -> JSON:
        """A volume of ``size`` GiB with the bytes of image ``image_id``."""
        extra = {"volume_type": volume_type} if volume_type else {}
        volume = conn.block_storage.create_volume(
            name=name, size=size, image_id=image_id, metadata=dict(metadata), **extra
        )
        return _volume(volume, size)

    @staticmethod
    def delete_volume(conn: Any, volume_id: str) -> None:
        conn.block_storage.delete_volume(volume_id, ignore_missing=True)

    @staticmethod
    def images_named(conn: Any, name: str) -> list[JSON]:
        """The project's images named exactly ``name``."""
        return [{"id": i.id, "status": i.status} for i in conn.image.images(name=name)]

    @staticmethod
    def upload_image(conn: Any, name: str, path: str, metadata: Mapping[str, str]) -> str:
        """Upload the raw disk image at ``path`` as a private image; its id."""
        image = conn.image.create_image(
            name,
            filename=path,
            disk_format="raw",
            container_format="bare",
            visibility="private",
            allow_duplicates=True,
            **dict(metadata),
        )
        return str(image.id)

    @staticmethod
    def delete_image(conn: Any, image_id: str) -> None:
        conn.image.delete_image(image_id, ignore_missing=True)


def _volume(volume: Any, size: int | None = None) -> JSON:
    """What the platform reads of a Cinder volume (``size``: as asked, when creating it)."""
    gib = int(volume.size or 0) if size is None else size
    return {"id": volume.id, "name": volume.name, "status": volume.status, "size": gib}
