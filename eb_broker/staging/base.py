"""The stager plugin interface: one small class per kind of data resource.

A stager knows one kind of data (plain URLs, S3 objects, ``ivo://`` identifiers, a site's Rucio)
— not the ledger, not the platforms, not the cache. The staging service
(:class:`~eb_broker.staging.service.DataStaging`) calls it twice::

    locate(resource, transport)  on the request path: what to fetch, with sizes and checksums
                                 (HEAD requests, listings); must be quick — the transport caches
                                 answers and bounds every request with a timeout
    fetch(obj, part, transport)  during PREPARING: download one object into the temporary file
                                 ``part``; the service verifies and publishes it in the cache

Stagers register under the entry point group ``eb_broker.stagers``; a data kind without a
stager is answered NO with ``urn:not-supported``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from traitlets.config import LoggingConfigurable

from eb_sdk.model import AbstractDataResource

from .objects import SourceObject

if TYPE_CHECKING:
    from .transport import Transport


class Located:
    """What :meth:`Stager.locate` found: the objects, and whether they form a directory."""

    def __init__(self, objects: list[SourceObject], directory: bool = False) -> None:
        self.objects = objects
        self.directory = directory


class Stager(LoggingConfigurable):
    """Base class of stager plugins. Subclasses set ``kinds`` and override :meth:`locate`."""

    #: Data kind URIs this stager handles.
    kinds: ClassVar[tuple[str, ...]] = ()
    #: A short name for messages and ``/capabilities``.
    label: ClassVar[str] = "abstract"

    async def locate(self, resource: AbstractDataResource, transport: Transport) -> Located:
        """The objects to fetch for ``resource``; raises ``StagingError`` with a reason the
        user can act on (unknown identifier, unreachable source, not allowed here)."""
        raise NotImplementedError

    def headers(self, obj: SourceObject, method: str) -> dict[str, str]:
        """Extra request headers for ``obj`` (credentials; signed per request)."""
        return {}

    async def fetch(self, obj: SourceObject, part: Path, transport: Transport) -> int:
        """Download ``obj`` into ``part`` (resuming what is there); returns the bytes moved.

        The default is an HTTP GET through the transport (ranges, retries, timeouts); a stager
        for another protocol overrides it. Verification and publishing are not its job.
        """
        return await transport.download(
            obj.url,
            part,
            size=obj.size,
            etag=obj.etag,
            headers=lambda: self.headers(obj, "GET"),
        )
