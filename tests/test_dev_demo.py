"""The README's first command, ``./dev demo``: a broker and JupyterLab, both reachable with
the printed credentials, stopped by Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.broker.helpers import notebook_request
from tests.fixtures.services import REPO_ROOT, free_port


def test_dev_demo_starts_broker_and_lab(tmp_path: Path) -> None:
    broker_port, lab_port = free_port(), free_port()
    env = {
        **os.environ,
        "EB_VENV": sys.prefix,  # the virtualenv running the tests (set up by ./dev)
        "EB_DEMO_STATE": str(tmp_path / "state"),
        "EB_DEMO_BROKER_PORT": str(broker_port),
        "EB_DEMO_LAB_PORT": str(lab_port),
    }
    out = tmp_path / "demo.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            ["./dev", "demo"],
            cwd=REPO_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while "Press Ctrl-C" not in out.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, out.read_text()
            time.sleep(0.5)
        text = out.read_text()
        token = re.search(r"Execution Broker : (\S+)\s+\(token: (\w+)\)", text)
        lab = re.search(r"JupyterLab\s+: (\S+)", text)
        assert token and lab, text
        assert token[1] == f"http://127.0.0.1:{broker_port}/"
        answer = httpx.post(
            token[1] + "requests",
            json=notebook_request(),
            headers={"Authorization": f"Bearer {token[2]}"},
            timeout=30,
        )
        assert answer.status_code == 303 and answer.json()["result"] == "YES", answer.text
        broker_log = (tmp_path / "state" / "broker.log").read_text()
        assert "not recognized" not in broker_log, broker_log  # every option it is given exists
        status = httpx.get(lab[1].replace("/lab?", "/api/status?"), timeout=30)
        assert status.status_code == 200, status.text
        # the Execution Broker extension is active in that JupyterLab and sees the broker
        brokers = httpx.get(lab[1].replace("/lab?", "/eb/brokers?"), timeout=60)
        assert brokers.status_code == 200, brokers.text
        assert [(b["name"], b["ok"]) for b in brokers.json()["brokers"]] == [("local", True)]
        page = httpx.get(lab[1], timeout=60).text
        assert "jupyter-execution-broker" in page, "the labextension is not in the page config"
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for port in (broker_port, lab_port):
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        except httpx.ConnectError:
            continue
        raise AssertionError(f"port {port} still answers after Ctrl-C")
