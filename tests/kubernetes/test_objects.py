"""The pure half of the Kubernetes platform: quantities, capacity from nodes/pods/quotas, the
objects built for a session, and the session state read from a pod. No cluster needed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from eb_broker.platforms.base import PlatformState, SessionSpec, StagedData
from eb_broker.platforms.kubernetes import KubernetesPlatform
from eb_broker.platforms.kubernetes.objects import (
    KIND_CONTAINER,
    KIND_NOTEBOOK,
    KIND_SERVER,
    NOTEBOOK_BEGIN,
    NOTEBOOK_WRAPPER,
    PodSettings,
    Pool,
    accelerator_kinds,
    build_service,
    build_session,
    claim_problem,
    cluster_view,
    data_volumes,
    extract_notebook,
    label_value,
    latest_events,
    merged_profile,
    parse_quantity,
    read_pod,
    requested_profile,
    selectable_profiles,
    server_url,
)
from eb_broker.scheduling import Resources
from eb_sdk.model import ExecutionRequest
from tests.broker.helpers import COMPUTE, NOTEBOOK, SERVER

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
KINDS = accelerator_kinds(
    {"nvidia.com/gpu": {"type": "gpu", "model_label": "nvidia.com/gpu.product"}}
)
CONTAINER = (
    "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/"
    "docker-container.yaml"
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", Decimal(4)),
        ("1500m", Decimal("1.5")),
        ("2Gi", Decimal(2 * 2**30)),
        ("512Mi", Decimal(512 * 2**20)),
        ("1G", Decimal(10**9)),
        ("1e3", Decimal(1000)),
        ("100k", Decimal(100000)),
        (3, Decimal(3)),
        (None, Decimal(0)),
    ],
)
def test_quantities(text: Any, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_bad_quantity() -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity("12 bananas")


def node(
    name: str,
    cpu: str = "4",
    memory: str = "8Gi",
    *,
    ready: bool = True,
    labels: dict[str, str] | None = None,
    gpus: int = 0,
    taints: list[dict[str, str]] | None = None,
    unschedulable: bool = False,
) -> dict[str, Any]:
    allocatable = {"cpu": cpu, "memory": memory, "pods": "110"}
    if gpus:
        allocatable["nvidia.com/gpu"] = str(gpus)
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "images": [{"names": ["quay.io/jupyter/base-notebook:latest"]}],
        },
    }


def pod(
    name: str,
    ns: str,
    node_name: str | None,
    cpu: str = "1",
    memory: str = "1Gi",
    *,
    phase: str = "Running",
    labels: dict[str, str] | None = None,
    limits: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    requests = {"cpu": cpu, "memory": memory, **(extra or {})}
    return {
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {
            "nodeName": node_name,
            "containers": [
                {"name": "c", "resources": {"requests": requests, "limits": limits or requests}}
            ],
        },
        "status": {"phase": phase},
    }


def view(
    nodes: Sequence[Any], pods: Sequence[Any] = (), quotas: Sequence[Any] = (), **kw: Any
) -> Any:
    options: dict[str, Any] = {
        "namespace": "eb",
        "instance": "eb-broker",
        "node_selector": {},
        "accelerators": KINDS,
        "storage_gib": 0,
        "now": NOW,
        "foreign_hold": timedelta(days=14),
        **kw,
    }
    return cluster_view(nodes, pods, quotas, **options)


def test_capacity_sums_usable_nodes_only() -> None:
    result = view(
        [
            node("a", "4", "8Gi"),
            node("b", "3500m", "4Gi", labels={"nvidia.com/gpu.product": "A100"}, gpus=2),
            node("down", ready=False),
            node("cordoned", unschedulable=True),
            node("tainted", taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]),
            node("other-pool", labels={"pool": "batch"}),
        ],
        node_selector={},
    )
    assert result.nodes == ("a", "b", "other-pool")
    assert result.capacity == Resources(11, 20, {"gpu:A100": 2})
    assert result.largest_node == Resources(4, 8, {"gpu:A100": 2})
    assert result.pools["gpu:A100"] == Pool(
        "gpu:A100", "nvidia.com/gpu", "nvidia.com/gpu.product", "A100"
    )
    assert "quay.io/jupyter/base-notebook:latest" in result.images

    selected = view(
        [node("a"), node("b", labels={"pool": "jupyter"})], node_selector={"pool": "jupyter"}
    )
    assert selected.nodes == ("b",)

    tolerated = view(
        [node("t", taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}])],
        tolerations=[{"key": "dedicated", "operator": "Exists"}],
    )
    assert tolerated.nodes == ("t",)


def test_gpu_without_model_label_is_the_plain_pool() -> None:
    result = view([node("g", gpus=4)])
    assert result.capacity.accelerators == {"gpu": 4}


def test_foreign_pods_are_external_usage_and_ours_are_not() -> None:
    ours = {"app.kubernetes.io/managed-by": "eb-broker", "eb-broker": "eb-broker"}
    other_broker = {"app.kubernetes.io/managed-by": "eb-broker", "eb-broker": "elsewhere"}
    pods = [
        pod("web", "apps", "a", "1500m", "2Gi"),
        pod("ours", "eb", "a", "2", labels=ours),
        pod("theirs", "eb", "a", "1", labels=other_broker),
        pod("done", "apps", "a", "3", phase="Succeeded"),
        pod("elsewhere", "apps", "zzz", "3"),  # on a node we do not count
        pod("pending-here", "eb", None, "1"),  # counts against the namespace's quota
        pod("pending-there", "apps", None, "1"),
    ]
    result = view([node("a", "8", "16Gi")], pods)
    usage = {p.key: p.resources for p in result.foreign}
    assert usage == {
        "apps/web": Resources(2, 2),  # rounded up: foreign usage is never under-counted
        "eb/theirs": Resources(1, 1),
        "eb/pending-here": Resources(1, 1),
    }
    # the pending pod in the namespace is not on a node: capacity grows by as much, so that
    # node usage stays exact while it still counts against quotas
    assert result.capacity == Resources(9, 17)
    web = next(p for p in result.foreign if p.key == "apps/web")
    assert web.start == NOW and web.end == NOW + timedelta(days=14)


def test_active_deadline_ends_foreign_usage() -> None:
    job = pod("job", "apps", "a", "1")
    job["spec"]["activeDeadlineSeconds"] = 600
    job["status"]["startTime"] = "2026-11-23T08:55:00Z"
    (usage,) = view([node("a")], [job]).foreign
    assert usage.end == datetime(2026, 11, 23, 9, 5, tzinfo=UTC)


def quota(hard: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "q"}, "spec": {"hard": hard}, "status": {"hard": hard}}


def test_quota_bounds_capacity_exactly() -> None:
    pods = [pod("in-ns", "eb", "a", "1", "1Gi"), pod("out", "apps", "a", "2", "2Gi")]
    result = view(
        [node("a", "8", "16Gi", gpus=4)],
        pods,
        [quota({"requests.cpu": "4", "requests.memory": "6Gi", "requests.nvidia.com/gpu": "1"})],
    )
    # timeline usage E = 3 cores: free = capacity - E must equal min(8 - 3, 4 - 1) = 3
    assert result.capacity.cores - 3 == 3
    assert result.capacity.memory_gib - 3 == min(16 - 3, 6 - 1)
    assert result.capacity.accelerators == {"gpu": 1}
    assert result.quota_notes


def test_limit_quota_counts_foreign_limits() -> None:
    pods = [pod("in-ns", "eb", "a", "1", limits={"cpu": "2", "memory": "1Gi"})]
    result = view([node("a", "8", "16Gi")], pods, [quota({"limits.cpu": "4"})])
    # our pods' limits = requests: 4 - 2 (foreign limits) = 2 free, plus E (1 core) on top
    assert result.capacity.cores - 1 == 2


def test_a_pods_quota_counts_every_pod_in_the_namespace() -> None:
    ours = pod(
        "ours",
        "eb",
        "a",
        labels={"app.kubernetes.io/managed-by": "eb-broker", "eb-broker": "eb-broker"},
    )
    pods = [
        pod("x", "eb", "a"),
        ours,
        pod("y", "elsewhere", "a"),
        pod("z", "eb", "a", phase="Succeeded"),
    ]
    bounded = view([node("a")], pods, [quota({"pods": "3"}), quota({"count/pods": "5"})])
    assert (bounded.pods_quota, bounded.pods_in_namespace, bounded.pods_left) == (3, 2, 1)
    assert view([node("a")], pods).pods_left is None


def test_storage_is_configured_and_quota_bounded() -> None:
    assert view([node("a")], storage_gib=100).capacity.storage_gib == 100
    bounded = view([node("a")], [], [quota({"requests.storage": "20Gi"})], storage_gib=100)
    assert bounded.capacity.storage_gib == 20


# -- building objects ---------------------------------------------------------------------------


def spec_for(
    body: dict[str, Any], resources: Resources, uuid: str = "1234-abcd", **more: Any
) -> SessionSpec:
    return SessionSpec(
        uuid=uuid,
        owner="alice@example.org",
        groups=("astro",),
        request=ExecutionRequest.model_validate(body),
        resources=resources,
        start=NOW,
        end=NOW + timedelta(hours=2),
        preparation=timedelta(seconds=30),
        **more,
    )


def server_body(**executable: Any) -> dict[str, Any]:
    return {
        "executable": {"kind": SERVER, **executable},
        "compute": {"kind": COMPUTE, "cores": {"min": 2}},
    }


def test_server_pod_made_by_kubespawner() -> None:
    settings = PodSettings(
        namespace="eb",
        node_selector={"pool": "jupyter"},
        image_pull_secrets=("registry",),
        profiles={"gpu": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}},
    )
    pools = {"gpu:A100": Pool("gpu:A100", "nvidia.com/gpu", "nvidia.com/gpu.product", "A100")}
    spec = spec_for(server_body(environment={"FOO": "bar"}), Resources(2, 4, {"gpu:A100": 1}))
    built = build_session(spec, settings, pools, token="t0k", now=NOW)
    assert built.kind == KIND_SERVER and built.token == "t0k" and not built.hub
    meta = built.pod["metadata"]
    assert meta["name"] == "eb-1234-abcd" and meta["namespace"] == "eb"
    assert meta["labels"]["eb-session"] == "1234-abcd"
    assert meta["labels"]["eb-owner"] == "alice-example.org"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "eb-broker"
    assert meta["labels"]["component"] == "singleuser-server"
    assert meta["annotations"]["eb-broker/owner"] == "alice@example.org"
    pod_spec = built.pod["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["automountServiceAccountToken"] is False  # kubespawner's safe default
    assert pod_spec["nodeSelector"] == {"pool": "jupyter", "nvidia.com/gpu.product": "A100"}
    assert pod_spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    assert pod_spec["imagePullSecrets"] == [{"name": "registry"}]
    assert "activeDeadlineSeconds" not in pod_spec
    (container,) = pod_spec["containers"]
    assert container["name"] == "notebook"
    assert container["resources"]["requests"] == {
        "cpu": 2.0,
        "memory": "4Gi",
        "nvidia.com/gpu": "1",
    }
    assert container["resources"]["limits"] == container["resources"]["requests"]
    assert container["args"][:2] == ["jupyter", "server"]
    assert "--ServerApp.ip=0.0.0.0" in container["args"]
    assert "--ServerApp.port=8888" in container["args"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"FOO": "bar", "JUPYTER_TOKEN": "t0k"}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert built.pvc is None and built.service is None

    created = {**built.pod, "metadata": {**meta, "uid": "u-1"}}
    service = build_service(created, 8888)
    assert service["metadata"]["name"] == "eb-1234-abcd"
    assert service["spec"]["selector"] == {"eb-session": "1234-abcd"}
    assert service["spec"]["ports"] == [{"name": "http", "port": 8888, "targetPort": 8888}]
    assert service["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert "component" not in service["metadata"]["labels"]


def test_hub_server_gets_no_token_and_its_prefix_in_the_url() -> None:
    env = {"JUPYTERHUB_API_TOKEN": "x", "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"}
    spec = spec_for(
        server_body(command=["jupyterhub-singleuser"], environment=env), Resources(1, 1)
    )
    built = build_session(spec, PodSettings(), {}, token="t0k", now=NOW)
    assert built.hub and built.token == ""
    assert built.pod["spec"]["containers"][0]["args"][0] == "jupyterhub-singleuser"
    pod = {**built.pod, "status": {"podIP": "10.1.2.3"}}
    url = server_url("http://{pod_ip}:{port}/{prefix}", pod, port=8888, namespace="eb", uuid="u")
    assert url == "http://10.1.2.3:8888/user/alice/"
    svc = server_url(
        "http://{service}.{namespace}.svc:{port}", pod, port=80, namespace="eb", uuid="u"
    )
    assert svc == "http://eb-1234-abcd.eb.svc:80/"
    # the short name of the Service's cluster DNS name
    platform = KubernetesPlatform(server_url_template="service", namespace="eb")
    assert platform._server_url(spec, pod) == (
        "http://eb-1234-abcd.eb.svc.cluster.local:8888/user/alice/"
    )


def test_notebook_pod_runs_papermill_with_storage() -> None:
    body = {
        "executable": {
            "kind": NOTEBOOK,
            "location": "/home/jovyan/analysis.ipynb",
            "jeb:parameters": {"n": 3},
            "jeb:kernel": "python3",
        },
        "compute": {"kind": COMPUTE, "cores": {"min": 1}},
    }
    built = build_session(
        spec_for(body, Resources(1, 2, storage_gib=10)),
        PodSettings(namespace="eb", storage_class="fast"),
        {},
        token="t",
        now=NOW,
    )
    assert built.kind == KIND_NOTEBOOK
    container = built.pod["spec"]["containers"][0]
    output = "/home/jovyan/work/1234-abcd.ipynb"  # on the session's PVC
    assert container["args"] == [
        "papermill",
        "/home/jovyan/analysis.ipynb",
        output,
        "--log-output",
        "--no-progress-bar",
        "--kernel",
        "python3",
        "--parameters_yaml",
        '{"n": 3}',
    ]
    # papermill runs under a wrapper that prints the executed notebook to the log at the end
    assert container["command"] == ["python3", "-c", NOTEBOOK_WRAPPER, output]
    assert built.output == output
    assert built.pod["spec"]["activeDeadlineSeconds"] == 2 * 3600 + 30
    assert built.pod["spec"]["volumes"] == [
        {"name": "storage", "persistentVolumeClaim": {"claimName": "eb-1234-abcd-storage"}}
    ]
    assert container["volumeMounts"] == [{"name": "storage", "mountPath": "/home/jovyan/work"}]
    assert built.pvc is not None
    assert built.pvc["metadata"]["name"] == "eb-1234-abcd-storage"
    assert built.pvc["spec"]["resources"]["requests"] == {"storage": "10Gi"}
    assert built.pvc["spec"]["storageClassName"] == "fast"
    assert built.pvc["metadata"]["labels"]["eb-session"] == "1234-abcd"


def test_the_notebook_wrapper_prints_the_notebook_to_the_log(tmp_path: Path) -> None:
    """The wrapper for real (python3 -c ...): papermill's output passes through, the notebook
    follows between the markers, and a failure repeats the last lines after it (they become
    the termination message); extract_notebook takes it back out."""
    import subprocess
    import sys

    out = tmp_path / "out.ipynb"
    tool = f"import pathlib, sys; print('working'); pathlib.Path({str(out)!r}).write_text('{{}}')"
    for code in (0, 3):
        run = subprocess.run(
            [sys.executable, "-c", NOTEBOOK_WRAPPER, str(out), sys.executable, "-c",
             f"{tool}; print('boom'); sys.exit({code})"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert run.returncode == code
        notebook, rest = extract_notebook(run.stdout)
        assert notebook == b"{}"
        assert rest.startswith("working\nboom\n")
        assert rest.rstrip().endswith("boom")
        assert (rest.count("boom") == 2) is bool(code)
    assert extract_notebook("no notebook here") == (None, "no notebook here")
    cut = run.stdout[: run.stdout.index(NOTEBOOK_BEGIN) + len(NOTEBOOK_BEGIN) + 10]
    assert extract_notebook(cut)[0] is None


def test_container_pod_uses_the_requested_image_command_and_entrypoint() -> None:
    body = {
        "executable": {
            "kind": CONTAINER,
            "image": {"locations": ["docker://ghcr.io/org/tool:1.0"]},
            "entrypoint": "/bin/tool",
            "command": ["--fast", "input.fits"],
            "environment": {"MODE": "batch"},
        }
    }
    built = build_session(spec_for(body, Resources(1, 1)), PodSettings(), {}, token="t", now=NOW)
    assert built.kind == KIND_CONTAINER
    container = built.pod["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/org/tool:1.0"
    assert container["command"] == ["/bin/tool"]
    assert container["args"] == ["--fast", "input.fits"]
    assert container["env"] == [{"name": "MODE", "value": "batch"}]


def test_profiles_merge_in_order() -> None:
    profiles = {
        "default": {"node_selector": {"a": "1"}, "image": "base"},
        "jupyter-server": {"node_selector": {"b": "2"}, "image": "server"},
        "gpu": {"tolerations": [{"key": "gpu"}], "image": "cuda"},
        "gpu:A100": {"tolerations": [{"key": "a100"}], "node_selector": {"a": "x"}},
    }
    merged = merged_profile(profiles, KIND_SERVER, ["gpu:A100"])
    assert merged == {
        "node_selector": {"a": "x", "b": "2"},
        "image": "cuda",
        "tolerations": [{"key": "gpu"}, {"key": "a100"}],
    }
    assert merged_profile(profiles, KIND_NOTEBOOK, []) == {
        "node_selector": {"a": "1"},
        "image": "base",
    }


def test_a_named_profile_comes_last_and_only_others_are_selectable() -> None:
    profiles = {
        "default": {"image": "base"},
        "jupyter-server": {"image": "server"},
        "gpu": {"image": "cuda"},
        "gpu:A100": {},
        "highmem": {"description": "big nodes", "node_selector": {"pool": "hm"}, "image": "hm"},
        "scratch": {},
    }
    merged = merged_profile(profiles, KIND_SERVER, ["gpu:A100"], "highmem")
    assert merged["image"] == "hm" and merged["node_selector"] == {"pool": "hm"}
    assert selectable_profiles(profiles, ["gpu"]) == {"highmem": "big nodes", "scratch": ""}
    body = {"executable": {"kind": SERVER}, "jeb:profile": "highmem"}
    spec = spec_for(body, Resources(1, 1))
    assert requested_profile(spec.request) == "highmem"
    settings = PodSettings(profiles=profiles)
    built = build_session(spec, settings, {}, token="t", now=NOW)
    assert built.pod["spec"]["nodeSelector"] == {"pool": "hm"}
    assert built.pod["spec"]["containers"][0]["image"] == "hm"


def test_label_values_are_valid() -> None:
    assert label_value("alice@example.org") == "alice-example.org"
    assert label_value("-x-" * 40) == ("-x-" * 40)[:63].strip("-")
    assert label_value("@@@") == "unknown"


# -- reading pods ---------------------------------------------------------------------------------


def status(phase: str, **container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "eb-1"},
        "status": {"phase": phase, "containerStatuses": [{"name": "notebook", **container}]},
    }


def test_pending_pod_is_preparing_with_the_event_text() -> None:
    pulling = {"type": "Normal", "reason": "Pulling", "message": 'Pulling image "x"'}
    reading = read_pod(
        status("Pending", state={"waiting": {"reason": "ContainerCreating"}}),
        pulling,
        kind=KIND_NOTEBOOK,
        answered=False,
    )
    assert reading.state == PlatformState.PREPARING
    assert [m.message for m in reading.messages] == ['Pulling image "x"']

    backoff = read_pod(
        status("Pending", state={"waiting": {"reason": "ImagePullBackOff", "message": "nope"}}),
        None,
        kind=KIND_NOTEBOOK,
        answered=False,
    )
    assert backoff.state == PlatformState.PREPARING
    assert backoff.messages[0].message == "ImagePullBackOff: nope"

    invalid = read_pod(
        status("Pending", state={"waiting": {"reason": "InvalidImageName", "message": "bad"}}),
        None,
        kind=KIND_NOTEBOOK,
        answered=False,
    )
    assert invalid.state == PlatformState.FAILED


def test_running_server_is_available_only_once_it_answered() -> None:
    running = status("Running", state={"running": {"startedAt": "2026-11-23T09:00:00Z"}})
    starting = read_pod(running, None, kind=KIND_SERVER, answered=False)
    assert starting.state == PlatformState.PREPARING and starting.needs_probe
    assert starting.running_since == NOW
    assert read_pod(running, None, kind=KIND_SERVER, answered=True).state == PlatformState.AVAILABLE
    assert (
        read_pod(running, None, kind=KIND_NOTEBOOK, answered=False).state == PlatformState.RUNNING
    )


def test_finished_pods() -> None:
    done = read_pod(status("Succeeded"), None, kind=KIND_NOTEBOOK, answered=False)
    assert done.state == PlatformState.SUCCEEDED
    failed = read_pod(
        status(
            "Failed",
            state={"terminated": {"exitCode": 3, "reason": "Error", "message": "boom\n"}},
        ),
        None,
        kind=KIND_CONTAINER,
        answered=False,
    )
    assert failed.state == PlatformState.FAILED
    (message,) = failed.messages
    assert message.kind == "urn:execution-failed"
    assert message.message == "the container exited with code 3 (Error): boom"
    evicted = {
        "metadata": {},
        "status": {"phase": "Failed", "reason": "Evicted", "message": "low memory"},
    }
    (message,) = read_pod(evicted, None, kind=KIND_SERVER, answered=True).messages
    assert message.message == "the pod failed (Evicted): low memory"


def test_unknown_pod_phase_leaves_the_session_alone() -> None:
    """Phase Unknown: the node lost contact; UNKNOWN makes the reconciler change nothing."""
    lost = read_pod(status("Unknown"), None, kind=KIND_SERVER, answered=True)
    assert lost.state == PlatformState.UNKNOWN


def test_latest_event_per_pod() -> None:
    events = [
        {
            "involvedObject": {"kind": "Pod", "name": "a"},
            "lastTimestamp": "2026-01-01T00:00:02Z",
            "message": "new",
        },
        {
            "involvedObject": {"kind": "Pod", "name": "a"},
            "lastTimestamp": "2026-01-01T00:00:01Z",
            "message": "old",
        },
        {
            "involvedObject": {"kind": "Service", "name": "a"},
            "lastTimestamp": "2026-01-01T00:00:09Z",
            "message": "svc",
        },
    ]
    assert latest_events(events)["a"]["message"] == "new"


# -- the platform's pure parts ---------------------------------------------------------------------


def test_check_refuses_what_it_cannot_run() -> None:
    platform = KubernetesPlatform()
    privileged = {
        "executable": {"kind": CONTAINER, "image": {"locations": ["x"]}, "privileged": True}
    }
    no_image = {"executable": {"kind": CONTAINER}}
    storage = {
        **server_body(),
        "storage": [
            {
                "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/storage/simple-storage-resource.yaml",
                "size": {"min": 1},
            }
        ],
    }
    for body, kind in (
        (privileged, "urn:policy"),
        (no_image, "urn:not-supported"),
        (storage, "urn:not-supported"),
        ({}, "urn:not-supported"),
    ):
        problems = platform.check(ExecutionRequest.model_validate(body))
        assert [p.kind for p in problems] == [kind], (body, problems)
    assert platform.check(ExecutionRequest.model_validate(server_body())) == []
    assert set(platform.executable_kinds()) == {SERVER, NOTEBOOK, CONTAINER}
    # notebook batches run on the platforms of the session runner (local, Slurm) only
    batch = {"kind": "urn:jeb:v1:executable:notebook-batch", "location": "/a.ipynb"}
    problems = platform.check(ExecutionRequest.model_validate({"executable": batch}))
    assert [p.kind for p in problems] == ["urn:not-supported"]
    assert "notebook-batch" in str(problems[0])


# -- staged data ----------------------------------------------------------------------------------

STAGING = "/srv/eb-staging"
CUBE = StagedData(
    name="cube",
    mount="data/cube.fits",
    readonly=True,
    env="EB_DATA_CUBE",
    directory=False,
    files=(("", f"{STAGING}/objects/aa11/data"),),
)
TILES = StagedData(
    name="tiles",
    mount="data/tiles",
    readonly=True,
    env="EB_DATA_TILES",
    directory=True,
    files=(
        ("a/1.fits", f"{STAGING}/objects/bb22/data"),
        ("2.fits", f"{STAGING}/objects/cc33/data"),
    ),
)
DATA_KIND = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/simple-data-resource.yaml"
VOLUME_KIND = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/volume/simple-volume-mount.yaml"


def test_staged_data_is_mounted_from_the_staging_claim_by_subpath() -> None:
    """One volume (the claim, read-only), a read-only subPath mount per staged file (a
    directory resource: per file in it), and the environment as on the other platforms."""
    built = data_volumes((CUBE, TILES), claim="eb-staging", root=STAGING)
    assert built.volumes == [
        {
            "name": "eb-staging",
            "persistentVolumeClaim": {"claimName": "eb-staging", "readOnly": True},
        }
    ]
    assert built.mounts == [
        {"name": "eb-staging", "mountPath": "/data/cube.fits", "subPath": "objects/aa11/data",
         "readOnly": True},
        {"name": "eb-staging", "mountPath": "/data/tiles/a/1.fits",
         "subPath": "objects/bb22/data", "readOnly": True},
        {"name": "eb-staging", "mountPath": "/data/tiles/2.fits", "subPath": "objects/cc33/data",
         "readOnly": True},
    ]  # fmt: skip
    assert built.env == {
        "EB_MOUNT_ROOT": "/",
        "EB_DATA_CUBE": "/data/cube.fits",
        "EB_DATA_TILES": "/data/tiles",
    }
    assert data_volumes((), claim="", root="") == data_volumes((), claim="x", root=STAGING)


def test_staged_data_that_cannot_be_mounted_is_an_error() -> None:
    with pytest.raises(ValueError, match="staging_claim"):
        data_volumes((CUBE,), claim="", root=STAGING)
    with pytest.raises(ValueError, match="not in the staging area"):
        data_volumes((CUBE,), claim="eb-staging", root="/elsewhere")
    writable = StagedData("copy", "scratch/c", False, "EB_DATA_COPY", False, CUBE.files)
    with pytest.raises(ValueError, match="READWRITE"):
        data_volumes((writable,), claim="eb-staging", root=STAGING)


def test_notebook_pod_gets_its_staged_data_and_storage_without_the_data_size() -> None:
    """The session booked its data's GiB as storage too; its PVC holds only what the request
    asked for (none here: no PVC), and its data volume mount does not become the storage's."""
    body = {
        "executable": {"kind": NOTEBOOK, "location": "/home/jovyan/a.ipynb"},
        "compute": {
            "kind": COMPUTE,
            "cores": {"min": 1},
            "volumes": [{"kind": VOLUME_KIND, "resource": "cube", "path": "/data/cube.fits"}],
        },
        "data": [{"kind": DATA_KIND, "meta": {"name": "cube"}, "location": "http://x/c.fits"}],
    }
    settings = PodSettings(staging_claim="eb-staging", staging_root=STAGING)
    spec = spec_for(body, Resources(1, 1, storage_gib=1), data=(CUBE,), data_storage_gib=1)
    built = build_session(spec, settings, {}, token="t", now=NOW)
    assert built.pvc is None
    assert built.output == "/tmp/1234-abcd.ipynb"  # not on the read-only data mount
    (container,) = built.pod["spec"]["containers"]
    assert container["volumeMounts"] == [
        {"name": "eb-staging", "mountPath": "/data/cube.fits", "subPath": "objects/aa11/data",
         "readOnly": True}
    ]  # fmt: skip
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"EB_MOUNT_ROOT": "/", "EB_DATA_CUBE": "/data/cube.fits"}
    # with storage of its own: a PVC of the requested 3 GiB (not 4), at storage_mount_path
    spec = spec_for(body, Resources(1, 1, storage_gib=4), data=(CUBE,), data_storage_gib=1)
    built = build_session(spec, settings, {}, token="t", now=NOW)
    assert built.pvc is not None
    assert built.pvc["spec"]["resources"]["requests"] == {"storage": "3Gi"}
    names = [m["name"] for m in built.pod["spec"]["containers"][0]["volumeMounts"]]
    assert names == ["storage", "eb-staging"]
    assert built.pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == (
        "/home/jovyan/work"
    )


def test_check_says_which_setting_enables_data_and_refuses_readwrite() -> None:
    def body(mode: str) -> dict[str, Any]:
        return {
            **server_body(),
            "compute": {
                "kind": COMPUTE,
                "volumes": [
                    {"kind": VOLUME_KIND, "resource": "cube", "path": "/d/c", "mode": mode}
                ],
            },
            "data": [{"kind": DATA_KIND, "meta": {"name": "cube"}, "location": "http://x/c"}],
        }

    request = ExecutionRequest.model_validate(body("READONLY"))
    (problem,) = KubernetesPlatform().check(request)
    assert problem.kind == "urn:not-supported" and "KubernetesPlatform.staging_claim" in str(
        problem
    )
    assert KubernetesPlatform().staging_dir() is None
    half = KubernetesPlatform(staging_claim="eb-staging")
    (problem,) = half.check(request)
    assert "DataStaging.staging_dir is not set" in str(problem)
    from traitlets.config import Config

    config = Config({"DataStaging": {"staging_dir": STAGING}})
    platform = KubernetesPlatform(staging_claim="eb-staging", config=config)
    assert platform.staging_dir() == STAGING
    assert platform.check(request) == []
    (problem,) = platform.check(ExecutionRequest.model_validate(body("READWRITE")))
    assert problem.kind == "urn:not-supported" and "READWRITE" in str(problem)


def test_claim_problem_says_missing_pending_or_nothing() -> None:
    assert "there is no PersistentVolumeClaim 'st'" in claim_problem(None, "st", "ns")
    pending = {"status": {"phase": "Pending"}}
    assert claim_problem(pending, "st", "ns").endswith("is Pending, not bound to a volume")
    assert claim_problem({"status": {"phase": "Bound"}}, "st", "ns") == ""
