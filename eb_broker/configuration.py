"""Checks shared by list-of-mapping settings (capacity periods, pools, downstream brokers)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from typing import Any


def config_entries(
    items: Iterable[Any], keys: Collection[str], what: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(number, entry)`` for each entry, numbered from 1; a clear ValueError for an entry
    that is not a mapping or has keys outside ``keys``."""
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ValueError(f"{what} {number}: expected a mapping, got {item!r}")
        unknown = set(item) - set(keys)
        if unknown:
            raise ValueError(f"{what} {number}: unknown keys {sorted(unknown)}")
        yield number, item
