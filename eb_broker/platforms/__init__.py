"""Platform plugins: where the broker runs sessions (see :mod:`eb_broker.platforms.base`).

Plugins register under the entry point group ``eb_broker.platforms``; :func:`load_platform`
finds one by that name or by a dotted path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..plugins import available, load_plugin

if TYPE_CHECKING:
    from .base import Platform, PlatformState, PlatformStatus, SessionSpec

#: Names of :mod:`.base` exported here, imported on first use: a session's runner process
#: (``python -m eb_broker.platforms.local_runner``) imports this package too, and the plugin
#: base pulls in traitlets and the wire model (0.3 s of every runner's start).
_FROM_BASE = frozenset({"Platform", "PlatformState", "PlatformStatus", "SessionSpec"})


def __getattr__(name: str) -> Any:
    if name in _FROM_BASE:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Entry point group of platform plugins.
ENTRY_POINT_GROUP = "eb_broker.platforms"

# The platforms shipped with the broker, so they are found in a source checkout that was not
# installed (no entry point metadata). Installed entry points of the same name win.
_BUILTIN = {"local": "eb_broker.platforms.local:LocalPlatform"}

__all__ = [
    "ENTRY_POINT_GROUP",
    "Platform",
    "PlatformState",
    "PlatformStatus",
    "SessionSpec",
    "available_platforms",
    "load_platform",
]


def available_platforms() -> dict[str, str]:
    """Platform names and the ``module:Class`` they load, built-in and installed."""
    return available(ENTRY_POINT_GROUP, _BUILTIN)


def load_platform(name_or_class: str) -> type[Platform]:
    """The platform class for an entry point name (``local``) or a dotted path.

    Dotted paths may be ``package.module:Class`` or ``package.module.Class``. Raises
    :class:`ValueError` with the available names when nothing matches.
    """
    from .base import Platform

    return load_plugin(
        name_or_class, group=ENTRY_POINT_GROUP, builtin=_BUILTIN, base=Platform, what="platform"
    )
