"""Errors users understand: nobody can run it now (the earliest slot that fits is shown and
bookable), a broker refuses (its reason on the page), stale or forged choices."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from eb_spawner.form import when_text
from tests.broker.helpers import accept, notebook_request
from tests.conftest import BrokerFactory
from tests.spawner.conftest import (
    HubFactory,
    broker_sessions,
    eb_config,
    login,
    offers_in,
    post_spawn,
    sdk_session,
)

BERLIN = ZoneInfo("Europe/Berlin")


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_full_now_shows_the_earliest_slot_and_books_it(
    broker_factory: BrokerFactory, hub_factory: HubFactory
) -> None:
    broker = broker_factory("--LocalPlatform.cores=2", "--LocalPlatform.memory_gib=4", name="a")
    # someone else holds both cores from in 3 minutes for an hour: no hour fits now
    filler_start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=3)
    with broker.client("bob") as c:
        full = notebook_request(2, 1, start=f"{_iso(filler_start)}/PT0S", duration="PT1H")
        offer = c.post("/requests", json=full).json()["offers"][0]
        assert accept(c, offer["meta"]["url"]).status_code == 200
    hub = hub_factory(
        eb_config([broker], names=["alpha"], extra='c.EBSpawner.timezone = "Europe/Berlin"\n')
    )
    client = login(hub, "alice")
    page = client.get("/hub/spawn").text
    assert "No broker can offer this right now" in page, page[-3000:]
    assert not [o for o in offers_in(page) if not o.startswith("fit|")]
    fit = re.search(r'value="(fit\|alpha\|[^"]+)"', page)
    assert fit, page[-3000:]
    start = datetime.fromisoformat(fit.group(1).split("|")[2])
    assert start >= filler_start + timedelta(hours=1)
    shown = when_text(start, BERLIN)  # in the hub's zone, e.g. "Tue 24 Nov 16:03 CET"
    assert f"Book the earliest slot that fits on alpha: <b>{shown}</b>" in page, page[-3000:]
    assert shown.endswith(("CET", "CEST"))
    page = post_spawn(client, profile="small", when="now", offer=fit.group(1))
    assert f"Your session is booked for {shown} on alpha." in page, page[-3000:]
    assert "Error:" not in page  # good news is not shown as an error
    booked = [s for s in broker_sessions(broker, "WAITING") if "alice" in s["name"]]
    assert len(booked) == 1, booked
    assert sdk_session(broker, booked[0]["uuid"]).start == start


def test_refusals_and_stale_or_forged_choices(
    broker_factory: BrokerFactory, hub_factory: HubFactory
) -> None:
    alpha = broker_factory("--LocalPlatform.cores=2", "--LocalPlatform.memory_gib=2", name="a")
    strict = broker_factory(
        "--LocalPlatform.cores=4", "--EBBroker.max_duration_hours=1", name="strict"
    )
    extra = (
        "c.EBSpawner.profiles.append({'slug': 'huge', 'display_name': 'Huge', 'cores': 64, "
        "'memory': '512GiB', 'duration': '1h'})\n"
        "c.EBSpawner.profiles.append({'slug': 'long', 'display_name': 'Long', 'cores': 1, "
        "'memory': '1GiB', 'duration': '3h'})\n"
    )
    hub = hub_factory(eb_config([alpha, strict], names=["alpha", "beta"], extra=extra))
    client = login(hub, "alice")
    # refresh without the form's script: a message, not "Error:"
    page = post_spawn(client, profile="huge", when="now", action="refresh")
    assert "Offers refreshed" in page and "Error: Offers refreshed" not in page
    assert "No broker can offer this right now" in page and "alpha:" in page, page[-3000:]
    # one broker refuses (its rules), the other offers: both shown, with the reason
    page = post_spawn(client, profile="long", when="now", action="refresh")
    offers = offers_in(page)
    assert offers and all(o.startswith("alpha|") for o in offers), page[-3000:]
    assert re.search(r"<li>beta: the requested duration 3 h is longer than this broker", page)
    # the profile was changed without refreshing: the offer is for the other profile
    page = post_spawn(client, profile="small", when="now", offer=offers[0])
    assert "That offer is for the profile &#39;Long&#39;, not &#39;Small CPU&#39;" in page
    # a forged offer or a profile the user may not use: a clear reason on the spawn page
    page = post_spawn(client, profile="big", when="now", offer="alpha|x")
    assert "You may not use the profile" in page
    page = post_spawn(client, profile="small", when="now", offer="alpha|nope")
    assert "no longer known to the broker" in page
    page = post_spawn(client, profile="small", when="now", offer="fit|nowhere|x")
    assert "Unknown broker &#39;nowhere&#39;" in page
