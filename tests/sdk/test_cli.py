"""The ``eb`` command as a subprocess, configured through EB_BROKERS/EB_TOKEN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import BrokerFactory
from tests.fixtures.services import BrokerProcess

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(two_brokers: tuple[BrokerProcess, BrokerProcess], tmp_path: Path) -> Run:
    alpha, beta = two_brokers
    env = {
        **os.environ,
        "EB_BROKERS": f"alpha={alpha.url},beta={beta.url}",
        "EB_TOKEN": alpha.tokens["alice"],
        "EB_CONFIG": str(tmp_path / "none.yaml"),
    }
    for var in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "EB_DEBUG"):
        env.pop(var, None)

    def call(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "eb_sdk.cli", *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    return call


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("eb: error: ")
    return lines[0]


def test_brokers(run: Run) -> None:
    proc = run("brokers")
    assert proc.returncode == 0, proc.stderr
    assert "alpha" in proc.stdout and "beta" in proc.stdout and "ok" in proc.stdout
    data = json.loads(run("brokers", "--json").stdout)
    assert [(b["name"], b["ok"]) for b in data] == [("alpha", True), ("beta", True)]


def test_request_accept_wait_show_sessions(run: Run, notebook: Path) -> None:
    ask = ["request", str(notebook), "--cores", "1", "--start", "within 10 min", "-p", "n=21"]
    proc = run(*ask)
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0].split()
    assert header[:3] == ["offer", "broker", "platform"] and "expires" in header
    assert "alpha" in proc.stdout and "beta" in proc.stdout and "starts" in proc.stdout
    proc = run(*ask, "--json", "-b", "alpha")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["warnings"] == [] and {o["broker"] for o in data["offers"]} == {"alpha"}
    offer = data["offers"][0]
    assert offer["cores"] == 1 and offer["offer"]["phase"] == "OFFERED"
    accepted = run("accept", offer["uuid"], "--json")
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["phase"] in ("ACCEPTED", "WAITING", "PREPARING")
    again = run("accept", offer["uuid"])
    assert again.returncode == 6 and "accepting" in _one_error_line(again)
    waited = run("wait", offer["uuid"], "--timeout", "60")
    assert waited.returncode == 0, waited.stderr
    assert "COMPLETED" in waited.stdout
    shown = json.loads(run("show", offer["uuid"], "--json").stdout)
    assert shown["phase"] == "COMPLETED" and shown["outputs"]["notebook"].endswith(".ipynb")
    listed = json.loads(run("sessions", "--json", "--phase", "COMPLETED").stdout)
    assert offer["uuid"] in {s["uuid"] for s in listed}
    assert offer["uuid"] in run("sessions").stdout


def test_cancel_and_wait_timeout(run: Run, notebook: Path) -> None:
    data = json.loads(run("request", str(notebook), "--start", "in 3 hours", "--json").stdout)
    offer = data["offers"][0]["uuid"]
    assert run("accept", offer).returncode == 0
    slow = run("wait", offer, "--for", "RUNNING", "--timeout", "0.5")
    assert slow.returncode == 7 and "still" in _one_error_line(slow)
    cancelled = run("cancel", offer, "--json")
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["phase"] == "CANCELLED"
    ended = run("wait", offer, "--for", "RUNNING")
    assert ended.returncode == 1 and "CANCELLED" in _one_error_line(ended)


def test_image_and_request_file(run: Run, tmp_path: Path) -> None:
    proc = run("request", "--image", "alpine:3", "--command", "echo hi", "--json")
    assert proc.returncode == 3  # the local platform runs no containers: NO from both
    reasons = json.loads(proc.stdout)["reasons"]
    assert {r["broker"] for r in reasons} == {"alpha", "beta"}
    assert any(r["kind"] == "urn:not-supported" for r in reasons)
    request = tmp_path / "request.yaml"
    request.write_text(
        "executable:\n"
        "  kind: https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/"
        "jupyter-notebook.yaml\n"
        "  location: /tmp/x.ipynb\n"
    )
    proc = run("request", "--file", str(request), "--start", "in 2 hours", "--memory", "2GiB")
    assert proc.returncode == 0, proc.stderr
    assert "2 GiB" in proc.stdout


def test_errors_are_one_line_with_exit_codes(run: Run, notebook: Path) -> None:
    missing = run("show", str(uuid.uuid4()))
    assert missing.returncode == 4 and "no broker knows" in _one_error_line(missing)
    phrase = run("request", str(notebook), "--start", "when pigs fly")
    line = _one_error_line(phrase)
    assert phrase.returncode == 2 and "Phrases that work:" in line and "within 2 hours" in line
    nothing = run("request", str(notebook), "--cores", "64")
    assert nothing.returncode == 3 and "64 cores" in nothing.stdout
    auth = run("sessions", EB_TOKEN="wrong")
    assert auth.returncode == 5 and "authentication" in _one_error_line(auth)
    usage = run("request")
    assert usage.returncode == 2 and "say what to run" in _one_error_line(usage)
    assert run("frobnicate").returncode == 2  # argparse's own usage error
    nobody = run("brokers", EB_BROKERS="", EB_CONFIG="/nonexistent.yaml")
    assert nobody.returncode == 2 and "no brokers configured" in _one_error_line(nobody)
    dead = run("request", str(notebook), "-b", "http://127.0.0.1:9", "--start", "in 2 hours")
    assert dead.returncode == 1 and "cannot connect" in _one_error_line(dead)


def test_gpus_duration_and_network_flags(
    run: Run, broker_factory: BrokerFactory, notebook: Path
) -> None:
    gpu = broker_factory(
        "--LocalPlatform.cores=4",
        '--LocalPlatform.accelerators={"gpu:A100": 2}',
        "--EBBroker.interactivity_bandwidth_mbit=100",
        "--EBBroker.hold_offers=False",
    )
    env = {"EB_BROKERS": f"gpu={gpu.url}", "EB_TOKEN": gpu.tokens["alice"]}
    ask = ["request", str(notebook), "--start", "in 2 hours", "--json"]
    proc = run(*ask, "--gpus", "1", "--gpu-model", "A100", "--duration", "90 min", **env)
    assert proc.returncode == 0, proc.stderr
    offers = json.loads(proc.stdout)["offers"]
    assert offers and all(o["gpus"] == 1 and o["duration_s"] == 5400 for o in offers)
    (accel,) = offers[0]["offer"]["compute"]["jeb:accelerators"]
    assert (accel["type"], accel["model"]) == ("GPU", "A100")
    # three A100s: more than the platform has; an H100: a model it has none of
    three = run(*ask, "--gpus", "3", "--gpu-model", "A100", **env)
    assert three.returncode == 3 and "urn:resource-limit" in three.stdout
    other = run(*ask, "--gpus", "1", "--gpu-model", "H100", **env)
    assert other.returncode == 3 and "no gpu:H100 accelerators" in other.stdout
    # --gpu-model alone is an error, not silently dropped
    alone = run(*ask, "--gpu-model", "A100", **env)
    assert alone.returncode == 2 and "needs --gpus N" in _one_error_line(alone)
    # jeb:interactivity: this broker knows its users get 100 Mbit/s
    fast = run(*ask, "--bandwidth", "1 Gbit/s", **env)
    assert fast.returncode == 3 and "1000 Mbit/s" in fast.stdout
    enough = run(*ask, "--bandwidth", "50", "--latency", "20 ms", **env)
    assert enough.returncode == 0, enough.stderr
    sent = json.loads(enough.stdout)["offers"][0]
    assert sent["duration_s"] == 3600  # the broker's default duration
    bad = run(*ask, "--bandwidth", "fast", **env)
    assert bad.returncode == 2 and "bandwidth" in _one_error_line(bad)
