"""One table of the offers from every broker, with Accept and Reject on each row.

The "starts in" and "expires in" columns count down (the panel's ticker calls :meth:`tick`).
Brokers that failed are named in a warning line above the table, never hidden; when nobody
offers, the brokers' reasons are shown instead.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

import ipywidgets as w

from .._format import human_duration, local_time, relative
from ..model import Phase
from ..offers import AsyncOffer, AsyncOffers

__all__ = ["OfferRow", "OffersTable", "countdown"]

HEADERS = (
    "broker",
    "platform",
    "start",
    "when",
    "duration",
    "resources",
    "cost",
    "expires",
    "",
)
COLUMNS = "auto auto auto auto auto auto auto auto auto"


def countdown(expires: datetime | None, now: datetime) -> str:
    """``expires in 4:59`` (minutes:seconds), ``expires in 1 h 5 min``, ``expired``."""
    if expires is None:
        return "—"
    left = int((expires - now).total_seconds())
    if left <= 0:
        return "expired"
    if left >= 3600:
        return f"expires in {human_duration(expires - now)}"
    return f"expires in {left // 60}:{left % 60:02d}"


def _cell(text: str, css: str = "") -> w.HTML:
    cell = w.HTML(html.escape(text))
    cell.add_class("eb-cell")
    if css:
        cell.add_class(css)
    return cell


class OfferRow:
    """The widgets of one offer; its state is the offer's phase."""

    def __init__(
        self,
        offer: AsyncOffer,
        on_accept: Callable[[OfferRow], None],
        on_reject: Callable[[OfferRow], None],
        zone: tzinfo | None = None,
    ) -> None:
        self.offer = offer
        self.busy = False
        self.when = _cell("", "eb-when-cell")
        self.expires = _cell("", "eb-expires")
        self.accept = w.Button(
            description="Accept", button_style="success", layout=w.Layout(width="6.5em")
        )
        self.accept.add_class("eb-accept")
        self.reject = w.Button(description="Reject", layout=w.Layout(width="6.5em"))
        self.reject.add_class("eb-reject")
        self.accept.on_click(lambda _b: on_accept(self))
        self.reject.on_click(lambda _b: on_reject(self))
        cost = offer.cost
        self.cells: list[w.Widget] = [
            _cell(offer.broker_name, "eb-broker"),
            _cell(offer.platform or "—"),
            _cell(local_time(offer.start, zone)),
            self.when,
            _cell(human_duration(offer.duration)),
            _cell(offer.resources),
            _cell("—" if cost is None else f"{cost:g}"),
            self.expires,
            w.HBox([self.accept, self.reject]),
        ]
        self.tick()

    @property
    def open(self) -> bool:
        """Still to be decided: offered and not expired."""
        return self.offer.phase == Phase.OFFERED and not self.offer.is_expired()

    def tick(self, now: datetime | None = None) -> None:
        """Refresh the relative times and the buttons (only sets widget values)."""
        now = now or datetime.now(UTC)
        self.when.value = html.escape(relative(self.offer.start, now))
        phase = self.offer.phase
        if phase == Phase.OFFERED:
            self.expires.value = html.escape(countdown(self.offer.expires, now))
        else:
            self.expires.value = f"<b>{html.escape(phase.value.lower())}</b>"
        live = self.open and not self.busy
        self.accept.disabled = not live
        self.reject.disabled = not live


class OffersTable(w.VBox):
    """Warnings, the offers grid and the reasons for NO."""

    def __init__(
        self,
        on_accept: Callable[[OfferRow], None],
        on_reject: Callable[[OfferRow], None],
        zone: tzinfo | None = None,
    ) -> None:
        self.zone = zone
        self._on_accept = on_accept
        self._on_reject = on_reject
        self.rows: list[OfferRow] = []
        self.offers: AsyncOffers | None = None
        self.warnings = w.HTML("")
        self.warnings.add_class("eb-warnings")
        self.grid = w.GridBox(
            [], layout=w.Layout(grid_template_columns=COLUMNS, grid_gap="2px 12px")
        )
        self.grid.add_class("eb-offers")
        self.reasons = w.HTML("")
        self.reasons.add_class("eb-reasons")
        super().__init__([self.warnings, self.grid, self.reasons])

    def show(self, offers: AsyncOffers) -> None:
        self.offers = offers
        self.rows = [OfferRow(o, self._on_accept, self._on_reject, self.zone) for o in offers]
        header = [w.HTML(f"<b>{html.escape(h)}</b>") for h in HEADERS]
        cells = [c for row in self.rows for c in row.cells]
        self.grid.children = tuple(header + cells) if self.rows else ()
        failed = [str(x) for x in offers.warnings]
        self.warnings.value = (
            "<div style='color:#b26a00'>⚠ "
            + html.escape(f"{len(failed)} broker(s) did not answer: " + "; ".join(failed))
            + "</div>"
            if failed
            else ""
        )
        said = [f"{b}: {m}" for b, m in offers.reasons]
        if not self.rows:
            said = said or ["no broker made an offer"]
        title = "No offers." if not self.rows else "The brokers also said:"
        self.reasons.value = (
            f"<div><b>{title}</b><ul>"
            + "".join(f"<li>{html.escape(s)}</li>" for s in said)
            + "</ul></div>"
            if said
            else ""
        )

    def open_offers(self) -> list[AsyncOffer]:
        """The offers shown that are still to be decided (they hold their brokers' capacity)."""
        return [row.offer for row in self.rows if row.open]

    def clear(self) -> None:
        self.rows = []
        self.offers = None
        self.grid.children = ()
        self.warnings.value = self.reasons.value = ""

    def tick(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        for row in self.rows:
            row.tick(now)

    @property
    def live(self) -> bool:
        """Some offer still to be decided (the ticker keeps running)."""
        return any(row.open for row in self.rows)
