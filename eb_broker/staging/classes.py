"""The configurable classes of data staging and prediction (for ``--help-all`` and
``--generate-config``)."""

from __future__ import annotations

from typing import Any


def staging_classes() -> list[type[Any]]:
    from ..prediction import Predictions
    from .http import HttpStager
    from .ivoa import DataLinkResolver, IvoaStager, MappingResolver
    from .s3 import S3Stager
    from .service import DataStaging

    return [
        DataStaging,
        Predictions,
        HttpStager,
        S3Stager,
        IvoaStager,
        MappingResolver,
        DataLinkResolver,
    ]
