"""Pure builders and parsers of the Kubernetes platform: no I/O, no API client.

Everything here works on plain JSON-shaped dicts as the API server sends and accepts them
(camelCase keys), so it can be tested without a cluster:

* quantities (``"1500m"``, ``"4Gi"``) → numbers;
* nodes, foreign pods and ResourceQuotas → :class:`ClusterView` (the capacity the broker
  offers, the largest node, the usage of pods we did not create);
* a :class:`~eb_broker.platforms.base.SessionSpec` → the Pod (built with kubespawner's
  ``make_pod``, so our pods look like the ones JupyterHub sites already run), its Service
  (kubespawner's ``make_service``) and its PersistentVolumeClaim (``make_pvc``);
* staged data → the staging claim as a volume and a read-only ``subPath`` mount per file;
* a Pod (+ its events) → :class:`PodReading`, the session's platform state and messages.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath
from typing import Any

from eb_sdk.model import (
    DockerContainer,
    ExecutionRequest,
    JupyterNotebook,
    JupyterServer,
    MessageItem,
    SimpleComputeResource,
)
from eb_sdk.model import messages as msg

from ...scheduling import Resources
from ...staging.mounts import placements, staged_env
from ...staging.objects import resource_ids
from .._api_objects import (
    KIND_CONTAINER,
    KIND_NOTEBOOK,
    KIND_SERVER,
    jupyter_or_container_kind,
    parse_api_time,
)
from ..base import PlatformState, SessionSpec, StagedData

# -- labels ---------------------------------------------------------------------------------------

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "eb-broker"
#: The broker instance that owns a pod (two brokers on one cluster see each other's pods as
#: foreign usage).
LABEL_INSTANCE = "eb-broker"
LABEL_SESSION = "eb-session"
LABEL_OWNER = "eb-owner"
LABEL_KIND = "eb-kind"
#: kubespawner's label for notebook servers (network policies of JupyterHub sites select it).
LABEL_COMPONENT = "component"

ANNOTATION_OWNER = "eb-broker/owner"
ANNOTATION_START = "eb-broker/start"
ANNOTATION_END = "eb-broker/end"
ANNOTATION_OUTPUT = "eb-broker/output"  # where a notebook run writes the executed notebook

CONTAINER_NAME = "notebook"  # kubespawner's name for the main container


def selector(labels: Mapping[str, str]) -> str:
    """A label selector string (``a=b,c=d``)."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def managed_labels(instance: str) -> dict[str, str]:
    """The labels every object of one broker instance carries (poll's one selector)."""
    return {MANAGED_BY: MANAGED_BY_VALUE, LABEL_INSTANCE: instance}


def object_name(uuid: str) -> str:
    """Pod and Service name of a session (a DNS-1035 label: starts with a letter, ≤ 63)."""
    return f"eb-{uuid.lower()}"


def pvc_name(uuid: str) -> str:
    return f"eb-{uuid.lower()}-storage"


_LABEL_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def label_value(text: str) -> str:
    """``text`` as a valid label value (≤ 63 characters, alphanumeric at both ends)."""
    value = _LABEL_BAD.sub("-", text)[:63]
    return value.strip("-_.") or "unknown"


# -- quantities -----------------------------------------------------------------------------------

_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
GIB = Decimal(2) ** 30


def parse_quantity(value: str | int | float | None) -> Decimal:
    """A Kubernetes quantity (``"500m"``, ``"2Gi"``, ``"1e3"``, ``4``) as a Decimal."""
    if value is None:
        return Decimal(0)
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        raise ValueError(f"not a Kubernetes quantity: {value!r}") from None
    return number * _SUFFIXES[match.group(2)]


def _floor(value: Decimal) -> int:
    return math.floor(value)


# -- accelerator pools ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceleratorKind:
    """An extended resource counted as an accelerator (``nvidia.com/gpu`` → ``gpu``)."""

    resource: str
    type: str = "gpu"
    model_label: str = ""


@dataclass(frozen=True)
class Pool:
    """One accelerator pool: a resource on nodes with one model label value."""

    name: str  # gpu, gpu:A100-SXM4-40GB
    resource: str  # nvidia.com/gpu
    model_label: str = ""
    model: str = ""

    def node_selector(self) -> dict[str, str]:
        return {self.model_label: self.model} if self.model_label and self.model else {}


def accelerator_kinds(config: Mapping[str, Mapping[str, str] | str]) -> list[AcceleratorKind]:
    """``KubernetesPlatform.accelerators`` as :class:`AcceleratorKind` values."""
    out = []
    for resource, spec in config.items():
        if isinstance(spec, str):
            out.append(AcceleratorKind(resource, spec.lower()))
        else:
            out.append(
                AcceleratorKind(
                    resource, str(spec.get("type", "gpu")).lower(), str(spec.get("model_label", ""))
                )
            )
    return out


def node_pools(node: Mapping[str, Any], kinds: Iterable[AcceleratorKind]) -> dict[Pool, int]:
    """The accelerator pools one node contributes to, with its allocatable count."""
    allocatable = node.get("status", {}).get("allocatable", {}) or {}
    labels = node.get("metadata", {}).get("labels", {}) or {}
    out: dict[Pool, int] = {}
    for kind in kinds:
        count = _floor(parse_quantity(allocatable.get(kind.resource)))
        if count <= 0:
            continue
        model = labels.get(kind.model_label, "") if kind.model_label else ""
        name = f"{kind.type}:{model}" if model else kind.type
        out[Pool(name, kind.resource, kind.model_label, model)] = count
    return out


# -- nodes, pods, quotas → capacity -------------------------------------------------------------


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Does one toleration tolerate one taint (Kubernetes' matching rules)?"""
    if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return not toleration.get("key") or toleration.get("key") == taint.get("key")
    return toleration.get("key") == taint.get("key") and toleration.get("value", "") == (
        taint.get("value", "")
    )


def node_ready(node: Mapping[str, Any], tolerations: Iterable[Mapping[str, Any]] = ()) -> bool:
    """Ready, schedulable, and every NoSchedule/NoExecute taint tolerated by ``tolerations``
    (the broker's own, and those of its profiles: a GPU node tainted for GPU pods counts)."""
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return False
    tolerations = list(tolerations)
    for taint in spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not any(
            tolerates(t, taint) for t in tolerations
        ):
            return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def labels_match(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def pod_amounts(pod: Mapping[str, Any], which: str = "requests") -> dict[str, Decimal]:
    """Effective ``requests`` (or ``limits``) of a pod, as the scheduler counts them:
    max(sum over containers, each init container) + overhead."""
    spec = pod.get("spec", {}) or {}
    total: dict[str, Decimal] = {}
    for container in spec.get("containers", []) or []:
        for name, value in ((container.get("resources") or {}).get(which) or {}).items():
            total[name] = total.get(name, Decimal(0)) + parse_quantity(value)
    for container in spec.get("initContainers", []) or []:
        for name, value in ((container.get("resources") or {}).get(which) or {}).items():
            total[name] = max(total.get(name, Decimal(0)), parse_quantity(value))
    for name, value in (spec.get("overhead") or {}).items():
        total[name] = total.get(name, Decimal(0)) + parse_quantity(value)
    return total


def _resources(amounts: Mapping[str, Decimal], pools: Mapping[str, Pool]) -> Resources:
    """Resource amounts (``cpu``, ``memory``, extended) as a scheduler vector, rounded up so
    that foreign usage is never under-counted."""
    accel: dict[str, int] = {}
    for pool in pools.values():
        if pool.resource in amounts:
            accel[pool.name] = math.ceil(amounts[pool.resource])
    return Resources(
        cores=math.ceil(amounts.get("cpu", Decimal(0))),
        memory_gib=math.ceil(amounts.get("memory", Decimal(0)) / GIB),
        accelerators=accel,
    )


def _pod_pools(pod: Mapping[str, Any], nodes: Mapping[str, dict[Pool, int]]) -> dict[str, Pool]:
    """The pools a pod's extended resources come from (its node's, else by resource)."""
    node = nodes.get(pod.get("spec", {}).get("nodeName") or "", {})
    by_resource: dict[str, Pool] = {}
    for pool in node:
        by_resource.setdefault(pool.resource, pool)
    if not node:  # not bound (yet): charge the first pool of the resource
        for pools in nodes.values():
            for pool in pools:
                by_resource.setdefault(pool.resource, pool)
    return {pool.resource: pool for pool in by_resource.values()}


@dataclass(frozen=True)
class ForeignPod:
    """A pod the broker did not create that uses capacity it offers."""

    key: str  # namespace/name
    resources: Resources
    start: datetime
    end: datetime


@dataclass(frozen=True)
class ClusterView:
    """What the platform knows about the cluster after a refresh."""

    capacity: Resources
    largest_node: Resources
    pools: dict[str, Pool]
    foreign: tuple[ForeignPod, ...]
    nodes: tuple[str, ...]
    images: frozenset[str] = frozenset()
    quota_notes: tuple[str, ...] = ()
    #: Every counted node: (name, labels, allocatable), for checks against a profile's nodes.
    node_sizes: tuple[tuple[str, Mapping[str, str], Resources], ...] = ()
    #: The namespace's ``pods`` (or ``count/pods``) quota, and how many pods it counts now.
    pods_quota: int | None = None
    pods_in_namespace: int = 0
    #: Why session pods could not mount the staging claim (it is missing, or not bound to a
    #: volume); empty when they can, or when no staging claim is configured.
    staging_claim_problem: str = ""

    @property
    def pods_left(self) -> int | None:
        """How many more pods the namespace's quota admits now (None: no such quota)."""
        if self.pods_quota is None:
            return None
        return max(self.pods_quota - self.pods_in_namespace, 0)

    def largest_matching(self, node_selector: Mapping[str, str]) -> Resources | None:
        """The largest counted node with these labels (None: no node has them)."""
        sizes = [r for _, labels, r in self.node_sizes if labels_match(labels, node_selector)]
        if not sizes:
            return None
        return Resources(
            cores=max(r.cores for r in sizes),
            memory_gib=max(r.memory_gib for r in sizes),
            accelerators={
                n: max(r.get(n) for r in sizes) for n in {k for r in sizes for k in r.accelerators}
            },
        )


def _quota_limits(quotas: Iterable[Mapping[str, Any]]) -> dict[str, Decimal]:
    """The tightest ``hard`` value of every quota key in the namespace."""
    out: dict[str, Decimal] = {}
    for quota in quotas:
        hard = (quota.get("status") or {}).get("hard") or (quota.get("spec") or {}).get("hard")
        for key, value in (hard or {}).items():
            amount = parse_quantity(value)
            out[key] = min(out.get(key, amount), amount)
    return out


def _add(into: dict[str, Decimal], amounts: Mapping[str, Decimal]) -> None:
    for name, value in amounts.items():
        into[name] = into.get(name, Decimal(0)) + value


def claim_problem(claim: Mapping[str, Any] | None, name: str, namespace: str) -> str:
    """Why pods could not mount the PersistentVolumeClaim ``claim`` (as read from the API;
    None: there is none), or "" when it is bound to a volume."""
    if claim is None:
        return f"there is no PersistentVolumeClaim {name!r} in the namespace {namespace}"
    phase = str((claim.get("status") or {}).get("phase") or "Pending")
    if phase == "Bound":
        return ""
    return (
        f"the PersistentVolumeClaim {name!r} in the namespace {namespace} is {phase}, not "
        "bound to a volume"
    )


def cluster_view(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    quotas: Iterable[Mapping[str, Any]],
    *,
    namespace: str,
    instance: str,
    node_selector: Mapping[str, str],
    accelerators: Iterable[AcceleratorKind],
    storage_gib: int,
    now: datetime,
    foreign_hold: timedelta,
    tolerations: Iterable[Mapping[str, Any]] = (),
) -> ClusterView:
    """Capacity, largest node and foreign usage from a snapshot of the cluster.

    * Nodes count when they are Ready, schedulable, match ``node_selector`` and have no
      NoSchedule/NoExecute taint that ``tolerations`` do not tolerate: their ``allocatable``
      cpu, memory and accelerator resources are summed.
    * Foreign pods (not created by this broker ``instance``, not Succeeded/Failed) are usage
      the broker did not book: those bound to a counted node, and every one in ``namespace``
      (they count against its ResourceQuotas). They are assumed to run for ``foreign_hold``,
      or until their ``activeDeadlineSeconds`` end.
    * ResourceQuotas of ``namespace`` bound what our pods may request. With E the foreign
      usage on the timeline, N the part of it on counted nodes and Q the part in the
      namespace, the capacity is ``min(nodes + (E - N), quota + (E - Q))`` per dimension:
      exactly "our bookings + N ≤ nodes and our bookings + Q ≤ quota".
    """
    kinds = list(accelerators)
    tolerations = list(tolerations)
    counted: dict[str, dict[Pool, int]] = {}
    totals: dict[str, Decimal] = {}
    largest = Resources()
    images: set[str] = set()
    sizes: list[tuple[str, Mapping[str, str], Resources]] = []
    for node in nodes:
        meta = node.get("metadata", {}) or {}
        if not node_ready(node, tolerations) or not labels_match(
            meta.get("labels") or {}, node_selector
        ):
            continue
        name = str(meta.get("name", ""))
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        pools = node_pools(node, kinds)
        counted[name] = pools
        for key in ("cpu", "memory"):
            totals[key] = totals.get(key, Decimal(0)) + parse_quantity(allocatable.get(key))
        this = Resources(
            cores=_floor(parse_quantity(allocatable.get("cpu"))),
            memory_gib=_floor(parse_quantity(allocatable.get("memory")) / GIB),
            accelerators={p.name: n for p, n in pools.items()},
        )
        sizes.append((name, dict(meta.get("labels") or {}), this))
        largest = Resources(
            cores=max(largest.cores, this.cores),
            memory_gib=max(largest.memory_gib, this.memory_gib),
            accelerators={
                n: max(largest.get(n), this.get(n))
                for n in {*largest.accelerators, *this.accelerators}
            },
        )
        for image in (node.get("status") or {}).get("images") or []:
            images.update(image.get("names") or [])
    pools_by_name: dict[str, Pool] = {}
    pool_totals: dict[str, int] = {}
    for pools in counted.values():
        for pool, count in pools.items():
            pools_by_name[pool.name] = pool
            pool_totals[pool.name] = pool_totals.get(pool.name, 0) + count

    foreign: list[ForeignPod] = []
    e_minus_n = Resources()  # foreign usage not on counted nodes (namespace pods elsewhere)
    e_minus_q = Resources()  # foreign usage outside the namespace
    q_requests: dict[str, Decimal] = {}
    q_limits: dict[str, Decimal] = {}
    pods_in_namespace = 0  # ours too: what a "pods" quota counts
    for pod in pods:
        meta = pod.get("metadata", {}) or {}
        labels = meta.get("labels") or {}
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        if meta.get("namespace") == namespace:
            pods_in_namespace += 1
        if labels.get(MANAGED_BY) == MANAGED_BY_VALUE and labels.get(LABEL_INSTANCE) == instance:
            continue
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        on_node = node_name in counted
        in_namespace = meta.get("namespace") == namespace
        if not (on_node or in_namespace):
            continue
        requests = pod_amounts(pod, "requests")
        res = _resources(requests, _pod_pools(pod, counted))
        if in_namespace:
            _add(q_requests, requests)
            _add(q_limits, pod_amounts(pod, "limits"))
        else:
            e_minus_q = e_minus_q + res
        if not on_node:
            e_minus_n = e_minus_n + res
        start = now
        end = now + foreign_hold
        deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
        started = parse_api_time(status.get("startTime"))
        if deadline and started:
            end = min(end, started + timedelta(seconds=int(deadline)))
        if res.dimensions() and end > start:
            key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
            foreign.append(ForeignPod(key, res, start, end))

    # nodes + (E - N)
    cores = _floor(totals.get("cpu", Decimal(0))) + e_minus_n.cores
    memory = _floor(totals.get("memory", Decimal(0)) / GIB) + e_minus_n.memory_gib
    accel = {name: count + e_minus_n.get(name) for name, count in pool_totals.items()}
    storage = storage_gib
    notes: list[str] = []

    # ResourceQuotas: the tightest hard value of each key in the namespace.
    hard = _quota_limits(quotas)
    q_res = _resources(q_requests, pools_by_name)
    q_lim = _resources(q_limits, pools_by_name)

    def bound(current: int, keys: Iterable[str], divisor: Decimal, offset: int) -> int:
        for key in keys:
            if key in hard:
                room = _floor(hard[key] / divisor) + offset
                if room < current:
                    notes.append(f"ResourceQuota {key}={hard[key]}")
                current = min(current, room)
        return current

    # requests: quota + (E - Q). limits: our pods' limits equal their requests, the foreign
    # pods in the namespace use Q_lim of the limit quota: quota_lim - Q_lim + E.
    e, qr, ql = e_minus_q, q_res, q_lim
    cores = bound(cores, ("requests.cpu", "cpu"), Decimal(1), e.cores)
    cores = bound(cores, ("limits.cpu",), Decimal(1), e.cores + qr.cores - ql.cores)
    memory = bound(memory, ("requests.memory", "memory"), GIB, e.memory_gib)
    memory = bound(memory, ("limits.memory",), GIB, e.memory_gib + qr.memory_gib - ql.memory_gib)
    for name, pool in pools_by_name.items():
        accel[name] = bound(accel[name], (f"requests.{pool.resource}",), Decimal(1), e.get(name))
    if "requests.storage" in hard:
        storage = min(storage, _floor(hard["requests.storage"] / GIB))
    pod_limits = [_floor(hard[k]) for k in ("pods", "count/pods") if k in hard]

    return ClusterView(
        capacity=Resources(
            cores=max(cores, 0),
            memory_gib=max(memory, 0),
            accelerators={k: max(v, 0) for k, v in accel.items()},
            storage_gib=max(storage, 0),
        ),
        largest_node=largest,
        pools=pools_by_name,
        foreign=tuple(foreign),
        nodes=tuple(sorted(counted)),
        images=frozenset(images),
        quota_notes=tuple(notes),
        node_sizes=tuple(sizes),
        pods_quota=min(pod_limits) if pod_limits else None,
        pods_in_namespace=pods_in_namespace,
    )


# -- what a session asks for ----------------------------------------------------------------------


def minimum_demand(request: ExecutionRequest) -> Resources:
    """The minimum cores, memory and accelerators a request names explicitly (0 elsewhere)."""
    compute = request.compute
    if not isinstance(compute, SimpleComputeResource):
        return Resources()
    cores = compute.cores.min if compute.cores and compute.cores.min else 0
    memory = compute.memory.min if compute.memory and compute.memory.min else 0
    accel: dict[str, int] = {}
    for item in compute.accelerators or []:
        accel[item.pool_name] = accel.get(item.pool_name, 0) + (item.count.min or 1)
    return Resources(cores=int(cores), memory_gib=int(memory), accelerators=accel)


def image_of(request: ExecutionRequest, default: str) -> str:
    """The container image a session runs."""
    executable = request.executable
    if isinstance(executable, DockerContainer):
        locations = executable.image.locations if executable.image else None
        if locations:
            return locations[0].removeprefix("docker://")
        return ""
    return default


# -- profiles ----------------------------------------------------------------------------------


#: The kinds this platform runs are exactly the Jupyter and container ones.
session_kind = jupyter_or_container_kind


#: The request's extension naming a profile: ``{"jeb:profile": "highmem", ...}``.
REQUEST_PROFILE = "jeb:profile"
#: Profile names the broker applies by itself (``default``, executable kinds); accelerator
#: types and pools (``gpu``, ``gpu:A100``) are too.
AUTOMATIC_PROFILES = frozenset({"default", KIND_SERVER, KIND_NOTEBOOK, KIND_CONTAINER})


def requested_profile(request: ExecutionRequest) -> str:
    """The profile a request names with ``jeb:profile`` ('' when none)."""
    value = (request.model_extra or {}).get(REQUEST_PROFILE)
    return str(value).strip() if value else ""


def selectable_profiles(
    profiles: Mapping[str, Mapping[str, Any]], accelerator_types: Iterable[str]
) -> dict[str, str]:
    """The profiles a request may name, with their descriptions: every configured one the
    broker does not apply by itself (see :data:`AUTOMATIC_PROFILES`)."""
    automatic = AUTOMATIC_PROFILES | {t.lower() for t in accelerator_types}
    return {
        name: str(profile.get("description") or "")
        for name, profile in sorted(profiles.items())
        if name.lower() not in automatic and ":" not in name
    }


def merged_profile(
    profiles: Mapping[str, Mapping[str, Any]], kind: str, pools: Iterable[str], named: str = ""
) -> dict[str, Any]:
    """The profile settings of a session: ``default``, then its executable kind
    (``jupyter-server`` ...), then each accelerator type (``gpu``) and pool (``gpu:A100``),
    then the profile the request names (``jeb:profile``).

    ``node_selector`` and ``labels``/``annotations`` merge, ``tolerations`` and
    ``image_pull_secrets`` add up, other keys are replaced by later profiles.
    """
    names = ["default", kind]
    for pool in sorted(pools):
        names += [pool.split(":", 1)[0], pool]
    if named:
        names.append(named)
    out: dict[str, Any] = {}
    for name in dict.fromkeys(names):
        profile = profiles.get(name)
        if not profile:
            continue
        for key, value in profile.items():
            if key in ("node_selector", "labels", "annotations", "extra_pod_config") and (
                isinstance(value, Mapping)
            ):
                out[key] = {**out.get(key, {}), **value}
            elif key in ("tolerations", "image_pull_secrets") and isinstance(value, list):
                out[key] = [*out.get(key, []), *value]
            else:
                out[key] = value
    return out


# -- building objects ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PodSettings:
    """The configuration the builders need (filled from the platform's traitlets)."""

    namespace: str = "default"
    instance: str = "eb-broker"
    image: str = "quay.io/jupyter/base-notebook:latest"
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    server_command: tuple[str, ...] = ("jupyter", "server")
    server_port: int = 8888
    kernel_name: str = "python3"
    output_dir: str = "/tmp"
    storage_class: str = ""
    storage_mount_path: str = "/home/jovyan/work"
    stop_grace: int = 30
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    uid: int | None = None
    gid: int | None = None
    fs_gid: int | None = None
    #: The PersistentVolumeClaim of the staging area, and where the broker sees its root.
    staging_claim: str = ""
    staging_root: str = ""


def _serialize(obj: Any) -> Any:
    """A kubernetes_asyncio model (as kubespawner builds them) as its JSON dict."""
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if isinstance(obj, list | tuple):
        return [_serialize(x) for x in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {k: _serialize(v) for k, v in obj.items() if v is not None}
    types = getattr(obj, "openapi_types", None)
    attribute_map = getattr(obj, "attribute_map", None)
    if types is None or attribute_map is None:
        raise TypeError(f"cannot serialize {type(obj).__name__}")
    return {
        attribute_map[attr]: _serialize(getattr(obj, attr))
        for attr in types
        if getattr(obj, attr) is not None
    }


def session_labels(spec: SessionSpec, settings: PodSettings, kind: str) -> dict[str, str]:
    labels = {
        **settings.extra_labels,
        **managed_labels(settings.instance),
        "app.kubernetes.io/name": "jupyter-execution-broker",
        LABEL_SESSION: spec.uuid,
        LABEL_OWNER: label_value(spec.owner),
        LABEL_KIND: kind,
    }
    if kind == KIND_SERVER:
        labels[LABEL_COMPONENT] = "singleuser-server"
    return labels


def resource_amounts(resources: Resources, pools: Mapping[str, Pool]) -> dict[str, str]:
    """Booked resources as pod requests (= limits): cpu, memory and extended resources."""
    out = {"cpu": str(max(resources.cores, 0))}
    if resources.memory_gib > 0:
        out["memory"] = f"{resources.memory_gib}Gi"
    if resources.cores <= 0:
        del out["cpu"]
    for name, count in dict(resources.accelerators).items():
        pool = pools.get(name)
        if pool is not None and count > 0:
            out[pool.resource] = str(count)
    return out


def server_args(command: list[str], port: int, root_dir: str | None) -> list[str]:
    """The server's command line: listen on every pod address at ``port``, no browser."""
    args = [*command, "--ServerApp.ip=0.0.0.0", f"--ServerApp.port={port}"]
    args += ["--ServerApp.port_retries=0", "--no-browser"]
    if root_dir:
        args.append(f"--ServerApp.root_dir={root_dir}")
    return args


# -- staged data ----------------------------------------------------------------------------------

#: The name of the staging claim's volume in session pods.
STAGING_VOLUME = "eb-staging"


@dataclass(frozen=True)
class DataVolumes:
    """What a pod needs to see its staged data: the staging claim as one volume, a read-only
    mount per staged file, and the environment naming the paths."""

    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def data_volumes(data: tuple[StagedData, ...], *, claim: str, root: str) -> DataVolumes:
    """The staging claim ``claim`` (the storage the broker stages into, seen by the broker at
    ``root``) mounted once per staged file: at ``/<mount path>`` (a directory resource: at
    each of its files), ``subPath`` = the cached file relative to ``root``, read-only, so no
    session can change the shared cache. ``EB_MOUNT_ROOT`` is ``/`` and ``EB_DATA_<NAME>``
    the path, as on the other platforms. Raises ValueError for what cannot be mounted."""
    if not data:
        return DataVolumes()
    if not claim or not root:
        raise ValueError(
            "the session has staged data, but KubernetesPlatform.staging_claim or "
            "DataStaging.staging_dir is not set"
        )
    base = PurePosixPath(root)
    mounts = []
    for item in data:
        if not item.readonly:
            raise ValueError(
                f"data {item.name}: READWRITE data mounts are not supported on Kubernetes"
            )
        for target, source in placements(item):
            try:
                sub = PurePosixPath(source).relative_to(base)
            except ValueError:
                raise ValueError(
                    f"data {item.name}: the staged file {source} is not in the staging area {root}"
                ) from None
            mounts.append(
                {
                    "name": STAGING_VOLUME,
                    "mountPath": f"/{target}",
                    "subPath": str(sub),
                    "readOnly": True,
                }
            )
    volume = {
        "name": STAGING_VOLUME,
        "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
    }
    return DataVolumes([volume], mounts, staged_env(data, "/"))


# -- the executed notebook, out of the pod through its log ----------------------------------

NOTEBOOK_BEGIN = "==== eb-broker: executed notebook (gzip, base64) begin ===="
NOTEBOOK_END = "==== eb-broker: executed notebook end ===="

#: The command of a notebook pod: ``python3 -c NOTEBOOK_WRAPPER <output> papermill ...``.
#: It runs papermill with its output passed through, then prints the executed notebook
#: (gzip + base64, between the markers) to the container's log, which is the one thing the
#: broker can read after the pod ended on any cluster; on failure it repeats papermill's last
#: lines, so that the termination message (FallbackToLogsOnError) is the error, not base64.
NOTEBOOK_WRAPPER = f"""\
import base64, gzip, subprocess, sys
out, cmd, tail = sys.argv[1], sys.argv[2:], []
run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
for line in run.stdout:
    sys.stdout.buffer.write(line)
    sys.stdout.flush()
    tail = (tail + [line])[-40:]
code = run.wait()
try:
    data = base64.b64encode(gzip.compress(open(out, "rb").read())).decode()
except OSError:
    data = None
if data is not None:
    print({NOTEBOOK_BEGIN!r})
    for i in range(0, len(data), 4000):
        print(data[i : i + 4000])
    print({NOTEBOOK_END!r}, flush=True)
if code:
    sys.stdout.buffer.write(b"".join(tail))
    sys.stdout.flush()
sys.exit(code)
"""


def extract_notebook(log: str) -> tuple[bytes | None, str]:
    """``(executed notebook, the log without it)`` from a notebook pod's log; the notebook is
    None when the log holds no complete copy (the run never wrote one, or the log was cut)."""
    begin = log.find(NOTEBOOK_BEGIN)
    if begin < 0:
        return None, log
    end = log.find(NOTEBOOK_END, begin)
    if end < 0:
        return None, log[:begin]
    data = "".join(log[begin + len(NOTEBOOK_BEGIN) : end].split())
    rest = log[:begin] + log[end + len(NOTEBOOK_END) :].lstrip("\n")
    try:
        return gzip.decompress(base64.b64decode(data, validate=True)), rest
    except (ValueError, OSError, EOFError):
        return None, rest


@dataclass(frozen=True)
class BuiltSession:
    """The objects of one session, ready to create."""

    pod: dict[str, Any]
    service: dict[str, Any] | None
    pvc: dict[str, Any] | None
    kind: str
    token: str
    hub: bool
    output: str = ""


def build_session(
    spec: SessionSpec,
    settings: PodSettings,
    pools: Mapping[str, Pool],
    *,
    token: str,
    now: datetime,
) -> BuiltSession:
    """The Pod (and PVC) for ``spec``; the Service is built once the pod has a uid."""
    from kubespawner.objects import make_pod, make_pvc  # type: ignore[import-untyped]

    request = spec.request
    executable = request.executable
    kind = session_kind(request)
    if not kind:
        raise ValueError(f"cannot run executables of kind {getattr(executable, 'kind', None)}")
    name = object_name(spec.uuid)
    booked_pools = [p for p, n in dict(spec.resources.accelerators).items() if n > 0]
    profile = merged_profile(settings.profiles, kind, booked_pools, requested_profile(spec.request))
    labels = {**session_labels(spec, settings, kind), **profile.get("labels", {})}
    annotations = {
        ANNOTATION_OWNER: spec.owner,
        ANNOTATION_START: spec.start.isoformat(),
        ANNOTATION_END: spec.end.isoformat(),
        **profile.get("annotations", {}),
    }
    node_selector = {**settings.node_selector, **profile.get("node_selector", {})}
    for pool_name in booked_pools:
        if pool_name in pools:
            node_selector.update(pools[pool_name].node_selector())
    tolerations = [*settings.tolerations, *profile.get("tolerations", [])]
    pull_secrets = [*settings.image_pull_secrets, *profile.get("image_pull_secrets", [])]
    amounts = resource_amounts(spec.resources, pools)
    image = image_of(request, str(profile.get("image") or settings.image))

    data = data_volumes(spec.data, claim=settings.staging_claim, root=settings.staging_root)
    pvc = None
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    # the data's storage is booked too, but the data is read from the staging claim
    storage_gib = spec.resources.storage_gib - spec.data_storage_gib
    if storage_gib > 0:
        storage_class = profile.get("storage_class", settings.storage_class) or None
        pvc = _serialize(
            make_pvc(
                name=pvc_name(spec.uuid),
                storage_class=storage_class,
                access_modes=["ReadWriteOnce"],
                selector=None,
                storage=f"{storage_gib}Gi",
                labels=session_labels(spec, settings, kind),
                annotations={ANNOTATION_OWNER: spec.owner},
            )
        )
        mount_path = _storage_mount_path(request, settings.storage_mount_path)
        claim = {"claimName": pvc_name(spec.uuid)}
        volumes.append({"name": "storage", "persistentVolumeClaim": claim})
        mounts.append({"name": "storage", "mountPath": mount_path})

    env: dict[str, str] = {}
    command: list[str] | None = None
    hub = False
    output = ""
    if isinstance(executable, JupyterServer):
        env.update({str(k): str(v) for k, v in (executable.environment or {}).items()})
        hub = "JUPYTERHUB_API_TOKEN" in env
        if not hub:
            env["JUPYTER_TOKEN"] = token
        args = server_args(
            list(executable.command or profile.get("server_command") or settings.server_command),
            settings.server_port,
            executable.root_dir,
        )
    elif isinstance(executable, JupyterNotebook):
        output_dir = mounts[0]["mountPath"] if mounts else settings.output_dir
        output = f"{output_dir.rstrip('/')}/{spec.uuid}.ipynb"
        papermill = ["papermill", str(executable.location), output, "--log-output"]
        papermill.append("--no-progress-bar")
        kernel = executable.kernel or str(profile.get("kernel_name", settings.kernel_name))
        if kernel:
            papermill += ["--kernel", kernel]
        if executable.parameters:
            papermill += ["--parameters_yaml", json.dumps(executable.parameters)]
        command = ["python3", "-c", NOTEBOOK_WRAPPER, output]
        args = papermill
    else:
        assert isinstance(executable, DockerContainer)
        env.update({str(k): str(v) for k, v in (executable.environment or {}).items()})
        args = list(executable.command or [])
        if executable.entrypoint:
            command = [executable.entrypoint]

    env.update(data.env)

    seconds_left = max(int((spec.end - now).total_seconds()), 1)
    extra_pod_config: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": settings.stop_grace,
        **profile.get("extra_pod_config", {}),
    }
    if kind != KIND_SERVER:
        # A safety net should the broker be away at the end of the slot.
        extra_pod_config.setdefault("activeDeadlineSeconds", seconds_left + settings.stop_grace)
    extra_container_config: dict[str, Any] = {
        "terminationMessagePolicy": "FallbackToLogsOnError",
        **profile.get("extra_container_config", {}),
    }
    if command:
        extra_container_config["command"] = command
    pod = make_pod(
        name=name,
        cmd=args,
        port=settings.server_port,
        image=image,
        image_pull_policy=profile.get("image_pull_policy", settings.image_pull_policy),
        image_pull_secrets=pull_secrets or None,
        node_selector=node_selector or None,
        uid=profile.get("uid", settings.uid),
        gid=profile.get("gid", settings.gid),
        fs_gid=profile.get("fs_gid", settings.fs_gid),
        privileged=bool(isinstance(executable, DockerContainer) and executable.privileged),
        env=env,
        volumes=[*volumes, *data.volumes],
        volume_mounts=[*mounts, *data.mounts],
        labels=labels,
        annotations=annotations,
        cpu_limit=_cpu(amounts),
        cpu_guarantee=_cpu(amounts),
        mem_limit=amounts.get("memory"),
        mem_guarantee=amounts.get("memory"),
        extra_resource_limits=_extended(amounts),
        extra_resource_guarantees=_extended(amounts),
        extra_container_config=extra_container_config,
        extra_pod_config=extra_pod_config,
        tolerations=tolerations or None,
        priority_class_name=profile.get("priority_class_name"),
    )
    body = _serialize(pod)
    body["metadata"]["namespace"] = settings.namespace
    if output:
        body["metadata"]["annotations"][ANNOTATION_OUTPUT] = output
    return BuiltSession(body, None, pvc, kind, token if not hub else "", hub, output)


def _cpu(amounts: Mapping[str, str]) -> float | None:
    return float(amounts["cpu"]) if "cpu" in amounts else None


def _extended(amounts: Mapping[str, str]) -> dict[str, str] | None:
    extra = {k: v for k, v in amounts.items() if k not in ("cpu", "memory")}
    return extra or None


def _storage_mount_path(request: ExecutionRequest, default: str) -> str:
    """The first volume mount path that is not a data resource's (those are staged data)."""
    data = {i for n, d in enumerate(request.data or []) for i in resource_ids(d, n)}
    for volume in getattr(request.compute, "volumes", None) or []:
        path = getattr(volume, "path", None)
        if path and getattr(volume, "resource", None) not in data:
            return str(path)
    return default


def build_service(pod: Mapping[str, Any], port: int) -> dict[str, Any]:
    """The ClusterIP Service of a server pod, owned by the pod (garbage-collected with it)."""
    from kubespawner.objects import make_owner_reference, make_service

    meta = pod["metadata"]
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != LABEL_COMPONENT}
    service = make_service(
        name=meta["name"],
        port=port,
        selector={LABEL_SESSION: labels[LABEL_SESSION]},
        owner_references=[make_owner_reference(meta["name"], meta["uid"])],
        labels=labels,
        annotations={ANNOTATION_OWNER: (meta.get("annotations") or {}).get(ANNOTATION_OWNER, "")},
    )
    body: dict[str, Any] = _serialize(service)
    body["apiVersion"] = "v1"
    body["metadata"]["namespace"] = meta.get("namespace", "default")
    return body


def pod_env(pod: Mapping[str, Any], name: str) -> str:
    """A literal environment value of the main container ('' when absent)."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") != CONTAINER_NAME:
            continue
        for item in container.get("env") or []:
            if item.get("name") == name and isinstance(item.get("value"), str):
                return str(item["value"])
    return ""


def server_url(
    template: str, pod: Mapping[str, Any], *, port: int, namespace: str, uuid: str
) -> str:
    """The URL of a server pod from ``server_url_template`` (always ends with ``/``)."""
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "")
    prefix = pod_env(pod, "JUPYTERHUB_SERVICE_PREFIX") or "/"
    url = template.format(
        pod_ip=status.get("podIP", ""),
        port=port,
        service=name,
        name=name,
        namespace=namespace,
        uuid=uuid,
        prefix=prefix.strip("/"),
    )
    return url if url.endswith("/") else url + "/"


# -- reading pods ----------------------------------------------------------------------------------


@dataclass
class PodReading:
    """What one pod says about its session."""

    state: PlatformState
    messages: list[MessageItem] = field(default_factory=list)
    running_since: datetime | None = None
    #: A server pod that runs but has not answered yet (the platform probes it).
    needs_probe: bool = False


_WAITING_FATAL = {"InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}


def latest_events(events: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The newest event per pod name (events of other objects are ignored)."""
    out: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for event in events:
        involved = event.get("involvedObject") or {}
        if involved.get("kind") != "Pod":
            continue
        stamp = str(
            event.get("lastTimestamp")
            or event.get("eventTime")
            or event.get("firstTimestamp")
            or (event.get("metadata") or {}).get("creationTimestamp")
            or ""
        )
        name = str(involved.get("name", ""))
        if name not in out or stamp >= out[name][0]:
            out[name] = (stamp, event)
    return {name: event for name, (_, event) in out.items()}


def _main_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for item in statuses:
        if item.get("name") == CONTAINER_NAME:
            return dict(item)
    return dict(statuses[0]) if statuses else {}


def read_pod(
    pod: Mapping[str, Any],
    event: Mapping[str, Any] | None,
    *,
    kind: str,
    answered: bool,
) -> PodReading:
    """The session state a pod shows (and why), for :meth:`KubernetesPlatform.poll`.

    Pending → PREPARING (the latest event says why: scheduling, pulling the image);
    Running → RUNNING, or for servers AVAILABLE once the server has answered (PREPARING until
    then); Succeeded → SUCCEEDED; Failed → FAILED with the container's reason.
    """
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    main = _main_status(pod)
    state = main.get("state") or {}
    messages: list[MessageItem] = []
    if phase == "Pending":
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in _WAITING_FATAL:
            text = f"the container cannot start: {reason}: {waiting.get('message', '')}".strip()
            return PodReading(
                PlatformState.FAILED, [msg.error(msg.EXECUTION_FAILED, text, reason=reason)]
            )
        if reason and reason != "ContainerCreating":
            text = f"{reason}: {waiting.get('message', '')}".rstrip(": ")
            messages.append(msg.warn(msg.PLATFORM, text, reason=reason))
        if event is not None and event.get("message"):
            level = msg.warn if event.get("type") == "Warning" else msg.info
            messages.append(
                level(msg.PLATFORM, str(event["message"]), reason=event.get("reason", ""))
            )
        return PodReading(PlatformState.PREPARING, messages)
    if phase == "Running":
        running = state.get("running") or {}
        since = parse_api_time(running.get("startedAt")) or parse_api_time(status.get("startTime"))
        if kind == KIND_SERVER:
            if answered:
                return PodReading(PlatformState.AVAILABLE, running_since=since)
            return PodReading(
                PlatformState.PREPARING,
                [msg.info(msg.PLATFORM, "the Jupyter server is starting")],
                running_since=since,
                needs_probe=True,
            )
        return PodReading(PlatformState.RUNNING, running_since=since)
    if phase == "Succeeded":
        return PodReading(PlatformState.SUCCEEDED)
    if phase == "Failed":
        return PodReading(PlatformState.FAILED, [failure_message(pod)])
    # "Unknown": the node lost contact with the API server; nobody knows, so the session is
    # left as it is (the reconciler changes nothing on UNKNOWN) until the node reports again.
    return PodReading(PlatformState.UNKNOWN, [msg.warn(msg.PLATFORM, f"pod phase {phase}")])


def failure_message(pod: Mapping[str, Any]) -> MessageItem:
    """Why a pod failed: the container's exit code, reason and termination message."""
    status = pod.get("status") or {}
    terminated = (_main_status(pod).get("state") or {}).get("terminated") or {}
    if terminated:
        code = terminated.get("exitCode")
        reason = terminated.get("reason") or "Error"
        detail = (terminated.get("message") or "").strip()
        if len(detail) > 2000:
            detail = "…" + detail[-2000:]
        text = f"the container exited with code {code} ({reason})"
        if detail:
            text += f": {detail}"
        return msg.error(msg.EXECUTION_FAILED, text, exit_code=code, reason=reason)
    reason = status.get("reason") or "Failed"
    text = f"the pod failed ({reason})"
    if status.get("message"):
        text += f": {status['message']}"
    return msg.error(msg.EXECUTION_FAILED, text, reason=reason)
