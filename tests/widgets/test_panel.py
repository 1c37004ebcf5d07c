"""The panel's logic, driven by button clicks against a real broker (ipywidgets' test comm)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

import eb_sdk as eb
from eb_sdk import aio
from eb_sdk.model import Capabilities, Phase
from eb_sdk.offers import AsyncOffer
from eb_sdk.widgets import Panel
from eb_sdk.widgets._form import RequestForm, parse_parameters
from eb_sdk.widgets._offers import countdown
from tests.conftest import BrokerFactory

pytestmark = pytest.mark.usefixtures("test_comm", "close_clients")

KIND = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/"
SERVER_KIND = "urn:jeb:v1:executable:jupyter-server"


def caps(
    name: str, cores: int, memory: int, accelerators: dict[str, int] | None = None
) -> Capabilities:
    return Capabilities(
        name=name,
        platform="local",
        version="1",
        executables=[KIND + "jupyter-notebook.yaml", KIND + "docker-container.yaml", SERVER_KIND],
        max_compute={"cores": cores, "memory": memory, "storage": 0},
        accelerators=accelerators or {},
        timezone="UTC",
        offer_expiry="PT5M",
        max_offers=4,
        max_duration="P7D",
    )


async def until(check: object, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    """Poll ``check()`` (a callable) until true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.05)


def test_importing_eb_sdk_does_not_import_ipywidgets() -> None:
    code = "import sys, eb_sdk; assert callable(eb_sdk.panel); print('ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_countdown_and_parameters() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert countdown(now + timedelta(seconds=299), now) == "expires in 4:59"
    assert countdown(now + timedelta(hours=2, minutes=5), now) == "expires in 2 h 5 min"
    assert countdown(now - timedelta(seconds=1), now) == "expired"
    assert countdown(None, now) == "—"
    assert parse_parameters("n=10, name=abc, xs=[1, 2], f=0.5") == {
        "n": 10,
        "name": "abc",
        "xs": [1, 2],
        "f": 0.5,
    }
    with pytest.raises(eb.InvalidRequest):
        parse_parameters("just text")


def test_form_choices_follow_the_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/me/work/this.ipynb")
    form = RequestForm(UTC)
    form.apply_capabilities([caps("a", 4, 8)])
    assert form.gpu_row.layout.display == "none"  # nobody has a GPU: no GPU option
    assert form.cores.max == 4 and form.memory.max == 8
    assert [v for _, v in form.what.options] == ["current", "notebook", "server", "container"]
    form.apply_capabilities([caps("a", 4, 8), caps("b", 32, 256, {"gpu:A100": 2})])
    assert form.gpu_row.layout.display is None
    assert form.cores.max == 32 and form.gpus.max == 2
    assert [v for _, v in form.gpu_model.options] == ["", "A100"]
    form.gpus.value, form.gpu_model.value = 1, "A100"
    assert "A100" in form.compute().model_dump_json()
    # what to run: the current notebook, a path with parameters, a container
    assert form.executable().location == "/home/me/work/this.ipynb"
    form.what.value = "notebook"
    assert form.path.layout.display is None and form.container_box.layout.display == "none"
    form.path.value, form.parameters.value = "/data/a.ipynb", "n=3"
    request = form.collect()
    assert request["executable"].location == "/data/a.ipynb"
    assert request["start"] == "now" and request["duration"] == "30 min"
    form.what.value = "server"
    assert form.server_box.layout.display is None and form.notebook_box.layout.display == "none"
    assert form.executable().root_dir is None
    form.server_dir.value = "/data/project"
    assert form.executable().root_dir == "/data/project"
    form.what.value = "container"
    form.image.value, form.command.value = "python:3.12-slim", "python -c 'print(1)'"
    container = form.executable()
    assert container.image.locations == ["python:3.12-slim"]
    assert container.command == ["python", "-c", "print(1)"]
    # when: date and time pickers give a window in the user's zone
    form.when_mode.value = "picker"
    assert form.when.layout.display == "none" and form.picker_box.layout.display is None
    window = form.start()
    assert not isinstance(window, str) and window.end - window.start == timedelta(hours=1)


async def test_find_accept_and_follow_a_session_to_completed(
    alpha: eb.Broker, dead_url: str, short_notebook: Path
) -> None:
    panel = eb.panel([alpha, eb.Broker(dead_url, name="gone")], timeout=10)
    assert isinstance(panel, Panel)
    await panel.wait_idle(30)
    assert "alpha" in panel.brokers_line.value and "up to 4 cores" in panel.brokers_line.value
    assert "gone" in panel.brokers_line.value  # no capabilities from it: said so
    assert panel.form.cores.max == 4 and panel.form.gpu_row.layout.display == "none"

    panel.form.what.value = "notebook"
    panel.form.path.value = str(short_notebook)
    panel.form.parameters.value = "n=21"
    panel.form.duration.value = "10 min"
    panel.form.when.value = "now"
    panel.form.find.click()
    await panel.wait_idle(30)

    rows = panel.table.rows
    assert rows, panel.status.value + panel.table.reasons.value
    assert "gone" in panel.table.warnings.value  # the failed broker is named, not hidden
    assert "offer" in panel.status.value
    first = rows[0]
    texts = [getattr(c, "value", "") for c in first.cells[:8]]
    assert texts[0] == "alpha" and texts[3].startswith("starts")
    assert texts[7].startswith("expires in ")
    assert not first.accept.disabled and not first.reject.disabled

    first.accept.click()
    await panel.wait_idle(120)  # accepting, then following the card to a final phase
    card = panel.session_cards[0]
    assert card.session.phase == Phase.COMPLETED, card.messages.value + card.error.value
    assert "COMPLETED" in card.phase.value
    assert card.progress.value == 1.0 and card.progress.bar_style == "success"
    assert "output notebook" in card.messages.value
    assert card.cancel.disabled
    assert "accepted" in first.expires.value and first.accept.disabled
    for other in rows[1:]:  # the other offers were rejected on accept
        assert "rejected" in other.expires.value and other.accept.disabled
    panel.close()


async def test_errors_show_inline_reject_and_cancel(alpha: eb.Broker, short_notebook: Path) -> None:
    panel = eb.panel([alpha])
    await panel.wait_idle(30)
    panel.form.what.value = "notebook"
    panel.form.find.click()  # no path given
    await panel.wait_idle(10)
    assert "eb-error" in panel.status.value and "path" in panel.status.value

    panel.form.path.value = str(short_notebook)
    panel.form.duration.value = "a while"
    panel.form.find.click()
    await panel.wait_idle(10)
    assert "duration" in panel.status.value and "eb-error" in panel.status.value
    assert not panel.table.rows

    panel.form.duration.value = "200 h"  # longer than the broker allows: NO, with its reason
    panel.form.find.click()
    await panel.wait_idle(30)
    assert not panel.table.rows and "No offers" in panel.table.reasons.value
    assert "longer than this broker" in panel.table.reasons.value

    panel.form.duration.value = "10 min"
    panel.form.when.value = "tomorrow 09:00"
    panel.form.find.click()
    await panel.wait_idle(30)
    assert panel.table.rows, panel.status.value
    first = panel.table.rows[0]
    first.reject.click()
    await panel.wait_idle(10)
    assert "rejected" in first.expires.value and first.accept.disabled

    panel.form.find.click()  # ask again, accept, then cancel the booking
    await panel.wait_idle(30)
    second = panel.table.rows[0]
    assert not second.accept.disabled
    second.accept.click()
    await until(lambda: panel.session_cards)
    card = panel.session_cards[0]
    await until(lambda: not card.cancel.disabled)
    assert card.session.phase in (Phase.ACCEPTED, Phase.WAITING)
    assert "starts in" in card.detail.value
    card.cancel.click()
    await panel.wait_idle(30)
    assert card.session.phase == Phase.CANCELLED
    assert "CANCELLED" in card.phase.value and card.progress.bar_style == "warning"

    second.accept.click()  # the offer is gone: the button is off (and the SDK would refuse)
    await panel.wait_idle(10)
    assert second.accept.disabled

    panel.form.find.click()  # several sessions at once: a second card, on top
    await panel.wait_idle(30)
    panel.table.rows[0].accept.click()
    await until(lambda: len(panel.session_cards) == 2)
    newest = panel.session_cards[0]
    assert newest is not card and len(panel.sessions) == 2
    await until(lambda: not newest.cancel.disabled)
    newest.cancel.click()
    await panel.wait_idle(30)
    assert [s.phase for s in panel.sessions] == [Phase.CANCELLED, Phase.CANCELLED]
    panel.close()


async def test_gpus_only_where_a_broker_has_them(
    alpha: eb.Broker, broker_factory: BrokerFactory, short_notebook: Path
) -> None:
    gpu = broker_factory(
        "--LocalPlatform.cores=4",
        "--LocalPlatform.memory_gib=8",
        "--LocalPlatform.accelerators=gpu:A100=2",
    )
    panel = eb.panel([alpha, eb.Broker(gpu.url, name="gpu", token=gpu.tokens["alice"])])
    await panel.wait_idle(30)
    assert panel.form.gpu_row.layout.display is None, panel.brokers_line.value
    assert [v for _, v in panel.form.gpu_model.options] == ["", "A100"]
    assert panel.form.gpus.max == 2 and "2 GPU" in panel.brokers_line.value
    panel.form.what.value = "notebook"
    panel.form.path.value = str(short_notebook)
    panel.form.gpus.value, panel.form.gpu_model.value = 1, "A100"
    panel.form.find.click()
    await panel.wait_idle(30)
    assert panel.table.rows, panel.status.value + panel.table.reasons.value
    assert {row.offer.broker_name for row in panel.table.rows} == {"gpu"}
    assert all("GPU A100" in row.offer.resources for row in panel.table.rows)
    assert "alpha" in panel.table.reasons.value  # it said why not
    for row in panel.table.rows:
        row.reject.click()
    await panel.wait_idle(10)
    panel.close()


def test_a_panel_made_without_an_event_loop_says_so_inline(alpha: eb.Broker) -> None:
    panel = eb.panel([alpha])
    assert panel.ready is None and "event loop" in panel.brokers_line.value
    panel.form.find.click()
    assert "event loop" in panel.status.value
    panel.close()


async def test_every_broker_failing_is_one_line(dead_url: str) -> None:
    panel = eb.panel([eb.Broker(dead_url, name="gone")], timeout=5)
    await panel.wait_idle(30)
    assert "none answered" in panel.brokers_line.value
    panel.form.what.value = "notebook"
    panel.form.path.value = "/tmp/x.ipynb"
    panel.form.find.click()
    await panel.wait_idle(30)
    assert "gone" in panel.status.value and "eb-error" in panel.status.value
    assert "Traceback" not in panel.status.value
    assert not panel.form.find.disabled
    panel.close()


async def phase_on_broker(offer: AsyncOffer, broker: eb.Broker) -> Phase:
    return (await aio.find_offer(offer.uuid, brokers=[broker])).phase


async def test_this_notebook_in_the_panels_zone(
    alpha: eb.Broker, short_notebook: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JPY_SESSION_NAME", str(short_notebook))  # as Jupyter Server sets it
    panel = eb.panel([alpha], tz="Asia/Tokyo")
    await panel.wait_idle(30)
    assert panel.form.what.value == "current"  # "this notebook" comes first
    panel.form.parameters.value = "n=21"
    panel.form.duration.value = "10 min"
    panel.form.find.click()
    await panel.wait_idle(30)
    first = panel.table.rows[0]
    assert first.cells[2].value.endswith("JST"), first.cells[2].value  # the panel's zone
    assert first.offer.wire.executable.location == str(short_notebook)
    first.accept.click()
    await panel.wait_idle(120)
    card = panel.session_cards[0]
    assert card.session.phase == Phase.COMPLETED, card.messages.value + card.error.value
    assert "JST" in card.detail.value and "output notebook" in card.messages.value
    panel.close()


async def test_date_and_time_pickers_book_a_slot_then(
    alpha: eb.Broker, short_notebook: Path
) -> None:
    zone = ZoneInfo("America/New_York")
    panel = eb.panel([alpha], tz=zone)
    await panel.wait_idle(30)
    begin = (datetime.now(zone) + timedelta(hours=2)).replace(second=0, microsecond=0)
    panel.form.what.value = "notebook"
    panel.form.path.value = str(short_notebook)
    panel.form.when_mode.value = "picker"
    panel.form.date.value, panel.form.time.value = begin.date(), begin.time()
    panel.form.window.value = 15
    panel.form.find.click()
    await panel.wait_idle(30)
    rows = panel.table.rows
    assert rows, panel.status.value + panel.table.reasons.value
    for row in rows:  # every offer starts inside the window picked
        assert row.offer.start is not None
        assert begin <= row.offer.start <= begin + timedelta(minutes=15), row.offer.start
    assert rows[0].cells[2].value.endswith(("EST", "EDT"))
    rows[0].accept.click()
    await until(lambda: panel.session_cards)
    card = panel.session_cards[0]
    await until(lambda: not card.cancel.disabled)
    assert card.session.phase in (Phase.ACCEPTED, Phase.WAITING)
    assert begin <= (card.session.start or begin) <= begin + timedelta(minutes=15)
    card.cancel.click()
    await panel.wait_idle(30)
    assert card.session.phase == Phase.CANCELLED
    panel.close()


async def test_a_jupyter_server_card_links_to_it(alpha: eb.Broker) -> None:
    panel = eb.panel([alpha])
    await panel.wait_idle(30)
    assert "server" in [v for _, v in panel.form.what.options]  # the broker runs servers
    panel.form.what.value = "server"
    panel.form.duration.value = "10 min"
    panel.form.find.click()
    await panel.wait_idle(30)
    panel.table.rows[0].accept.click()
    await until(lambda: panel.session_cards)
    card = panel.session_cards[0]
    await until(lambda: card.session.phase == Phase.AVAILABLE, timeout=90)
    await until(lambda: "href" in card.link.value)
    assert "eb-connector" in card.link._dom_classes
    url = card.session.connectors[0].location
    assert url and url.startswith("http://127.0.0.1:") and f"href='{url}'" in card.link.value
    async with httpx.AsyncClient() as client:  # the link leads to the running server
        assert (await client.get(url.replace("/?token=", "/api/status?token="))).status_code == 200
    card.cancel.click()
    await panel.wait_idle(60)
    assert card.session.phase in (Phase.CANCELLED, Phase.COMPLETED) and card.link.value == ""
    panel.close()


async def test_offers_let_go_when_asked_again_or_closed_and_one_accept_per_click(
    alpha: eb.Broker, short_notebook: Path
) -> None:
    panel = eb.panel([alpha])
    await panel.wait_idle(30)
    panel.form.what.value = "notebook"
    panel.form.path.value = str(short_notebook)
    panel.form.when.value = "tomorrow 09:00"
    panel.form.find.click()
    await panel.wait_idle(30)
    before = [row.offer for row in panel.table.rows]
    assert before
    panel.form.find.click()  # asking again lets go of the offers shown
    await panel.wait_idle(30)
    assert {await phase_on_broker(o, alpha) for o in before} == {Phase.REJECTED}
    # a fast double click accepts once (the second click finds the rows busy)
    first = panel.table.rows[0]
    first.accept.click()
    first.accept.click()
    await until(lambda: panel.session_cards and not any(r.busy for r in panel.table.rows))
    await asyncio.sleep(0.5)  # a second accept would have failed by now
    assert len(panel.session_cards) == 1 and "eb-error" not in panel.status.value
    panel.session_cards[0].cancel.click()
    await panel.wait_idle(30)  # cancelled: its card stops following
    panel.form.find.click()
    await panel.wait_idle(30)
    shown = [row.offer for row in panel.table.rows]
    panel.close()  # closing lets go of them too
    await until(lambda: all(o.phase == Phase.REJECTED for o in shown), timeout=15)
    assert {await phase_on_broker(o, alpha) for o in shown} == {Phase.REJECTED}
