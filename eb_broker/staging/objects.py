"""Pure helpers of data staging: checksums, cache keys, mount points, hosts, wording.

No I/O here, so the rules (which header gives which checksum, where a resource is mounted,
what its environment variable is called) are unit-tested alone.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import ipaddress
import math
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from eb_sdk.model import AbstractDataResource, ExecutionRequest, SimpleVolumeMount

#: Checksum algorithms the broker verifies (``<algo>:<hex>``), strongest first.
ALGORITHMS = ("sha512", "sha256", "sha1", "md5")
_DIGEST_NAMES = {
    "sha-512": "sha512",
    "sha-256": "sha256",
    "sha": "sha1",
    "sha-1": "sha1",
    "md5": "md5",
}
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_ENV_UNSAFE = re.compile(r"[^A-Za-z0-9]+")
GIB = 1024**3


class StagingError(Exception):
    """A data resource cannot be staged; the message says why (shown to the user)."""


@dataclass(frozen=True)
class SourceObject:
    """One object to fetch for a data resource (a file, or one file of a bucket listing).

    ``identifier`` is stable for the same data (an ``ivo://`` identifier, ``s3://bucket/key``,
    the URL); ``checksum`` is ``<algo>:<hex>`` when known; ``path`` is where the object goes
    inside a resource staged as a directory (empty for a single file).
    """

    url: str
    identifier: str
    size: int | None = None
    checksum: str | None = None
    etag: str | None = None
    path: str = ""

    @property
    def host(self) -> str:
        return source_host(self.url)

    @property
    def key(self) -> str:
        return cache_key(self.identifier, self.checksum, self.etag, self.size)

    def dump(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "id": self.identifier,
            "size": self.size,
            "checksum": self.checksum,
            "etag": self.etag,
            "path": self.path,
        }

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> SourceObject:
        size = data.get("size")
        return cls(
            url=str(data["url"]),
            identifier=str(data.get("id") or data["url"]),
            size=int(size) if size is not None else None,
            checksum=data.get("checksum") or None,
            etag=data.get("etag") or None,
            path=str(data.get("path") or ""),
        )


@dataclass(frozen=True)
class Mount:
    """Where a data resource appears in the session, and how."""

    path: str
    readonly: bool = True
    env: str = ""


@dataclass
class PlannedResource:
    """A data resource of a request with what it takes to stage it."""

    name: str
    kind: str
    mount: Mount
    objects: list[SourceObject] = field(default_factory=list)
    #: Staged as a directory (a bucket or a listing) rather than as one file.
    directory: bool = False


# -- checksums ------------------------------------------------------------------------------------


def normalize_checksum(value: str | None) -> str | None:
    """``<algo>:<hex>`` (lower case) from ``sha256:HEX``, ``SHA-256=HEX`` or a bare 32/40/64/128
    hex digest; None when ``value`` is empty or not a checksum we can verify."""
    if not value:
        return None
    text = value.strip()
    algo, sep, digest = text.partition(":")
    if not sep:
        algo, sep, digest = text.partition("=")
    if not sep:
        digest, algo = text, {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}.get(len(text), "")
    algo = _DIGEST_NAMES.get(algo.strip().lower(), algo.strip().lower().replace("-", ""))
    digest = digest.strip()
    if algo not in ALGORITHMS or not _HEX.match(digest):
        return None
    if len(digest) != hashlib.new(algo).digest_size * 2:
        return None
    return f"{algo}:{digest.lower()}"


def _b64_hex(value: str) -> str | None:
    try:
        return base64.b64decode(value.strip().strip(":"), validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def checksum_from_headers(headers: Mapping[str, str]) -> str | None:
    """The strongest checksum an HTTP response states (RFC 9530 ``Repr-Digest``, RFC 3230
    ``Digest``, ``Content-MD5``, S3's ``x-amz-checksum-sha256`` and single-part ETags)."""
    lower = {k.lower(): v for k, v in headers.items()}
    found: dict[str, str] = {}
    for header in ("repr-digest", "digest"):
        for part in (lower.get(header) or "").split(","):
            name, _, value = part.strip().partition("=")
            algo = _DIGEST_NAMES.get(name.strip().lower())
            digest = _b64_hex(value) if value else None
            if algo and digest:
                found.setdefault(algo, digest)
    for header, algo in (("x-amz-checksum-sha256", "sha256"), ("content-md5", "md5")):
        digest = _b64_hex(lower[header]) if header in lower else None
        if digest:
            found.setdefault(algo, digest)
    etag = etag_md5(lower.get("etag"))
    if etag:
        found.setdefault("md5", etag)
    for algo in ALGORITHMS:
        if algo in found:
            return normalize_checksum(f"{algo}:{found[algo]}")
    return None


def etag_md5(etag: str | None) -> str | None:
    """The MD5 hex digest an S3-style ETag is (single-part uploads); None for others."""
    if not etag:
        return None
    value = etag.strip()
    if value.startswith("W/"):
        return None
    value = value.strip('"')
    return value.lower() if len(value) == 32 and _HEX.match(value) else None


# -- cache keys -----------------------------------------------------------------------------------


def cache_key(identifier: str, checksum: str | None, etag: str | None, size: int | None) -> str:
    """The staging cache's key: the checksum when known (the same bytes from any source are
    one entry), otherwise the identifier with the version hints the source gave."""
    if checksum:
        return checksum
    hint = "|".join([identifier, etag or "", "" if size is None else str(size)])
    return "id:" + hashlib.sha256(hint.encode()).hexdigest()


def entry_name(key: str) -> str:
    """A file-system-safe directory name for a cache key."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


# -- hosts ----------------------------------------------------------------------------------------


def source_host(url: str) -> str:
    """``host[:port]`` of a URL (lower case): bandwidth is measured per source host."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """Does ``host`` (``name`` or ``name:port``) match one of the shell-style ``patterns``?"""
    bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return any(fnmatch.fnmatch(host, p) or fnmatch.fnmatch(bare, p) for p in patterns)


def is_internal_address(address: str) -> bool:
    """Loopback, private, link-local or unspecified: not somewhere users may point us to."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified


# -- mounts ---------------------------------------------------------------------------------------


def env_name(name: str) -> str:
    """The environment variable naming a resource's mounted path: ``EB_DATA_<NAME>``."""
    return "EB_DATA_" + (_ENV_UNSAFE.sub("_", name).strip("_").upper() or "DATA")


def resource_name(resource: AbstractDataResource, index: int) -> str:
    """A data resource's name: its ``meta.name``, else ``data-<n>`` (1-based)."""
    name = resource.meta.name if resource.meta and resource.meta.name else None
    return str(name) if name else f"data-{index + 1}"


def resource_ids(resource: AbstractDataResource, index: int) -> set[str]:
    """What a volume mount's ``resource`` may name a data resource by: its name, its uuid."""
    ids = {resource_name(resource, index)}
    if resource.meta and resource.meta.uuid:
        ids.add(str(resource.meta.uuid))
    return ids


def mount_for(request: ExecutionRequest, resource: AbstractDataResource, index: int) -> Mount:
    """Where ``resource`` is mounted: the compute resource's volume mount naming it (by name or
    uuid), else ``data/<name>``. Raises :class:`StagingError` for paths that leave the
    session's directory."""
    name = resource_name(resource, index)
    ids = resource_ids(resource, index)
    compute = request.compute
    for volume in (compute.volumes if compute else None) or []:
        if isinstance(volume, SimpleVolumeMount) and volume.resource in ids:
            path = clean_mount_path(volume.path or f"data/{name}")
            readonly = (volume.mode.value if volume.mode else "READONLY") != "READWRITE"
            return Mount(path, readonly, env_name(name))
    return Mount(clean_mount_path(f"data/{name}"), True, env_name(name))


def clean_mount_path(path: str) -> str:
    """A mount path relative to the session's root (``/data/x`` → ``data/x``).

    Raises :class:`StagingError` for ``..`` components and empty paths: a mount must stay
    inside the session's own directory.
    """
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts:
        raise StagingError(f"the mount path {path!r} names no file or directory")
    if ".." in parts:
        raise StagingError(f"the mount path {path!r} must not contain '..'")
    return posixpath.join(*parts)


def object_path(path: str) -> str:
    """A listed object's path inside its resource's directory (no ``..``, no leading /)."""
    parts = [p for p in path.split("/") if p not in ("", ".", "..")]
    return posixpath.join(*parts) if parts else "object"


# -- wording --------------------------------------------------------------------------------------


def human_bytes(size: float) -> str:
    """``4.0 MiB``, ``1.2 GiB``, ``512 B``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns


def human_seconds(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 5 min`` (rounded up, so an estimate never looks shorter)."""
    total = max(0, math.ceil(seconds))
    if total < 120:
        return f"{total} s"
    minutes = math.ceil(total / 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def gib_ceil(size: int) -> int:
    """Bytes as whole GiB, rounded up (what a booking's storage counts)."""
    return math.ceil(max(0, size) / GIB)
