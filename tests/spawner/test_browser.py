"""Headless Chromium (Debian's /usr/bin/chromium; never downloaded): login → options form →
start, with a screenshot saved as a test artifact under tests/spawner/artifacts/."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import BrokerFactory
from tests.spawner.conftest import HubFactory, eb_config, public, wait_ready

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def test_login_form_start_in_chromium(
    broker_factory: BrokerFactory, hub_factory: HubFactory
) -> None:
    from playwright.sync_api import sync_playwright

    alpha = broker_factory("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8", name="a")
    down = broker_factory(name="down")
    down.stop()  # one broker is down: the other's offers are still listed
    hub = hub_factory(eb_config([alpha, down], names=["alpha", "beta"]))
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{public(hub)}/hub/login", wait_until="domcontentloaded")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "secret")
            page.click("input[type=submit], button[type=submit]")
            page.wait_for_selector("#eb-spawner-form", timeout=30000)
            assert page.locator("#eb-offers input[name=offer]").count() >= 1
            assert "beta is not answering" in page.inner_text("#eb-spawner-form")
            page.select_option("#eb-when", "10min")
            page.click("#eb-refresh")
            page.wait_for_selector("#eb-offers", timeout=30000)
            assert "Offers refreshed" in page.content()
            shot = ARTIFACTS / "spawner-form.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
            page.locator("#eb-offers input[name=offer]").first.check()
            page.click("form#spawn_form button.btn-jupyter")
            page.wait_for_url("**/user/alice/**", timeout=90000)
            page.screenshot(path=str(ARTIFACTS / "spawner-started.png"))
        finally:
            browser.close()
    assert wait_ready(hub, "alice")["state"]["broker"] == "alpha"
    assert shot.stat().st_size > 1000
