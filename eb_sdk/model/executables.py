"""Executables: what to run (containers, notebooks, and our extension kinds)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field, SerializeAsAny, model_validator

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


#: What an input's ``id`` may look like: it names the input's output and status files.
BATCH_INPUT_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class BatchInput(EBModel):
    """One input of a :class:`NotebookBatch`: its ``value`` goes to the batch's ``parameter``."""

    id: str = Field(
        pattern=BATCH_INPUT_ID,
        description="Unique within the batch; names the output (<id>.ipynb) and status files.",
    )
    value: Any = Field(default=None, description="The value given to the batch's parameter.")
    output: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.ipynb$",
        description="File name of this input's output notebook in output_dir (default <id>.ipynb).",
    )


@kind
class NotebookBatch(AbstractExecutable):
    """Extension kind: one notebook run once per input, each input a papermill run of its own.

    The inputs run one after another, a few at a time (``workers``, by default what the
    session's cores allow); a failing input does not stop the others. Each input gets its own
    output notebook in ``output_dir`` and a status record; the session reports every finished
    input as a message of kind ``urn:jeb:v1:batch-input``. See docs/batch.md.
    """

    KIND: ClassVar[str] = jeb_kind("executable", "notebook-batch")
    location: str | None = Field(default=None, description="The notebook (a path or file:// URL).")
    parameter: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The papermill parameter each input's value is given as (default 'input').",
    )
    parameters: dict[str, Any] | None = Field(
        default=None, description="Parameters common to every input (papermill)."
    )
    inputs: list[BatchInput] | None = Field(default=None, description="The inputs to run.")
    output_dir: str | None = Field(
        default=None,
        description="Absolute directory for the output notebooks (default: the session's own).",
    )
    workers: int | None = Field(
        default=None, ge=1, le=256, description="Inputs run at once (default: the broker's choice)."
    )
    kernel: str | None = Field(default=None, description="Kernel name (default: the broker's).")
    cell_timeout: float | None = Field(
        default=None, gt=0, description="Seconds one cell may run before the input FAILs."
    )

    @model_validator(mode="after")
    def _unique_ids(self) -> NotebookBatch:
        seen: set[str] = set()
        for item in self.inputs or []:
            name = (item.output or f"{item.id}.ipynb").lower()
            if item.id in seen or name in seen:
                raise ValueError(f"inputs: the id or output {item.id!r} is used twice")
            seen.update((item.id, name))
        return self


#: Nova's limit on user data: 65535 bytes once base64-encoded (about 48 KiB of text).
USER_DATA_LIMIT = 65535


@kind
class VirtualMachine(AbstractExecutable):
    """Extension kind: a virtual machine booted from an image and configured by cloud-init.

    For what needs a whole machine rather than a container: a ``docker compose`` stack, a
    desktop, a session with root. The broker picks the flavor (the smallest that gives the
    booked resources, matching ``flavor`` when given), creates the server at the booked slot and
    deletes it at the end. ``user_data`` is passed to cloud-init unchanged. With ``http_port``
    the session gets an HTTP connector and is AVAILABLE once the service answers; with
    ``ssh_public_key`` a keypair is created for the session and an SSH connector is reported.
    """

    KIND: ClassVar[str] = jeb_kind("executable", "virtual-machine")
    image: str | None = Field(
        default=None,
        description="Name or ID of an image the site offers (none: the site's default image).",
    )
    flavor: str | None = Field(
        default=None,
        description="A flavor hint: a flavor name or a shell-style pattern such as 'g1.*'; "
        "the broker books the smallest matching flavor that gives the requested resources.",
    )
    user_data: str | None = Field(
        default=None,
        description="cloud-init user data (#cloud-config YAML, a #! script or MIME "
        "multi-part), passed unchanged; at most 65535 bytes once base64-encoded.",
    )
    ssh_public_key: str | None = Field(
        default=None, description="An OpenSSH public key to log in with (SSH connector)."
    )
    http_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of an HTTP service in the VM (HTTP connector; AVAILABLE once it "
        "answers).",
    )
    http_path: str | None = Field(
        default=None, description="Path of that service to link and probe (default '/')."
    )


Executable = Annotated[
    SerializeAsAny[AbstractExecutable],
    Dispatch("executable", AbstractExecutable, UnknownExecutable),
]
