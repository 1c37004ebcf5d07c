"""The /eb/ REST handlers in a real ``jupyter server`` process, against a real eb-broker.

The server finds the extension the way a user's does (the ``jupyter_server_config.d`` file
the package installs) and the broker through its environment (``EB_BROKERS``/``EB_TOKEN``,
as ./dev demo and the spawner set them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.jupyter import JupyterProcess
from tests.fixtures.services import BrokerProcess, free_port

from .conftest import book_from_code, server_env

ROUTES = [
    ("GET", "/eb/brokers"),
    ("GET", "/eb/sessions"),
    ("POST", "/eb/sessions/alpha/00000000-0000-0000-0000-000000000000/cancel"),
    ("POST", "/eb/offers"),
    ("POST", "/eb/offers/set/00000000-0000-0000-0000-000000000000/accept"),
    ("POST", "/eb/offers/set/00000000-0000-0000-0000-000000000000/reject"),
    ("GET", "/eb/batches"),
    ("POST", "/eb/batches/b1/reopen"),
]


@pytest.fixture
def api(jupyter: JupyterProcess) -> Iterator[httpx.Client]:
    with jupyter.api() as client:
        yield client


def ask(api: httpx.Client, **fields: Any) -> httpx.Response:
    form = {
        "path": "short.ipynb",
        "cores": 1,
        "memory": 1,
        "duration": "10 min",
        "start": "within 1 h",
        "tz": "UTC",
    }
    form.update(fields)
    return api.post("/eb/offers", json=form)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_handler_needs_the_servers_token(
    jupyter: JupyterProcess, method: str, path: str
) -> None:
    # a matching XSRF cookie and header get a POST past the XSRF check: then it is
    # @tornado.web.authenticated that refuses it
    xsrf = {"X-XSRFToken": "same", "Cookie": "_xsrf=same"}
    for token, headers in ((None, {}), ("not-the-token", {}), (None, xsrf)):
        with jupyter.api(token) as client:
            answer = client.request(method, path, json={}, headers=headers)
        assert answer.status_code in (401, 403), (token, answer.status_code, answer.text)
        assert "alpha" not in answer.text
        if headers:
            assert "_xsrf" not in answer.text, answer.text  # refused for want of a token


def test_brokers_with_their_health_and_never_a_token(
    api: httpx.Client, lab_broker: BrokerProcess
) -> None:
    answer = api.get("/eb/brokers")
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["problem"] == ""
    alpha, beta = data["brokers"]
    assert alpha["name"] == "alpha" and alpha["url"] == lab_broker.url
    assert beta["name"] == "beta" and beta["ok"] is True
    assert alpha["ok"] is True and alpha["platform"] == "local"
    assert alpha["source"] == "EB_BROKERS"
    assert lab_broker.tokens["alice"] not in answer.text


def test_a_session_booked_from_code_is_listed_and_cancelled(
    api: httpx.Client, lab_broker: BrokerProcess, short_notebook: Path
) -> None:
    session = book_from_code(lab_broker, short_notebook, "in 2 hours")
    key = f"alpha/{session.uuid}"
    listed = api.get("/eb/sessions", params={"finished_hours": 24})
    assert listed.status_code == 200, listed.text
    by_key = {s["key"]: s for s in listed.json()["sessions"]}
    mine = by_key[key]
    assert mine["phase"] in ("ACCEPTED", "WAITING") and mine["final"] is False
    assert mine["name"] == "short.ipynb" and mine["lab_path"] == "short.ipynb"
    assert mine["duration"] == "10 min" and mine["duration_s"] == 600
    assert mine["start"].endswith("Z") and mine["resources"] != "—"
    assert lab_broker.tokens["alice"] not in listed.text

    cancelled = api.post(f"/eb/sessions/alpha/{session.uuid}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["session"]["phase"] == "CANCELLED"
    again = {s["key"]: s for s in api.get("/eb/sessions").json()["sessions"]}
    assert again[key]["phase"] == "CANCELLED" and again[key]["final"] is True
    # finished sessions older than finished_hours are left out
    recent = api.get("/eb/sessions", params={"finished_hours": 0}).json()["sessions"]
    assert key not in {s["key"] for s in recent}
    # live sessions come first, earliest start first
    phases = [s["final"] for s in api.get("/eb/sessions").json()["sessions"]]
    assert phases == sorted(phases)


def test_offers_for_a_notebook_accept_one_rejects_the_others(
    api: httpx.Client, lab_broker: BrokerProcess
) -> None:
    answer = ask(api, start="within 1 h", cores=1, memory=1)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["what"] == "short.ipynb: 1 core, 1 GiB, 10 min, within 1 h"
    assert {o["broker"] for o in data["offers"]} == {"alpha", "beta"}, data
    first, *others = data["offers"]
    assert first["phase"] == "OFFERED"
    assert first["duration"] == "10 min" and first["expires"]
    assert lab_broker.tokens["alice"] not in answer.text

    accepted = api.post(
        f"/eb/offers/{data['id']}/{first['uuid']}/accept", json={"broker": first["broker"]}
    )
    assert accepted.status_code == 200, accepted.text
    result = accepted.json()
    assert result["session"]["phase"] in ("ACCEPTED", "WAITING", "PREPARING", "RUNNING")
    assert result["session"]["uuid"] == first["uuid"]
    assert {o["phase"] for o in result["offers"]["offers"] if o["uuid"] != first["uuid"]} == {
        "REJECTED"
    }
    # a rejected sibling cannot be accepted any more: its broker says so
    other = others[0]
    twice = api.post(
        f"/eb/offers/{data['id']}/{other['uuid']}/accept", json={"broker": other["broker"]}
    )
    assert twice.status_code == 409, twice.text
    assert other["broker"] in twice.json()["message"]


def test_an_offer_of_a_forgotten_set_is_still_found_on_its_broker(api: httpx.Client) -> None:
    data = ask(api, start="in 3 hours").json()
    offer = data["offers"][0]
    rejected = api.post(
        f"/eb/offers/unknown-set/{offer['uuid']}/reject", json={"broker": offer["broker"]}
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["offer"]["phase"] == "REJECTED"
    nobody = api.post(f"/eb/offers/unknown-set/{offer['uuid']}/accept", json={"broker": "nobody"})
    assert nobody.status_code == 404
    assert nobody.json()["message"] == "no broker named 'nobody' is configured"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start": "sometime whenever"}, "start:"),
        ({"duration": "forever"}, "duration:"),
        ({"duration": ""}, "duration: say how long"),
        ({"path": "missing.ipynb"}, "does not exist"),
        ({"path": "../outside.ipynb"}, "outside the server's root"),
        ({"path": "notes.txt"}, "is not a notebook"),
        ({"cores": "many"}, "cores: expected a number"),
        ({"cores": 0}, "cores: must be at least 1"),
        ({"memory": 1.5}, "memory: expected a whole number"),
        ({"tz": "Mars/Olympus"}, "is not a time zone name"),
    ],
)
def test_bad_input_is_a_400_with_the_sdks_words(
    api: httpx.Client, fields: dict[str, Any], message: str
) -> None:
    answer = ask(api, **fields)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["message"]


def test_a_body_that_is_not_json_is_a_400(api: httpx.Client) -> None:
    answer = api.post(
        "/eb/offers", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400


def test_a_nested_notebook_path_is_read_below_the_root(api: httpx.Client) -> None:
    answer = ask(api, path="sub/nested.ipynb", start="in 5 hours")
    assert answer.status_code == 200, answer.text
    assert answer.json()["what"].startswith("sub/nested.ipynb:")


def test_no_batches_yet_and_a_reopen_that_names_nothing(api: httpx.Client) -> None:
    answer = api.get("/eb/batches")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"available": True, "batches": []}
    unknown = api.post("/eb/batches/b1/reopen", json={"run": "00000-a.fits"})
    assert unknown.status_code == 404
    assert unknown.json()["message"].startswith("no batch 'b1'")
    nothing = api.post("/eb/batches/b1/reopen", json={})
    assert nothing.status_code == 400
    assert "name the failed run" in nothing.json()["message"]


def test_without_brokers_the_sidebar_is_told_how_to_configure_them(tmp_path: Path) -> None:
    server = JupyterProcess(tmp_path).start()
    try:
        with server.api() as client:
            brokers = client.get("/eb/brokers").json()
            assert brokers["brokers"] == []
            assert brokers["problem"].startswith("no brokers configured")
            assert client.get("/eb/sessions").json()["problem"].startswith("no brokers")
            (server.root / "x.ipynb").write_text("{}")
            answer = client.post(
                "/eb/offers", json={"path": "x.ipynb", "duration": "1h", "start": "now"}
            )
            assert answer.status_code == 400 and "no brokers configured" in answer.text
    finally:
        server.stop()


def test_brokers_that_fail_are_named(tmp_path: Path, lab_broker: BrokerProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"EB_BROKERS": f"alpha={lab_broker.url},gone={dead}", "EB_TOKEN": "not-a-token"}
    server = JupyterProcess(tmp_path, env=env).start()
    try:
        with server.api() as client:
            brokers = {b["name"]: b for b in client.get("/eb/brokers").json()["brokers"]}
            assert brokers["alpha"]["ok"] is False
            assert "authentication failed" in brokers["alpha"]["error"]
            assert brokers["gone"]["ok"] is False
            assert "cannot connect" in brokers["gone"]["error"]
            sessions = client.get("/eb/sessions")
            assert sessions.status_code == 502, sessions.text  # every broker failed
            message = sessions.json()["message"]
            assert message.startswith("alpha: listing sessions: authentication failed")
            assert "gone: listing sessions: cannot connect" in message
    finally:
        server.stop()


def test_the_users_own_token_decides_whose_sessions(
    tmp_path: Path, lab_broker: BrokerProcess, short_notebook: Path
) -> None:
    session = book_from_code(lab_broker, short_notebook, "in 4 hours")
    server = JupyterProcess(tmp_path, env=server_env(lab_broker, user="bob")).start()
    try:
        with server.api() as client:
            keys = {s["key"] for s in client.get("/eb/sessions").json()["sessions"]}
            assert f"alpha/{session.uuid}" not in keys
            other = client.post(f"/eb/sessions/alpha/{session.uuid}/cancel")
            assert other.status_code in (403, 404), other.text
    finally:
        server.stop()
        session.cancel()
