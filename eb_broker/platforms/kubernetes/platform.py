"""``KubernetesPlatform``: brokered Jupyter servers, notebook runs and containers as Pods.

See docs/platforms/kubernetes.md. The I/O is in :mod:`.client`, everything that can be
computed without a cluster in :mod:`.objects`; this class glues them to the broker.
"""

from __future__ import annotations

import asyncio
import importlib
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Float, Int, List, Unicode

from eb_sdk.model import (
    DockerContainer,
    ExecutionRequest,
    JupyterNotebook,
    JupyterServer,
    MessageItem,
    SimpleSessionConnector,
)
from eb_sdk.model import messages as msg
from eb_sdk.model.kinds import kind_label
from eb_sdk.model.sessions import ConnectorStatus

from ...clock import utcnow
from ...scheduling import Capacity, Resources
from ...staging.objects import StagingError, mount_for, resource_name
from .._availability import TracksAvailability
from .._probes import HttpProbe, jupyter_probe_url
from ..base import (
    JUPYTER_SERVER_CONNECTOR,
    Platform,
    PlatformState,
    PlatformStatus,
    PlatformUnavailable,
    SessionSpec,
)
from .client import JSON, SERVICE_ACCOUNT_DIR, KubeClient, KubeError, KubeUnavailable
from .objects import (
    ANNOTATION_OUTPUT,
    CONTAINER_NAME,
    KIND_NOTEBOOK,
    KIND_SERVER,
    LABEL_KIND,
    LABEL_SESSION,
    ClusterView,
    PodSettings,
    accelerator_kinds,
    build_service,
    build_session,
    claim_problem,
    cluster_view,
    extract_notebook,
    image_of,
    latest_events,
    managed_labels,
    minimum_demand,
    object_name,
    pod_env,
    pvc_name,
    read_pod,
    requested_profile,
    selectable_profiles,
    selector,
    server_url,
    session_kind,
)

#: Short names of ``server_url_template`` values.
URL_TEMPLATES = {
    "pod": "http://{pod_ip}:{port}/{prefix}",
    "service": "http://{service}.{namespace}.svc.cluster.local:{port}/{prefix}",
}


class KubernetesPlatform(TracksAvailability, Platform):
    """Runs sessions as Pods on a Kubernetes cluster (servers get a Service as well)."""

    name = "kubernetes"
    unavailable_log = "Kubernetes API unavailable: %s"
    available_log = "Kubernetes API reachable again"
    unavailable_error = KubeUnavailable

    refresh_interval = Float(
        10.0,
        config=True,
        help="Seconds between re-reads of the nodes, foreign pods and quotas (the API's health "
        "is checked with them, and by every poll).",
    )

    # -- connection --------------------------------------------------------------------------------

    kubeconfig = Unicode(
        "",
        config=True,
        help="Path of a kubeconfig file. Empty: in the cluster, the pod's service account; "
        "elsewhere $KUBECONFIG or ~/.kube/config.",
    )
    context = Unicode("", config=True, help="kubeconfig context to use (empty: the current one).")
    in_cluster = Bool(
        None,
        allow_none=True,
        config=True,
        help="True: use the pod's service account; False: use the kubeconfig; None (default): "
        "the service account when there is one, else the kubeconfig.",
    )
    service_account_dir = Unicode(
        SERVICE_ACCOUNT_DIR,
        config=True,
        help="In the cluster: the directory of the pod's service account 'token' and the "
        "cluster's 'ca.crt' (with KUBERNETES_SERVICE_HOST/PORT from the environment).",
    )
    namespace = Unicode(
        "default", config=True, help="Namespace the broker creates its pods, services and PVCs in."
    )
    instance = Unicode(
        "eb-broker",
        config=True,
        help="Name of this broker on the cluster (label eb-broker=<instance> on everything it "
        "creates). Pods of other instances count as foreign usage. Give each broker sharing "
        "a cluster its own name.",
    )
    api_timeout = Float(
        10.0, config=True, help="Seconds one API call may take before the API counts as down."
    )
    startup_wait = Float(
        30.0,
        config=True,
        help="Seconds to wait at start-up for the API server to answer (the broker needs the "
        "cluster's capacity before it can start).",
    )

    # -- where and what runs -----------------------------------------------------------------------

    node_selector = Dict(
        {},
        config=True,
        help="Labels of the nodes the broker may use, e.g. {'pool': 'jupyter'}. Only matching, "
        "Ready, schedulable nodes count for capacity; every pod gets this nodeSelector.",
    )
    tolerations: List[dict[str, Any]] = List(
        [],
        config=True,
        help="Tolerations (Kubernetes dicts, camelCase) added to every pod, e.g. "
        "[{'key': 'jupyter', 'operator': 'Exists', 'effect': 'NoSchedule'}].",
    )
    profiles = Dict(
        {},
        config=True,
        help="Pod settings by name, merged in order: 'default', the executable kind "
        "('jupyter-server', 'jupyter-notebook', 'docker-container'), the accelerator type "
        "('gpu') and pool ('gpu:A100') a session booked, and last the profile the request "
        "names with 'jeb:profile' (any other name: requests may choose it; /capabilities "
        "lists them under 'jeb:profiles' with their 'description'). Keys: description, "
        "node_selector, tolerations, image, image_pull_secrets, image_pull_policy, labels, "
        "annotations, server_command, kernel_name, storage_class, priority_class_name, uid, "
        "gid, fs_gid, extra_pod_config, extra_container_config. E.g. {'highmem': "
        "{'description': 'nodes with 1 TB', 'node_selector': {'pool': 'highmem'}, "
        "'tolerations': [{'key': 'highmem', 'operator': 'Exists'}]}}.",
    )
    image = Unicode(
        "quay.io/jupyter/base-notebook:latest",
        config=True,
        help="Image of Jupyter server and notebook pods (it needs jupyter-server and, for "
        "notebooks, papermill). Docker container requests bring their own image.",
    )
    image_pull_policy = Unicode(
        "IfNotPresent", config=True, help="imagePullPolicy of every pod (Always, IfNotPresent)."
    )
    image_pull_secrets = List(
        Unicode(), [], config=True, help="Names of image pull secrets in the namespace."
    )
    server_command = List(
        Unicode(),
        ["jupyter", "server"],
        config=True,
        help="Command of a Jupyter server pod when the request names none "
        "(['jupyterhub-singleuser'] is the other usual value). The broker adds --ServerApp.ip, "
        "--ServerApp.port, --ServerApp.port_retries=0 and --no-browser.",
    )
    server_port = Int(8888, config=True, help="Port the Jupyter server listens on in its pod.")
    server_url_template = Unicode(
        "http://{pod_ip}:{port}/{prefix}",
        config=True,
        help="URL of a server as users (and the broker, which checks that it answers) reach "
        "it. Fields: {pod_ip}, {port}, {service} (= {name}), {namespace}, {uuid}, {prefix} "
        "(JUPYTERHUB_SERVICE_PREFIX without slashes). The default, the pod's IP, works "
        "wherever the pod network is routed, without cluster DNS. 'service' is short for "
        "the session's Service by its cluster DNS name, "
        f"'{URL_TEMPLATES['service']}' (a broker and users inside the cluster); a site "
        "with an ingress gives its URL, e.g. 'https://jupyter.example.org/eb/{uuid}/'.",
    )
    server_start_timeout = Float(
        300.0,
        config=True,
        help="Seconds a running server pod may take to answer HTTP before the session FAILs.",
    )
    kernel_name = Unicode(
        "python3",
        config=True,
        help="Kernel of notebook runs unless the request names one (empty: the notebook's own).",
    )
    notebook_output_dir = Unicode(
        "/tmp",
        config=True,
        help="Directory in the pod papermill writes the executed notebook to "
        "(<dir>/<uuid>.ipynb); the storage mount instead when the session booked storage. "
        "The pod prints the executed notebook to its log at the end, and the broker copies "
        "it out to output_dir before the pod is deleted.",
    )
    output_dir = Unicode(
        "",
        config=True,
        help="Where the broker keeps what it copies out of finished notebook pods: "
        "<dir>/<uuid>/output.ipynb (the executed notebook) and pod.log (the container's log). "
        "Empty: the broker's work_dir (--EBBroker.work_dir).",
    )
    log_copy_limit_mib = Int(
        64,
        config=True,
        help="Most MiB of a finished notebook pod's log the broker reads (the executed "
        "notebook is in it, compressed). Kubelets keep 10 MiB per container by default "
        "(containerLogMaxSize): larger outputs are cut there, and the session says so.",
    )
    allow_privileged = Bool(
        False, config=True, help="Run Docker container requests that ask for privileged mode."
    )
    stop_grace = Int(
        30, config=True, help="terminationGracePeriodSeconds: how long a pod may take to stop."
    )
    extra_labels = Dict({}, config=True, help="Labels added to every object the broker creates.")
    uid = Int(None, allow_none=True, config=True, help="runAsUser of the pods (None: image's).")
    gid = Int(None, allow_none=True, config=True, help="runAsGroup of the pods.")
    fs_gid = Int(None, allow_none=True, config=True, help="fsGroup of the pods (for PVCs).")

    # -- capacity ----------------------------------------------------------------------------------

    accelerators = Dict(
        {
            "nvidia.com/gpu": {"type": "gpu", "model_label": "nvidia.com/gpu.product"},
            "amd.com/gpu": {"type": "gpu", "model_label": "amd.com/gpu.product-name"},
        },
        config=True,
        help="Extended resources counted as accelerators: {resource: {type, model_label}}. "
        "A node with 4 nvidia.com/gpu and the label nvidia.com/gpu.product=A100 adds 4 to the "
        "pool 'gpu:A100' (to 'gpu' without the label); sessions booked on a pool get the "
        "resource as request and limit and a nodeSelector on the model label.",
    )
    storage_gib = Int(
        0,
        config=True,
        help="Storage (GiB) the broker may book as PVCs in total (also bounded by a "
        "requests.storage quota). 0: storage requests are refused.",
    )
    storage_class = Unicode(
        "", config=True, help="storageClassName of session PVCs (empty: the cluster default)."
    )
    storage_mount_path = Unicode(
        "/home/jovyan/work",
        config=True,
        help="Where a session's PVC is mounted (a volume mount path in the request wins).",
    )
    staging_claim = Unicode(
        "",
        config=True,
        help="Name of a PersistentVolumeClaim in the namespace (ReadOnlyMany or ReadWriteMany) "
        "on the storage the broker stages data into: NFS, CephFS or the like, also mounted on "
        "the broker's host at DataStaging.staging_dir (set that too). Session pods mount the "
        "staged files from it read-only at their mount paths. Empty (default): requests with "
        "data resources get NO.",
    )
    foreign_pod_hours = Float(
        336.0,
        config=True,
        help="How long pods the broker did not create are assumed to keep their resources "
        "(hours; pods with activeDeadlineSeconds until that deadline).",
    )
    startup_seconds = Float(
        10.0, config=True, help="Preparation planned before each start when the image is cached."
    )
    image_pull_seconds = Float(
        120.0,
        config=True,
        help="Extra preparation planned when no node reports the image as present.",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client: KubeClient | None = None
        self._probe = HttpProbe()
        self._view: ClusterView | None = None

    # -- helpers -----------------------------------------------------------------------------------

    def _new_client(self) -> KubeClient:
        return KubeClient(
            kubeconfig=self.kubeconfig,
            context=self.context,
            in_cluster=self.in_cluster,
            timeout=self.api_timeout,
            service_account_dir=self.service_account_dir,
        )

    @property
    def client(self) -> KubeClient:
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _settings(self) -> PodSettings:
        return PodSettings(
            namespace=self.namespace,
            instance=self.instance,
            image=self.image,
            image_pull_policy=self.image_pull_policy,
            image_pull_secrets=tuple(self.image_pull_secrets),
            node_selector=dict(self.node_selector),
            tolerations=tuple(self.tolerations),
            profiles=dict(self.profiles),
            server_command=tuple(self.server_command),
            server_port=self.server_port,
            kernel_name=self.kernel_name,
            output_dir=self.notebook_output_dir,
            storage_class=self.storage_class,
            storage_mount_path=self.storage_mount_path,
            stop_grace=self.stop_grace,
            extra_labels=dict(self.extra_labels),
            uid=self.uid,
            gid=self.gid,
            fs_gid=self.fs_gid,
            staging_claim=self.staging_claim,
            staging_root=self.staging_dir() or "",
        )

    async def _read_cluster(self, client: KubeClient) -> ClusterView:
        nodes = await client.list_nodes()
        pods = await client.list_pods(None, fields="status.phase!=Succeeded,status.phase!=Failed")
        quotas = await client.list_quotas(self.namespace)
        claim_note = ""
        if self.staging_claim:
            claim = await client.read_claim(self.namespace, self.staging_claim)
            claim_note = claim_problem(claim, self.staging_claim, self.namespace)
        view = cluster_view(
            nodes,
            pods,
            quotas,
            namespace=self.namespace,
            instance=self.instance,
            node_selector=dict(self.node_selector),
            accelerators=accelerator_kinds(self.accelerators),
            storage_gib=self.storage_gib,
            now=utcnow(),
            foreign_hold=timedelta(hours=self.foreign_pod_hours),
            tolerations=[
                *self.tolerations,
                *(t for p in self.profiles.values() for t in p.get("tolerations", [])),
            ],
        )
        return replace(view, staging_claim_problem=claim_note)

    def _initial_view(self) -> ClusterView:
        """Read the cluster once, synchronously (the broker asks for capacity at start-up,
        before its event loop runs): in a thread with an event loop and a client of its own."""

        async def read() -> ClusterView:
            client = self._new_client()
            deadline = asyncio.get_running_loop().time() + self.startup_wait
            try:
                while True:
                    try:
                        return await self._read_cluster(client)
                    except KubeUnavailable:
                        if asyncio.get_running_loop().time() >= deadline:
                            raise
                        await asyncio.sleep(1.0)
            finally:
                await client.close()

        with ThreadPoolExecutor(2, thread_name_prefix="eb-k8s-start") as pool:
            # kubespawner (and JupyterHub with it) takes seconds to import: do it now, not in
            # the event loop at the first launch.
            pool.submit(importlib.import_module, "kubespawner.objects")
            try:
                return pool.submit(asyncio.run, read()).result()
            except (KubeUnavailable, KubeError) as exc:
                raise RuntimeError(
                    f"the Kubernetes platform cannot read the cluster's capacity: {exc}"
                ) from exc

    # -- Platform ----------------------------------------------------------------------------------

    def executable_kinds(self) -> list[str]:
        return [JupyterServer.KIND, JupyterNotebook.KIND, DockerContainer.KIND]

    def capacity(self) -> Capacity:
        if self._view is None:
            self._view = self._initial_view()
        return Capacity(self._view.capacity)

    def external_usage(self) -> list[tuple[str, datetime, datetime, Resources]]:
        if self._view is None:
            return []
        return [(f"pod:{p.key}", p.start, p.end, p.resources) for p in self._view.foreign]

    async def refresh(self) -> None:
        try:
            view = await self._read_cluster(self.client)
        except KubeUnavailable as exc:
            self._mark_unavailable(str(exc))
            return
        except KubeError as exc:
            self._mark_unavailable(f"the Kubernetes API refused to list the cluster: {exc}")
            return
        self._view = view
        self._mark_available()

    def check(self, request: ExecutionRequest) -> list[MessageItem]:
        problems: list[MessageItem] = []
        executable = request.executable

        def no(message: str, **values: Any) -> None:
            problems.append(msg.error(msg.NOT_SUPPORTED, message, **values))

        if not self._available:
            problems.append(
                msg.error(
                    msg.PLATFORM_UNAVAILABLE,
                    f"the Kubernetes cluster cannot be reached now: {self._reason}",
                )
            )
        if executable is None:
            no("the request has no executable: say what to run (a notebook, a server, a container)")
        elif executable.kind not in self.executable_kinds():
            no(
                f"the Kubernetes platform cannot run executables of kind {executable.kind} "
                f"({kind_label(executable.kind)}); it runs Jupyter servers, Jupyter notebooks "
                "and Docker containers",
                executable=executable.kind,
            )
        elif isinstance(executable, JupyterNotebook) and not executable.location:
            no("the notebook has no location: say where the notebook is")
        elif isinstance(executable, DockerContainer):
            if not image_of(request, ""):
                no("the container has no image: give image.locations")
            if executable.privileged and not self.allow_privileged:
                problems.append(
                    msg.error(msg.POLICY, "privileged containers are not allowed on this broker")
                )
        if request.data:
            for problem in self._data_problems(request):
                no(problem, data_kinds=", ".join(sorted({d.kind for d in request.data})))
        if request.storage and self.storage_gib <= 0:
            no("this broker offers no storage (KubernetesPlatform.storage_gib is 0)")
        if self._view is not None and self._view.pods_left == 0:
            problems.append(
                msg.error(
                    msg.RESOURCE_LIMIT,
                    f"the namespace {self.namespace} admits {self._view.pods_quota} pods "
                    f"(ResourceQuota) and has {self._view.pods_in_namespace}: no session can "
                    "be offered until one of them ends",
                    limit=self._view.pods_quota,
                )
            )
        selector = dict(self.node_selector)
        named = requested_profile(request)
        if named:
            choices = self._selectable()
            if named not in choices:
                no(
                    f"no profile {named!r} on this broker"
                    + (f"; choose one of {', '.join(choices)}" if choices else ""),
                    profile=named,
                )
                return problems
            selector.update(self.profiles[named].get("node_selector") or {})
        problems += self._node_fit(request, selector, named)
        return problems

    def _data_problems(self, request: ExecutionRequest) -> list[str]:
        """Why this broker cannot give ``request`` its data (no staging claim, READWRITE)."""
        if not self.staging_claim:
            return [
                "this broker's Kubernetes platform does not stage data: that needs "
                "KubernetesPlatform.staging_claim, a ReadOnlyMany PersistentVolumeClaim on "
                "the storage the broker stages into (see docs/platforms/kubernetes.md)"
            ]
        if not self.staging_dir():
            return [
                f"KubernetesPlatform.staging_claim is {self.staging_claim!r} but "
                "DataStaging.staging_dir is not set: the broker does not know where it sees "
                "the claim's storage"
            ]
        if self._view is not None and self._view.staging_claim_problem:
            return [
                f"{self._view.staging_claim_problem}: session pods could not mount the staged "
                "data (KubernetesPlatform.staging_claim; re-read every refresh_interval)"
            ]
        out = []
        for index, resource in enumerate(request.data or []):
            try:
                mount = mount_for(request, resource, index)
            except StagingError:
                continue  # the staging plan says why
            if not mount.readonly:
                out.append(
                    f"data {resource_name(resource, index)}: READWRITE data mounts are not "
                    "supported on Kubernetes (the data is mounted read-only from the staging "
                    "claim): mount it READONLY and copy it in the session"
                )
        return out

    def staging_dir(self) -> str | None:
        """``DataStaging.staging_dir`` when a staging claim is set: the claim's storage as the
        broker sees it (None otherwise: requests with data get NO)."""
        return self.configured_staging_dir() if self.staging_claim else None

    def _selectable(self) -> dict[str, str]:
        types = [k.type for k in accelerator_kinds(self.accelerators)]
        return selectable_profiles(self.profiles, types)

    def capabilities(self) -> dict[str, Any]:
        """The profiles requests may name (``jeb:profile``), with their descriptions."""
        choices = self._selectable()
        return {"extensions": ["jeb:profile"], "jeb:profiles": choices} if choices else {}

    def _node_fit(
        self, request: ExecutionRequest, selector: dict[str, str], profile: str
    ) -> list[MessageItem]:
        """A pod runs on one node: a minimum larger than every node (of the profile's) can
        never be scheduled; a profile whose nodeSelector no counted node has neither."""
        if self._view is None or not self._view.nodes:
            return []
        wanted = minimum_demand(request)
        largest = self._view.largest_matching(selector)
        if largest is None:
            return [
                msg.error(
                    msg.NO_CAPACITY,
                    f"no node of this cluster has the labels of profile {profile!r} "
                    f"({', '.join(f'{k}={v}' for k, v in sorted(selector.items()))})",
                    profile=profile,
                )
            ]
        out = []
        for label, need, have in (
            ("cores", wanted.cores, largest.cores),
            ("GiB of memory", wanted.memory_gib, largest.memory_gib),
        ):
            if need > have:
                out.append(
                    msg.error(
                        msg.RESOURCE_LIMIT,
                        f"the minimum of {need} {label} does not fit on any one node "
                        f"(the largest has {have})",
                        requested=need,
                        limit=have,
                    )
                )
        for pool, need in dict(wanted.accelerators).items():
            have = max(
                (n for name, n in dict(largest.accelerators).items() if _pool_matches(pool, name)),
                default=0,
            )
            if have and need > have:
                out.append(
                    msg.error(
                        msg.RESOURCE_LIMIT,
                        f"the minimum of {need} {pool} accelerators does not fit on any one "
                        f"node (the largest has {have})",
                        requested=need,
                        limit=have,
                    )
                )
        return out

    def preparation(self, request: ExecutionRequest) -> timedelta:
        seconds = self.startup_seconds
        image = image_of(request, self.image)
        images = self._view.images if self._view else frozenset()
        if image not in images and f"docker.io/{image}" not in images:
            seconds += self.image_pull_seconds
        return timedelta(seconds=seconds)

    async def launch(self, spec: SessionSpec) -> dict[str, Any]:
        """Create the session's PVC, Pod and Service, or adopt them when they exist.

        While the API server is down nothing can be created: :class:`KubeUnavailable` (a
        ``PlatformUnavailable``) makes the reconciler keep the session PREPARING and call
        ``launch`` again on a later pass.
        """
        client = self.client
        ns = self.namespace
        labels = {**managed_labels(self.instance), LABEL_SESSION: spec.uuid}
        with self._calling_api():
            found = await client.list_pods(ns, labels=selector(labels))
            alive = [p for p in found if not p["metadata"].get("deletionTimestamp")]
            if alive:
                pod = alive[0]
                self.log.info("adopting pod %s/%s of %s", ns, pod["metadata"]["name"], spec.uuid)
            elif found:
                # An earlier pod of this session is being deleted: its name is taken until it
                # is gone. Not a failure: the reconciler calls launch again on a later pass.
                raise PlatformUnavailable(
                    f"the earlier pod {found[0]['metadata']['name']} of this session is still "
                    "terminating"
                )
            else:
                pod = await self._create(spec)
                if self._view is not None:  # counted against a pods quota until the refresh
                    self._view = replace(
                        self._view, pods_in_namespace=self._view.pods_in_namespace + 1
                    )
            kind = (pod["metadata"].get("labels") or {}).get(LABEL_KIND, session_kind(spec.request))
            service = ""
            if kind == KIND_SERVER:
                service = pod["metadata"]["name"]
                await self._create_ignoring_conflict(
                    "service", build_service(pod, self.server_port)
                )
        hub = bool(pod_env(pod, "JUPYTERHUB_API_TOKEN"))
        return {
            **spec.handle,
            "namespace": ns,
            "pod": pod["metadata"]["name"],
            "service": service,
            "pvc": pvc_name(spec.uuid) if spec.resources.storage_gib > 0 else "",
            "kind": kind,
            "port": self.server_port,
            "token": "" if hub else pod_env(pod, "JUPYTER_TOKEN"),
            "hub": hub,
            "output": (pod["metadata"].get("annotations") or {}).get(ANNOTATION_OUTPUT, ""),
        }

    async def _create(self, spec: SessionSpec) -> JSON:
        view = self._view
        built = build_session(
            spec,
            self._settings(),
            view.pools if view else {},
            token=secrets.token_hex(24),
            now=utcnow(),
        )
        if built.pvc is not None:
            await self._create_ignoring_conflict("persistent_volume_claim", built.pvc)
        try:
            return await self.client.create("pod", self.namespace, built.pod)
        except KubeError as exc:
            if exc.status != 409:
                raise
            found = await self.client.list_pods(
                self.namespace, fields=f"metadata.name={built.pod['metadata']['name']}"
            )
            if not found:
                raise
            return found[0]

    async def _create_ignoring_conflict(self, kind: str, body: JSON) -> None:
        try:
            await self.client.create(kind, self.namespace, body)
        except KubeError as exc:
            if exc.status != 409:
                raise

    async def poll(self, specs: list[SessionSpec]) -> dict[str, PlatformStatus]:
        """One list call (label selector) for every session; one event list when a pod waits.

        While the API server is down every session is UNKNOWN: the reconciler leaves its
        phase as it is, and the sessions pick up where they are when the API is back.
        """
        client = self.client
        try:
            pods = await client.list_pods(
                self.namespace, labels=selector(managed_labels(self.instance))
            )
        except KubeUnavailable as exc:
            self._mark_unavailable(str(exc))
            return {s.uuid: PlatformStatus(PlatformState.UNKNOWN) for s in specs}
        except KubeError as exc:
            self.log.error("listing the broker's pods failed: %s", exc)
            return {s.uuid: PlatformStatus(PlatformState.UNKNOWN) for s in specs}
        self._mark_available()
        by_uuid = {(p["metadata"].get("labels") or {}).get(LABEL_SESSION, ""): p for p in pods}
        wanted = {s.uuid: s for s in specs if s.handle.get("pod")}
        events: dict[str, Any] = {}
        if any(
            (by_uuid.get(u) or {}).get("status", {}).get("phase", "Pending") == "Pending"
            for u in wanted
            if u in by_uuid
        ):
            try:
                events = latest_events(
                    await client.list_events(self.namespace, fields="involvedObject.kind=Pod")
                )
            except (KubeUnavailable, KubeError) as exc:
                self.log.warning("listing pod events failed: %s", exc)

        out: dict[str, PlatformStatus] = {}
        probes: dict[str, str] = {}
        readings = {}
        for uuid, spec in wanted.items():
            pod = by_uuid.get(uuid)
            if pod is None:
                out[uuid] = PlatformStatus(
                    PlatformState.GONE,
                    [msg.error(msg.PLATFORM, f"the pod {spec.handle.get('pod')} no longer exists")],
                )
                continue
            kind = str(spec.handle.get("kind") or session_kind(spec.request))
            reading = read_pod(
                pod,
                events.get(pod["metadata"]["name"]),
                kind=kind,
                answered=bool(spec.handle.get("answered")),
            )
            readings[uuid] = (pod, reading)
            if reading.needs_probe:
                probes[uuid] = self._probe_url(spec, self._server_url(spec, pod))
        answers = await self._probe.answers_all(probes)
        copies = await self._copy_all(
            {
                uuid: pod
                for uuid, (pod, reading) in readings.items()
                if _finished_run(wanted[uuid], reading.state)
            },
            wanted,
        )

        now = utcnow()
        for uuid, (pod, reading) in readings.items():
            spec = wanted[uuid]
            state, messages = reading.state, list(reading.messages)
            handle = None
            connectors: list[SimpleSessionConnector] = []
            if reading.needs_probe:
                if answers.get(uuid):
                    state, messages = PlatformState.AVAILABLE, []
                    handle = {**spec.handle, "answered": True}
                elif reading.running_since is not None and now - reading.running_since > timedelta(
                    seconds=self.server_start_timeout
                ):
                    state = PlatformState.FAILED
                    messages = [
                        msg.error(
                            msg.EXECUTION_FAILED,
                            f"the Jupyter server did not answer within "
                            f"{self.server_start_timeout:g} s",
                        )
                    ]
            if state == PlatformState.AVAILABLE:
                connectors.append(
                    SimpleSessionConnector(
                        kind=JUPYTER_SERVER_CONNECTOR,
                        protocol="HTTP",
                        location=self._connector_url(spec, self._server_url(spec, pod)),
                        status=ConnectorStatus.AVAILABLE,
                    )
                )
            outputs = {"pod": f"{self.namespace}/{pod['metadata']['name']}"}
            if spec.handle.get("output"):
                outputs["notebook"] = str(spec.handle["output"])
            copied = dict(spec.handle.get("copied") or {})
            if uuid in copies:
                copy = copies[uuid]
                if copy is None:  # the API went away while copying: try on the next pass
                    out[uuid] = PlatformStatus(PlatformState.UNKNOWN)
                    continue
                copied, note = copy
                handle = {**spec.handle, "copied": copied}
                if note is not None:
                    messages.append(note)
            outputs.update(copied)
            out[uuid] = PlatformStatus(
                state, messages, connectors=connectors, handle=handle, outputs=outputs
            )
        return out

    # -- what a finished notebook run leaves --------------------------------------------------

    def _copy_dir(self, spec: SessionSpec) -> Path:
        base = self.output_dir or spec.work_dir or "eb-work"
        return Path(base).expanduser().absolute() / spec.uuid

    async def _copy_all(
        self, pods: dict[str, JSON], specs: dict[str, SessionSpec]
    ) -> dict[str, tuple[dict[str, str], MessageItem | None] | None]:
        """Copy the executed notebook and the log out of finished notebook pods (before they
        are released); None for a session whose copy must wait for the API."""
        uuids = list(pods)
        results = await asyncio.gather(
            *(self._copy_out(specs[u], pods[u]) for u in uuids), return_exceptions=True
        )
        out: dict[str, tuple[dict[str, str], MessageItem | None] | None] = {}
        for uuid, result in zip(uuids, results, strict=True):
            if isinstance(result, KubeUnavailable):
                self._mark_unavailable(str(result))
                out[uuid] = None
            elif isinstance(result, BaseException):
                self.log.error("copying the outputs of %s failed: %s", uuid, result)
                note = msg.warn(
                    msg.PLATFORM,
                    f"the executed notebook could not be copied out of the pod: {result}",
                )
                out[uuid] = ({}, note)
            else:
                out[uuid] = result
        return out

    async def _copy_out(
        self, spec: SessionSpec, pod: JSON
    ) -> tuple[dict[str, str], MessageItem | None]:
        """Read the pod's log; write the notebook and the log to ``<output_dir>/<uuid>/``."""
        limit = self.log_copy_limit_mib * 1024 * 1024
        log = await self.client.read_log(
            self.namespace, pod["metadata"]["name"], container=CONTAINER_NAME, limit_bytes=limit
        )
        notebook, rest = extract_notebook(log)
        target = self._copy_dir(spec)
        copied = {"log": str(target / POD_LOG_FILE)}
        await asyncio.to_thread(_write_outputs, target, rest, notebook)
        if notebook is None:
            why = "its log holds no complete copy"
            if len(log.encode()) >= limit:
                why += f" (the log is longer than {self.log_copy_limit_mib} MiB)"
            return copied, msg.warn(
                msg.PLATFORM,
                f"the executed notebook could not be copied out of the pod: {why}; it was "
                f"written to {spec.handle.get('output') or 'the pod'} (kept only on storage)",
            )
        copied["notebook"] = str(target / OUTPUT_FILE)
        return copied, None

    def _server_url(self, spec: SessionSpec, pod: JSON) -> str:
        return server_url(
            URL_TEMPLATES.get(self.server_url_template, self.server_url_template),
            pod,
            port=int(spec.handle.get("port") or self.server_port),
            namespace=self.namespace,
            uuid=spec.uuid,
        )

    @staticmethod
    def _connector_url(spec: SessionSpec, url: str) -> str:
        token = spec.handle.get("token")
        return f"{url}?token={token}" if token else url

    @staticmethod
    def _probe_url(spec: SessionSpec, url: str) -> str:
        return jupyter_probe_url(url, spec.handle.get("token"))

    async def stop(self, spec: SessionSpec) -> None:
        """Delete the pod (its containers get SIGTERM and ``stop_grace`` seconds).

        Raises :class:`KubeUnavailable` while the API is down: the session stays RELEASING and
        is stopped when the API is back (``stop`` and ``release`` are idempotent).
        """
        name = spec.handle.get("pod") or object_name(spec.uuid)
        await self._deleting([("pod", name)])

    async def release(self, spec: SessionSpec) -> None:
        """Delete the Service, the Pod and the PVC of a session (each only if it exists)."""
        name = spec.handle.get("pod") or object_name(spec.uuid)
        await self._deleting(
            [
                ("service", spec.handle.get("service") or name),
                ("pod", name),
                ("persistent_volume_claim", spec.handle.get("pvc") or pvc_name(spec.uuid)),
            ]
        )

    async def _deleting(self, objects: list[tuple[str, str]]) -> None:
        """Delete objects (pods with ``stop_grace``); an unreachable API marks the platform
        unavailable, as in launch and poll, and raises for the reconciler to retry."""
        with self._calling_api():
            for kind, name in objects:
                grace = self.stop_grace if kind == "pod" else None
                await self.client.delete(kind, self.namespace, name, grace=grace)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        await self._probe.aclose()


OUTPUT_FILE = "output.ipynb"
POD_LOG_FILE = "pod.log"


def _finished_run(spec: SessionSpec, state: PlatformState) -> bool:
    """A notebook run that ended and whose outputs were not copied out yet."""
    return (
        state in (PlatformState.SUCCEEDED, PlatformState.FAILED)
        and str(spec.handle.get("kind") or session_kind(spec.request)) == KIND_NOTEBOOK
        and "copied" not in spec.handle
    )


def _write_outputs(target: Path, log: str, notebook: bytes | None) -> None:
    target.mkdir(parents=True, exist_ok=True)
    (target / POD_LOG_FILE).write_text(log, encoding="utf-8")
    if notebook is not None:
        (target / OUTPUT_FILE).write_bytes(notebook)


def _pool_matches(wanted: str, pool: str) -> bool:
    """``gpu`` matches every gpu pool, ``gpu:A100`` only itself (case-insensitively)."""
    wanted, pool = wanted.lower(), pool.lower()
    return pool == wanted if ":" in wanted else pool.split(":", 1)[0] == wanted
