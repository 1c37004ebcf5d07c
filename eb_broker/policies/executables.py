"""``executables``: which kinds, registries, images and notebooks may run here."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

from traitlets import Bool, List, Unicode

from eb_sdk.model import (
    DockerContainer,
    ExecutionRequest,
    JupyterNotebook,
    MessageItem,
    SingularityContainer,
)
from eb_sdk.model.kinds import canonical_kind, kind_label

from ..auth import Identity
from .base import Policy

_DIGEST = re.compile(r"@(sha256:[0-9a-fA-F]{64})$")


def image_registry(reference: str) -> str:
    """The registry host of an image reference (``python:3`` is ``docker.io``)."""
    ref = reference.strip()
    head, sep, _ = ref.partition("/")
    if sep and ("." in head or ":" in head or head == "localhost"):
        return head.lower()
    return "docker.io"


def image_digest(reference: str) -> str | None:
    """The ``sha256:...`` digest pinned in an image reference (``name@sha256:...``)."""
    match = _DIGEST.search(reference.strip())
    return match.group(1).lower() if match else None


def location_source(location: str) -> str:
    """Where a Singularity image comes from: a registry host, ``library``, or ``file``."""
    text = location.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        return "file"
    scheme = scheme.lower()
    if scheme in ("docker", "oras"):
        return image_registry(rest)
    if scheme in ("http", "https"):
        return rest.split("/", 1)[0].lower()
    return scheme  # library, shub, ...


class ExecutablePolicy(Policy):
    """Allow and deny lists for executables: kinds, registries, digests, locations.

    Patterns are shell-style (``*.skao.int``); deny lists win over allow lists; an empty allow
    list allows everything. Members of ``exempt_groups`` are not checked.
    """

    name = "executables"

    allowed_kinds = List(
        Unicode(),
        [],
        config=True,
        help="Executable kinds that may run (short names like 'jupyter-notebook', "
        "'docker-container', 'jupyter-server', or kind URIs); empty: every kind.",
    )
    denied_kinds = List(Unicode(), [], config=True, help="Executable kinds that may not run.")
    allowed_registries = List(
        Unicode(),
        [],
        config=True,
        help="Registries containers may come from (patterns on the host, e.g. 'ghcr.io', "
        "'*.skao.int'; 'docker.io' for bare names like 'python:3'); empty: any.",
    )
    denied_registries = List(
        Unicode(), [], config=True, help="Registries containers may not come from."
    )
    require_digest = Bool(
        False,
        config=True,
        help="Containers must be pinned by digest (image.digest or name@sha256:...), so what "
        "runs is exactly what was reviewed.",
    )
    allowed_digests = List(
        Unicode(),
        [],
        config=True,
        help="If set, only images with one of these digests ('sha256:...') may run.",
    )
    allowed_locations = List(
        Unicode(),
        [],
        config=True,
        help="Patterns notebook and Singularity locations must match (e.g. '/srv/notebooks/*', "
        "'https://gitlab.example.org/*'); empty: any.",
    )
    denied_locations = List(
        Unicode(), [], config=True, help="Patterns of notebook and Singularity locations refused."
    )
    exempt_groups = List(
        Unicode(), [], config=True, help="Members of these groups are not checked by this policy."
    )

    @staticmethod
    def _matches(value: str, patterns: list[str]) -> bool:
        return any(fnmatchcase(value.lower(), p.lower()) for p in patterns)

    def _kind_allowed(self, kind: str) -> bool:
        names = {canonical_kind(kind), kind_label(kind)}

        def listed(patterns: list[str]) -> bool:
            return any(canonical_kind(p) in names or p in names for p in patterns)

        if listed(self.denied_kinds):
            return False
        return not self.allowed_kinds or listed(self.allowed_kinds)

    def _refused(self, value: str, allowed: list[str], denied: list[str]) -> bool:
        """Deny lists win; an empty allow list allows everything."""
        return self._matches(value, denied) or bool(allowed and not self._matches(value, allowed))

    def _registry(self, registry: str, what: str) -> list[MessageItem]:
        if self._refused(registry, self.allowed_registries, self.denied_registries):
            allowed = ", ".join(self.allowed_registries) or "any other"
            return [
                self.refuse(
                    f"{what} comes from registry {registry}, which is not allowed here "
                    f"(allowed: {allowed})",
                    registry=registry,
                )
            ]
        return []

    def _digest(self, digest: str | None, what: str) -> list[MessageItem]:
        if digest is None:
            if self.require_digest or self.allowed_digests:
                return [self.refuse(f"{what} must be pinned by digest (name@sha256:...)")]
            return []
        if self.allowed_digests and digest.lower() not in {d.lower() for d in self.allowed_digests}:
            return [self.refuse(f"{what} has digest {digest}, which is not on the allowed list")]
        return []

    def _location(self, location: str, what: str) -> list[MessageItem]:
        if self._refused(location, self.allowed_locations, self.denied_locations):
            return [self.refuse(f"{what} location {location} is not allowed here")]
        return []

    def check(self, identity: Identity, request: ExecutionRequest) -> list[MessageItem]:
        if set(identity.groups) & set(self.exempt_groups):
            return []
        executable = request.executable
        if executable is None:
            return []
        kind = executable.kind or ""
        label = kind_label(kind)
        if not self._kind_allowed(kind):
            return [self.refuse(f"{label} executables may not run here", kind_uri=kind)]
        out: list[MessageItem] = []
        if isinstance(executable, DockerContainer):
            image = executable.image
            locations = list(image.locations or []) if image else []
            if not locations:
                out += self._digest(image.digest if image else None, "the image")
            for ref in locations:
                what = f"image {ref}"
                out += self._registry(image_registry(ref), what)
                out += self._digest(image_digest(ref) or (image.digest if image else None), what)
        elif isinstance(executable, SingularityContainer) and executable.location:
            what = f"image {executable.location}"
            out += self._registry(location_source(executable.location), what)
            out += self._location(executable.location, "the image")
            out += self._digest(image_digest(executable.location), what)
        elif isinstance(executable, JupyterNotebook) and executable.location:
            out += self._location(executable.location, "the notebook")
        return out

    def summary(self) -> str:
        parts = []
        for label, values in (
            ("kinds", self.allowed_kinds),
            ("not kinds", self.denied_kinds),
            ("registries", self.allowed_registries),
            ("not registries", self.denied_registries),
            ("locations", self.allowed_locations),
            ("not locations", self.denied_locations),
        ):
            if values:
                parts.append(f"{label}: {', '.join(values)}")
        if self.require_digest or self.allowed_digests:
            parts.append("images pinned by digest")
        return "; ".join(parts)
