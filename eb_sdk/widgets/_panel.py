"""``eb.panel()``: the form, the offers table and the session cards in one widget.

Every piece of work (reading the brokers' capabilities, asking for offers, accepting,
rejecting, cancelling, following sessions, the countdown ticker) is an ``asyncio`` task on
the kernel's event loop using :mod:`eb_sdk.aio`; the tasks only set widget values. Errors
are shown in the status line or on the card concerned.
"""

from __future__ import annotations

import asyncio
import html
from datetime import tzinfo
from typing import Any

import ipywidgets as w

from .. import aio
from .._client import BrokerClient
from .._config import Broker, BrokerSpec
from .._fanout import fanout
from .._format import user_zone
from ..model import Capabilities
from ..offers import AsyncOffer, reject_open
from ..sessions import AsyncSession
from ._cards import SessionCard
from ._form import RequestForm
from ._offers import OfferRow, OffersTable
from ._runner import Runner, error_html, error_text

__all__ = ["Panel"]

#: How often the countdowns move (seconds).
TICK = 1.0


class Panel(w.VBox):
    """Describe a request, compare every broker's offers, accept one, follow the sessions."""

    def __init__(
        self,
        brokers: BrokerSpec | None = None,
        *,
        tz: str | tzinfo | None = None,
        timeout: float | None = None,
    ) -> None:
        self.broker_spec = brokers
        self.timeout = timeout
        self.zone: tzinfo = user_zone() if tz is None else _zone(tz)
        self.runner = Runner()
        self.capabilities: list[tuple[Broker, Capabilities]] = []
        self.brokers_line = w.HTML("<i>asking the brokers what they offer…</i>")
        self.brokers_line.add_class("eb-brokers")
        self.form = RequestForm(self.zone)
        self.form.find.on_click(lambda _b: self._spawn(self.find()))
        self.status = w.HTML("")
        self.status.add_class("eb-status")
        self.table = OffersTable(self._accept_clicked, self._reject_clicked, self.zone)
        self.cards = w.VBox([])
        self.cards.add_class("eb-sessions")
        self._ticker: asyncio.Task[Any] | None = None
        super().__init__(
            [
                w.HTML("<h3 style='margin:4px 0'>When, and where, can I run this?</h3>"),
                self.brokers_line,
                self.form,
                self.status,
                self.table,
                self.cards,
            ]
        )
        self.add_class("eb-panel")
        self.ready = self.runner.spawn(self.load_capabilities(), self._brokers_error)

    # -- plumbing ------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any] | None:
        return self.runner.spawn(coro, self.show_error)

    def show_error(self, text: str) -> None:
        self.status.value = error_html(text)

    def _say(self, text: str) -> None:
        self.status.value = text

    def _brokers_error(self, text: str) -> None:
        self.brokers_line.value = error_html(text)

    @property
    def sessions(self) -> list[AsyncSession]:
        """The sessions accepted here, newest first."""
        return [card.session for card in self.session_cards]

    @property
    def session_cards(self) -> list[SessionCard]:
        return [c for c in self.cards.children if isinstance(c, SessionCard)]

    async def wait_idle(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Until no work is in flight (the countdown ticker aside); for tests and scripts."""
        await self.runner.drain(timeout)

    def close(self) -> None:
        """Stop every task, let go of the offers still shown, and close the widgets."""
        self.runner.cancel()
        self.runner.detach(reject_open(self.table.open_offers()))
        _close_tree(self)

    def _close_self(self) -> None:
        super().close()

    # -- brokers -------------------------------------------------------------------------------

    async def load_capabilities(self) -> None:
        """Ask every broker what it can do; the form's choices follow."""
        chosen = aio._brokers(self.broker_spec)

        async def call(client: BrokerClient) -> Capabilities:
            caps: Capabilities = await client.capabilities()
            return caps

        result = await fanout(chosen, call, aio._deadline(self.timeout))
        self.capabilities = list(result.results)
        self.form.apply_capabilities([c for _, c in self.capabilities])
        parts = []
        for broker, caps in self.capabilities:
            size = caps.max_compute
            gpus = sum(n for pool, n in caps.accelerators.items() if pool.lower().startswith("gpu"))
            extra = f", {gpus} GPU" if gpus else ""
            parts.append(
                f"<b>{html.escape(broker.name)}</b> ({html.escape(caps.platform)}: "
                f"up to {size.get('cores', 0)} cores, {size.get('memory', 0)} GiB{extra})"
            )
        answered = {b.name for b, _ in self.capabilities}
        quiet = [x for x in result.warnings if x.broker not in answered]
        text = "Brokers: " + (", ".join(parts) if parts else "<i>none answered</i>")
        if quiet:
            text += "<br>" + error_html("no capabilities from " + "; ".join(str(x) for x in quiet))
        self.brokers_line.value = text

    # -- offers --------------------------------------------------------------------------------

    async def find(self) -> None:
        """Ask every broker for offers and show them in one table."""
        try:
            kwargs = self.form.collect()
        except ValueError as exc:
            self.show_error(error_text(exc))
            return
        self.form.find.disabled = True
        self._say(f"<i>asking the brokers for {self.form.describe()}…</i>")
        await reject_open(self.table.open_offers())  # the offers shown before hold capacity
        self.table.clear()
        try:
            offers = await aio.request(
                kwargs.pop("executable"),
                brokers=self.broker_spec,
                timeout=self.timeout,
                tz=self.zone,
                **kwargs,
            )
        except Exception as exc:
            self.show_error(error_text(exc))
            return
        finally:
            self.form.find.disabled = False
        self.table.show(offers)
        count = len(offers)
        self._say(
            f"{count} offer{'s' if count != 1 else ''} from "
            f"{len(offers.brokers)} broker{'s' if len(offers.brokers) != 1 else ''}"
            if count
            else ""
        )
        self._start_ticker()

    def _accept_clicked(self, row: OfferRow) -> None:
        if not row.open or row.busy:  # a disabled button's late click does nothing
            return
        self._busy(self.table.rows, True)  # at once: a second click must find them busy
        if self._spawn(self.accept(row.offer)) is None:
            self._busy(self.table.rows, False)

    def _reject_clicked(self, row: OfferRow) -> None:
        if not row.open or row.busy:
            return
        self._busy([row], True)
        if self._spawn(self.reject(row.offer)) is None:
            self._busy([row], False)

    def _busy(self, rows: list[OfferRow], busy: bool) -> None:
        for row in rows:
            row.busy = busy
            row.tick()

    def _row(self, offer: AsyncOffer) -> OfferRow | None:
        return next((r for r in self.table.rows if r.offer is offer), None)

    async def accept(self, offer: AsyncOffer) -> SessionCard | None:
        """Book ``offer`` (the other offers are rejected) and add a card for its session."""
        row = self._row(offer)
        self._busy(self.table.rows, True)  # one decision at a time
        self._say(f"<i>accepting the offer of {html.escape(offer.broker_name)}…</i>")
        try:
            session = await offer.accept()
        except Exception as exc:
            self.show_error(error_text(exc))
            return None
        finally:
            self._busy(self.table.rows, False)
        if row is not None:
            row.tick()
        card = self.add_session(session)
        self._say(f"accepted: session <code>{html.escape(session.uuid[:8])}</code>")
        return card

    async def reject(self, offer: AsyncOffer) -> None:
        rows = [r for r in [self._row(offer)] if r is not None]
        self._busy(rows, True)
        try:
            await offer.reject()
        finally:
            self._busy(rows, False)

    # -- sessions ------------------------------------------------------------------------------

    def add_session(self, session: AsyncSession) -> SessionCard:
        """Show a card for ``session`` (newest on top) and follow it."""
        card = SessionCard(session, self._cancel_clicked, self.zone)
        self.cards.children = (card, *self.cards.children)
        self.runner.spawn(card.follow(), card.show_error)
        self._start_ticker()
        return card

    def _cancel_clicked(self, card: SessionCard) -> None:
        self.runner.spawn(card.do_cancel(), card.show_error)

    # -- countdowns ----------------------------------------------------------------------------

    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = self.runner.spawn(self._tick(), self.show_error, background=True)

    async def _tick(self) -> None:
        """Move the countdowns every second while something is counting down."""
        while self.table.live or any(not c.final for c in self.session_cards):
            await asyncio.sleep(TICK)
            self.table.tick()
            for card in self.session_cards:
                card.tick()
        self.table.tick()


def _close_tree(widget: w.Widget) -> None:
    """Close ``widget`` and everything inside it (children, and form parts not shown)."""
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    if isinstance(widget, Panel):
        widget._close_self()
    else:
        widget.close()


def _zone(tz: str | tzinfo) -> tzinfo:
    if isinstance(tz, str):
        from zoneinfo import ZoneInfo

        return ZoneInfo(tz)
    return tz
