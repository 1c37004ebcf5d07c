"""What offers and sessions share: a read-only view of one wire session and its broker."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from ._config import Broker
from .model import Phase, ScheduledExecutionSession


def available_start(wire: ScheduledExecutionSession) -> datetime | None:
    """When a session becomes available: the beginning of ``schedule.available.start``."""
    sched = wire.schedule
    if sched and sched.available and sched.available.start:
        return sched.available.start.start
    return None


class WireView:
    """The broker's last word on one session (an offer is a session in phase OFFERED)."""

    #: The phase to report when the broker sent none.
    default_phase: ClassVar[Phase] = Phase.INITIAL

    def __init__(self, wire: ScheduledExecutionSession, broker: Broker) -> None:
        self._wire = wire
        self.broker = broker

    @property
    def wire(self) -> ScheduledExecutionSession:
        """The session as the broker last sent it (the IVOA wire model)."""
        return self._wire

    @property
    def uuid(self) -> str:
        return self._wire.uuid or ""

    @property
    def url(self) -> str | None:
        """Its URL on its broker."""
        return self._wire.meta.url if self._wire.meta else None

    @property
    def name(self) -> str | None:
        return self._wire.meta.name if self._wire.meta else None

    @property
    def phase(self) -> Phase:
        return self._wire.phase or self.default_phase

    @property
    def broker_name(self) -> str:
        return self.broker.name

    def _extension(self, name: str) -> dict[str, Any] | None:
        value = (self._wire.model_extra or {}).get(name)
        return value if isinstance(value, dict) else None

    @property
    def platform(self) -> str:
        """The platform that runs it (``jeb:platform.name``), when the broker says."""
        return str((self._extension("jeb:platform") or {}).get("name") or "")

    @property
    def staging(self) -> dict[str, Any] | None:
        """Its data staging (``jeb:staging``): the predicted ``seconds``, the ``bytes`` to fetch,
        ``cached_bytes``, each object, and the ``state``; None for a request without data."""
        return self._extension("jeb:staging")

    @property
    def prediction(self) -> dict[str, Any] | None:
        """The run time the broker predicts from past runs of the same executable
        (``jeb:prediction``: ``runtime.median``, ``runtime.high``, ``runtime.runs``)."""
        return self._extension("jeb:prediction")

    @property
    def start(self) -> datetime | None:
        """When it becomes available (the beginning of ``schedule.available.start``)."""
        return available_start(self._wire)

    @property
    def duration(self) -> timedelta | None:
        sched = self._wire.schedule
        return sched.available.duration if sched and sched.available else None

    @property
    def end(self) -> datetime | None:
        return self.start + self.duration if self.start and self.duration else None
