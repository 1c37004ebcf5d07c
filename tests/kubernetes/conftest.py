"""Fixtures of the Kubernetes tests: one real control plane per test session, and per test a
namespace, nodes of its own and an ``eb-broker --platform=kubernetes`` confined to them."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BrokerFactory
from tests.fixtures.kubernetes import NODE_PREFIX, K8sCluster, start_cluster
from tests.fixtures.services import BrokerProcess

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("k8s"))
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass
class Site:
    """One test's corner of the cluster: a namespace and nodes labelled ``eb-test=<ns>``."""

    cluster: K8sCluster
    namespace: str
    dir: Path
    nodes: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def add_node(self, suffix: str, **kwargs: Any) -> str:
        name = f"{NODE_PREFIX}{self.namespace}-{suffix}"
        labels = {"eb-test": self.namespace, **kwargs.pop("labels", {})}
        self.cluster.add_node(name, labels=labels, **kwargs)
        self.nodes.append(name)
        return name

    def persistent_volume(self, path: Path, size: str, mode: str = "ReadWriteOnce") -> str:
        """A PersistentVolume on the host directory ``path`` (deleted after the test) for the
        real PV controller to bind a claim to; returns its name."""
        name = f"pv-{self.namespace}-{len(self.volumes)}"
        self.cluster.create(
            "/api/v1/persistentvolumes",
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": [mode],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": str(path)},
                },
            },
        )
        self.volumes.append(name)
        return name

    def config(self, **options: Any) -> Path:
        """A broker config file: this namespace, these nodes, fast refreshes."""
        settings: dict[str, Any] = {
            "kubeconfig": str(self.cluster.kubeconfig),
            "namespace": self.namespace,
            "node_selector": {"eb-test": self.namespace},
            "refresh_interval": 1.0,
            "api_timeout": 3.0,
            "startup_seconds": 1.0,
            "image_pull_seconds": 3.0,
            "stop_grace": 5,
            **options,
        }
        path = self.dir / "k8s_config.py"
        path.write_text("".join(f"c.KubernetesPlatform.{k} = {v!r}\n" for k, v in settings.items()))
        return path

    def pods(self, selector: str = "app.kubernetes.io/managed-by=eb-broker") -> list[Any]:
        return self.cluster.pods(self.namespace, selector)


@pytest.fixture
def site(k8s_cluster: K8sCluster, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Site]:
    name = f"t{next(_counter)}-{request.node.name.removeprefix('test_')[:20]}".lower()
    name = "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")
    k8s_cluster.namespace(name)
    site = Site(k8s_cluster, name, tmp_path)
    yield site
    k8s_cluster.delete(f"/api/v1/namespaces/{name}")
    for volume in site.volumes:
        k8s_cluster.delete(f"/api/v1/persistentvolumes/{volume}")


@pytest.fixture
def k8s_broker(site: Site, broker_factory: BrokerFactory) -> Iterator[Any]:
    """``k8s_broker(**KubernetesPlatform options)`` starts a broker on the site."""

    def start(**options: Any) -> BrokerProcess:
        return broker_factory("--platform=kubernetes", f"--config={site.config(**options)}")

    yield start
