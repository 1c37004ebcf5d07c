"""Aggregators: the broker API over many brokers (``eb-broker --platform aggregate``).

:class:`AggregatorService` answers the API (see :mod:`eb_broker.aggregate.service` for how
requests fan out); :class:`Aggregator` is its configuration. See docs/aggregator.md.
"""

from .config import AGGREGATE, AggregatePlatform, Aggregator, downstream_brokers
from .downstream import DownstreamError
from .service import AggregatorService, AggregatorSettings

__all__ = [
    "AGGREGATE",
    "AggregatePlatform",
    "Aggregator",
    "AggregatorService",
    "AggregatorSettings",
    "DownstreamError",
    "downstream_brokers",
]
