"""Platform plugins: where the broker runs sessions (see :mod:`eb_broker.platforms.base`).

Plugins register under the entry point group ``eb_broker.platforms``; :func:`load_platform`
finds one by that name or by a dotted path.
"""

from __future__ import annotations

from ..plugins import available, load_plugin
from .base import Platform, PlatformState, PlatformStatus, SessionSpec

#: Entry point group of platform plugins.
ENTRY_POINT_GROUP = "eb_broker.platforms"

# The platforms shipped with the broker, so they are found in a source checkout that was not
# installed (no entry point metadata). Installed entry points of the same name win.
_BUILTIN = {
    "local": "eb_broker.platforms.local:LocalPlatform",
    "aggregate": "eb_broker.aggregate:AggregatePlatform",
}

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
    return load_plugin(
        name_or_class, group=ENTRY_POINT_GROUP, builtin=_BUILTIN, base=Platform, what="platform"
    )
