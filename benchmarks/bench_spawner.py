"""Time to ready: EBSpawner "now" next to SimpleLocalProcessSpawner, on the same hub set-up.

One JupyterHub (configurable-http-proxy, dummy authenticator) per spawner class, identical
but for ``spawner_class``, and one local-platform ``eb-broker``. Each round starts alice's
server through the REST API (``POST /users/alice/server``; EBSpawner with
``{"profile": "small"}``: the earliest slot now), polls ``GET /users/alice`` every 20 ms
until the server is ready, then stops it. The rounds alternate between the two hubs.

Run by hand:  .venv/bin/python benchmarks/bench_spawner.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.hub import Hub, start_hub
from tests.fixtures.services import BrokerProcess, free_port

ALLOW_ROOT = "['--allow-root']" if os.geteuid() == 0 else "[]"


def time_to_ready(hub: Hub, options: dict[str, object] | None) -> float:
    t0 = time.perf_counter()
    response = hub.api("POST", "/users/alice/server", json=options or {})
    assert response.status_code in (201, 202), response.text
    while True:
        server = (hub.api("GET", "/users/alice").json().get("servers") or {}).get("")
        if server and server.get("ready"):
            elapsed = time.perf_counter() - t0
            break
        if time.perf_counter() - t0 > 120:
            raise TimeoutError("server not ready in 120 s")
        time.sleep(0.02)
    hub.api("DELETE", "/users/alice/server")
    while (hub.api("GET", "/users/alice").json().get("servers") or {}).get(""):
        time.sleep(0.05)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--preparation", type=float, default=5.0, help="broker's planned prep (s)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="eb-bench-spawner-"))
    (base / "broker").mkdir()
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
    roles = (
        "c.JupyterHub.load_roles.append({'name': 'bench', 'services': ['eb-test'], "
        "'scopes': ['servers', 'admin:users']})\n"
    )
    eb_cfg = (
        'c.JupyterHub.spawner_class = "eb"\n'
        f"c.EBSpawner.eb_brokers = [{{'name': 'local', 'url': '{broker.url}', "
        f"'token': '{broker.tokens['alice']}'}}]\n"
        "c.EBSpawner.profiles = [{'slug': 'small', 'cores': 1, 'memory': '1GiB', "
        "'duration': '1h'}]\n" + roles
    )
    simple_cfg = (
        'c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"\n'
        f"c.Spawner.args = {ALLOW_ROOT}\n"
        f"c.Spawner.cmd = [{str(Path(sys.executable).parent / 'jupyterhub-singleuser')!r}]\n"
        f"c.SimpleLocalProcessSpawner.home_dir_template = '{base / 'home'}'\n" + roles
    )
    (base / "home").mkdir()
    hubs = {
        "EBSpawner (now)": (start_hub(base / "hub-eb", extra_config=eb_cfg), {"profile": "small"}),
        "SimpleLocalProcessSpawner": (
            start_hub(base / "hub-simple", extra_config=simple_cfg),
            None,
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in hubs}
    try:
        for hub, _ in hubs.values():
            hub.user_token("alice")
        for _ in range(args.rounds):
            for name, (hub, options) in hubs.items():
                times[name].append(time_to_ready(hub, options))
    finally:
        for hub, _ in hubs.values():
            hub.stop()
        broker.stop()
    print(f"rounds: {args.rounds}, broker preparation {args.preparation:g} s\n")
    print("| spawner | median s | min s | max s |")
    print("|---|---|---|---|")
    for name, values in times.items():
        print(
            f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )
    ratio = statistics.median(times["EBSpawner (now)"]) / statistics.median(
        times["SimpleLocalProcessSpawner"]
    )
    print(f"\nratio (median): {ratio:.2f}x")


if __name__ == "__main__":
    main()
