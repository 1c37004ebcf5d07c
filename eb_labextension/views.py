"""What the sidebar is sent: SDK objects turned into small JSON dicts (no I/O here).

The browser gets what it shows and nothing else: names, phases, ISO times, the SDK's own
texts for durations and resources, connector links, and the paths of outputs relative to
the server's root (so that the sidebar can open them). Never a broker's credentials: a
:class:`~eb_sdk.Broker` is reduced to its name and URL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eb_sdk import BrokerStatus
from eb_sdk._format import human_duration, resources_text
from eb_sdk.model import ACTIVE_PHASES, JupyterNotebook, Phase
from eb_sdk.offers import AsyncOffer, AsyncOffers
from eb_sdk.sessions import AsyncSession

__all__ = [
    "LISTED_PHASES",
    "broker_view",
    "iso",
    "lab_path",
    "offer_view",
    "offers_view",
    "session_key",
    "session_view",
    "sessions_view",
]

#: The phases the sidebar lists: accepted and later (offers live in the offers section).
LISTED_PHASES = frozenset({*ACTIVE_PHASES, Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED})
#: How many of a session's latest messages the sidebar shows.
MESSAGES = 3


def iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z") if when else None


def seconds(td: timedelta | None) -> float | None:
    return td.total_seconds() if td is not None else None


def lab_path(path: str | None, root: Path | None) -> str | None:
    """``path`` relative to the server's root (as JupyterLab opens it), if it lies inside."""
    if not path or root is None or "://" in path:
        return None
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def session_key(broker: str, uuid: str) -> str:
    return f"{broker}/{uuid}"


def _error(session: AsyncSession) -> str:
    """The reason a FAILED session gives: its last ERROR message, else its last message."""
    if session.phase != Phase.FAILED:
        return ""
    errors = [m for m in session.messages if (m.level or "") == "ERROR"] or session.messages
    return str(errors[-1]) if errors else "no reason given"


def _notebook(session: AsyncSession) -> str | None:
    executable = session.wire.executable
    return executable.location if isinstance(executable, JupyterNotebook) else None


def session_view(session: AsyncSession, root: Path | None) -> dict[str, Any]:
    wire = session.wire
    notebook = _notebook(session)
    outputs = [
        {"name": str(name), "path": str(value), "lab_path": lab_path(str(value), root)}
        for name, value in session.outputs.items()
        if isinstance(value, str | Path)
    ]
    return {
        "key": session_key(session.broker_name, session.uuid),
        "broker": session.broker_name,
        "uuid": session.uuid,
        "name": session.name or (Path(notebook).name if notebook else ""),
        "phase": session.phase.value,
        "final": session.is_final,
        "platform": session.platform,
        "start": iso(session.start),
        "end": iso(session.end),
        "duration_s": seconds(session.duration),
        "duration": human_duration(session.duration),
        "resources": resources_text(wire.compute),
        "connectors": [
            {
                "kind": c.protocol or c.kind or "",
                "location": c.location,
                "link": (c.location or "").startswith(("http://", "https://")),
            }
            for c in session.connectors
            if c.location
        ],
        "outputs": outputs,
        "messages": [
            {"level": (m.level or "INFO").lower(), "text": str(m)}
            for m in session.messages[-MESSAGES:]
        ],
        "error": _error(session),
        "notebook": notebook,
        "lab_path": lab_path(notebook, root),
        "created": iso(wire.meta.created if wire.meta else None),
        "modified": iso(wire.meta.modified if wire.meta else None),
    }


def _finished_at(session: AsyncSession) -> datetime | None:
    meta = session.wire.meta
    return (meta.modified if meta else None) or session.end


def sessions_view(
    sessions: Iterable[AsyncSession],
    root: Path | None,
    *,
    finished_hours: float,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The sessions to list: every live one (earliest start first), then those that ended in
    the last ``finished_hours`` (latest first)."""
    now = now or datetime.now(UTC)
    since = now - timedelta(hours=finished_hours)
    far = datetime.max.replace(tzinfo=UTC)
    live = sorted(
        (s for s in sessions if not s.is_final and s.phase in LISTED_PHASES),
        key=lambda s: s.start or far,
    )
    old = datetime.min.replace(tzinfo=UTC)
    ended = sorted(
        (
            s
            for s in sessions
            if s.is_final and s.phase in LISTED_PHASES and (_finished_at(s) or now) >= since
        ),
        key=lambda s: _finished_at(s) or old,
        reverse=True,
    )
    return [session_view(s, root) for s in [*live, *ended]]


def offer_view(offer: AsyncOffer) -> dict[str, Any]:
    return {
        "uuid": offer.uuid,
        "broker": offer.broker_name,
        "platform": offer.platform,
        "phase": offer.phase.value,
        "start": iso(offer.start),
        "duration_s": seconds(offer.duration),
        "duration": human_duration(offer.duration),
        "resources": offer.resources,
        "cost": offer.cost,
        "expires": iso(offer.expires),
    }


def offers_view(set_id: str, what: str, offers: AsyncOffers) -> dict[str, Any]:
    return {
        "id": set_id,
        "what": what,
        "offers": [offer_view(o) for o in offers],
        "warnings": [str(w) for w in offers.warnings],
        "reasons": [f"{broker}: {message}" for broker, message in offers.reasons],
    }


def broker_view(status: BrokerStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "url": status.url,
        "source": status.source,
        "ok": status.ok,
        "platform": status.platform,
        "version": status.version,
        "latency_ms": round(status.latency_ms) if status.latency_ms is not None else None,
        "error": status.error,
    }
