"""Costs and metrics: what a task may cost, and what performance it needs or gets."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, SerializeAsAny

from .base import Dispatch, EBModel, KindModel, UnknownMixin, kind
from .components import ComponentMetadata
from .kinds import ivoa_kind


class AbstractCostItem(KindModel):
    """A cost. ``type`` says what is counted (money, energy, carbon), not the model class."""

    GROUP: ClassVar[str] = "costs"
    KIND: ClassVar[str] = ivoa_kind("costs", "abstract-cost-item")
    type: str | None = None
    description: str | None = None


kind(AbstractCostItem)


class UnknownCostItem(UnknownMixin, AbstractCostItem):
    """A cost kind we do not know, kept verbatim."""


@kind
class SimpleMinMaxFloatCost(AbstractCostItem):
    """A cost range: the client's limit in a request, the quote in an offer."""

    KIND: ClassVar[str] = ivoa_kind("costs", "simple-minmax-float-cost")
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)


CostItem = Annotated[
    SerializeAsAny[AbstractCostItem], Dispatch("costs", AbstractCostItem, UnknownCostItem)
]


class AbstractMetricItem(KindModel):
    """A metric. ``type`` says what is measured (compute performance, IO)."""

    GROUP: ClassVar[str] = "metrics"
    KIND: ClassVar[str] = ivoa_kind("metrics", "abstract-metric-item")
    type: str | None = None
    description: str | None = None


kind(AbstractMetricItem)


class UnknownMetricItem(UnknownMixin, AbstractMetricItem):
    """A metric kind we do not know, kept verbatim."""


@kind
class SimpleMinMaxFloatMetric(AbstractMetricItem):
    """A metric range: a requirement in a request, a promise in an offer."""

    KIND: ClassVar[str] = ivoa_kind("metrics", "simple-minmax-float-metric")
    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)


MetricItem = Annotated[
    SerializeAsAny[AbstractMetricItem], Dispatch("metrics", AbstractMetricItem, UnknownMetricItem)
]


class ComponentFields(EBModel):
    """The fields of ``AbstractComponent`` other than ``kind``: metadata, costs, metrics."""

    meta: ComponentMetadata | None = None
    costs: list[CostItem] | None = None
    metrics: list[MetricItem] | None = None


class ComponentBase(ComponentFields, KindModel):
    """``AbstractComponent``: a kind URI plus metadata, costs and metrics."""
