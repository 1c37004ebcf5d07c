"""The one module that talks to the Kubernetes API (asynchronously, with kubernetes_asyncio).

Only stable ``core/v1`` calls (they exist unchanged since Kubernetes 1.20). Objects go in and
come out as plain JSON dicts (``_preload_content=False``), which the pure builders and
parsers in :mod:`.objects` work on; no generated model classes leak out of here.

Errors are sorted into two kinds:

* :class:`KubeUnavailable` — the API server cannot be reached: connection refused, a timeout,
  TLS or DNS trouble, or a 5xx answer. The platform then answers new requests with NO
  (``urn:platform-unavailable``) and leaves running sessions alone until it is back.
* :class:`KubeError` — the API server answered and refused (403, 404, 409, 422 ...), with the
  status and the server's message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from ..base import PlatformUnavailable

log = logging.getLogger("eb_broker.platforms.kubernetes")

JSON = dict[str, Any]
#: Where Kubernetes mounts a pod's service account token and the cluster's CA.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubeUnavailable(PlatformUnavailable):
    """The API server cannot be reached (or answers 5xx).

    A :class:`~eb_broker.platforms.base.PlatformUnavailable`: the reconciler keeps a session
    whose launch, stop or release raised it where it is and tries again on a later pass.
    """


class KubeError(Exception):
    """The API server refused a call."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message


def _api_error(exc: ApiException) -> Exception:
    status = int(exc.status or 0)
    message = ""
    try:
        body = json.loads(exc.body) if exc.body else {}
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
    except (TypeError, ValueError):
        message = str(exc.body or "")[:200]
    if status >= 500 or status == 0:
        return KubeUnavailable(f"the API server answered {status} {exc.reason}: {message}")
    return KubeError(status, str(exc.reason or ""), message)


class KubeClient:
    """A small async facade over ``CoreV1Api`` for the platform.

    The configuration is loaded lazily on the first call (from ``kubeconfig``, or from the
    pod's service account when ``in_cluster`` is true; ``None`` tries in-cluster first and
    falls back to the kubeconfig), so constructing one does no I/O.
    """

    def __init__(
        self,
        *,
        kubeconfig: str = "",
        context: str = "",
        in_cluster: bool | None = None,
        timeout: float = 10.0,
        service_account_dir: str = SERVICE_ACCOUNT_DIR,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.in_cluster = in_cluster
        self.service_account_dir = service_account_dir
        self.timeout = timeout
        self.server = ""
        self._api_client: client.ApiClient | None = None
        self._core: client.CoreV1Api | None = None
        self._lock = asyncio.Lock()

    async def _load(self) -> client.CoreV1Api:
        async with self._lock:
            if self._core is not None:
                return self._core
            configuration = client.Configuration()
            try:
                if self.in_cluster is not False and not self.kubeconfig:
                    try:
                        config.load_incluster_config(
                            client_configuration=configuration,
                            token_filename=os.path.join(self.service_account_dir, "token"),
                            cert_filename=os.path.join(self.service_account_dir, "ca.crt"),
                        )
                    except ConfigException:
                        if self.in_cluster:
                            raise
                        await self._load_kubeconfig(configuration)
                else:
                    await self._load_kubeconfig(configuration)
            except ConfigException as exc:
                raise KubeError(0, "configuration", str(exc)) from exc
            self.server = str(configuration.host)
            self._api_client = client.ApiClient(configuration)
            self._core = client.CoreV1Api(self._api_client)
            return self._core

    async def _load_kubeconfig(self, configuration: client.Configuration) -> None:
        await config.load_kube_config(
            config_file=self.kubeconfig or None,
            context=self.context or None,
            client_configuration=configuration,
            persist_config=False,
        )

    async def close(self) -> None:
        if self._api_client is not None:
            await self._api_client.close()
        self._api_client = None
        self._core = None

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> JSON:
        """Call ``CoreV1Api.<method>`` and return the JSON answer as a dict."""
        text = await self._text(method, *args, **kwargs)
        data = json.loads(text) if text else {}
        return data if isinstance(data, dict) else {}

    async def _text(self, method: str, *args: Any, **kwargs: Any) -> str:
        """Call ``CoreV1Api.<method>`` and return the answer's body as text."""
        core = await self._load()
        try:
            response = await getattr(core, method)(
                *args, _preload_content=False, _request_timeout=self.timeout, **kwargs
            )
            try:
                text = await response.text()
            finally:
                response.release()
        except ApiException as exc:
            raise _api_error(exc) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeUnavailable(
                f"cannot reach the Kubernetes API at {self.server}: {exc or type(exc).__name__}"
            ) from exc
        return str(text)

    async def _items(self, method: str, *args: Any, **kwargs: Any) -> list[JSON]:
        """A list call, following ``continue`` tokens (500 items a page)."""
        items: list[JSON] = []
        token = ""
        while True:
            page = await self._call(method, *args, limit=500, _continue=token or None, **kwargs)
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    # -- reads ----------------------------------------------------------------------------------

    async def list_nodes(self) -> list[JSON]:
        return await self._items("list_node")

    async def list_pods(
        self, namespace: str | None = None, *, labels: str = "", fields: str = ""
    ) -> list[JSON]:
        """Pods of one namespace (or of all when ``namespace`` is None), filtered server-side."""
        kwargs: dict[str, Any] = {}
        if labels:
            kwargs["label_selector"] = labels
        if fields:
            kwargs["field_selector"] = fields
        if namespace is None:
            return await self._items("list_pod_for_all_namespaces", **kwargs)
        return await self._items("list_namespaced_pod", namespace, **kwargs)

    async def list_events(self, namespace: str, *, fields: str = "") -> list[JSON]:
        kwargs = {"field_selector": fields} if fields else {}
        return await self._items("list_namespaced_event", namespace, **kwargs)

    async def list_quotas(self, namespace: str) -> list[JSON]:
        return await self._items("list_namespaced_resource_quota", namespace)

    async def read_claim(self, namespace: str, name: str) -> JSON | None:
        """A PersistentVolumeClaim, or None when there is none of that name."""
        try:
            return await self._call("read_namespaced_persistent_volume_claim", name, namespace)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def read_log(
        self, namespace: str, name: str, *, container: str, limit_bytes: int = 0
    ) -> str:
        """The log of one container of a pod (through the API server, from its kubelet)."""
        kwargs: dict[str, Any] = {"container": container}
        if limit_bytes:
            kwargs["limit_bytes"] = limit_bytes
        return await self._text("read_namespaced_pod_log", name, namespace, **kwargs)

    # -- writes -----------------------------------------------------------------------------------

    async def create(self, kind: str, namespace: str, body: Mapping[str, Any]) -> JSON:
        """Create a ``pod``, ``service`` or ``persistent_volume_claim``."""
        return await self._call(f"create_namespaced_{kind}", namespace, dict(body))

    async def delete(
        self, kind: str, namespace: str, name: str, *, grace: int | None = None
    ) -> bool:
        """Delete one object; False when it did not exist."""
        kwargs: dict[str, Any] = {"propagation_policy": "Background"}
        if grace is not None:
            kwargs["grace_period_seconds"] = grace
        try:
            await self._call(f"delete_namespaced_{kind}", name, namespace, **kwargs)
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True
