"""Sessions run for real on the local platform: papermill notebooks and Jupyter servers."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import nbformat

from tests.broker.helpers import SERVER, accept, notebook_request
from tests.conftest import BrokerFactory
from tests.fixtures.notebooks import write_notebook
from tests.fixtures.services import REPO_ROOT, BrokerProcess

FINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def _wait(
    c: httpx.Client, url: str, phases: set[str], timeout: float = 120
) -> tuple[dict[str, Any], list[str]]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session = c.get(url).json()
        if not seen or seen[-1] != session["phase"]:
            seen.append(session["phase"])
        if session["phase"] in phases:
            return session, seen
        time.sleep(0.2)
    raise AssertionError(f"{url} stayed in {seen} (wanted {phases})")


def _book_now(c: httpx.Client, body: dict[str, Any]) -> str:
    answer = c.post("/requests", json=body).json()
    assert answer["result"] == "YES", answer
    url = answer["offers"][0]["meta"]["url"]
    assert accept(c, url).status_code == 200
    return str(url)


def test_notebook_runs_with_parameters_and_completes(broker: BrokerProcess, tmp_path: Path) -> None:
    nb = str(
        write_notebook(tmp_path / "double.ipynb", "y = x * 2\nprint('y is', y)", parameters="x = 1")
    )
    body = notebook_request(location=nb)
    body["executable"]["jeb:parameters"] = {"x": 21}
    with broker.client() as c:
        url = _book_now(c, body)
        session, seen = _wait(c, url, FINAL)
        assert session["phase"] == "COMPLETED", session
        assert "PREPARING" in seen or "RUNNING" in seen
        out = nbformat.read(session["jeb:outputs"]["notebook"], as_version=4)
        text = json.dumps([cell.get("outputs") for cell in out.cells])
        assert "y is 42" in text
        assert not session["meta"].get("options")  # nothing left to change


def test_failing_notebook_reports_cell_and_error(broker: BrokerProcess, tmp_path: Path) -> None:
    nb = str(
        write_notebook(tmp_path / "fail.ipynb", "a = 1", "b = a / 0", "c = 3", parameters="x = 1")
    )
    with broker.client() as c:
        url = _book_now(c, notebook_request(location=nb))
        session, _ = _wait(c, url, FINAL)
        assert session["phase"] == "FAILED"
        text = " ".join(m.get("message", "") for m in session["meta"]["messages"])
        assert "ZeroDivisionError" in text and "cell" in text


def _runner_pids(uuid: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"local_runner .*{uuid}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_server_available_survives_kill9_and_cancel_stops_it(broker: BrokerProcess) -> None:
    body = notebook_request(duration="PT1H")
    body["executable"] = {"kind": SERVER}
    with broker.client() as c:
        url = _book_now(c, body)
        session, _ = _wait(c, url, {"AVAILABLE", *FINAL})
        assert session["phase"] == "AVAILABLE", session
        connector = session["connectors"][0]
        assert connector["protocol"] == "HTTP" and connector["status"] == "AVAILABLE"
        location = connector["location"]
        api = location.replace("/?token=", "/api/status?token=")
        assert httpx.get(api, timeout=10).status_code == 200
        uuid = session["meta"]["uuid"]
        pids = _runner_pids(uuid)
        assert len(pids) == 1
    broker.kill9()
    broker.start()
    with broker.client() as c:
        again = c.get(url).json()
        assert again["phase"] == "AVAILABLE"
        time.sleep(1.0)  # a few reconcile passes after the restart
        assert _runner_pids(uuid) == pids, "the server was started twice"
        assert httpx.get(api, timeout=10).status_code == 200
        r = accept(c, url, "CANCELLED")
        assert r.status_code == 200
        session, _ = _wait(c, url, FINAL)
        assert session["phase"] == "CANCELLED"
        assert session["connectors"][0]["status"] == "FINISHED"
    deadline = time.monotonic() + 20
    while _runner_pids(uuid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _runner_pids(uuid)
    for pid in pids:
        status = Path(f"/proc/{pid}/status")
        assert not status.exists() or "zombie" in status.read_text()


def test_running_notebook_survives_kill9_runs_once_and_completes(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    marker = tmp_path / "starts.txt"
    nb = str(
        write_notebook(
            tmp_path / "slow.ipynb",
            f"with open({str(marker)!r}, 'a') as f:\n    f.write('started\\n')",
            "import time\ntime.sleep(6)\nprint('slept')",
        )
    )
    with broker.client() as c:
        url = _book_now(c, notebook_request(location=nb))
        session, _ = _wait(c, url, {"RUNNING", *FINAL})
        assert session["phase"] == "RUNNING", session
        uuid = session["meta"]["uuid"]
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the first cell ran: the notebook is really executing
        pids = _runner_pids(uuid)
        assert len(pids) == 1
    broker.kill9()
    broker.start()
    with broker.client() as c:
        assert c.get(url).json()["phase"] == "RUNNING"
        time.sleep(1.0)  # a few reconcile passes after the restart
        assert _runner_pids(uuid) == pids, "the notebook was started twice"
        session, seen = _wait(c, url, FINAL)
        assert session["phase"] == "COMPLETED", session
        assert seen[-1] == "COMPLETED" and "PREPARING" not in seen
        out = nbformat.read(session["jeb:outputs"]["notebook"], as_version=4)
        assert "slept" in json.dumps([cell.get("outputs") for cell in out.cells])
    assert marker.read_text() == "started\n"  # its cells ran exactly once


def _notebook_on(platform: str, broker_factory: BrokerFactory, tmp_path: Path) -> dict[str, Any]:
    """A notebook session run to its end on ``platform`` (a class in tests/fixtures)."""
    broker = broker_factory(
        "--LocalPlatform.cores=2",
        f"--platform=tests.fixtures.platforms:{platform}",
        env={"PYTHONPATH": REPO_ROOT},
    )
    nb = str(write_notebook(tmp_path / "ok.ipynb", "print('fine')"))
    with broker.client() as c:
        url = _book_now(c, notebook_request(location=nb))
        session, _ = _wait(c, url, FINAL)
    return session


def test_a_failed_release_fails_the_session_and_says_why(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    session = _notebook_on("ReleaseFailsPlatform", broker_factory, tmp_path)
    assert session["phase"] == "FAILED", session
    (problem,) = [m for m in session["meta"]["messages"] if "releasing" in m.get("message", "")]
    assert problem["kind"] == "urn:platform" and problem["level"] == "ERROR"
    assert problem["message"] == "releasing the resources failed: the scratch volume is still busy"
    # the notebook itself ran; its output is still there
    assert Path(session["jeb:outputs"]["notebook"]).exists()


def test_a_release_with_leftovers_ends_the_session_with_a_warning(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """A platform giving up on a leftover (ReleaseLeftovers) does not keep the session
    RELEASING nor fail it: it ends as planned, the leftover named in a warning."""
    session = _notebook_on("ReleaseLeavesPlatform", broker_factory, tmp_path)
    assert session["phase"] == "COMPLETED", session
    (note,) = [m for m in session["meta"]["messages"] if "left for" in m.get("message", "")]
    assert note["kind"] == "urn:platform" and note["level"] == "WARN", note
    uuid = session["meta"]["uuid"]
    assert note["message"] == f"the scratch volume of {uuid} is left for the operator"


def test_a_runs_end_is_seen_without_waiting_for_a_reconcile_pass(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """With passes an hour apart, a notebook accepted for "now" still launches at once (the
    accept wakes the reconciler, which launches it before its rounded start or at it) and its
    end is seen when the runner exits (the local platform watches its pidfd): no pass due."""
    broker = broker_factory(
        "--LocalPlatform.cores=2",
        "--LocalPlatform.memory_gib=4",
        "--EBBroker.reconcile_interval=3600",
    )
    nb = str(write_notebook(tmp_path / "quick.ipynb", "print('done')"))
    with broker.client() as c:
        url = _book_now(c, notebook_request(location=nb))
        session, seen = _wait(c, url, FINAL, timeout=120)
    assert session["phase"] == "COMPLETED", (seen, broker.log()[-2000:])
