"""The sidebar in a real JupyterLab, in headless Chromium driven by Playwright, against real
eb-brokers.

1. Set the reminder's lead time in the settings registry; open the sidebar; book a session
   from code (the SDK, as a notebook cell would); it appears without a reload, counts down,
   brings the "available soon" reminder; Cancel it.
2. "Run this notebook…" from the command palette on an open notebook: the dialog, the offers
   of both brokers in the sidebar, Accept, the toast, and the COMPLETED toast.
3. An interactive Jupyter server booked from code: AVAILABLE, its link on the card and in the
   toast; Cancel stops it.
4. The batch section with a real batch (``eb.map`` on the broker, three inputs, one failing):
   the batch while it runs, the "batch finished" toast, the failed run's output notebook
   opened at the failing cell, and "Re-open interactively" booking a real Jupyter server.

Screenshots go to the test's tmp_path and are copied to tests/labextension/artifacts/ (not
tracked). Uses the system Chromium at /usr/bin/chromium; no browser is ever downloaded.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api
import pytest

import eb_sdk as eb
from tests.fixtures.browser import launch_chromium
from tests.fixtures.jupyter import JupyterProcess
from tests.fixtures.notebooks import write_notebook
from tests.fixtures.services import REPO_ROOT, BrokerProcess

from .conftest import book_from_code, server_env

ARTIFACTS = Path(__file__).parent / "artifacts"
LONG = 120_000  # ms: JupyterLab on a loaded 2-core machine is slow

pytestmark = pytest.mark.slow


def installed_extension_is_current() -> None:
    """The JupyterLab under test loads the extension from the venv: it must be this build."""
    built = Path(REPO_ROOT) / "eb_labextension" / "labextension"
    installed = Path(sys.prefix) / "share/jupyter/labextensions/jupyter-execution-broker"
    assert (built / "package.json").exists(), "the extension is not built: run ./dev setup"

    def files(root: Path) -> dict[str, bytes]:
        found = root.rglob("*")
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in found
            if p.is_file() and p.name != "install.json"
        }

    assert files(built) == files(installed), (
        f"{installed} is not the current build of the extension: run ./dev setup"
    )


def start_lab(base: Path, env: dict[str, str], args: tuple[str, ...] = ()) -> JupyterProcess:
    installed_extension_is_current()
    server = JupyterProcess(base, app="lab", env=env, args=args).start()
    write_notebook(server.root / "short.ipynb", "print('n is', n * 2)", parameters="n = 1")
    return server


@pytest.fixture
def lab(
    tmp_path: Path, lab_broker: BrokerProcess, beta_broker: BrokerProcess
) -> Iterator[JupyterProcess]:
    server = start_lab(tmp_path / "lab", server_env(lab_broker, beta_broker))
    yield server
    server.stop()
    print(f"jupyterlab log: {server.log}\n{server.tail(3000)}")


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    path = tmp_path / "screenshots"
    path.mkdir()
    print(f"\nscreenshots: {path}")
    return path


@pytest.fixture
def page(shots: Path) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(LONG)
        try:
            yield page
        except BaseException:
            page.screenshot(path=str(shots / "failure.png"))
            raise
        finally:
            browser.close()


def open_sidebar(page: Any) -> Any:
    page.locator(".jp-SideBar .lm-TabBar-tab[data-id='eb-sidebar']").click()
    sidebar = page.locator("#eb-sidebar")
    sidebar.wait_for()
    return sidebar


def toast(page: Any, text: str) -> Any:
    found = page.locator(".Toastify__toast", has_text=text).first
    found.wait_for(timeout=LONG)
    return found


def run_from_palette(page: Any, label: str) -> None:
    """Open the command palette (Ctrl+Shift+C), search ``label`` and run it. The modal
    palette closes when it loses the focus, which JupyterLab may take while it settles, so
    this tries again."""
    palette = page.locator(".jp-ModalCommandPalette")
    for attempt in range(10):
        page.locator(".jp-Notebook").click(position={"x": 600, "y": 400})
        page.keyboard.press("Escape")
        page.keyboard.press("Control+Shift+C")
        try:
            palette.locator("input").fill(label, timeout=5000)
            palette.locator(".lm-CommandPalette-item", has_text=label).first.click(timeout=5000)
            print(f"ran {label!r} from the command palette on attempt {attempt + 1}")
            return
        except playwright_api.Error:
            page.wait_for_timeout(1000)
    raise AssertionError(f"could not run {label!r} from the command palette")


def save(shots: Path, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shots / name, ARTIFACTS / f"sidebar-{name}")


def test_a_session_booked_from_code_appears_counts_down_and_is_cancelled(
    lab: JupyterProcess, page: Any, shots: Path, lab_broker: BrokerProcess
) -> None:
    # the settings registry: a 15-minute reminder lead time instead of the default 10
    with lab.api() as api:
        settings = api.get("/lab/api/settings/jupyter-execution-broker:plugin").json()
        assert settings["schema"]["properties"]["leadMinutes"]["default"] == 10
        put = api.put(
            "/lab/api/settings/jupyter-execution-broker:plugin",
            json={"raw": json.dumps({"leadMinutes": 15})},
        )
        assert put.status_code == 204, put.text
    page.goto(f"{lab.url}/lab?token={lab.token}")
    sidebar = open_sidebar(page)
    sidebar.locator(".eb-broker.eb-ok", has_text="alpha").wait_for()
    sidebar.locator(".eb-broker.eb-ok", has_text="beta").wait_for()
    sidebar.locator(".eb-sessions", has_text="No sessions.").wait_for()

    # booked from code while the sidebar is open: it appears without a reload
    session = book_from_code(lab_broker, lab.root / "short.ipynb", "in 12 min")
    card = sidebar.locator(f".eb-session[data-key='alpha/{session.uuid}']")
    card.wait_for(timeout=90_000)
    card.locator(".eb-timing", has_text="starts in").wait_for()
    assert "short.ipynb" in card.inner_text()
    # inside the reminder's lead time (15 min, set above): the "available soon" toast
    reminder = toast(page, "will be available soon")
    assert "short.ipynb on alpha will be available soon: starts in" in reminder.inner_text()
    page.screenshot(path=str(shots / "session.png"))

    card.locator("button.eb-cancel").click()
    card.locator(".eb-phase", has_text="CANCELLED").wait_for()
    assert card.locator("button.eb-cancel").count() == 0
    assert session.refresh().phase.value == "CANCELLED"
    page.screenshot(path=str(shots / "cancelled.png"))
    save(shots, "session.png")
    save(shots, "cancelled.png")


def test_run_this_notebook_offers_accept_and_the_toasts(
    lab: JupyterProcess, page: Any, shots: Path
) -> None:
    page.goto(f"{lab.url}/lab/tree/short.ipynb?token={lab.token}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    toolbar_button = page.locator(".jp-NotebookPanel-toolbar [data-command='eb:run-notebook']")
    toolbar_button.wait_for()
    assert "Run this notebook" in toolbar_button.inner_text()

    # the command palette runs it as well as the toolbar button
    run_from_palette(page, "Run this notebook")

    dialog = page.locator(".jp-Dialog")
    dialog.locator("input[name='when']").fill("now")
    dialog.locator("input[name='duration']").fill("10 min")
    page.screenshot(path=str(shots / "dialog.png"))
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()

    sidebar = page.locator("#eb-sidebar")
    offers = sidebar.locator(".eb-offers")
    offers.locator(".eb-what", has_text="short.ipynb: 1 core, 2 GiB, 10 min, now").wait_for()
    offers.locator(".eb-offer", has_text="alpha").first.wait_for()
    offers.locator(".eb-offer", has_text="beta").first.wait_for()
    offers.locator(".eb-expires", has_text="expires in").first.wait_for()
    page.screenshot(path=str(shots / "offers.png"))

    first = offers.locator(".eb-offer").first
    broker = first.locator(".eb-offer-broker").inner_text()
    first.locator("button.eb-accept").click()
    accepted = toast(page, "Accepted: short.ipynb on")
    assert f"on {broker}, starts now" in accepted.inner_text()
    offers.locator(".eb-expires", has_text="rejected").first.wait_for()
    page.screenshot(path=str(shots / "accepted.png"))

    card = sidebar.locator(".eb-session", has_text=broker).first
    card.wait_for()
    card.locator(".eb-phase", has_text="COMPLETED").wait_for(timeout=180_000)
    toast(page, "short.ipynb on " + broker + " COMPLETED")
    page.screenshot(path=str(shots / "completed.png"))
    assert page.locator("#eb-sidebar .eb-error").count() == 0
    for name in ("dialog.png", "offers.png", "accepted.png", "completed.png"):
        save(shots, name)


def test_an_interactive_session_is_announced_available_with_its_link(
    lab: JupyterProcess, page: Any, shots: Path, lab_broker: BrokerProcess
) -> None:
    page.goto(f"{lab.url}/lab?token={lab.token}")
    sidebar = open_sidebar(page)
    sidebar.locator(".eb-broker.eb-ok", has_text="alpha").wait_for()

    server = eb.JupyterServer(lab.root)
    session = book_from_code(lab_broker, server, "now", name="interactive")
    card = sidebar.locator(f".eb-session[data-key='alpha/{session.uuid}']")
    card.locator(".eb-phase", has_text="AVAILABLE").wait_for(timeout=180_000)
    link = card.locator("a.eb-connector")
    url = session.refresh().connectors[0].location
    assert link.get_attribute("href") == url and link.inner_text() == "Open"
    available = toast(page, "interactive on alpha is AVAILABLE")
    assert available.locator("button", has_text="Open").count() == 1
    page.screenshot(path=str(shots / "available.png"))

    card.locator("button.eb-cancel").click()
    card.locator(".eb-phase", has_text="CANCELLED").wait_for(timeout=180_000)
    assert card.locator("a.eb-connector").count() == 0
    save(shots, "available.png")


@pytest.fixture
def batch_lab(
    tmp_path: Path, lab_broker: BrokerProcess, monkeypatch: pytest.MonkeyPatch
) -> Iterator[JupyterProcess]:
    """JupyterLab and this test sharing one batches directory, as a user's notebook kernel
    and their Jupyter server share ``~/.eb/batches``; eb.map runs in this test's process."""
    batches = tmp_path / "batches"
    monkeypatch.setenv("EB_BATCHES", str(batches))
    server = start_lab(tmp_path / "lab", {**server_env(lab_broker), "EB_BATCHES": str(batches)})
    yield server
    server.stop()
    print(f"jupyterlab log: {server.log}\n{server.tail(3000)}")


def test_batches_the_failed_run_at_its_cell_and_reopen_interactively(
    batch_lab: JupyterProcess, page: Any, shots: Path, lab_broker: BrokerProcess
) -> None:
    lab = batch_lab
    gate = lab.root / "go"  # the runs wait for it: the test sees the batch while it runs
    notebook = write_notebook(
        lab.root / "fits.ipynb",
        "import os, time\nwhile not os.path.exists(gate):\n    time.sleep(0.2)",
        "data = input_file",
        "if data == 'b.fits':\n    raise ValueError('cannot read ' + data)\nprint('read', data)",
        parameters="input_file = ''\ngate = ''",
    )
    alpha = eb.Broker(lab_broker.url, name="alpha", token=lab_broker.tokens["alice"])
    batch = eb.map(
        notebook,
        ["a.fits", "b.fits", "c.fits"],
        parameters={"gate": str(gate)},
        brokers=alpha,
        name="fits",
        output_dir=lab.root / "out",
    )
    page.goto(f"{lab.url}/lab?token={lab.token}")
    sidebar = open_sidebar(page)
    card = sidebar.locator(f".eb-batch[data-id='{batch.id}']")
    card.wait_for(timeout=60_000)
    assert "0/3" in card.inner_text()

    gate.touch()
    batch.wait(timeout=300)
    assert batch.status()["COMPLETED"] == 2 and batch.status()["FAILED"] == 1
    sidebar.locator("button.eb-refresh").click()
    toast(page, "Batch fits finished: 2 COMPLETED, 1 FAILED")
    card.locator(".eb-count", has_text="1 FAILED").wait_for()
    card.locator("summary", has_text="1 failed run").click()
    run = card.locator(".eb-failed-run", has_text="b.fits")
    assert "ValueError: cannot read b.fits" in run.inner_text()
    page.screenshot(path=str(shots / "batch.png"))

    # the output notebook opens at the failing cell: index 3 of the submitted notebook, found
    # below papermill's marks (its banner, the injected parameters, the note above the cell)
    run.locator("button.eb-open-failed", has_text="Open at cell 3").click()
    active = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell.jp-mod-active")
    active.locator(".cm-content", has_text="raise ValueError").wait_for()
    assert page.locator(".lm-TabBar-tab.lm-mod-current", has_text="00001-b.ipynb").count() == 1
    page.screenshot(path=str(shots / "failing-cell.png"))

    # "re-open interactively": a Jupyter server booked now with that run's parameters
    run.locator("button.eb-reopen").click()
    toast(page, "Re-opening b.fits interactively on alpha")
    session_card = sidebar.locator(".eb-session", has_text=f"debug {batch.id}")
    session_card.wait_for()
    session_card.locator(".eb-phase", has_text="AVAILABLE").wait_for(timeout=180_000)
    copies = list(lab.root.glob("fits.debug-*.ipynb"))
    assert len(copies) == 1 and "'b.fits'" in copies[0].read_text()
    page.screenshot(path=str(shots / "reopened.png"))
    session_card.locator("button.eb-cancel").click()
    session_card.locator(".eb-phase", has_text="CANCELLED").wait_for(timeout=180_000)
    for name in ("batch.png", "failing-cell.png", "reopened.png"):
        save(shots, name)
