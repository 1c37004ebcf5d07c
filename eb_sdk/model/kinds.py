"""Kind URIs and the registry that maps them to model classes.

The IVOA ExecutionBroker schema is polymorphic by a ``kind`` URI. Brokers and clients in the
wild emit several spellings of the same kind (older ``type`` discriminators, ``.../types/...``
URIs with a ``-1.0`` suffix, the reference broker's ``.../kinds/computer/...``), so every kind
we read goes through :func:`canonical_kind` first, and we always *write* the canonical v1.0 URI.

Plugins add kinds by registering a class with :func:`register_kind` (or the ``@kind``
decorator); an installed distribution can declare a module or class under the entry point group
``eb_sdk.kinds``, which is imported the first time a kind is not found. Anything still unknown
is kept verbatim (see ``Unknown*`` classes in the model) so a broker can answer ``NO`` with
``urn:not-supported`` instead of failing. See docs/wire-model.md.
"""

from __future__ import annotations

import logging
import re
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import EBModel

log = logging.getLogger("eb_sdk.model")

#: Entry point group of kind plugins: a module (its ``@kind`` classes register on import) or a
#: ``KindModel`` subclass.
ENTRY_POINT_GROUP = "eb_sdk.kinds"

#: Base of the canonical IVOA ExecutionBroker v1.0 kind URIs.
IVOA_KIND_BASE = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds"

#: Namespace of this project's extension kinds and fields (documented in docs/extensions.md).
JEB_NS = "urn:jeb:v1"

#: The groups a kind belongs to, in the canonical URI spelling.
GROUPS = ("executable", "compute", "storage", "volume", "data", "costs", "metrics", "session")

# Older or variant group spellings seen in the wild -> canonical group.
_GROUP_ALIASES = {
    "computer": "compute",
    "compute": "compute",
    "executable": "executable",
    "executables": "executable",
    "storage": "storage",
    "volume": "volume",
    "volumes": "volume",
    "data": "data",
    "cost": "costs",
    "costs": "costs",
    "metric": "metrics",
    "metrics": "metrics",
    "session": "session",
    "sessions": "session",
}

# .../kinds/<group>/<name>.yaml  or  .../types/<group>/<name>-1.0
_IVOA_URI = re.compile(
    r"^https?://(?:www\.)?purl\.org/ivoa\.net/(?:Calycopis-openapi|EB)/schema/"
    r"(?:v1\.0/)?(?:kinds|types)/(?P<group>[A-Za-z]+)/(?P<name>[A-Za-z0-9_.-]+?)"
    r"(?:-1\.0)?(?:\.yaml)?/?$"
)


def ivoa_kind(group: str, name: str) -> str:
    """The canonical v1.0 kind URI for ``group``/``name``."""
    return f"{IVOA_KIND_BASE}/{group}/{name}.yaml"


def jeb_kind(group: str, name: str) -> str:
    """A kind URI in this project's extension namespace."""
    return f"{JEB_NS}:{group}:{name}"


def canonical_kind(kind: str) -> str:
    """Map any known spelling of a kind URI to its canonical form.

    Unknown URIs are returned unchanged (stripped of surrounding white space), so that an
    unknown kind round-trips byte for byte.
    """
    text = kind.strip()
    match = _IVOA_URI.match(text)
    if not match:
        return text
    group = _GROUP_ALIASES.get(match["group"].lower())
    if group is None:
        return text
    name = match["name"]
    registered = _BY_NAME.get((group, name.lower()))
    if registered is not None:
        return registered
    return ivoa_kind(group, name)


_REGISTRY: dict[str, dict[str, type[EBModel]]] = {}
_BY_NAME: dict[tuple[str, str], str] = {}


def register_kind(group: str, kind: str, cls: type[EBModel]) -> None:
    """Register ``cls`` as the model class of ``kind`` within ``group``.

    ``group`` is the polymorphic slot (``executable``, ``compute``, ``option``, ...). Plugins
    call this (or use the ``@kind`` decorator in :mod:`eb_sdk.model.base`) to add kinds.
    """
    _REGISTRY.setdefault(group, {})[kind] = cls
    match = _IVOA_URI.match(kind)
    if match:
        _BY_NAME[(match["group"].lower(), match["name"].lower())] = kind


def lookup_kind(group: str, kind: str) -> type[EBModel] | None:
    """The class registered for ``kind`` in ``group`` (after canonicalisation), or None.

    On a miss the kind plugins (entry point group ``eb_sdk.kinds``) are loaded, once, and the
    lookup is tried again.
    """
    found = _REGISTRY.get(group, {}).get(canonical_kind(kind))
    if found is None and load_kind_plugins():
        found = _REGISTRY.get(group, {}).get(canonical_kind(kind))
    return found


def registered_kinds(group: str) -> dict[str, type[EBModel]]:
    """A copy of the kinds registered in ``group`` (kind plugins included)."""
    load_kind_plugins()
    return dict(_REGISTRY.get(group, {}))


_plugins_loaded = False


def load_kind_plugins() -> list[str]:
    """Import the kind plugins of entry point group ``eb_sdk.kinds`` (only the first call does
    anything); returns the names of the entry points loaded by this call.

    An entry point may name a module, whose ``@kind`` classes register themselves on import,
    or a class with ``GROUP`` and ``KIND``, which is registered here. A plugin that fails to
    import is logged and skipped: its kinds stay unknown (kept verbatim), nothing else breaks.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return []
    _plugins_loaded = True
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:
            log.warning("kind plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
            continue
        group, kind = getattr(obj, "GROUP", None), getattr(obj, "KIND", None)
        if isinstance(obj, type) and group and kind:
            register_kind(group, kind, obj)
        loaded.append(ep.name)
    return loaded


def kind_label(kind: str) -> str:
    """A short human label for a kind URI: ``docker-container`` for the canonical URI."""
    text = canonical_kind(kind)
    if text.startswith(IVOA_KIND_BASE):
        return text.rsplit("/", 1)[-1].removesuffix(".yaml")
    if text.startswith(JEB_NS + ":"):
        return text.rsplit(":", 1)[-1]
    return text


def is_kind_like(value: Any) -> bool:
    """True when ``value`` looks like a kind URI (used to accept legacy ``type`` fields)."""
    return isinstance(value, str) and (
        bool(_IVOA_URI.match(value.strip())) or value.startswith(("urn:", "uri:"))
    )
