"""Time to ready: EBSpawner "now" next to SimpleLocalProcessSpawner, on the same hub.

One JupyterHub (configurable-http-proxy, dummy authenticator) whose spawner class is chosen per
user by a small wrapper: users named ``eb-*`` get EBSpawner (against one local-platform
``eb-broker``), the others SimpleLocalProcessSpawner. Two paths are timed for each, in
alternating rounds:

* REST: ``POST /hub/api/users/<u>/server`` (EBSpawner: ``{"profile": "small"}``, the earliest
  slot now) until ``GET /hub/api/users/<u>`` says ready (polled every 20 ms);
* form: a logged-in browser-like client posts the spawn page (EBSpawner: the first offer of
  the form it was shown, as a user picks it; SimpleLocalProcessSpawner: no options) until
  ready. Showing EBSpawner's form (asking the broker for offers) is timed on its own.

Each server is stopped before the next round.

Run by hand:  .venv/bin/python benchmarks/bench_spawner.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.hub import Hub, start_hub
from tests.fixtures.services import BrokerProcess, free_port

ALLOW_ROOT = "['--allow-root']" if os.geteuid() == 0 else "[]"

CHOOSER = """
from jupyterhub.spawner import SimpleLocalProcessSpawner, Spawner
from eb_spawner import EBSpawner


class SpawnerByUser(Spawner):
    \"\"\"EBSpawner for users named eb-*, SimpleLocalProcessSpawner for the others.\"\"\"

    def __new__(cls, *args, **kwargs):
        user = kwargs.get("user")
        chosen = EBSpawner if user is not None and user.name.startswith("eb-") else (
            SimpleLocalProcessSpawner
        )
        return chosen(*args, **kwargs)

    # never called (__new__ returns one of the two), but JupyterHub insists they exist
    async def start(self):
        raise NotImplementedError

    async def stop(self, now=False):
        raise NotImplementedError

    async def poll(self):
        raise NotImplementedError


c.JupyterHub.spawner_class = SpawnerByUser
"""


def wait_ready(hub: Hub, user: str, t0: float) -> float:
    while True:
        server = (hub.api("GET", f"/users/{user}").json().get("servers") or {}).get("")
        if server and server.get("ready"):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > 120:
            raise TimeoutError(f"{user}'s server not ready in 120 s")
        time.sleep(0.02)


def stop(hub: Hub, user: str) -> None:
    hub.api("DELETE", f"/users/{user}/server")
    while (hub.api("GET", f"/users/{user}").json().get("servers") or {}).get(""):
        time.sleep(0.05)


def by_rest(hub: Hub, user: str, options: dict[str, object]) -> float:
    t0 = time.perf_counter()
    response = hub.api("POST", f"/users/{user}/server", json=options)
    assert response.status_code in (201, 202), response.text
    elapsed = wait_ready(hub, user, t0)
    stop(hub, user)
    return elapsed


def login(hub: Hub, user: str) -> httpx.Client:
    client = httpx.Client(base_url=f"http://127.0.0.1:{hub.port}", timeout=120)
    client.get("/hub/login")
    xsrf = client.cookies.get("_xsrf") or ""
    client.post("/hub/login", data={"username": user, "password": "x", "_xsrf": xsrf})
    return client


def by_form(hub: Hub, client: httpx.Client, user: str, eb: bool) -> tuple[float, float]:
    """(seconds to show the form, seconds from pressing Start to ready)."""
    data = {"_xsrf": client.cookies.get("_xsrf") or ""}
    shown = 0.0
    if eb:
        t0 = time.perf_counter()
        page = client.get("/hub/spawn").text
        shown = time.perf_counter() - t0
        offer = re.search(r'name="offer" value="([^"]+)"', page)
        assert offer, page[-2000:]
        data.update(profile="small", when="now", offer=offer.group(1))
    t0 = time.perf_counter()
    response = client.post("/hub/spawn", data=data)
    assert response.status_code in (200, 302), response.text[-2000:]
    elapsed = wait_ready(hub, user, t0)
    stop(hub, user)
    return shown, elapsed


def row(name: str, values: list[float]) -> str:
    return f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--preparation", type=float, default=5.0, help="broker's planned prep (s)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="eb-bench-spawner-"))
    (base / "broker").mkdir()
    (base / "home").mkdir()
    broker = BrokerProcess(
        dir=base / "broker",
        port=free_port(),
        db_url=f"sqlite:///{base / 'broker' / 'ledger.sqlite'}",
        args=(
            "--LocalPlatform.cores=4",
            "--LocalPlatform.memory_gib=8",
            f"--LocalPlatform.startup_preparation={args.preparation}",
        ),
    ).start()
    config = (
        CHOOSER + f"c.EBSpawner.eb_brokers = [{{'name': 'local', 'url': '{broker.url}', "
        f"'token': '{broker.tokens['alice']}'}}]\n"
        "c.EBSpawner.profiles = [{'slug': 'small', 'cores': 1, 'memory': '1GiB', "
        "'duration': '1h'}]\n"
        f"c.SimpleLocalProcessSpawner.args = {ALLOW_ROOT}\n"
        "c.SimpleLocalProcessSpawner.cmd = "
        f"[{str(Path(sys.executable).parent / 'jupyterhub-singleuser')!r}]\n"
        f"c.SimpleLocalProcessSpawner.home_dir_template = '{base / 'home'}'\n"
        "c.JupyterHub.load_roles.append({'name': 'bench', 'services': ['eb-test'], "
        "'scopes': ['servers', 'admin:users']})\n"
    )
    hub = start_hub(base / "hub", extra_config=config)
    names = ("EBSpawner (now)", "SimpleLocalProcessSpawner")
    rest: dict[str, list[float]] = {n: [] for n in names}
    form: dict[str, list[float]] = {n: [] for n in names}
    shown: list[float] = []
    try:
        for user in ("eb-rest", "eb-form", "simple-rest", "simple-form"):
            hub.user_token(user)
        clients = {u: login(hub, u) for u in ("eb-form", "simple-form")}
        for _ in range(args.rounds):
            rest[names[0]].append(by_rest(hub, "eb-rest", {"profile": "small"}))
            rest[names[1]].append(by_rest(hub, "simple-rest", {}))
            show, ready = by_form(hub, clients["eb-form"], "eb-form", eb=True)
            shown.append(show)
            form[names[0]].append(ready)
            form[names[1]].append(by_form(hub, clients["simple-form"], "simple-form", False)[1])
    finally:
        hub.stop()
        broker.stop()
    print(f"rounds: {args.rounds}, broker preparation {args.preparation:g} s, one hub\n")
    print("| path | spawner | median s | min s | max s |")
    print("|---|---|---|---|---|")
    for path, times in (("REST", rest), ("form", form)):
        for name in names:
            print(f"| {path} " + row(name, times[name]))
    print(
        f"| form | EBSpawner: showing the form (offers) | {statistics.median(shown):.2f} "
        f"| {min(shown):.2f} | {max(shown):.2f} |"
    )
    for path, times in (("REST", rest), ("form", form)):
        ratio = statistics.median(times[names[0]]) / statistics.median(times[names[1]])
        print(f"\n{path} ratio (median): {ratio:.2f}x")


if __name__ == "__main__":
    main()
