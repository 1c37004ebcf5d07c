"""Executables: what to run (containers, notebooks, and our extension kinds)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, SerializeAsAny

from .base import Dispatch, EBModel, NameValueMap, UnknownMixin, kind
from .components import LifecycleMixin
from .costs import ComponentBase
from .kinds import ivoa_kind, jeb_kind


class AbstractExecutable(LifecycleMixin, ComponentBase):
    """Base of every executable."""

    GROUP: ClassVar[str] = "executable"


class UnknownExecutable(UnknownMixin, AbstractExecutable):
    """An executable kind nobody registered: brokers answer NO with ``urn:not-supported``."""


class DockerPlatformSpec(EBModel):
    architecture: str | None = None
    os: str | None = None


class DockerImageSpec(EBModel):
    """Where to pull the image from and which digest to expect."""

    locations: list[str] | None = None
    digest: str | None = None
    platform: DockerPlatformSpec | None = None


class DockerInternalPort(EBModel):
    port: int | None = Field(default=None, ge=0, le=65535)


class DockerExternalPort(EBModel):
    port: int | None = Field(default=None, ge=0, le=65535)
    addresses: list[str] | None = None


class DockerNetworkPort(EBModel):
    access: bool | None = None
    internal: DockerInternalPort | None = None
    external: DockerExternalPort | None = None
    protocol: str | None = None
    path: str | None = None


class DockerNetworkSpec(EBModel):
    ports: list[DockerNetworkPort] | None = None


@kind
class DockerContainer(AbstractExecutable):
    """A Docker/OCI container."""

    KIND: ClassVar[str] = ivoa_kind("executable", "docker-container")
    image: DockerImageSpec | None = None
    privileged: bool | None = None
    command: list[str] | None = None
    entrypoint: str | None = None
    environment: NameValueMap | None = None
    network: DockerNetworkSpec | None = None


@kind
class SingularityContainer(AbstractExecutable):
    """A Singularity/Apptainer image."""

    KIND: ClassVar[str] = ivoa_kind("executable", "singularity-container")
    location: str | None = None


@kind
class JupyterNotebook(AbstractExecutable):
    """A notebook to execute from top to bottom.

    Extension fields: ``jeb:parameters`` (papermill parameters injected into the cell tagged
    ``parameters``) and ``jeb:kernel`` (kernel name; default the notebook's own).
    """

    KIND: ClassVar[str] = ivoa_kind("executable", "jupyter-notebook")
    location: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, alias="jeb:parameters")
    kernel: str | None = Field(default=None, alias="jeb:kernel")


@kind
class JupyterServer(AbstractExecutable):
    """Extension kind: an interactive Jupyter server reachable through an HTTP connector.

    The broker starts ``command`` (default ``jupyter server``, or ``jupyterhub-singleuser``
    when spawned by JupyterHub) with ``environment`` and reports its URL as a connector.
    """

    KIND: ClassVar[str] = jeb_kind("executable", "jupyter-server")
    command: list[str] | None = None
    environment: NameValueMap | None = None
    notebook: str | None = Field(
        default=None, description="A notebook path to open first (relative to the root)."
    )
    root_dir: str | None = Field(default=None, description="The server's root directory.")


Executable = Annotated[
    SerializeAsAny[AbstractExecutable],
    Dispatch("executable", AbstractExecutable, UnknownExecutable),
]
