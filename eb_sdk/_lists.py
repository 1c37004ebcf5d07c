"""Lists that show themselves: sessions and broker health, with the warnings of the fan-out."""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ._fanout import BrokerWarning
from ._format import html_table, human_duration, local_time, relative, resources_text, text_table
from .sessions import _SessionBase

__all__ = ["BrokerList", "BrokerStatus", "SessionList"]

S = TypeVar("S", bound=_SessionBase)

SESSION_COLUMNS = ("broker", "session", "phase", "start", "when", "duration", "resources")


class SessionList(list[S], Generic[S]):
    """Sessions from every broker, plus a warning for each broker that did not answer."""

    def __init__(self, items: Iterable[S] = (), warnings: Iterable[BrokerWarning] = ()) -> None:
        super().__init__(items)
        self.warnings = list(warnings)

    def rows(self) -> list[list[str]]:
        return [
            [
                s.broker_name,
                s.uuid,
                s.phase.value,
                local_time(s.start),
                relative(s.start) if not s.is_final else "",
                human_duration(s.duration),
                resources_text(s.wire.compute),
            ]
            for s in self
        ]

    def __str__(self) -> str:
        table = text_table(SESSION_COLUMNS, self.rows()) if self else "no sessions"
        return "\n".join([table, *(f"warning: {w}" for w in self.warnings)])

    def _repr_html_(self) -> str:
        notes = "".join(f"<div>warning: {html.escape(str(w))}</div>" for w in self.warnings)
        if not self:
            return f"<div>No sessions.</div>{notes}"
        return html_table(SESSION_COLUMNS, self.rows(), notes=notes)


@dataclass
class BrokerStatus:
    """A configured broker and whether it answered ``/health``."""

    name: str
    url: str
    source: str
    ok: bool
    platform: str = ""
    version: str = ""
    latency_ms: float | None = None
    error: str = ""
    health: dict[str, Any] = field(default_factory=dict, repr=False)

    def row(self) -> list[str]:
        status = "ok" if self.ok else f"unavailable: {self.error}"
        latency = f"{self.latency_ms:.0f} ms" if self.latency_ms is not None else ""
        return [self.name, self.url, status, self.platform, self.version, latency, self.source]


BROKER_COLUMNS = ("name", "url", "status", "platform", "version", "latency", "source")


class BrokerList(list[BrokerStatus]):
    """The brokers ``eb.request`` would ask, with their health."""

    def __str__(self) -> str:
        return text_table(BROKER_COLUMNS, [b.row() for b in self]) if self else "no brokers"

    def _repr_html_(self) -> str:
        return html_table(BROKER_COLUMNS, [b.row() for b in self])
