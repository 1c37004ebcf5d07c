"""Headless Chromium (Debian's /usr/bin/chromium; never downloaded): login → options form →
the form's script refreshes the offers (no page load, no "Error:") → start → JupyterLab, with
screenshots saved as test artifacts under tests/spawner/artifacts/."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import BrokerFactory
from tests.fixtures.browser import launch_chromium
from tests.spawner.conftest import HubFactory, eb_config, phase_of, public, wait_ready

ARTIFACTS = Path(__file__).parent / "artifacts"


def test_login_form_start_in_chromium(
    broker_factory: BrokerFactory, hub_factory: HubFactory
) -> None:
    from playwright.sync_api import expect, sync_playwright

    alpha = broker_factory("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8", name="a")
    down = broker_factory(name="down")
    down.stop()  # one broker is down: the other's offers are still listed
    hub = hub_factory(eb_config([alpha, down], names=["alpha", "beta"]))
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(f"{public(hub)}/hub/login", wait_until="domcontentloaded")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "secret")
            page.click("input[type=submit], button[type=submit]")
            page.wait_for_selector("#eb-spawner-form")
            assert page.locator("#eb-offers input[name=offer]").count() >= 1
            assert "beta is not answering" in page.inner_text("#eb-spawner-form")
            assert not page.locator("#eb-at").is_visible()  # only for "a date and time"
            first = page.locator("#eb-offers input[name=offer]").first.get_attribute("value")
            # choosing "when" refreshes the offers in place: same page, new quotes
            page.evaluate("window.ebMarker = 1")
            page.select_option("#eb-when", "10min")
            expect(page.locator("#eb-spawner-form h4")).to_contain_text("within 10 min")
            assert page.evaluate("window.ebMarker") == 1  # no page load
            assert page.locator(".spawn-error-msg").count() == 0  # nothing shown as "Error:"
            fresh = page.locator("#eb-offers input[name=offer]").first.get_attribute("value")
            assert fresh and first and fresh != first
            assert phase_of(alpha, first.split("|")[1]) == "REJECTED"  # the old quote let go
            page.select_option("#eb-when", "at")
            expect(page.locator("#eb-at")).to_be_visible()
            page.select_option("#eb-when", "now")
            expect(page.locator("#eb-spawner-form h4")).to_contain_text(", now")
            page.click("#eb-refresh")  # the button refreshes in place too
            expect(page.locator("#eb-status")).to_have_text("")
            expect(page.locator("form#spawn_form button.btn-jupyter")).to_have_text("Start")
            shot = ARTIFACTS / "spawner-form.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
            page.locator("#eb-offers input[name=offer]").first.check()
            page.click("form#spawn_form button.btn-jupyter")
            page.wait_for_url("**/user/alice/**", timeout=90_000)
            page.locator("#jp-main-dock-panel").wait_for(timeout=90_000)  # JupyterLab drew
            page.locator(".jp-LauncherCard").first.wait_for(timeout=60_000)
            started = ARTIFACTS / "spawner-started.png"
            page.screenshot(path=str(started))
        finally:
            browser.close()
    assert wait_ready(hub, "alice")["state"]["broker"] == "alpha"
    assert shot.stat().st_size > 1000 and started.stat().st_size > 20_000
