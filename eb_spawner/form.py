"""The spawner's options form (plain HTML inside the hub's spawn page; works without JS)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from eb_sdk._format import human_duration, relative

from .config import WHEN_CHOICES, Profile


@dataclass
class Quotes:
    """Offers for the form plus why there are none (reasons) and which brokers failed."""

    offers: list[Any]
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def when_text(dt: datetime | None, zone: tzinfo) -> str:
    if dt is None:
        return "—"
    local = dt.astimezone(zone)
    return f"{local:%a %d %b %H:%M} {local.tzname() or ''}".strip()


def no_profiles() -> str:
    return (
        '<p class="alert alert-warning">No compute profile is available to you. '
        "Ask the hub's administrators to add you to a group that may use one.</p>"
    )


def render(
    profiles: list[Profile],
    chosen: Profile,
    choice: dict[str, str],
    quotes: Quotes,
    zone: tzinfo,
    now_threshold: float,
    message: str = "",
    seat: Any = None,
) -> str:
    now = datetime.now(UTC)
    parts = ['<div id="eb-spawner-form">']
    if message:
        parts.append(f'<p class="alert alert-info" id="eb-message">{esc(message)}</p>')
    if seat is not None:
        parts.append(
            '<div class="alert alert-success" id="eb-seat"><label>'
            f'<input type="radio" name="offer" value="seat|{esc(seat.broker)}|{esc(seat.session)}"'
            f" checked> Your workshop seat ({esc(seat.group)}, {esc(seat.profile)}) on "
            f"{esc(seat.broker)}, until {esc(when_text(seat.end, zone))}</label></div>"
        )
    parts.append('<div class="form-group"><label for="eb-profile">Profile</label>')
    parts.append('<select class="form-control" name="profile" id="eb-profile">')
    for p in profiles:
        sel = " selected" if p.slug == chosen.slug else ""
        label = f"{p.display_name} — {p.description}" if p.description else p.display_name
        parts.append(f'<option value="{esc(p.slug)}"{sel}>{esc(label)}</option>')
    parts.append("</select></div>")
    parts.append('<div class="form-group"><label for="eb-when">When</label>')
    parts.append('<select class="form-control" name="when" id="eb-when">')
    for key, label in WHEN_CHOICES.items():
        sel = " selected" if key == choice.get("when", "now") else ""
        parts.append(f'<option value="{esc(key)}"{sel}>{esc(label)}</option>')
    parts.append("</select>")
    parts.append(
        '<input class="form-control" type="datetime-local" name="at" id="eb-at" '
        f'value="{esc(choice.get("at", ""))}" aria-label="date and time (for a date and time)">'
    )
    parts.append("</div>")
    parts.append(
        '<button type="submit" class="btn btn-secondary btn-sm" name="action" value="refresh" '
        'id="eb-refresh" formnovalidate>Refresh offers</button>'
    )
    parts.append(
        f"<h4>Offers for {esc(chosen.display_name)}, "
        f"{esc(WHEN_CHOICES.get(choice.get('when', 'now'), ''))}</h4>"
    )
    if quotes.offers:
        parts.append('<table class="table table-condensed" id="eb-offers"><thead><tr>')
        for head in ("", "broker", "platform", "start", "", "duration", "resources", "cost"):
            parts.append(f"<th>{esc(head)}</th>")
        parts.append("</tr></thead><tbody>")
        for i, offer in enumerate(quotes.offers):
            value = f"{offer.broker_name}|{offer.uuid}"
            checked = " checked" if i == 0 and seat is None else ""
            later = offer.start is not None and (offer.start - now).total_seconds() > now_threshold
            kind = "book" if later else "now"
            parts.append(
                f'<tr><td><input type="radio" name="offer" value="{esc(value)}"'
                f' id="eb-offer-{i}" data-kind="{kind}"{checked}></td>'
                f"<td>{esc(offer.broker_name)}</td><td>{esc(offer.platform or '—')}</td>"
                f"<td>{esc(when_text(offer.start, zone))}</td>"
                f"<td>{esc(relative(offer.start, now))}{' (booking)' if later else ''}</td>"
                f"<td>{esc(human_duration(offer.duration))}</td>"
                f"<td>{esc(offer.resources)}</td>"
                f"<td>{esc('—' if offer.cost is None else f'{offer.cost:g}')}</td></tr>"
            )
        parts.append("</tbody></table>")
        parts.append(
            '<p class="help-block">An offer that starts now starts your server; a later one '
            "is booked and your server starts by itself at its time.</p>"
        )
    else:
        parts.append('<p class="alert alert-warning" id="eb-no-offers">No broker can offer this')
        parts.append(" right now.")
        if quotes.reasons:
            parts.append(" " + esc("; ".join(quotes.reasons)))
        parts.append(" Try a later time or another profile.</p>")
    for note in quotes.notes:
        parts.append(f'<p class="alert alert-warning eb-note">{esc(note)}</p>')
    parts.append("</div>")
    return "\n".join(parts)
