"""Platform plugins: where the broker runs sessions (see :mod:`eb_broker.platforms.base`).

Plugins register under the entry point group ``eb_broker.platforms``; :func:`load_platform`
finds one by that name or by a dotted path.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from .base import Platform, PlatformState, PlatformStatus, SessionSpec

#: Entry point group of platform plugins.
ENTRY_POINT_GROUP = "eb_broker.platforms"

# The platforms shipped with the broker, so they are found in a source checkout that was not
# installed (no entry point metadata). Installed entry points of the same name win.
_BUILTIN = {
    "local": "eb_broker.platforms.local:LocalPlatform",
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
    found = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return dict(sorted(found.items()))


def _import_object(path: str) -> object:
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"not a 'package.module:Class' path: {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for platform {path!r}: {exc}") from exc
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no {attr!r} (platform {path!r})") from None
    return obj


def load_platform(name_or_class: str) -> type[Platform]:
    """The platform class for an entry point name (``local``) or a dotted path.

    Dotted paths may be ``package.module:Class`` or ``package.module.Class``. Raises
    :class:`ValueError` with the available names when nothing matches.
    """
    name = name_or_class.strip()
    if not name:
        raise ValueError(
            f"no platform given; available: {', '.join(available_platforms()) or 'none'}"
        )
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if matches:
        obj: object = matches[0].load()
    elif name in _BUILTIN:
        obj = _import_object(_BUILTIN[name])
    elif ":" in name or "." in name:
        obj = _import_object(name)
    else:
        raise ValueError(
            f"unknown platform {name!r}; available: {', '.join(available_platforms())} "
            "(or give a 'package.module:Class' path)"
        )
    if not (isinstance(obj, type) and issubclass(obj, Platform)):
        raise ValueError(f"{name!r} is not a Platform subclass: {obj!r}")
    return obj
