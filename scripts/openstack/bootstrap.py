"""Bootstrap the test OpenStack that start.sh starts, in one openstacksdk process.

Each ``openstack`` CLI call costs seconds (it imports everything and authenticates anew), so
the catalogue, flavors and images are created here, in one process with one session:

1. the catalogue: services and endpoints of Placement, Glance, Cinder (as block-storage and
   volumev3, the type Nova looks for), Nova and the Neutron stub (Keystone's own comes from
   ``keystone-manage bootstrap``), and the "service" role for the admin user (Nova's service
   token, see :func:`service_role`); then ``run/catalog.ready``, which
   start.sh waits for before it starts Nova (nova-compute reports to Placement at start);
2. once Nova and Glance answer: the flavors and images below;
3. a probe server is built and deleted: when it reached ACTIVE, the fake hypervisor is in
   Placement and mapped into the cell (nova-scheduler discovers hosts every 2 s), so the
   stack can build servers; a probe volume is created and deleted: when it became
   available, cinder-scheduler has the file backend's capacity. Then ``run/ready``.

Run by start.sh with the services' virtualenv: ``python bootstrap.py BASE --placement URL
--image URL --compute URL --network URL --volume URL`` (OS_CLIENT_CONFIG_FILE names the admin
cloud).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import openstack
from keystoneauth1 import exceptions as ks_exceptions
from openstack import exceptions as sdk_exceptions

T = TypeVar("T")

#: name, vCPUs, RAM (MiB), extra specs; 1 GB disk each (Nova lets only admins boot zero-disk
#: flavors from images). eb.magic asks for one unit of the CUSTOM_MAGIC resource
#: the fake driver reports on a nested provider: an accelerator Nova really schedules.
FLAVORS: list[tuple[str, int, int, dict[str, str]]] = [
    ("eb.1c1g", 1, 1024, {}),
    ("eb.1c2g", 1, 2048, {}),
    ("eb.2c2g", 2, 2048, {}),
    ("eb.2c4g", 2, 4096, {}),
    ("eb.4c4g", 4, 4096, {}),
    ("eb.4c8g", 4, 8192, {}),
    ("eb.8c8g", 8, 8192, {}),
    ("eb.magic", 2, 2048, {"resources:CUSTOM_MAGIC": "1"}),
]

#: name, image properties. Nothing boots on the fake driver, so 1 KiB of zeros is an image.
#: eb-s390x: no hypervisor runs s390x (ImagePropertiesFilter), so servers of it end in ERROR
#: with Nova's fault "No valid host was found".
IMAGES: list[tuple[str, dict[str, str]]] = [
    ("eb-cirros", {}),
    ("eb-jupyter", {"eb_purpose": "jupyter"}),
    ("eb-docker", {"eb_purpose": "docker"}),
    ("eb-s390x", {"architecture": "s390x"}),
]

UNREACHABLE = (
    ks_exceptions.ConnectFailure,
    ks_exceptions.ConnectTimeout,
    ks_exceptions.EndpointNotFound,
)


def log(text: str) -> None:
    print(f"[bootstrap {time.strftime('%H:%M:%S')}] {text}", flush=True)


def retry(what: str, call: Callable[[], T], seconds: float = 120.0) -> T:
    """``call()`` until it stops failing because a service is not up yet."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except (*UNREACHABLE, sdk_exceptions.HttpException) as exc:
            status = getattr(exc, "status_code", None)
            if status is not None and status < 500 and status not in (401, 404):
                raise
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not within {seconds:g} s ({exc})") from exc
            time.sleep(0.5)


def catalogue(conn: Any, endpoints: dict[str, tuple[str, str]]) -> None:
    for service_type, (name, url) in endpoints.items():
        service = conn.identity.create_service(name=name, type=service_type, is_enabled=True)
        for interface in ("public", "internal", "admin"):
            conn.identity.create_endpoint(
                service_id=service.id, interface=interface, url=url, region_id="RegionOne"
            )
    log(f"catalogue: {', '.join(endpoints)}")


def service_role(conn: Any) -> None:
    """Give the admin user (every service's user here) the "service" role keystone-manage
    bootstrap made: Nova's service token must carry it for Cinder to let Nova delete the
    attachment of a server's volume (Cinder 2023.2 and later, bug 2004555)."""
    role = conn.identity.find_role("service", ignore_missing=False)
    conn.identity.assign_project_role_to_user(conn.current_project_id, conn.current_user_id, role)
    log("service role given to the admin user")


def flavors(conn: Any) -> None:
    for name, vcpus, ram, extra in FLAVORS:
        flavor = conn.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=1, is_public=True)
        if extra:
            conn.compute.create_flavor_extra_specs(flavor, extra)
    log(f"flavors: {', '.join(f[0] for f in FLAVORS)}")


def images(conn: Any) -> None:
    for name, properties in IMAGES:
        conn.image.create_image(
            name,
            data=b"\0" * 1024,
            disk_format="raw",
            container_format="bare",
            visibility="public",
            allow_duplicates=True,
            **properties,
        )
    log(f"images: {', '.join(i[0] for i in IMAGES)}")


def probe_server(conn: Any, seconds: float = 120.0) -> None:
    """Build a server and delete it: the stack can build servers."""
    image = conn.image.find_image("eb-cirros", ignore_missing=False)
    flavor = conn.compute.find_flavor("eb.1c1g", ignore_missing=False)
    deadline = time.monotonic() + seconds
    attempt = 0
    while True:
        attempt += 1
        server = conn.compute.create_server(
            name=f"eb-bootstrap-probe-{attempt}",
            image_id=image.id,
            flavor_id=flavor.id,
            networks="none",
        )
        while True:
            server = conn.compute.get_server(server.id)
            if server.status in ("ACTIVE", "ERROR"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the probe server is still {server.status}")
            time.sleep(0.3)
        conn.compute.delete_server(server.id)
        conn.compute.wait_for_delete(server, wait=60)
        if server.status == "ACTIVE":
            log(f"probe server ACTIVE (attempt {attempt})")
            return
        # "No valid host" until the scheduler has mapped the new compute host into the cell
        fault = (server.fault or {}).get("message", "")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the probe server ended in ERROR: {fault}")
        log(f"probe server ERROR ({fault}); trying again")
        time.sleep(1.0)


def probe_volume(conn: Any, seconds: float = 120.0) -> None:
    """Create a 1 GiB volume and delete it: the stack can make volumes (the scheduler has the
    backend's capacity; until then volumes end in error, "No valid backend")."""
    deadline = time.monotonic() + seconds
    attempt = 0
    while True:
        attempt += 1
        name = f"eb-bootstrap-probe-{attempt}"
        volume = retry(
            "cinder-api", functools.partial(conn.block_storage.create_volume, size=1, name=name)
        )
        status = _settle(conn, volume, deadline).status
        conn.block_storage.delete_volume(volume.id)
        conn.block_storage.wait_for_delete(volume, wait=60)
        if status == "available":
            log(f"probe volume available (attempt {attempt})")
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the probe volume ended in error")
        log("probe volume error (no backend yet?); trying again")
        time.sleep(1.0)


def _settle(conn: Any, volume: Any, deadline: float) -> Any:
    """The volume once it is available or in error."""
    while volume.status not in ("available", "error"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the probe volume is still {volume.status}")
        time.sleep(0.3)
        volume = conn.block_storage.get_volume(volume.id)
    return volume


def wait_for_hypervisor(conn: Any, seconds: float = 120.0) -> None:
    """nova-compute is up and its provider has inventory in Placement."""

    def ready() -> bool:
        services = list(conn.compute.services(binary="nova-compute"))
        if not any(s.state == "up" for s in services):
            return False
        providers = list(conn.placement.resource_providers())
        return any(
            "VCPU" in {i.resource_class for i in conn.placement.resource_provider_inventories(p)}
            for p in providers
        )

    deadline = time.monotonic() + seconds
    while not retry("nova-compute", ready):
        if time.monotonic() > deadline:
            raise RuntimeError("nova-compute did not report its hypervisor to Placement")
        time.sleep(0.5)
    log("hypervisor in Placement")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    for service in ("placement", "image", "compute", "network", "volume"):
        parser.add_argument(f"--{service}", required=True, help=f"URL of the {service} API")
    args = parser.parse_args()
    run = args.base / "run"
    started = time.monotonic()

    conn = openstack.connect(cloud="eb-admin")
    catalogue(
        conn,
        {
            "placement": ("placement", args.placement),
            "image": ("glance", args.image),
            "compute": ("nova", args.compute),
            "network": ("neutron", args.network),
            "block-storage": ("cinder", args.volume),
            "volumev3": ("cinderv3", args.volume),
        },
    )
    service_role(conn)
    (run / "catalog.ready").touch()
    conn.close()

    # A new session: the first one's token carries the catalogue from before the endpoints.
    conn = openstack.connect(cloud="eb-admin")
    retry("nova-api", lambda: list(conn.compute.flavors()))
    flavors(conn)
    retry("glance", lambda: list(conn.image.images()))
    images(conn)
    wait_for_hypervisor(conn)
    probe_server(conn)
    probe_volume(conn)
    (run / "ready").touch()
    log(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
