"""Fixtures of the Slurm tests: one real cluster for the session, brokers on it per test."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from tests.fixtures.services import BrokerProcess, free_port
from tests.fixtures.slurm import SlurmCluster, start_slurm

ME = pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A single-node Slurm (2 CPUs, 6 GiB) for the whole test session."""
    base = Path(tempfile.mkdtemp(prefix="eb-slurm-"))
    cluster = start_slurm(base)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The cluster, empty (no jobs, no reservations) before and after the test."""
    slurm_cluster.clean()
    yield slurm_cluster
    if "UP" not in slurm_cluster.run("scontrol", "ping", check=False).stdout:
        slurm_cluster.start_controller()  # a test that stopped it and failed
    slurm_cluster.clean()


def unique_prefix() -> str:
    """A reservation/job name prefix per broker, so brokers see each other as foreign."""
    return f"ebt{uuid.uuid4().hex[:8]}-"


def slurm_options(cluster: SlurmCluster, prefix: str) -> list[str]:
    """SlurmPlatform options for tests: fast refresh and polling, short preparation."""
    return [
        f"--SlurmPlatform.slurm_conf={cluster.conf}",
        f"--SlurmPlatform.default_user={ME}",
        f"--SlurmPlatform.reservation_prefix={prefix}",
        "--SlurmPlatform.preparation_seconds=2",
        "--SlurmPlatform.refresh_interval=1",
        "--SlurmPlatform.poll_interval=0.3",
        "--SlurmPlatform.stop_timeout=20",
        "--SlurmPlatform.command_timeout=15",
        f"--SlurmPlatform.python={sys.executable}",
        # no probe job for a container engine (tests/slurm/test_platform.py tests the probe):
        # it would take a core for a moment while the tests measure offers
        "--SlurmPlatform.container_engine=",
    ]


@dataclass
class SlurmBrokerProcess(BrokerProcess):
    """A broker on the test cluster; ``prefix`` names its reservations and jobs."""

    prefix: str = ""


SlurmBroker = Callable[..., SlurmBrokerProcess]


@pytest.fixture
def slurm_broker(slurm: SlurmCluster, tmp_path: Path) -> Iterator[SlurmBroker]:
    """Start ``eb-broker --platform=slurm`` on the test cluster: ``slurm_broker(*args)``."""
    started: list[SlurmBrokerProcess] = []

    def start(*args: str) -> SlurmBrokerProcess:
        base = tmp_path / f"broker{len(started)}"
        base.mkdir()
        prefix = unique_prefix()
        broker = SlurmBrokerProcess(
            dir=base,
            port=free_port(),
            db_url=f"sqlite:///{base / 'ledger.sqlite'}",
            args=("--platform=slurm", *slurm_options(slurm, prefix), *args),
            prefix=prefix,
        )
        started.append(broker)
        broker.start()
        return broker

    yield start
    for broker in started:
        broker.stop()


# -- helpers ------------------------------------------------------------------------------------


def write_notebook(path: Path, *cells: str, parameters: str = "x = 1") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(nbformat.v4.new_code_cell(src) for src in cells)]
    nbformat.write(nb, path)
    return path


def wait_until(
    what: str, probe: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2
) -> Any:
    """Poll ``probe`` until it returns something truthy (bounded); that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def session(client: httpx.Client, uuid: str) -> dict[str, Any]:
    response = client.get(f"/sessions/{uuid}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_phase(
    client: httpx.Client, uuid: str, *phases: str, timeout: float = 90.0
) -> dict[str, Any]:
    """The session once its phase is one of ``phases``."""
    seen: list[str] = []

    def probe() -> dict[str, Any] | None:
        body = session(client, uuid)
        if not seen or seen[-1] != body["phase"]:
            seen.append(body["phase"])
        return body if body["phase"] in phases else None

    try:
        return dict(wait_until(f"{uuid} to be {'/'.join(phases)}", probe, timeout))
    except AssertionError as exc:
        messages = _messages(client, uuid)
        raise AssertionError(f"{exc}; phases seen: {seen}; messages: {messages}") from None


def _messages(client: httpx.Client, uuid: str) -> list[str]:
    meta = session(client, uuid).get("meta") or {}
    return [str(m.get("message")) for m in meta.get("messages") or []]
