"""The broker's clock: one place that says what "now" is (aware, UTC).

Cores take a ``clock`` callable defaulting to :func:`utcnow`, so tests move time by passing
their own instead of sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)


__all__ = ["utcnow"]
