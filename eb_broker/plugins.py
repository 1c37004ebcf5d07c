"""Find plugin classes by entry point name or dotted path (platforms, policies).

Plugins register under an entry point group; the ones shipped with the broker are also listed
as built-ins, so they are found in a source checkout that was not installed (no entry point
metadata). Installed entry points of the same name win.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TypeVar

T = TypeVar("T")


def available(group: str, builtin: Mapping[str, str]) -> dict[str, str]:
    """Plugin names and the ``module:Class`` they load, built-in and installed."""
    found = dict(builtin)
    for ep in entry_points(group=group):
        found[ep.name] = ep.value
    return dict(sorted(found.items()))


def import_object(path: str, what: str = "plugin") -> object:
    """The object at ``package.module:Attr`` (or ``package.module.Attr``)."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"not a 'package.module:Class' path: {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r} for {what} {path!r}: {exc}") from exc
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no {attr!r} ({what} {path!r})") from None
    return obj


def load_plugin(
    name_or_class: str, *, group: str, builtin: Mapping[str, str], base: type[T], what: str
) -> type[T]:
    """The class for an entry point name of ``group`` or a dotted path.

    Raises :class:`ValueError` naming the available plugins when nothing matches.
    """
    name = name_or_class.strip()
    if not name:
        raise ValueError(f"no {what} given; available: {', '.join(available(group, builtin))}")
    matches = [ep for ep in entry_points(group=group) if ep.name == name]
    if matches:
        obj: object = matches[0].load()
    elif name in builtin:
        obj = import_object(builtin[name], what)
    elif ":" in name or "." in name:
        obj = import_object(name, what)
    else:
        raise ValueError(
            f"unknown {what} {name!r}; available: {', '.join(available(group, builtin))} "
            "(or give a 'package.module:Class' path)"
        )
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise ValueError(f"{name!r} is not a {base.__name__} subclass: {obj!r}")
    return obj
