"""The Kubernetes platform: sessions as Pods (see docs/platforms/kubernetes.md).

``objects`` builds and reads Kubernetes objects (pure), ``client`` is the one async API module
(kubernetes_asyncio), ``platform`` holds :class:`KubernetesPlatform`.
"""

from .platform import KubernetesPlatform

__all__ = ["KubernetesPlatform"]
