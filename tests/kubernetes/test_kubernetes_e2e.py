"""End to end on a real control plane: eb-broker --platform=kubernetes, real kube-apiserver,
kube-scheduler and kube-controller-manager, and the stand-in kubelet running pods as local
processes (so Jupyter servers really answer and papermill really runs)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nbformat

from eb_sdk.model import SimpleStorageResource
from eb_sdk.model.times import parse_instant, parse_interval
from tests.broker.helpers import COMPUTE, NOTEBOOK, SERVER, accept
from tests.fixtures.kubernetes import wait_for
from tests.fixtures.notebooks import write_notebook
from tests.kubernetes.conftest import Site

CONTAINER = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/docker-container.yaml"
FINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def server_request(cores: dict[str, int], memory: int = 1, **compute: Any) -> dict[str, Any]:
    return {
        "executable": {"kind": SERVER},
        "compute": {"kind": COMPUTE, "cores": cores, "memory": {"min": memory}, **compute},
        "schedule": {"requested": {"duration": "PT1H"}},
    }


def wait_phase(c: httpx.Client, url: str, phases: set[str], timeout: float = 90) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        last.update(c.get(url).json())
        return dict(last) if last["phase"] in phases else None

    try:
        return wait_for(check, timeout, f"{url} reaching {phases}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {last.get('phase')}, {messages(last)}") from None


def book(c: httpx.Client, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Request and accept the earliest offer."""
    answer = c.post("/requests", json=body).json()
    return accept_first(c, answer)


def accept_first(c: httpx.Client, answer: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    assert answer["result"] == "YES", answer
    offer = min(answer["offers"], key=lambda o: o["schedule"]["available"]["start"].split("/")[0])
    assert accept(c, offer["meta"]["url"]).status_code == 200
    return str(offer["meta"]["url"]), offer


def start_of(offer: dict[str, Any]) -> datetime:
    return parse_interval(offer["schedule"]["available"]["start"]).start


def messages(session: dict[str, Any]) -> str:
    return " | ".join(m.get("message", "") for m in session["meta"].get("messages") or [])


def offered_cores(answer: dict[str, Any]) -> set[int]:
    return {o["compute"]["cores"]["min"] for o in answer.get("offers") or []}


def foreign_pod(site: Site, node: str, cpu: str, memory: str = "1Gi", ns: str = "") -> None:
    """A pod the broker did not create, bound to ``node`` (the kubelet runs ``sleep``)."""
    namespace = ns or site.namespace
    site.cluster.create(
        f"/api/v1/namespaces/{namespace}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"foreign-{node[-12:]}-{cpu}".lower().replace(".", "-")},
            "spec": {
                "nodeName": node,
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": ["sleep", "3600"],
                        "resources": {
                            "requests": {"cpu": cpu, "memory": memory},
                            "limits": {"cpu": cpu, "memory": memory},
                        },
                    }
                ],
            },
        },
    )


def test_server_offer_accept_available_cancel(site: Site, k8s_broker: Any) -> None:
    """Offers respect node capacity and a running foreign pod; the accepted server runs as a Pod
    + Service with the booked requests/limits and labels, answers through its connector (the
    image pull showed while PREPARING), and cancelling deletes both."""
    node = site.add_node("a", cpu="4", memory="8Gi")
    site.cluster.namespace(f"{site.namespace}-other")
    foreign_pod(site, node, "2", ns=f"{site.namespace}-other")
    wait_for(
        lambda: site.cluster.pods(f"{site.namespace}-other")[0]["status"].get("phase") == "Running",
        30,
        "the foreign pod running",
    )
    broker = k8s_broker()
    with broker.client() as c:
        caps = c.get("/capabilities").json()
        assert caps["platform"] == "kubernetes", caps

        too_big = c.post("/requests", json=server_request({"min": 3})).json()
        assert too_big["result"] == "NO", too_big
        assert "urn:no-capacity" in json.dumps(too_big)

        answer = c.post("/requests", json=server_request({"min": 1, "max": 4}, memory=2)).json()
        assert answer["result"] == "YES", answer
        assert offered_cores(answer) == {2}, "4 allocatable - 2 requested by the foreign pod"

        url, offer = accept_first(c, answer)
        uuid = offer["meta"]["uuid"]
        session = wait_phase(c, url, {"AVAILABLE", *FINAL})
        assert session["phase"] == "AVAILABLE", (session, broker.log()[-3000:])
        assert "Pulling image" in messages(session), messages(session)

        (pod,) = site.pods(f"eb-session={uuid}")
        assert pod["metadata"]["name"] == f"eb-{uuid}"
        labels = pod["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "eb-broker"
        assert labels["eb-owner"] == "alice" and labels["eb-kind"] == "jupyter-server"
        assert labels["component"] == "singleuser-server"
        container = pod["spec"]["containers"][0]
        assert container["resources"]["requests"] == {"cpu": "2", "memory": "2Gi"}
        assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}
        assert pod["spec"]["nodeSelector"] == {"eb-test": site.namespace}
        assert pod["spec"]["nodeName"] == node  # bound by the real kube-scheduler
        assert pod["spec"]["restartPolicy"] == "Never"
        service = site.cluster.get(f"/api/v1/namespaces/{site.namespace}/services/eb-{uuid}")
        assert service["spec"]["selector"] == {"eb-session": uuid}
        assert service["spec"]["ports"][0]["port"] == 8888
        assert service["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]

        (connector,) = session["connectors"]
        assert connector["kind"] == "urn:jeb:v1:connector:jupyter-server"
        assert connector["location"].startswith(f"http://{pod['status']['podIP']}:8888/?token=")
        status = connector["location"].replace("/?token=", "/api/status?token=")
        assert httpx.get(status, timeout=10).status_code == 200
        assert httpx.get(status.split("?")[0], timeout=10).status_code == 403  # token needed

        assert accept(c, url, "CANCELLED").status_code == 200
        session = wait_phase(c, url, FINAL)
        assert session["phase"] == "CANCELLED", session
        wait_for(lambda: not site.pods(f"eb-session={uuid}"), 30, "the pod deleted")
        with site.cluster.api() as api:
            gone = api.get(f"/api/v1/namespaces/{site.namespace}/services/eb-{uuid}")
        assert gone.status_code == 404
        wait_for(lambda: _refused(status), 20, "the server stopped")


def _refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return True
    return False


def test_a_future_slot_creates_its_pod_only_at_its_start(site: Site, k8s_broker: Any) -> None:
    """Kubernetes has no reservations: a booked future slot is held in the broker's ledger, and
    its Pod is created with the booked requests/limits only at start - preparation."""
    site.add_node("a", cpu="4", memory="8Gi")
    broker = k8s_broker(image_pull_seconds=0.0)
    whole = server_request({"min": 4}, memory=4)
    whole["schedule"] = {"requested": {"duration": "PT20S"}}
    with broker.client() as c:
        first_url, first = book(c, whole)  # the whole node, now
        assert wait_phase(c, first_url, {"AVAILABLE", *FINAL})["phase"] == "AVAILABLE"
        first_end = parse_instant(first["schedule"]["releasing"]["start"])

        answer = c.post("/requests", json=whole).json()  # the node again: only after the first
        assert answer["result"] == "YES", answer
        starts = [start_of(o) for o in answer["offers"]]
        assert min(starts) >= first_end, (starts, first_end)
        url, offer = accept_first(c, answer)
        uuid = offer["meta"]["uuid"]
        start = start_of(offer)
        preparing = parse_instant(offer["schedule"]["preparing"]["start"])
        # booked (the reconciler moves ACCEPTED to WAITING on its next pass): not started yet
        assert c.get(url).json()["phase"] in ("ACCEPTED", "WAITING")

        def pod_appears() -> dict[str, Any] | None:
            pods = site.pods(f"eb-session={uuid}")
            if not pods:
                assert datetime.now(UTC) < preparing + timedelta(seconds=5), "no pod in time"
                return None
            return dict(pods[0])

        assert not site.pods(f"eb-session={uuid}")  # booked: nothing on the cluster yet
        pod = wait_for(pod_appears, 60, "the pod at start - preparation")
        created = parse_instant(pod["metadata"]["creationTimestamp"])
        assert created >= preparing - timedelta(seconds=1), (created, preparing, start)
        resources = pod["spec"]["containers"][0]["resources"]
        assert resources["requests"] == resources["limits"] == {"cpu": "4", "memory": "4Gi"}
        session = wait_phase(c, url, {"AVAILABLE", *FINAL})
        assert session["phase"] == "AVAILABLE", (session, broker.log()[-3000:])
        assert accept(c, url, "CANCELLED").status_code == 200
        wait_phase(c, url, FINAL)
        assert wait_phase(c, first_url, FINAL)["phase"] == "COMPLETED"  # its slot ended


def test_gpu_request_gets_offers_only_where_a_node_has_gpus(site: Site, k8s_broker: Any) -> None:
    site.add_node("cpu", cpu="8", memory="16Gi")
    gpu_node = site.add_node(
        "gpu",
        cpu="4",
        memory="8Gi",
        labels={"nvidia.com/gpu.product": "Tesla-T4"},
        extended={"nvidia.com/gpu": "2"},
    )
    broker = k8s_broker(image_pull_seconds=0.0)
    gpu = {"jeb:accelerators": [{"type": "GPU", "count": {"min": 1}}]}
    with broker.client() as c:
        caps = c.get("/capabilities").json()
        assert "gpu:Tesla-T4" in json.dumps(caps), caps

        for bad in ({"model": "A100"}, {"count": {"min": 3}}):
            accel = {"jeb:accelerators": [{"type": "GPU", "count": {"min": 1}, **bad}]}
            no = c.post("/requests", json=server_request({"min": 1}, **accel)).json()
            assert no["result"] == "NO", no

        body = server_request({"min": 1, "max": 2}, **gpu)
        answer = c.post("/requests", json=body).json()
        assert answer["result"] == "YES", answer
        accels = answer["offers"][0]["compute"]["jeb:accelerators"]
        assert accels[0]["model"] == "Tesla-T4" and accels[0]["count"]["min"] == 1

        url, offer = accept_first(c, answer)
        session = wait_phase(c, url, {"AVAILABLE", *FINAL})
        assert session["phase"] == "AVAILABLE", (session, broker.log()[-3000:])
        (pod,) = site.pods(f"eb-session={offer['meta']['uuid']}")
        resources = pod["spec"]["containers"][0]["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == "1"
        assert resources["requests"]["nvidia.com/gpu"] == "1"
        assert pod["spec"]["nodeSelector"]["nvidia.com/gpu.product"] == "Tesla-T4"
        assert pod["spec"]["nodeName"] == gpu_node
        assert accept(c, url, "CANCELLED").status_code == 200
        wait_phase(c, url, FINAL)


def test_a_request_names_a_profile(site: Site, k8s_broker: Any) -> None:
    """``jeb:profile`` picks a configured profile (listed in /capabilities): the pod gets its
    nodeSelector, tolerations and image pull secrets (the broker's and the profile's), and the
    real scheduler puts it on the tainted node."""
    site.add_node("a", cpu="4", memory="8Gi")
    big = site.add_node("hm", cpu="4", memory="32Gi", labels={"pool": "highmem"})
    taint = {"key": "highmem", "value": "true", "effect": "NoSchedule"}
    site.cluster.patch(f"/api/v1/nodes/{big}", {"spec": {"taints": [taint]}})
    toleration = {"key": "highmem", "operator": "Exists", "effect": "NoSchedule"}
    highmem = {
        "description": "nodes with 32 GiB",
        "node_selector": {"pool": "highmem"},
        "tolerations": [toleration],
    }
    broker = k8s_broker(
        image_pull_seconds=0.0,
        profiles={"highmem": {**highmem, "image_pull_secrets": ["highmem-registry"]}},
        image_pull_secrets=["registry"],
    )
    with broker.client() as c:
        caps = c.get("/capabilities").json()
        assert caps["jeb:profiles"] == {"highmem": "nodes with 32 GiB"}, caps
        assert "jeb:profile" in caps["extensions"]

        no = c.post("/requests", json={**server_request({"min": 1}), "jeb:profile": "huge"}).json()
        assert no["result"] == "NO", no
        (problem,) = no["meta"]["messages"]
        assert problem["kind"] == "urn:not-supported" and "highmem" in problem["message"]

        body = {**server_request({"min": 1}, memory=16), "jeb:profile": "highmem"}
        url, offer = book(c, body)
        session = wait_phase(c, url, {"AVAILABLE", *FINAL})
        assert session["phase"] == "AVAILABLE", (session, broker.log()[-3000:])
        (pod,) = site.pods(f"eb-session={offer['meta']['uuid']}")
        assert pod["spec"]["nodeSelector"] == {"eb-test": site.namespace, "pool": "highmem"}
        assert toleration in pod["spec"]["tolerations"]
        assert pod["spec"]["imagePullSecrets"] == [
            {"name": "registry"},
            {"name": "highmem-registry"},
        ]
        assert pod["spec"]["nodeName"] == big
        assert accept(c, url, "CANCELLED").status_code == 200
        wait_phase(c, url, FINAL)


def test_namespace_quota_bounds_offers(site: Site, k8s_broker: Any) -> None:
    node = site.add_node("a", cpu="8", memory="16Gi")
    site.cluster.create(
        f"/api/v1/namespaces/{site.namespace}/resourcequotas",
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "compute"},
            "spec": {"hard": {"requests.cpu": "3", "requests.memory": "6Gi", "pods": "2"}},
        },
    )
    # kube-controller-manager computes the quota's status; admission needs it before pods.
    wait_for(
        lambda: (
            site.cluster.get(f"/api/v1/namespaces/{site.namespace}/resourcequotas/compute")
            .get("status", {})
            .get("hard")
        ),
        30,
        "the quota's status",
    )
    foreign_pod(site, node, "1")
    broker = k8s_broker(image_pull_seconds=0.0)
    with broker.client() as c:
        answer = c.post("/requests", json=server_request({"min": 1, "max": 8})).json()
        assert answer["result"] == "YES", answer
        assert offered_cores(answer) == {2}, "quota 3 cores - 1 used by a pod in the namespace"
        no = c.post("/requests", json=server_request({"min": 3})).json()
        assert no["result"] == "NO", no
        for offer in answer["offers"]:
            accept(c, offer["meta"]["url"], "REJECTED")

        # "pods: 2": the foreign pod and one session fill it
        url, _ = book(c, server_request({"min": 1}))
        assert wait_phase(c, url, {"AVAILABLE", *FINAL})["phase"] == "AVAILABLE"

        def refused() -> dict[str, Any] | None:
            answer = dict(c.post("/requests", json=server_request({"min": 1})).json())
            if answer["result"] == "YES":
                for offer in answer["offers"]:
                    accept(c, offer["meta"]["url"], "REJECTED")
                return None
            return answer

        full = wait_for(refused, 20, "NO once the pods quota is used up", every=0.5)
        (problem,) = full["meta"]["messages"]
        assert problem["kind"] == "urn:resource-limit" and "admits 2 pods" in problem["message"]
        assert accept(c, url, "CANCELLED").status_code == 200
        wait_phase(c, url, FINAL)


def test_notebook_and_container_runs(site: Site, k8s_broker: Any, tmp_path: Path) -> None:
    """papermill in a pod: parameters in, the executed notebook out — copied out of the pod
    through its log (GET .../pods/<name>/log via the API server) into the broker's work
    directory before the pod is deleted; a failing cell and a failing container end FAILED
    with the container's reason."""
    site.add_node("a", cpu="4", memory="8Gi")
    in_pod = tmp_path / "in-pod"  # the pod's notebook_output_dir (the stand-in runs it here)
    in_pod.mkdir()
    broker = k8s_broker(notebook_output_dir=str(in_pod), image_pull_seconds=0.0)
    good = write_notebook(
        tmp_path / "double.ipynb", "y = x * 2\nprint('y is', y)", parameters="x = 1"
    )
    bad = write_notebook(tmp_path / "fail.ipynb", "a = 1", "b = a / 0", parameters="x = 1")

    def notebook(location: Path, params: dict[str, Any] | None = None) -> dict[str, Any]:
        executable: dict[str, Any] = {"kind": NOTEBOOK, "location": str(location)}
        if params:
            executable["jeb:parameters"] = params
        return {
            "executable": executable,
            "compute": {"kind": COMPUTE, "cores": {"min": 1}, "memory": {"min": 1}},
            "schedule": {"requested": {"duration": "PT10M"}},
        }

    container = {
        "executable": {
            "kind": CONTAINER,
            "image": {"locations": ["docker.io/library/busybox:1.36"]},
            "command": ["sh", "-c", "echo about to fail; exit 3"],
        },
        "compute": {"kind": COMPUTE, "cores": {"min": 1}, "memory": {"min": 1}},
        "schedule": {"requested": {"duration": "PT10M"}},
    }
    with broker.client() as c:
        good_url, good_offer = book(c, notebook(good, {"x": 21}))
        bad_url, _ = book(c, notebook(bad))
        box_url, box_offer = book(c, container)

        session = wait_phase(c, good_url, FINAL, timeout=120)
        assert session["phase"] == "COMPLETED", (session, broker.log()[-3000:])
        uuid = good_offer["meta"]["uuid"]
        (in_pod / f"{uuid}.ipynb").unlink()  # what the pod wrote is not what is reported
        outputs = session["jeb:outputs"]
        assert outputs["notebook"] == str(broker.dir / "work" / uuid / "output.ipynb")
        cells = nbformat.read(outputs["notebook"], as_version=4).cells
        assert "y is 42" in json.dumps([cell.get("outputs") for cell in cells])
        log = Path(outputs["log"]).read_text()
        assert "y is 42" in log and "executed notebook" not in log  # papermill's log output
        wait_for(lambda: not site.pods(f"eb-session={uuid}"), 30, "the pod released")

        session = wait_phase(c, bad_url, FINAL, timeout=120)
        assert session["phase"] == "FAILED", session
        text = messages(session)
        assert "ZeroDivisionError" in text and "exited with code 1" in text, text
        assert "urn:execution-failed" in json.dumps(session["meta"]["messages"])
        failed = nbformat.read(session["jeb:outputs"]["notebook"], as_version=4)
        assert "ZeroDivisionError" in json.dumps([cell.get("outputs") for cell in failed.cells])

        session = wait_phase(c, box_url, FINAL)
        assert session["phase"] == "FAILED", session
        assert "exited with code 3 (Error): about to fail" in messages(session)
        (pod,) = site.pods(f"eb-session={box_offer['meta']['uuid']}") or [None]
        assert pod is None or pod["metadata"].get("deletionTimestamp"), "released"


def test_storage_is_a_pvc_mounted_in_the_pod(site: Site, k8s_broker: Any, tmp_path: Path) -> None:
    """storage_gib > 0: a storage request becomes a PVC of the booked size (bound by the real
    PV controller to a PV the test provides), mounted in the pod; the notebook's output goes
    there and is copied out; the PVC is deleted on release."""
    site.add_node("a", cpu="4", memory="8Gi")
    volume = site.persistent_volume(tmp_path / "pv", "5Gi")
    mount = tmp_path / "mounted"  # the mount path in the pod (the stand-in runs it here)
    mount.mkdir()
    broker = k8s_broker(storage_gib=10, storage_mount_path=str(mount), image_pull_seconds=0.0)
    notebook = write_notebook(tmp_path / "nb.ipynb", "import time; time.sleep(4)", "print('ok')")
    body = {
        "executable": {"kind": NOTEBOOK, "location": str(notebook)},
        "compute": {"kind": COMPUTE, "cores": {"min": 1}, "memory": {"min": 1}},
        "storage": [{"kind": SimpleStorageResource.KIND, "size": {"min": 2}}],
        "schedule": {"requested": {"duration": "PT10M"}},
    }
    ns = f"/api/v1/namespaces/{site.namespace}"
    with broker.client() as c:
        url, offer = book(c, body)
        uuid = offer["meta"]["uuid"]
        claim = f"eb-{uuid}-storage"
        running = wait_phase(c, url, {"RUNNING", *FINAL})
        assert running["phase"] == "RUNNING", (running, broker.log()[-3000:])
        pvc = site.cluster.get(f"{ns}/persistentvolumeclaims/{claim}")
        assert pvc["spec"]["resources"]["requests"] == {"storage": "2Gi"}
        assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["volumeName"] == volume
        (pod,) = site.pods(f"eb-session={uuid}")
        assert {"name": "storage", "persistentVolumeClaim": {"claimName": claim}} in pod["spec"][
            "volumes"
        ]
        mounts = pod["spec"]["containers"][0]["volumeMounts"]
        assert {"name": "storage", "mountPath": str(mount)} in mounts

        done = wait_phase(c, url, FINAL)
        assert done["phase"] == "COMPLETED", (done, broker.log()[-3000:])
        assert (mount / f"{uuid}.ipynb").exists()  # written on the volume ...
        cells = nbformat.read(done["jeb:outputs"]["notebook"], as_version=4).cells
        assert "ok" in json.dumps([cell.get("outputs") for cell in cells])  # ... copied out

        def claim_gone() -> bool:
            with site.cluster.api() as api:
                return api.get(f"{ns}/persistentvolumeclaims/{claim}").status_code == 404

        wait_for(claim_gone, 30, "the PVC deleted on release")


def test_api_outage_refuses_requests_and_sessions_recover(site: Site, k8s_broker: Any) -> None:
    """API server stopped: new requests get NO (urn:platform-unavailable), running sessions
    keep their phase (and keep answering), a cancel waits; all recover when it is back."""
    site.add_node("a", cpu="4", memory="8Gi")
    broker = k8s_broker(image_pull_seconds=0.0)
    cluster = site.cluster
    body = server_request({"min": 1})
    with broker.client() as c:
        kept_url, _ = book(c, body)
        cancelled_url, _ = book(c, body)
        kept = wait_phase(c, kept_url, {"AVAILABLE", *FINAL})
        assert kept["phase"] == "AVAILABLE", (kept, broker.log()[-3000:])
        assert wait_phase(c, cancelled_url, {"AVAILABLE", *FINAL})["phase"] == "AVAILABLE"
        kept_status = kept["connectors"][0]["location"].replace("/?token=", "/api/status?token=")
        cluster.stop_apiserver()
        try:

            def refused() -> dict[str, Any] | None:
                answer = dict(c.post("/requests", json=body).json())
                return answer if answer["result"] == "NO" else None

            answer = wait_for(refused, 40, "a NO while the API server is down", every=0.5)
            kinds = {m["kind"] for m in answer["meta"]["messages"]}
            assert "urn:platform-unavailable" in kinds, answer
            # a cancel during the outage waits for the API (RELEASING), it does not fail
            assert accept(c, cancelled_url, "CANCELLED").status_code == 200
            # running sessions are left alone: AVAILABLE, and still answering
            for _ in range(5):
                assert c.get(kept_url).json()["phase"] == "AVAILABLE"
                assert c.get(cancelled_url).json()["phase"] in ("AVAILABLE", "RELEASING")
                time.sleep(0.3)
            assert httpx.get(kept_status, timeout=10).status_code == 200
        finally:
            cluster.start_apiserver()
        session = wait_phase(c, cancelled_url, FINAL, timeout=60)
        assert session["phase"] == "CANCELLED", session
        uuid = session["meta"]["uuid"]
        wait_for(lambda: not site.pods(f"eb-session={uuid}"), 30, "its pod deleted after")

        def offered() -> dict[str, Any] | None:
            answer = dict(c.post("/requests", json=body).json())
            return answer if answer["result"] == "YES" else None

        wait_for(offered, 40, "offers again once the API server is back", every=0.5)
        kept = c.get(kept_url).json()
        assert kept["phase"] == "AVAILABLE", kept
        assert httpx.get(kept_status, timeout=10).status_code == 200
        assert accept(c, kept_url, "CANCELLED").status_code == 200
        assert wait_phase(c, kept_url, FINAL)["phase"] == "CANCELLED"
