"""The panel in a real JupyterLab, in headless Chromium driven by Playwright.

Opens a notebook, runs ``eb.panel()``, picks "a notebook", types its path, clicks "Find
offers", accepts the first offer and waits for the session card to say COMPLETED. Screenshots
go to the test's tmp_path (printed) and the last one is copied to tests/widgets/artifacts/.
Uses the system Chromium at /usr/bin/chromium; no browser is ever downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.browser import launch_chromium
from tests.fixtures.notebooks import write_notebook
from tests.fixtures.services import BrokerProcess, free_port, wait_http

ARTIFACTS = Path(__file__).parent / "artifacts"
LONG = 120_000  # ms: a cold kernel on a loaded 2-core machine is slow

import playwright.sync_api as playwright_api  # noqa: E402 - after the constants it documents

pytestmark = pytest.mark.slow


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path


@pytest.fixture
def lab(tmp_path: Path, panel_broker: BrokerProcess) -> Iterator[Lab]:
    """JupyterLab on a free port, its kernels seeing the broker through EB_BROKERS/EB_TOKEN."""
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "jupyter-config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    port, token = free_port(), "panel-test-token"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "EB_BROKERS": f"alpha={panel_broker.url}",
        "EB_TOKEN": panel_broker.tokens["alice"],
        "EB_CONFIG": str(tmp_path / "no-brokers.yaml"),
        "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
    }
    env.pop("JPY_SESSION_NAME", None)
    log = tmp_path / "jupyterlab.log"
    cmd = [
        str(Path(sys.executable).with_name("jupyter")),
        "lab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/api/status?token={token}", timeout=60, proc=proc)
        yield Lab(url, token, root, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_kernel_idle(lab: Lab, timeout: float = 120.0) -> None:
    """Until the server has a session for panel.ipynb whose kernel says it is idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = httpx.get(f"{lab.url}/api/sessions", params={"token": lab.token}, timeout=5)
        for item in answer.json():
            if item.get("path") == "panel.ipynb" and item["kernel"]["execution_state"] == "idle":
                return
        time.sleep(0.25)
    raise AssertionError(f"no idle kernel for panel.ipynb after {timeout} s")


def run_first_cell(page: Any) -> None:
    """Run the first cell in place; again if the kernel was not ready and it did not start.

    A kernel that shows idle can still drop the very first execute request while it is being
    connected, leaving the prompt at ``[ ]:``; a queued or finished run shows ``[*]``/``[1]``.
    """
    cell = page.locator(".jp-Notebook .jp-Cell").first
    prompt = cell.locator(".jp-InputPrompt")
    for attempt in range(4):
        cell.locator(".cm-content").click()
        page.keyboard.press("Control+Enter")
        try:
            playwright_api.expect(prompt).not_to_have_text("[ ]:", timeout=15_000)
            print(f"first cell started on attempt {attempt + 1}")
            return
        except AssertionError:
            continue
    raise AssertionError("the first cell never started running")


def test_panel_in_jupyterlab_runs_a_notebook_to_completed(lab: Lab, tmp_path: Path) -> None:
    write_notebook(lab.root / "short.ipynb", "print('n is', n * 2)", parameters="n = 1")
    write_notebook(lab.root / "panel.ipynb", "import eb_sdk as eb\npanel = eb.panel()\npanel")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    with playwright_api.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(LONG)
        try:
            page.goto(f"{lab.url}/lab/tree/panel.ipynb?token={lab.token}")
            page.locator(".jp-Notebook .jp-Cell").first.wait_for()
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
            wait_kernel_idle(lab)
            run_first_cell(page)

            panel = page.locator(".eb-panel").first
            panel.wait_for()
            panel.locator(".eb-brokers", has_text="alpha").wait_for()
            panel.locator(".eb-what button", has_text="a notebook").click()
            panel.locator(".eb-path input").fill("short.ipynb")
            panel.locator(".eb-duration input").fill("10 min")
            page.screenshot(path=str(shots / "1-form.png"), full_page=True)

            panel.locator("button.eb-find").click()
            accept = panel.locator("button.eb-accept").first
            accept.wait_for()
            panel.locator(".eb-expires", has_text="expires in").first.wait_for()
            page.screenshot(path=str(shots / "2-offers.png"), full_page=True)

            accept.click()
            panel.locator(".eb-session").first.wait_for()
            panel.locator(".eb-phase", has_text="COMPLETED").first.wait_for(timeout=180_000)
            panel.locator(".eb-messages", has_text="output notebook").first.wait_for()
            panel.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "3-completed.png"), full_page=True)
            assert panel.locator(".eb-status .eb-error").count() == 0
            assert "Traceback" not in page.locator(".jp-Notebook").inner_text()
        except BaseException:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            print(f"jupyterlab log: {lab.log}\n{lab.log.read_text()[-3000:]}")
            raise
        finally:
            browser.close()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shots / "3-completed.png", ARTIFACTS / "panel-completed.png")
    shutil.copy(shots / "2-offers.png", ARTIFACTS / "panel-offers.png")
