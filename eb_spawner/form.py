"""The spawner's options form: plain HTML inside the hub's spawn page, plus a little script.

Without JavaScript everything works by posting the form (Refresh posts it, and JupyterHub
shows the page again). With it, changing the profile, "when" or the date, or pressing
Refresh, fetches the spawn page again (a GET with the choice in an ``X-EB-Form`` header, so
the hub never takes it for a spawn) and swaps in the new offers. News (offers refreshed, a slot
booked) is shown in the form, never in JupyterHub's "Error:" box.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from eb_sdk._format import human_duration, relative
from eb_sdk.model.messages import EARLIEST_FIT, POLICY

from .config import WHEN_CHOICES, Profile

#: The request header the form's script sends its choice in (``{"profile", "when", "at"}``).
CHOICE_HEADER = "X-EB-Form"


@dataclass(frozen=True)
class Fit:
    """A broker's "the earliest slot that would fit" (``urn:earliest-fit``): bookable."""

    broker: str
    start: datetime
    end: datetime | None = None

    @property
    def ref(self) -> str:
        return f"fit|{self.broker}|{self.start.astimezone(UTC).isoformat()}"


@dataclass
class Quotes:
    """Offers for the form, the brokers' reasons, the slots that would fit, broker failures."""

    offers: list[Any]
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fits: list[Fit] = field(default_factory=list)


def reasons_and_fits(said: list[tuple[str, Any]], offered: set[str]) -> tuple[list[str], list[Fit]]:
    """The brokers' messages in words, and their earliest fitting slots (brokers that offered
    nothing only), from ``Offers.reasons`` pairs of (broker, MessageItem)."""
    reasons: list[str] = []
    fits: dict[str, Fit] = {}
    for broker, item in said:
        values = dict(item.values or {})
        if item.kind == EARLIEST_FIT:
            if broker in offered or not values.get("start"):
                continue
            try:
                start = datetime.fromisoformat(str(values["start"]))
                end = datetime.fromisoformat(str(values["end"])) if values.get("end") else None
            except ValueError:
                continue
            if broker not in fits or start < fits[broker].start:
                fits[broker] = Fit(broker, start, end)
            continue
        text = item.message or str(item)
        if item.kind == POLICY:
            text = f"refused by its policy: {text}"
        reasons.append(f"{broker}: {text}")
    return reasons, sorted(fits.values(), key=lambda f: f.start)


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


def parse_choice(header: str | None) -> dict[str, str]:
    """The script's choice header as ``{"profile", "when", "at"}`` (unknown keys dropped)."""
    try:
        data = json.loads(header or "")
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: str(data[k])[:100] for k in ("profile", "when", "at") if data.get(k) is not None}


def render(
    profiles: list[Profile],
    chosen: Profile,
    choice: dict[str, str],
    quotes: Quotes,
    zone: tzinfo,
    now_threshold: float,
    news_html: str = "",
    seat: Any = None,
    bookings: list[Any] | None = None,
    service_url: str = "",
) -> str:
    now = datetime.now(UTC)
    parts = ['<div id="eb-spawner-form">']
    if news_html:  # made by the spawner, escaped there
        parts.append(f'<p class="alert alert-success" id="eb-message">{news_html}</p>')
    if bookings:
        listed = "; ".join(
            f"{when_text(b.start, zone)} on {b.broker} ({b.profile})" for b in bookings[:3]
        )
        more = f" and {len(bookings) - 3} more" if len(bookings) > 3 else ""
        link = f' — <a href="{esc(service_url)}">see or cancel</a>' if service_url else ""
        parts.append(
            f'<p class="help-block" id="eb-bookings">Your bookings: {esc(listed)}{more}{link}</p>'
        )
    if seat is not None:
        parts.append(
            '<div class="alert alert-success" id="eb-seat"><label>'
            f'<input type="radio" name="offer" value="{esc(seat.ref)}" data-kind="now" checked>'
            f" Your workshop seat ({esc(seat.group)}, {esc(seat.profile)}) on "
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
        'id="eb-refresh" formnovalidate>Refresh offers</button> '
        '<span id="eb-status" class="help-block" role="status"></span>'
    )
    parts.append(
        f"<h4>Offers for {esc(chosen.display_name)}, "
        f"{esc(WHEN_CHOICES.get(choice.get('when', 'now'), ''))}</h4>"
    )
    checked_first = seat is None
    if quotes.offers:
        parts.append('<table class="table table-condensed" id="eb-offers"><thead><tr>')
        for head in ("", "broker", "platform", "start", "", "duration", "resources", "cost"):
            parts.append(f"<th>{esc(head)}</th>")
        parts.append("</tr></thead><tbody>")
        for i, offer in enumerate(quotes.offers):
            value = f"{offer.broker_name}|{offer.uuid}"
            checked = " checked" if i == 0 and checked_first else ""
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
        when = choice.get("when", "now")
        then = "right now" if when == "now" else WHEN_CHOICES.get(when, "then")
        advice = (
            "Book the earliest slot that fits below, or try another time or profile."
            if quotes.fits
            else "Try a later time or another profile."
        )
        parts.append(
            f'<p class="alert alert-warning" id="eb-no-offers">No broker can offer this '
            f"{esc(then)}. {advice}</p>"
        )
    for i, fit in enumerate(quotes.fits):
        checked = " checked" if i == 0 and checked_first and not quotes.offers else ""
        parts.append(
            f'<div class="radio eb-fit"><label><input type="radio" name="offer" '
            f'value="{esc(fit.ref)}" id="eb-fit-{i}" data-kind="book"{checked}> '
            f"Book the earliest slot that fits on {esc(fit.broker)}: "
            f"<b>{esc(when_text(fit.start, zone))}</b> ({esc(relative(fit.start, now))})"
            "</label></div>"
        )
    if quotes.reasons:
        parts.append('<ul class="eb-reasons">')
        parts.extend(f"<li>{esc(r)}</li>" for r in quotes.reasons)
        parts.append("</ul>")
    for note in quotes.notes:
        parts.append(f'<p class="alert alert-warning eb-note">{esc(note)}</p>')
    parts.append(SCRIPT)
    parts.append("</div>")
    return "\n".join(parts)


#: Refresh without a full post; label Start "Book" for later offers; show the date field
#: only for "a date and time".
SCRIPT = """<script>
(function () {
  if (window.ebSpawnerForm) { return; }
  window.ebSpawnerForm = true;
  var box = document.getElementById("eb-spawner-form");
  var form = box && box.closest("form");
  if (!form) { return; }
  function byId(id) { return document.getElementById(id); }
  function tidy() {
    var when = byId("eb-when"), at = byId("eb-at");
    if (when && at) { at.style.display = when.value === "at" ? "" : "none"; }
    var start = form.querySelector("button.btn-jupyter");
    var picked = form.querySelector("input[name=offer]:checked");
    if (start) {
      start.textContent = picked && picked.dataset.kind === "book" ? "Book" : "Start";
    }
  }
  var asked = 0;
  function refresh() {
    var when = byId("eb-when").value, at = byId("eb-at").value;
    if (when === "at" && !at) { byId("eb-status").textContent = "Pick a date and time."; return; }
    var choice = {profile: byId("eb-profile").value, when: when, at: at};
    var mine = ++asked;
    byId("eb-status").textContent = "Asking the brokers…";
    box.setAttribute("aria-busy", "true");
    fetch(window.location.pathname, {
      credentials: "same-origin",
      headers: {"CHOICE_HEADER": JSON.stringify(choice)}
    }).then(function (answer) {
      if (!answer.ok) { throw new Error("the hub answered " + answer.status); }
      return answer.text();
    }).then(function (text) {
      if (mine !== asked) { return; }
      var page = new DOMParser().parseFromString(text, "text/html");
      var fresh = page.getElementById("eb-spawner-form");
      if (!fresh) { throw new Error("the page came back without offers; reload it"); }
      var old = document.querySelector(".spawn-error-msg");  // about the offers before
      if (old) { old.remove(); }
      box.replaceWith(fresh);
      box = fresh;
      tidy();
    }).catch(function (err) {
      if (mine !== asked) { return; }
      box.removeAttribute("aria-busy");
      byId("eb-status").textContent = "Could not refresh the offers: " + err.message;
    });
  }
  form.addEventListener("change", function (event) {
    var id = event.target.id;
    if (id === "eb-profile" || id === "eb-when" || id === "eb-at") { tidy(); refresh(); }
    if (event.target.name === "offer") { tidy(); }
  });
  form.addEventListener("click", function (event) {
    if (event.target.id === "eb-refresh") { event.preventDefault(); refresh(); }
  });
  tidy();
})();
</script>""".replace("CHOICE_HEADER", CHOICE_HEADER)
