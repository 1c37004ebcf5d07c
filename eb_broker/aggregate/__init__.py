"""Aggregators: the broker API over many brokers (``eb-broker --platform aggregate``).

See :mod:`eb_broker.aggregate.core` for how requests fan out, and docs/aggregator.md.
"""

from .core import AggregatorCore, AggregatorSettings, DownstreamError, Proxied, Refresher
from .platform import AggregatePlatform, downstream_brokers

__all__ = [
    "AggregatePlatform",
    "AggregatorCore",
    "AggregatorSettings",
    "DownstreamError",
    "Proxied",
    "Refresher",
    "downstream_brokers",
]
