"""The ``eb-broker`` command and HTTP edges: flags and defaults, oversize bodies, and bad input
that never leaves anything behind in the ledger."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.broker.helpers import notebook_request
from tests.fixtures.services import BrokerProcess, free_port, wait_http

LIMIT = 1024 * 1024  # the default EBBroker.max_body_size


def _eb_broker(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eb_broker", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_generate_config_and_help_all_document_every_class(tmp_path: Path) -> None:
    made = _eb_broker("--generate-config", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    config = (tmp_path / "eb_broker_config.py").read_text()
    for option in (
        "c.EBBroker.port",
        "c.EBBroker.authenticators",
        "c.EBBroker.capacity_periods",
        "c.LocalPlatform.cores",
        "c.LocalPlatform.accelerators",
        "c.SlurmPlatform.",
        "c.KubernetesPlatform.",
        "c.TokenFileAuthenticator.path",
        "c.JWTAuthenticator.issuer",
        "c.JWTAuthenticator.jwks_url",
        "c.JupyterHubAuthenticator.api_url",
        "c.BasicAuthenticator.path",
    ):
        assert option in config, option
    compile(config, "eb_broker_config.py", "exec")  # a valid Python file
    again = _eb_broker("--generate-config", cwd=tmp_path)
    assert again.returncode != 0 and "not overwriting" in again.stderr
    help_all = _eb_broker("--help-all", cwd=tmp_path)
    assert help_all.returncode == 0 and "Traceback" not in help_all.stderr
    for option in ("--EBBroker.offer_expiry", "--LocalPlatform.cores", "--SlurmPlatform."):
        assert option in help_all.stdout, option


@pytest.fixture
def bare_broker(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    """``eb-broker`` with no --db-url and no work dir: every default, on 127.0.0.2."""
    (tmp_path / "eb_tokens.yaml").write_text("tokens:\n  t0: {user: alice}\n")
    (tmp_path / "eb_broker_config.py").write_text(
        "c.EBBroker.broker_name = 'from-the-config-file'\nc.LocalPlatform.cores = 3\n"
    )
    port = free_port()
    with open(tmp_path / "broker.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "eb_broker",
                "--ip=127.0.0.2",
                f"--port={port}",
                "--config=eb_broker_config.py",
            ],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.2:{port}/health", proc=proc)
        yield proc, tmp_path, port
    finally:
        proc.terminate()
        proc.wait(10)


def test_defaults_ip_and_config_file(
    bare_broker: tuple[subprocess.Popen[bytes], Path, int],
) -> None:
    _, cwd, port = bare_broker
    url = f"http://127.0.0.2:{port}"
    # --ip: it listens on 127.0.0.2 only
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    # --config: settings from the file
    caps = httpx.get(url + "/capabilities", timeout=10).json()
    assert caps["name"] == "from-the-config-file" and caps["max_compute"]["cores"] == 3
    # the default ledger is ./eb_broker.sqlite (WAL) and tokens come from ./eb_tokens.yaml
    answer = httpx.post(
        url + "/requests", json=notebook_request(), headers={"Authorization": "Bearer t0"}
    )
    assert answer.status_code == 303, answer.text
    ledger = cwd / "eb_broker.sqlite"
    assert ledger.exists() and (cwd / "eb_broker.sqlite-wal").exists()
    with create_engine(f"sqlite:///{ledger}").connect() as conn:
        owners = conn.execute(text("SELECT DISTINCT owner FROM offersets")).scalars().all()
    assert owners == ["alice"]


def _raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, object]]:
    """Send a request by hand (headers may promise more body than is sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


def test_oversize_bodies_get_a_413_messageitem(broker: BrokerProcess) -> None:
    token = broker.tokens["alice"]
    # declared far beyond the limit: answered at once, before any of the body is sent
    head = (
        "POST /requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {64 * LIMIT}\r\n"
    )
    status, item = _raw_request(broker.port, head)
    assert status == 413 and item["kind"] == "urn:invalid-request"
    assert "larger than 1048576 bytes" in item["message"]
    # a little over the limit, sent whole before the answer is read (as most clients do)
    with broker.client() as c:
        r = c.post("/requests", content=b" " * (LIMIT + 10))
        assert r.status_code == 413 and r.json()["level"] == "ERROR"
        # chunked (no Content-Length): counted as it arrives
        r = c.post(
            "/requests",
            content=iter([b" " * 65536] * 20),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 413 and "larger than" in r.json()["message"]
        # and a body within the limit, chunked, is read whole
        body = json.dumps(notebook_request()).encode()
        r = c.post(
            "/requests",
            content=iter([body[:10], body[10:]]),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 303 and r.json()["result"] == "YES"


def _counts(db_url: str) -> dict[str, int]:
    with create_engine(db_url).connect() as conn:
        return {
            table: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in ("offersets", "sessions", "events")
        }


def test_bad_input_leaves_the_ledger_unchanged(broker: BrokerProcess) -> None:
    with broker.client() as c:
        offer = c.post("/requests", json=notebook_request()).json()["offers"][0]["meta"]["url"]
        before = _counts(broker.db_url)
        bad = [
            c.post("/requests", content=b"{not json", headers={"Content-Type": "application/json"}),
            c.post("/requests", content=b"a: [x", headers={"Content-Type": "application/yaml"}),
            c.post("/requests", content=b"<x/>", headers={"Content-Type": "application/xml"}),
            c.post("/requests", json=notebook_request(-1)),
            c.post("/requests", json=notebook_request(4, max_cores=2)),
            c.post("/requests", json=notebook_request(duration="soon")),
            c.post("/requests", json={"executable": {"location": "x.ipynb"}}),  # no kind
            c.post("/requests", content=b" " * (LIMIT + 1)),
            c.post("/direct", json=notebook_request(-3)),
            c.post(offer, json={"kind": "uri:enum-value-update", "path": "phase", "value": "X"}),
            c.post(offer, json={"kind": "uri:enum-value-update", "path": "name", "value": "x"}),
            c.post(offer, json={"kind": "uri:integer-delta-update", "path": "cores", "delta": 1}),
            c.post(
                offer, json={"kind": "uri:enum-value-update", "path": "phase", "value": "RUNNING"}
            ),
            c.post(offer, content=b"[]", headers={"Content-Type": "application/json"}),
            httpx.post(broker.url + "/requests", json=notebook_request()),  # no credentials
        ]
        for r in bad:
            assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text[:200])
            assert r.json()["level"] == "ERROR"
        assert _counts(broker.db_url) == before
        assert c.get(offer).json()["phase"] == "OFFERED"
