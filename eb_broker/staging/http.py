"""The stager of plain URLs: ``SimpleDataResource`` (``location`` is an http(s) URL)."""

from __future__ import annotations

from eb_sdk.model import AbstractDataResource, SimpleDataResource

from .base import Located, Stager
from .objects import SourceObject, StagingError
from .transport import Transport


async def locate_url(url: str, transport: Transport, identifier: str = "") -> SourceObject:
    """One object at ``url``: its size, checksum and version from a (cached) HEAD request."""
    await transport.guard.check(url)
    probe = await transport.probe(url)
    return SourceObject(
        url=url,
        identifier=identifier or url,
        size=probe.size,
        checksum=probe.checksum,
        etag=probe.etag,
    )


class HttpStager(Stager):
    """Fetches a ``SimpleDataResource`` from its http(s) ``location``."""

    kinds = (SimpleDataResource.KIND,)
    label = "http"

    async def locate(self, resource: AbstractDataResource, transport: Transport) -> Located:
        location = getattr(resource, "location", None)
        if not location:
            raise StagingError("the data resource has no location: say where the data is")
        return Located([await locate_url(str(location), transport)])
