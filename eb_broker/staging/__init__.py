"""Data staging: the data resources of requests, fetched into the platform's storage.

See :mod:`eb_broker.staging.service` for the flow, :mod:`eb_broker.staging.base` for the stager
plugin interface (entry point group ``eb_broker.stagers``) and ``docs/data.md``.
"""

from .base import Located, Stager
from .objects import SourceObject, StagingError
from .service import (
    ENTRY_POINT_GROUP,
    DataStaging,
    Plan,
    StagingRunner,
    available_stagers,
    load_stager,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "DataStaging",
    "Located",
    "Plan",
    "SourceObject",
    "Stager",
    "StagingError",
    "StagingRunner",
    "available_stagers",
    "load_stager",
]
