"""The stager of ``ivo://`` identifiers: ``IvoaDataResource``.

An identifier is turned into a URL by the configured resolvers, asked in order:

* ``mapping`` — a site's mapping file (JSON or YAML): exact identifiers, or shell-style patterns
  with ``{ivoid}``, ``{query}`` and ``{path}`` placeholders, to a URL or to
  ``{url, size, checksum}`` (then no HEAD request is needed);
* ``datalink`` — a DataLink service per identifier authority: the ``#this`` row of its
  ``{links}?ID=<ivoid>`` table;
* ``request`` — the DataLink or ObsCore ``access_url`` the request itself carries;
* or a site's own resolver class (``package.module:Class``, a :class:`Resolver` subclass), for
  example one that asks an IVOA registry.
"""

from __future__ import annotations

import fnmatch
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import yaml
from traitlets import Dict, List, Unicode
from traitlets.config import LoggingConfigurable

from eb_sdk.model import AbstractDataResource, IvoaDataResource

from ..plugins import import_object
from .base import Located, Stager
from .http import locate_url
from .objects import SourceObject, StagingError, normalize_checksum
from .transport import Transport


@dataclass(frozen=True)
class Resolved:
    """Where an identifier's data is; ``size`` and ``checksum`` when the resolver knows."""

    url: str
    size: int | None = None
    checksum: str | None = None


class Resolver(LoggingConfigurable):
    """Turns an ``ivo://`` identifier into a URL; None when it does not know the identifier."""

    #: Why the last :meth:`resolve` found nothing (for the user's message).
    label = "resolver"

    async def resolve(
        self, ivoid: str, resource: IvoaDataResource, transport: Transport
    ) -> Resolved | None:
        raise NotImplementedError


def _placeholders(ivoid: str) -> dict[str, str]:
    rest = ivoid.split("://", 1)[-1]
    return {
        "{ivoid}": quote(ivoid, safe=""),
        "{query}": quote(rest.partition("?")[2], safe="/"),
        "{path}": quote(rest.partition("?")[0], safe="/"),
    }


def expand(template: str, ivoid: str) -> str:
    """``template`` with ``{ivoid}`` (URL-quoted), ``{query}`` and ``{path}`` filled in."""
    for name, value in _placeholders(ivoid).items():
        template = template.replace(name, value)
    return template


class MappingResolver(Resolver):
    """Identifiers from a mapping file (re-read when it changes)."""

    label = "the mapping file"

    path = Unicode(
        "",
        config=True,
        help="Mapping file (JSON or YAML) of ivo:// identifiers: {identifier or pattern: URL or "
        "{url, size, checksum}}. Patterns use * and ?; URLs may hold {ivoid}, {query}, {path}.",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._loaded: tuple[float, dict[str, Any]] | None = None

    def mapping(self) -> dict[str, Any]:
        if not self.path:
            return {}
        path = Path(self.path).expanduser()
        try:
            mtime = path.stat().st_mtime
        except OSError as exc:
            raise StagingError(f"the broker's ivo:// mapping file cannot be read: {exc}") from None
        if self._loaded is None or self._loaded[0] != mtime:
            text = path.read_text(encoding="utf-8")
            try:
                data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (ValueError, yaml.YAMLError) as exc:
                raise StagingError(f"the broker's ivo:// mapping file is broken: {exc}") from None
            self._loaded = (mtime, data if isinstance(data, dict) else {})
        return self._loaded[1]

    async def resolve(
        self, ivoid: str, resource: IvoaDataResource, transport: Transport
    ) -> Resolved | None:
        mapping = self.mapping()
        entry = mapping.get(ivoid)
        if entry is None:
            for pattern, value in mapping.items():
                if any(c in str(pattern) for c in "*?[") and fnmatch.fnmatchcase(
                    ivoid, str(pattern)
                ):
                    entry = value
                    break
        if entry is None:
            return None
        if isinstance(entry, str):
            return Resolved(expand(entry, ivoid))
        if isinstance(entry, dict) and entry.get("url"):
            size = entry.get("size")
            return Resolved(
                expand(str(entry["url"]), ivoid),
                int(size) if size is not None else None,
                normalize_checksum(entry.get("checksum")),
            )
        raise StagingError(f"the mapping of {ivoid} has no url")


def parse_datalink(text: str) -> list[dict[str, str]]:
    """The rows of a DataLink VOTable (TABLEDATA) as ``{field name: value}``."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise StagingError(f"the DataLink answer is not a VOTable: {exc}") from None

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    for table in (e for e in root.iter() if local(e.tag) == "TABLE"):
        names = [f.get("name", "") for f in table if local(f.tag) == "FIELD"]
        rows = []
        for tr in (e for e in table.iter() if local(e.tag) == "TR"):
            cells = [(td.text or "").strip() for td in tr if local(td.tag) == "TD"]
            rows.append(dict(zip(names, cells, strict=False)))
        if names:
            return rows
    return []


class DataLinkResolver(Resolver):
    """Identifiers through the DataLink service of their authority (``#this`` links)."""

    label = "the DataLink services"

    services = Dict(
        {},
        config=True,
        help="DataLink {links} endpoints per identifier authority (shell-style patterns): "
        "{'example.org/*': 'https://dl.example.org/links?ID={ivoid}'}.",
    )

    async def resolve(
        self, ivoid: str, resource: IvoaDataResource, transport: Transport
    ) -> Resolved | None:
        authority = ivoid.split("://", 1)[-1].partition("?")[0]
        for pattern, template in self.services.items():
            if fnmatch.fnmatchcase(authority, str(pattern)):
                url = expand(str(template), ivoid)
                await transport.guard.check(url)
                return _this_link(parse_datalink(await transport.get_text(url)), ivoid)
        return None


def _this_link(rows: list[dict[str, str]], ivoid: str) -> Resolved:
    errors = []
    for row in rows:
        if row.get("semantics") != "#this":
            continue
        if row.get("error_message"):
            errors.append(row["error_message"])
        elif row.get("access_url"):
            length = row.get("content_length", "")
            return Resolved(row["access_url"], int(length) if length.isdigit() else None)
    reason = f": {'; '.join(errors)}" if errors else ""
    raise StagingError(f"the DataLink service has no #this link for {ivoid}{reason}")


class RequestLinksResolver(Resolver):
    """The access URL the request carries (its DataLink ``#this`` row, or ObsCore)."""

    label = "the request's access_url"

    async def resolve(
        self, ivoid: str, resource: IvoaDataResource, transport: Transport
    ) -> Resolved | None:
        block = resource.ivoa
        link = block.datalink if block else None
        if link and link.access_url and (link.semantics in (None, "#this")):
            return Resolved(link.access_url, link.content_length)
        if block and block.obscore and block.obscore.access_url:
            return Resolved(block.obscore.access_url)
        return None


BUILTIN_RESOLVERS: dict[str, type[Resolver]] = {
    "mapping": MappingResolver,
    "datalink": DataLinkResolver,
    "request": RequestLinksResolver,
}


class IvoaStager(Stager):
    """Fetches ``IvoaDataResource`` data found by its ``ivo://`` identifier."""

    kinds = (IvoaDataResource.KIND,)
    label = "ivoa"

    resolvers = List(
        Unicode(),
        ["mapping", "datalink", "request"],
        config=True,
        help="Resolvers asked in order: mapping (MappingResolver.path), datalink "
        "(DataLinkResolver.services), request (the request's own access_url), or a "
        "'package.module:Class' Resolver subclass.",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resolvers: list[Resolver] = []
        for name in self.resolvers:
            cls = BUILTIN_RESOLVERS.get(name) or import_object(name, "ivo:// resolver")
            if not (isinstance(cls, type) and issubclass(cls, Resolver)):
                raise ValueError(f"{name!r} is not a Resolver subclass")
            self._resolvers.append(cls(parent=self, log=self.log))

    async def locate(self, resource: AbstractDataResource, transport: Transport) -> Located:
        if not isinstance(resource, IvoaDataResource):
            raise StagingError(f"the ivo:// stager cannot stage {resource.kind}")
        ivoid = resource.ivoa.ivoid if resource.ivoa else None
        if not ivoid or not ivoid.lower().startswith("ivo://"):
            raise StagingError("the IVOA data resource needs an ivo:// identifier (ivoa.ivoid)")
        for resolver in self._resolvers:
            found = await resolver.resolve(ivoid, resource, transport)
            if found is None:
                continue
            if found.size is None:
                obj = await locate_url(found.url, transport, identifier=ivoid)
                if found.checksum:
                    obj = SourceObject(obj.url, ivoid, obj.size, found.checksum, obj.etag)
                return Located([obj])
            await transport.guard.check(found.url)
            return Located([SourceObject(found.url, ivoid, found.size, found.checksum)])
        asked = ", ".join(r.label for r in self._resolvers) or "no resolver"
        raise StagingError(
            f"this broker cannot resolve {ivoid} (asked {asked}; "
            f"authority {urlsplit(ivoid).netloc or '?'})"
        )
