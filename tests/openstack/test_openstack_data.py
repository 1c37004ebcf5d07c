"""Staged data on a real OpenStack: the broker packs it into an ext4 image, Glance takes the
image, Cinder (the file-backed driver of scripts/openstack/) makes a volume of it and Nova
attaches the volume to the session's server. The volume's backing file is read with debugfs,
so the bytes the VM would mount are checked, not just the API's word."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.broker.helpers import accept
from tests.conftest import BrokerFactory
from tests.fixtures.data_server import DataServer
from tests.fixtures.kubernetes import wait_for
from tests.fixtures.services import BrokerProcess
from tests.kubernetes.test_kubernetes_e2e import accept_first, messages, wait_phase
from tests.openstack.conftest import Site
from tests.openstack.test_openstack_e2e import FINAL, server_of, vm_request
from tests.staging.helpers import data_request

MIB = 1024 * 1024


@pytest.fixture
def data_server(tmp_path: Path) -> Iterator[DataServer]:
    server = DataServer(tmp_path / "files", rate=4 * MIB, digests={"obs.bin"}).start()
    yield server
    server.stop()


def staging_broker(site: Site, broker_factory: BrokerFactory, tmp_path: Path) -> BrokerProcess:
    return broker_factory(
        "--platform=openstack",
        f"--config={site.config()}",
        f"--DataStaging.staging_dir={tmp_path / 'staging'}",
        '--DataStaging.trusted_hosts=["127.0.0.1"]',
        "--DataStaging.retries=1",
        "--DataStaging.retry_delay=0.2",
    )


def vm_with_data(data: dict[str, str], mounts: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """A VM request (eb-cirros, 1 core) with the data resources and mounts of
    :func:`data_request`."""
    body = vm_request({"min": 1}, image="eb-cirros")
    with_data = data_request("unused.ipynb", data, mounts=mounts)
    body["data"] = with_data["data"]
    body["compute"]["volumes"] = with_data["compute"]["volumes"]
    return body


def debugfs_cat(image: Path, path: str) -> bytes:
    """A file of the ext4 file system in ``image``, read without mounting it."""
    return subprocess.run(
        ["debugfs", "-R", f"cat {path}", str(image)], capture_output=True, check=True
    ).stdout


def data_volumes(site: Site, uuid: str) -> list[Any]:
    return [v for v in site.project.volumes() if v.name == f"eb-data-{uuid}"]


def test_staged_data_reaches_the_server_on_a_cinder_volume(
    os_site: Site, broker_factory: BrokerFactory, data_server: DataServer, tmp_path: Path
) -> None:
    """YES with the predicted staging time; on accept the data is staged, packed, uploaded and
    made a volume, and the server boots with it attached (Nova's volume attachments, Cinder's
    in-use); the volume's backing file holds the bytes at the mount paths; the user data
    mounts it read-only and links (READONLY) or copies (READWRITE) each resource; the
    temporary image is gone once the volume is made; cancelling deletes the volume."""
    obs = data_server.file("obs.bin", 3 * MIB)
    calib = data_server.file("calib.bin", MIB // 2, seed=1)
    body = vm_with_data(
        {"obs": obs, "calib": calib},
        {"obs": ("/data/obs.bin", "READONLY"), "calib": ("/work/calib.bin", "READWRITE")},
    )
    broker = staging_broker(os_site, broker_factory, tmp_path)
    with broker.client() as c:
        answer = c.post("/requests", json=body).json()
        assert answer["result"] == "YES", answer
        url, offer = accept_first(c, answer)
        planned = offer["jeb:staging"]
        assert planned["bytes"] == 3 * MIB + MIB // 2 and planned["seconds"] > 0, planned
        uuid = offer["meta"]["uuid"]

        server = server_of(os_site, uuid)
        session = wait_phase(c, url, {"RUNNING", "AVAILABLE", *FINAL}, timeout=180)
        assert session["phase"] in ("RUNNING", "AVAILABLE"), (messages(session), broker.log())
        assert session["jeb:staging"]["state"] == "staged", messages(session)
        # launch did not wait for Cinder: poll() created the server once the volume was made
        assert "the data volume is ready; the server is being created" in messages(session)

        (volume,) = data_volumes(os_site, uuid)
        admin = os_site.cloud.admin()
        try:
            attached = [a.volume_id for a in admin.compute.volume_attachments(server.id)]
        finally:
            admin.close()
        assert attached == [volume.id]
        assert volume.status == "in-use"
        assert [a["server_id"] for a in volume.attachments] == [server.id]
        assert os_site.project.images(f"eb-data-{uuid}") == []  # deleted once copied

        backing = os_site.cloud.base / "cinder" / "volumes" / f"volume-{volume.id}"
        for path, name in (("/data/obs.bin", "obs.bin"), ("/work/calib.bin", "calib.bin")):
            expected = (data_server.root / name).read_bytes()
            got = debugfs_cat(backing, path)
            assert hashlib.sha256(got).hexdigest() == hashlib.sha256(expected).hexdigest(), path

        user_data = os_site.project.user_data(server.id)
        assert "mount -o ro /dev/disk/by-label/" in user_data, user_data
        assert "ln -sfn /mnt/eb-data/data/obs.bin /data/obs.bin" in user_data, user_data
        assert "cp -a /mnt/eb-data/work/calib.bin /work/calib.bin" in user_data, user_data
        assert "EB_DATA_OBS=/data/obs.bin" in user_data, user_data

        # Nova detaches (with its service token: Cinder refuses a user's detach of a live
        # server's volume) and deletes the volume with the server (delete_on_termination)
        assert accept(c, url, "CANCELLED").status_code == 200
        done = wait_phase(c, url, FINAL, timeout=60)
        assert done["phase"] == "CANCELLED", (messages(done), broker.log()[-2500:])
        assert "left for" not in messages(done)
    wait_for(lambda: not data_volumes(os_site, uuid), 60, "the data volume deleted")
    assert not backing.exists()


def test_a_failed_transfer_fails_the_session_before_any_volume(
    os_site: Site, broker_factory: BrokerFactory, data_server: DataServer, tmp_path: Path
) -> None:
    """The data server answers 500: FAILED with the reason, no volume, image or server."""
    data_server.file("broken.bin", MIB)
    body = vm_with_data(
        {"obs": f"{data_server.url}/fail500/broken.bin"}, {"obs": ("/data/x.bin", "READONLY")}
    )
    broker = staging_broker(os_site, broker_factory, tmp_path)
    with broker.client() as c:
        answer = c.post("/requests", json=body).json()
        assert answer["result"] == "YES", answer
        url, offer = accept_first(c, answer)
        session = wait_phase(c, url, FINAL, timeout=120)
    uuid = offer["meta"]["uuid"]
    assert session["phase"] == "FAILED"
    text = messages(session)
    assert "staging the data failed" in text and "HTTP 500" in text, text
    assert data_volumes(os_site, uuid) == []
    assert os_site.project.images(f"eb-data-{uuid}") == []
    assert os_site.project.server(f"eb-{uuid}") is None
