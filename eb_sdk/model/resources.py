"""Resources a task needs: compute (with our accelerator extension), storage, data, volumes."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, SerializeAsAny

from .base import Dispatch, EBModel, MinMax, UnknownMixin, kind
from .components import LifecycleMixin
from .costs import ComponentBase
from .kinds import ivoa_kind

# ---------------------------------------------------------------------------------------------
# Volumes


class AbstractVolumeMount(ComponentBase):
    GROUP: ClassVar[str] = "volume"


class UnknownVolumeMount(UnknownMixin, AbstractVolumeMount):
    """A volume kind we do not know, kept verbatim."""


class MountMode(StrEnum):
    READONLY = "READONLY"
    READWRITE = "READWRITE"


@kind
class SimpleVolumeMount(AbstractVolumeMount):
    """Mount a storage or data resource (by name or uuid) at ``path``."""

    KIND: ClassVar[str] = ivoa_kind("volume", "simple-volume-mount")
    path: str | None = None
    mode: MountMode | None = None
    resource: str | None = None


VolumeMount = Annotated[
    SerializeAsAny[AbstractVolumeMount], Dispatch("volume", AbstractVolumeMount, UnknownVolumeMount)
]

# ---------------------------------------------------------------------------------------------
# Compute


class AcceleratorType(StrEnum):
    GPU = "GPU"
    FPGA = "FPGA"
    TPU = "TPU"
    OTHER = "OTHER"


class Accelerator(EBModel):
    """Extension (``jeb:accelerators``): an accelerator requirement or offer.

    ``count`` is a range like cores; ``memory`` is the device memory in GiB; ``model`` is the
    marketing name (``A100``) matched case-insensitively; no model means any.
    """

    type: AcceleratorType = AcceleratorType.GPU
    model: str | None = None
    vendor: str | None = None
    count: MinMax = Field(default_factory=lambda: MinMax(min=1, max=1))
    memory: MinMax | None = None

    @property
    def pool_name(self) -> str:
        """The capacity pool key, e.g. ``gpu:A100`` (``gpu`` when any model will do)."""
        base = self.type.value.lower()
        return f"{base}:{self.model}" if self.model else base


class AbstractComputeResource(LifecycleMixin, ComponentBase):
    GROUP: ClassVar[str] = "compute"
    volumes: list[VolumeMount] | None = None


class UnknownComputeResource(UnknownMixin, AbstractComputeResource):
    """A compute kind we do not know, kept verbatim."""


@kind
class SimpleComputeResource(AbstractComputeResource):
    """Cores and memory (GiB) as ranges; extension: accelerators."""

    KIND: ClassVar[str] = ivoa_kind("compute", "simple-compute-resource")
    cores: MinMax | None = None
    memory: MinMax | None = None
    accelerators: list[Accelerator] | None = Field(default=None, alias="jeb:accelerators")


ComputeResource = Annotated[
    SerializeAsAny[AbstractComputeResource],
    Dispatch("compute", AbstractComputeResource, UnknownComputeResource),
]

# ---------------------------------------------------------------------------------------------
# Storage


class AbstractStorageResource(LifecycleMixin, ComponentBase):
    GROUP: ClassVar[str] = "storage"
    data: list[str] | None = None


class UnknownStorageResource(UnknownMixin, AbstractStorageResource):
    """A storage kind we do not know, kept verbatim."""


@kind
class SimpleStorageResource(AbstractStorageResource):
    """Storage size in GiB as a range."""

    KIND: ClassVar[str] = ivoa_kind("storage", "simple-storage-resource")
    size: MinMax | None = None


StorageResource = Annotated[
    SerializeAsAny[AbstractStorageResource],
    Dispatch("storage", AbstractStorageResource, UnknownStorageResource),
]

# ---------------------------------------------------------------------------------------------
# Data


class AbstractDataResource(LifecycleMixin, ComponentBase):
    GROUP: ClassVar[str] = "data"
    storage: str | None = None


class UnknownDataResource(UnknownMixin, AbstractDataResource):
    """A data kind we do not know, kept verbatim."""


@kind
class SimpleDataResource(AbstractDataResource):
    """A downloadable file at a URL."""

    KIND: ClassVar[str] = ivoa_kind("data", "simple-data-resource")
    location: str | None = None


@kind
class S3DataResource(AbstractDataResource):
    """An object (or a whole bucket) in an S3 service."""

    KIND: ClassVar[str] = ivoa_kind("data", "S3-data-resource")
    endpoint: str | None = None
    template: str | None = None
    bucket: str | None = None
    object: str | None = None


class RucioObjectType(StrEnum):
    FILE = "FILE"
    CONTAINER = "CONTAINER"
    DATASET = "DATASET"


class RucioDataResourceBlock(EBModel):
    endpoint: str | None = None
    scope: str | None = None
    object: str | None = None
    type: RucioObjectType | None = None


@kind
class RucioDataResource(AbstractDataResource):
    KIND: ClassVar[str] = ivoa_kind("data", "rucio-data-resource")
    rucio: RucioDataResourceBlock | None = None


class IvoaObsCoreItem(EBModel):
    obs_id: str | None = None
    obs_collection: str | None = None
    obs_publisher_did: str | None = None
    obs_creator_did: str | None = None
    dataproduct_type: str | None = None
    calib_level: int | None = None
    access_url: str | None = None
    access_format: str | None = None


class IvoaDataLinkItem(EBModel):
    ID: str | None = None
    access_url: str | None = None
    service_def: str | None = None
    error_message: str | None = None
    description: str | None = None
    semantics: str | None = None
    content_type: str | None = None
    content_length: int | None = None
    content_qualifier: str | None = None
    local_semantics: str | None = None
    link_auth: str | None = None
    link_authorized: str | None = None


class IvoaDataResourceBlock(EBModel):
    ivoid: str | None = None
    obscore: IvoaObsCoreItem | None = None
    datalink: IvoaDataLinkItem | None = None


@kind
class IvoaDataResource(AbstractDataResource):
    """Data named by an ``ivo://`` identifier, with optional ObsCore/DataLink rows."""

    KIND: ClassVar[str] = ivoa_kind("data", "ivoa-data-resource")
    ivoa: IvoaDataResourceBlock | None = None


class SkaoChecksumItem(EBModel):
    type: str | None = None
    value: str | None = None


class SkaoReplicaItem(EBModel):
    rsename: str | None = None
    dataurl: str | None = None


class SkaoDataResourceBlock(EBModel):
    namespace: str | None = None
    objectname: str | None = None
    objecttype: RucioObjectType | None = None
    datasize: int | None = None
    checksum: SkaoChecksumItem | None = None
    replicas: list[SkaoReplicaItem] | None = None


@kind
class SkaoDataResource(AbstractDataResource):
    KIND: ClassVar[str] = ivoa_kind("data", "skao-data-resource")
    ivoa: IvoaDataResourceBlock | None = None
    skao: SkaoDataResourceBlock | None = None


DataResource = Annotated[
    SerializeAsAny[AbstractDataResource],
    Dispatch("data", AbstractDataResource, UnknownDataResource),
]
