"""Data staging on Kubernetes, end to end: a real control plane, ``eb-broker --platform=
kubernetes`` with a staging claim (a PVC bound by the real PV controller to a PV on the
broker's staging directory) and the throttled HTTP data server. The data is staged before
the pod exists, the pod mounts each staged file from the claim by ``subPath``, and a failed
transfer ends the session before any pod is made."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from eb_sdk.model.times import parse_duration
from tests.broker.helpers import accept
from tests.conftest import BrokerFactory
from tests.fixtures.data_server import DataServer
from tests.fixtures.kubernetes import wait_for
from tests.fixtures.notebooks import write_notebook
from tests.fixtures.services import BrokerProcess
from tests.kubernetes.conftest import Site
from tests.kubernetes.test_kubernetes_e2e import FINAL, messages, wait_phase
from tests.staging.helpers import data_request

MIB = 1024 * 1024
CLAIM = "eb-staging"


@pytest.fixture
def data_server(tmp_path: Path) -> Iterator[DataServer]:
    server = DataServer(tmp_path / "files", rate=MIB, digests={"obs.bin"}).start()
    yield server
    server.stop()


def staging_broker(site: Site, broker_factory: BrokerFactory, staging: Path) -> BrokerProcess:
    """A Kubernetes broker staging into ``staging``, which its pods see as the claim."""
    config = site.config(
        staging_claim=CLAIM,
        image_pull_seconds=0.0,
        notebook_output_dir=str(site.dir),
    )
    return broker_factory(
        "--platform=kubernetes",
        f"--config={config}",
        f"--DataStaging.staging_dir={staging}",
        '--DataStaging.trusted_hosts=["127.0.0.1"]',
        "--DataStaging.retries=1",
        "--DataStaging.retry_delay=0.2",
    )


def create_claim(site: Site, volume: str) -> None:
    """The claim ``CLAIM``, ReadOnlyMany, for the PersistentVolume named ``volume``."""
    site.cluster.create(
        f"/api/v1/namespaces/{site.namespace}/persistentvolumeclaims",
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": CLAIM},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    )


def staging_claim(site: Site, staging: Path) -> None:
    """The staging claim: ReadOnlyMany, bound by the PV controller to a PV on ``staging``."""
    create_claim(site, site.persistent_volume(staging, "10Gi", "ReadOnlyMany"))
    path = f"/api/v1/namespaces/{site.namespace}/persistentvolumeclaims/{CLAIM}"
    wait_for(
        lambda: site.cluster.get(path)["status"].get("phase") == "Bound",
        60,
        "the staging claim bound to its PV by the PV controller",
    )


def lead(offer: dict[str, Any]) -> timedelta:
    """How long after the offer was made its slot starts."""
    start = offer["schedule"]["available"]["start"].split("/")[0].replace("Z", "+00:00")
    created = offer["meta"]["created"].replace("Z", "+00:00")
    return datetime.fromisoformat(start) - datetime.fromisoformat(created)


def test_staged_data_is_mounted_from_the_staging_claim(
    site: Site, broker_factory: BrokerFactory, data_server: DataServer, tmp_path: Path
) -> None:
    """The offer's preparation includes the predicted transfer; on accept the data is staged
    (checksum verified) before the pod is created, and the pod mounts the claim read-only with
    the cached file as subPath at the mount path and gets EB_DATA_OBS/EB_MOUNT_ROOT; a second
    request for the same data is a cache hit that starts earlier."""
    site.add_node("a", cpu="4", memory="8Gi")
    staging = tmp_path / "staging"
    url = data_server.file("obs.bin", 2 * MIB)
    digest = hashlib.sha256((data_server.root / "obs.bin").read_bytes()).hexdigest()
    notebook = write_notebook(
        tmp_path / "env.ipynb",
        "import os\n"
        "assert os.environ['EB_DATA_OBS'] == '/data/obs.bin', os.environ.get('EB_DATA_OBS')\n"
        "assert os.environ['EB_MOUNT_ROOT'] == '/'\n"
        "print('env ok')",
    )
    body = data_request(
        str(notebook), {"obs": url}, mounts={"obs": ("/data/obs.bin", "READONLY")}, duration="PT10M"
    )
    staging_claim(site, staging)
    broker = staging_broker(site, broker_factory, staging)
    with broker.client() as c:
        answer = c.post("/requests", json=body).json()
        assert answer["result"] == "YES", answer
        first = answer["offers"][0]
        planned = first["jeb:staging"]
        assert planned["bytes"] == 2 * MIB and planned["cached_bytes"] == 0
        assert planned["seconds"] > 0
        # the preparation offered = the platform's start-up (1 s) + the predicted transfer
        preparing = parse_duration(first["schedule"]["preparing"]["duration"])
        assert preparing == timedelta(seconds=1 + math.ceil(planned["seconds"]))
        uuid = first["meta"]["uuid"]
        assert accept(c, first["meta"]["url"]).status_code == 200

        (pod,) = wait_for(lambda: site.pods(f"eb-session={uuid}"), 120, "the session's pod")
        session = c.get(first["meta"]["url"]).json()  # the pod is made once it is staged
        assert session["jeb:staging"]["state"] == "staged", messages(session)
        done = wait_phase(c, first["meta"]["url"], FINAL, timeout=120)
        assert done["phase"] == "COMPLETED", (messages(done), broker.log()[-3000:])

        again = c.post("/requests", json=body).json()
        assert again["result"] == "YES", again
        second = again["offers"][0]
        for offer in again["offers"]:
            accept(c, offer["meta"]["url"], "REJECTED")

    # the data is in the staging area, verified and read-only
    (entry,) = [e for e in (staging / "objects").iterdir() if (e / "data").exists()]
    assert hashlib.sha256((entry / "data").read_bytes()).hexdigest() == digest
    assert json.loads((entry / "meta.json").read_text())["checksum"] == f"sha256:{digest}"
    # the pod: the claim once, read-only; the cached file at the mount path by subPath
    spec = pod["spec"]
    assert {
        "name": "eb-staging",
        "persistentVolumeClaim": {"claimName": CLAIM, "readOnly": True},
    } in spec["volumes"]
    (container,) = spec["containers"]
    assert {
        "name": "eb-staging",
        "mountPath": "/data/obs.bin",
        "subPath": str((entry / "data").relative_to(staging)),
        "readOnly": True,
    } in container["volumeMounts"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EB_DATA_OBS"] == "/data/obs.bin" and env["EB_MOUNT_ROOT"] == "/"
    # no session PVC for the data's booked storage
    assert not [v for v in spec["volumes"] if v["name"] == "storage"]
    # the cache hit: nothing to fetch, an earlier start, no second GET
    assert second["jeb:staging"]["seconds"] == 0
    assert second["jeb:staging"]["objects"][0]["cached"] is True
    assert lead(second) < lead(first)
    assert data_server.gets["/files/obs.bin"] == 1


def test_a_failed_transfer_fails_the_session_before_any_pod(
    site: Site, broker_factory: BrokerFactory, data_server: DataServer, tmp_path: Path
) -> None:
    site.add_node("a", cpu="4", memory="8Gi")
    data_server.file("broken.bin", MIB)
    notebook = write_notebook(tmp_path / "never.ipynb", "print('never')")
    url = f"{data_server.url}/fail500/broken.bin"
    body = data_request(str(notebook), {"obs": url}, duration="PT10M")
    staging_claim(site, tmp_path / "staging")
    broker = staging_broker(site, broker_factory, tmp_path / "staging")
    with broker.client() as c:
        answer = c.post("/requests", json=body).json()
        assert answer["result"] == "YES", answer
        offer = answer["offers"][0]
        assert accept(c, offer["meta"]["url"]).status_code == 200
        session = wait_phase(c, offer["meta"]["url"], FINAL, timeout=120)
    assert session["phase"] == "FAILED"
    text = messages(session)
    assert "staging the data failed" in text and "HTTP 500" in text, text
    assert session["jeb:staging"]["state"] == "failed"
    assert data_server.gets["/fail500/broken.bin"] == 2  # the first try and one retry
    assert site.pods(f"eb-session={offer['meta']['uuid']}") == []  # no pod was created


def test_without_a_staging_claim_data_gets_no(
    site: Site, k8s_broker: Any, data_server: DataServer, tmp_path: Path
) -> None:
    site.add_node("a", cpu="4", memory="8Gi")
    url = data_server.file("obs.bin", MIB)
    body = data_request(str(tmp_path / "nb.ipynb"), {"obs": url}, duration="PT10M")
    with k8s_broker().client() as c:
        answer = c.post("/requests", json=body).json()
    assert answer["result"] == "NO", answer
    (problem,) = [m for m in answer["meta"]["messages"] if m["kind"] == "urn:not-supported"]
    assert "KubernetesPlatform.staging_claim" in problem["message"]
    assert data_server.gets["/files/obs.bin"] == 0


def test_a_staging_claim_that_is_not_bound_gets_no(
    site: Site, broker_factory: BrokerFactory, data_server: DataServer, tmp_path: Path
) -> None:
    """A claim for a volume that does not exist stays Pending: requests with data get NO
    saying so (not a pod that would wait Pending), and nothing is fetched."""
    site.add_node("a", cpu="4", memory="8Gi")
    create_claim(site, "eb-no-such-volume")
    url = data_server.file("obs.bin", MIB)
    body = data_request(str(tmp_path / "nb.ipynb"), {"obs": url}, duration="PT10M")
    with staging_broker(site, broker_factory, tmp_path / "staging").client() as c:
        answer = c.post("/requests", json=body).json()
    assert answer["result"] == "NO", answer
    (problem,) = [m for m in answer["meta"]["messages"] if m["kind"] == "urn:not-supported"]
    assert f"PersistentVolumeClaim {CLAIM!r}" in problem["message"], problem
    assert "Pending, not bound to a volume" in problem["message"], problem
    assert data_server.gets["/files/obs.bin"] == 0
