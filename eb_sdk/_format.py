"""How times, resources and tables are shown to a person (notebook HTML and the terminal).

Times on the wire are UTC; people read them in their own zone, so everything shown here is
converted to ``$EB_TIMEZONE`` (an IANA name) or else the local zone, and relative times read
the way people say them: "starts in 2 h 10 min".
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .model import AbstractComputeResource, SimpleComputeResource
from .model.phrases import local_zone

__all__ = [
    "html_table",
    "human_duration",
    "local_time",
    "relative",
    "resources_text",
    "text_table",
    "user_zone",
]


def user_zone() -> tzinfo:
    """``$EB_TIMEZONE`` when it names a zone, else the local zone."""
    name = os.environ.get("EB_TIMEZONE", "").strip()
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return local_zone()


def local_time(dt: datetime | None, zone: tzinfo | None = None) -> str:
    """``Mon 23 Nov 09:00 CET`` in the user's zone; ``—`` for no time."""
    if dt is None:
        return "—"
    when = dt.astimezone(zone or user_zone())
    return f"{when:%a %d %b %H:%M} {when.tzname() or ''}".strip()


def human_duration(td: timedelta | None) -> str:
    """``2 h 10 min``, ``3 d 4 h``, ``45 s``: the two largest units; from a minute up,
    rounded to the minute (an offer made 20 ms ago still "starts in 1 h")."""
    if td is None:
        return "—"
    seconds = round(abs(td.total_seconds()))
    if seconds >= 60:
        seconds = round(seconds / 60) * 60
    parts: list[tuple[int, str]] = []
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        count, seconds = divmod(seconds, size)
        if count or parts:
            parts.append((count, unit))
    return " ".join(f"{n} {unit}" for n, unit in parts[:2] if n) or "0 s"


def relative(dt: datetime | None, now: datetime | None = None, *, verb: str = "starts") -> str:
    """``starts in 2 h 10 min``, ``starts now`` or ``started 5 min ago``."""
    if dt is None:
        return "—"
    now = now or datetime.now(UTC)
    delta = dt - now
    if abs(delta) < timedelta(seconds=30):
        return f"{verb} now"
    if delta > timedelta(0):
        return f"{verb} in {human_duration(delta)}"
    past = {"starts": "started", "expires": "expired", "ends": "ended"}.get(verb, verb)
    return f"{past} {human_duration(delta)} ago"


def resources_text(compute: AbstractComputeResource | None) -> str:
    """``4 cores, 8 GiB, 1 GPU A100`` (what an offer gives)."""
    if not isinstance(compute, SimpleComputeResource):
        return "—"
    parts = []
    if compute.cores is not None:
        parts.append(_range(compute.cores.min, compute.cores.max, "core", "cores"))
    if compute.memory is not None:
        parts.append(_range(compute.memory.min, compute.memory.max, "GiB", "GiB"))
    for acc in compute.accelerators or []:
        count = acc.count.min if acc.count.min is not None else acc.count.max
        label = " ".join(p for p in (acc.type.value, acc.model) if p)
        parts.append(f"{count} {label}")
    return ", ".join(parts) or "—"


def _range(lo: int | None, hi: int | None, one: str, many: str) -> str:
    if lo is not None and hi is not None and lo != hi:
        return f"{lo}-{hi} {many}"
    value = lo if lo is not None else hi
    return f"{value} {one if value == 1 else many}"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned with two spaces between them, for a terminal."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def html_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, caption: str = "", notes: str = ""
) -> str:
    """A small HTML table (escaped) for ``_repr_html_``; ``notes`` go underneath."""
    esc = html.escape
    head = "".join(f"<th style='text-align:left'>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{esc(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    cap = f"<caption style='text-align:left'>{esc(caption)}</caption>" if caption else ""
    after = f"<div>{notes}</div>" if notes else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{after}"
