"""A real JupyterHub whose spawner is EBSpawner, against real brokers on the local platform."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.hub import Hub, start_hub
from tests.fixtures.services import BrokerProcess, free_port

HubFactory = Callable[..., Hub]


def eb_config(
    brokers: list[BrokerProcess],
    *,
    names: list[str] | None = None,
    extra: str = "",
    service: bool = False,
    service_port: int = 0,
) -> str:
    """The hub config lines for EBSpawner with these brokers (token: alice's on each)."""
    entries = [
        {"name": (names or [])[i] if names else f"b{i}", "url": b.url, "token": b.tokens["alice"]}
        for i, b in enumerate(brokers)
    ]
    lines = [
        'c.JupyterHub.spawner_class = "eb"',
        f"c.EBSpawner.eb_brokers = {entries!r}",
        "c.EBSpawner.profiles = ["
        "{'slug': 'small', 'display_name': 'Small CPU', 'cores': 1, 'memory': '1GiB',"
        " 'duration': '1h'},"
        "{'slug': 'big', 'display_name': 'Big CPU', 'cores': 2, 'memory': '2GiB',"
        " 'duration': '2h', 'groups': ['staff']}]",
        "c.EBSpawner.request_timeout = 10",
        "c.EBSpawner.http_timeout = 60",
        "c.EBSpawner.start_timeout = 90",
        "c.JupyterHub.load_roles.append({'name': 'eb-test-servers', 'services': ['eb-test'], "
        "'scopes': ['servers', 'admin:server_state', 'admin:users']})",
    ]
    if service:
        lines += [
            "import sys",
            "c.JupyterHub.services.append({'name': 'eb', 'url': "
            f"'http://127.0.0.1:{service_port}', 'command': [sys.executable, '-m', "
            "'eb_spawner.service', '--config', __file__], 'oauth_no_confirm': True})",
            "c.JupyterHub.load_roles.append({'name': 'eb-service', 'services': ['eb'], "
            "'scopes': ['servers', 'read:users', 'read:groups', 'list:users', "
            "'list:groups', 'admin:server_state']})",
            "c.EBSpawner.service_state_file = __file__ + '.eb-state.json'",
            "c.JupyterHub.load_roles.append({'name': 'user', "
            "'scopes': ['self', 'access:services!service=eb']})",
        ]
    return "\n".join(lines) + "\n" + extra


def _processes_under(path: Path, words: tuple[str, ...]) -> list[int]:
    """Pids whose command line names ``path`` and one of ``words`` (what this test started)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline and any(w in cmdline for w in words):
            found.append(int(entry))
    return found


@pytest.fixture(autouse=True)
def _no_leftover_sessions(tmp_path: Path) -> Iterator[None]:
    """Session runners are detached from their broker (by design): end this test's ones."""
    yield
    for pid in _processes_under(tmp_path, ("local_runner", "eb_spawner.service")):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _processes_under(tmp_path, ("local_runner",)):
        time.sleep(0.2)
    for pid in _processes_under(tmp_path, ("local_runner", "jupyter")):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def hub_factory(tmp_path: Path) -> Iterator[HubFactory]:
    started: list[Hub] = []

    def start(config: str, name: str = "hub") -> Hub:
        hub = start_hub(tmp_path / name, extra_config=config)
        started.append(hub)
        return hub

    yield start
    for hub in started:
        for user in ("alice", "bob", "carol"):
            with contextlib.suppress(httpx.HTTPError):
                hub.api("DELETE", f"/users/{user}/server")
        hub.stop()


def public(hub: Hub) -> str:
    return f"http://127.0.0.1:{hub.port}"


def login(hub: Hub, user: str) -> httpx.Client:
    """A browser-like client logged in to the hub as ``user`` (dummy authenticator)."""
    client = httpx.Client(base_url=public(hub), follow_redirects=True, timeout=60)
    deadline = time.monotonic() + 30
    page = client.get("/hub/login")
    while page.status_code == 404 and time.monotonic() < deadline:  # the proxy's routes
        time.sleep(0.1)
        page = client.get("/hub/login")
    xsrf = client.cookies.get("_xsrf") or ""
    response = client.post("/hub/login", data={"username": user, "password": "x", "_xsrf": xsrf})
    assert response.status_code == 200, response.text[:500]
    assert page.status_code == 200
    return client


def xsrf(client: httpx.Client) -> str:
    return client.cookies.get("_xsrf") or ""


def offers_in(page: str) -> list[str]:
    return re.findall(r'name="offer" value="([^"]+)"', page)


def wait_ready(hub: Hub, user: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = hub.api("GET", f"/users/{user}").json()
        server = (info.get("servers") or {}).get("")
        if server and server.get("ready"):
            return dict(server)
        time.sleep(0.2)
    lines = [line for line in hub_log(hub).splitlines() if "GET /hub/api/users/" not in line]
    raise TimeoutError(f"{user}'s server not ready; hub log:\n" + "\n".join(lines[-60:]))


def hub_log(hub: Hub) -> str:
    return (hub.dir / "hub.log").read_text(errors="replace")


@pytest.fixture
def free() -> Callable[[], int]:
    return free_port


def post_spawn(client: httpx.Client, path: str = "/hub/spawn", **fields: str) -> str:
    """Post the spawn form (with its XSRF token) as a browser would; the page answered."""
    return client.post(path, data={**fields, "_xsrf": xsrf(client)}).text


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate()`` every 0.2 s until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(what)


def wait_service(hub: Hub, name: str = "eb", timeout: float = 60) -> None:
    """Until the hub-managed service answers through the proxy (it starts after the hub)."""

    def up() -> bool:
        try:
            answer = httpx.get(f"{public(hub)}/services/{name}/api/bookings", timeout=10)
        except httpx.HTTPError:
            return False
        return answer.status_code < 500 and answer.status_code != 404

    wait_for(up, timeout, f"the service {name} did not come up")


def broker_sessions(broker: BrokerProcess, *phases: str) -> list[dict[str, Any]]:
    """The broker's sessions (in ``phases``) as ``{"uuid", "name", "phase", ...}``."""
    params = {"phase": ",".join(phases)} if phases else None
    with broker.client() as client:
        answer = client.get("/sessions", params=params)
    answer.raise_for_status()
    return [
        {**item, "uuid": item["meta"]["uuid"], "name": item["meta"].get("name") or ""}
        for item in answer.json()
    ]


def sdk_session(broker: BrokerProcess, uuid: str) -> Any:
    """The session as the SDK sees it (``.start``, ``.end``, ``.phase``, ``.name``)."""
    import eb_sdk as eb

    return eb.session(uuid, brokers=[eb.Broker(broker.url, token=broker.tokens["alice"])])


def phase_of(broker: BrokerProcess, uuid: str) -> str:
    with broker.client() as client:
        return str(client.get(f"/sessions/{uuid}").json()["phase"])


def set_phase(broker: BrokerProcess, uuid: str, value: str) -> httpx.Response:
    with broker.client() as client:
        return client.post(
            f"/sessions/{uuid}",
            json={"kind": "uri:enum-value-update", "path": "phase", "value": value},
        )


def stored_state(hub: Hub, user: str, server: str = "") -> dict[str, Any]:
    """The spawner state the hub keeps in its database for ``user``'s ``server``."""
    import json
    import sqlite3

    with contextlib.closing(sqlite3.connect(hub.dir / "hub.sqlite")) as db:
        row = db.execute(
            "SELECT spawners.state FROM spawners JOIN users ON users.id = spawners.user_id "
            "WHERE users.name = ? AND spawners.name = ?",
            (user, server),
        ).fetchone()
    return dict(json.loads(row[0]) or {}) if row and row[0] else {}


def restart_hub(hub: Hub) -> Hub:
    """Start ``hub`` again from its own config file: same ports, same database."""
    import subprocess
    import sys

    from tests.fixtures.services import wait_http

    hub.stop()
    log = open(hub.dir / "hub.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(hub.dir / "jupyterhub_config.py")],
        cwd=hub.dir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    again = Hub(hub.dir, hub.port, hub.hub_port, hub.service_token, proc)
    wait_http(again.api_url, timeout=60, proc=proc)
    return again


from tests.spawner.receivers import mailbox, webhook  # noqa: E402, F401 - fixtures
