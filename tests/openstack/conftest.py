"""Fixtures of the OpenStack tests: one real OpenStack per test session, and per test a project
(with a member user and quotas of its own) and an ``eb-broker --platform=openstack`` in it."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BrokerFactory
from tests.fixtures.guest import Guest, boot_guest
from tests.fixtures.openstack import ADMIN_CLOUD, OpenStackCloud, Project, start_cloud
from tests.fixtures.services import BrokerProcess

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def os_cloud() -> Iterator[OpenStackCloud]:
    base = Path(tempfile.mkdtemp(prefix="eb-openstack-"))
    cloud = start_cloud(base)
    print(f"\nOpenStack started in {cloud.start_seconds:.0f} s")
    try:
        yield cloud
    finally:
        cloud.stop()
        shutil.rmtree(base, ignore_errors=True)  # ~130 MB: databases, images, logs


@dataclass
class Site:
    """One test's project on the shared cloud."""

    cloud: OpenStackCloud
    project: Project
    dir: Path

    def config(self, **options: Any) -> Path:
        """A broker config file: this project (member user), Placement read as admin, servers
        without a network (the Neutron here is a stub), short boot and readiness times."""
        settings: dict[str, Any] = {
            "clouds_yaml": str(self.project.clouds_yaml),
            "cloud": "project",
            "placement_cloud": ADMIN_CLOUD,
            "network": "none",
            "image": "eb-cirros",
            "refresh_interval": 1.0,
            "api_timeout": 5.0,
            "boot_seconds": 2.0,
            "ready_check_interval": 0.5,
            "accelerators": {"CUSTOM_MAGIC": "gpu:magic"},
            # Nova's fake driver: the console log is always "FAKE CONSOLE OUTPUT\nANOTHER\n
            # LAST LINE"; on a real cloud the default pattern finds cloud-init's final message
            "ready_pattern": "LAST LINE",
            **options,
        }
        path = self.dir / "openstack_config.py"
        path.write_text("".join(f"c.OpenStackPlatform.{k} = {v!r}\n" for k, v in settings.items()))
        return path

    def guest(self, server_id: str) -> Guest:
        guest = boot_guest(self.project, server_id, self.dir / f"guest-{server_id[:8]}")
        self._guests.append(guest)
        return guest

    def __post_init__(self) -> None:
        self._guests: list[Guest] = []

    def close(self) -> None:
        for guest in self._guests:
            guest.stop()
        self.project.clean()


@pytest.fixture
def os_site(
    os_cloud: OpenStackCloud, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Site]:
    """A project of its own; ``request.param``-free: quotas are set by the tests themselves."""
    name = f"t{next(_counter)}-{request.node.name.removeprefix('test_')[:24]}"
    site = Site(os_cloud, os_cloud.project(name, tmp_path), tmp_path)
    try:
        yield site
    finally:
        site.close()


@pytest.fixture
def os_broker(os_site: Site, broker_factory: BrokerFactory) -> Callable[..., BrokerProcess]:
    """``os_broker(**OpenStackPlatform options)`` starts a broker in the test's project."""

    def start(**options: Any) -> BrokerProcess:
        return broker_factory("--platform=openstack", f"--config={os_site.config(**options)}")

    return start
