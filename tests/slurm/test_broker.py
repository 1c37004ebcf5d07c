"""End to end: real ``eb-broker --platform=slurm`` processes on a real Slurm cluster.

request → offers → accept → the advance reservation exists → the job runs the notebook in it
→ COMPLETED with the output notebook; later offers for a taken slot; failures; servers;
queue estimates next to a busy node; cancel; slurmctld stopped and back.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nbformat

from eb_sdk.model import messages as msg
from eb_sdk.model.times import parse_instant, parse_interval
from tests.broker.helpers import SERVER, accept, notebook_request
from tests.fixtures.slurm import SlurmCluster
from tests.slurm.conftest import (
    SlurmBroker,
    session,
    wait_phase,
    wait_until,
    write_notebook,
)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ask(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/requests", json=body)
    assert response.status_code == 303, response.text
    return dict(response.json())


def precise(offerset: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in offerset.get("offers") or [] if "jeb:estimate" not in o]


def estimates(offerset: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in offerset.get("offers") or [] if "jeb:estimate" in o]


def start_of(offer: dict[str, Any]) -> datetime:
    return parse_interval(offer["schedule"]["available"]["start"]).start


def end_of(offer: dict[str, Any]) -> datetime:
    return parse_instant(offer["schedule"]["releasing"]["start"])


def reject_all(client: httpx.Client, offerset: dict[str, Any]) -> None:
    for offer in offerset.get("offers") or []:
        accept(client, offer["meta"]["url"], "REJECTED")


def ask_until(client: httpx.Client, body: dict[str, Any], good: Any, what: str) -> dict[str, Any]:
    """Ask until the broker's answer is ``good`` (it re-reads the cluster every second);
    offers of the answers that were not are rejected, so they hold nothing."""

    answers: list[dict[str, Any]] = []

    def probe() -> dict[str, Any] | None:
        answer = ask(client, body)
        if good(answer):
            return answer
        reject_all(client, answer)
        answers.append(answer)
        return None

    try:
        return dict(wait_until(what, probe, timeout=30, interval=0.5))
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the last answer: {answers[-1:]}") from None


def our_reservation(cluster: SlurmCluster, name: str) -> dict[str, str] | None:
    for line in cluster.reservations().splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if fields.get("ReservationName") == name:
            return fields
    return None


def job_of(cluster: SlurmCluster, name: str) -> dict[str, Any] | None:
    jobs = json.loads(cluster.run("squeue", "--json").stdout)["jobs"]
    found = [j for j in jobs if j["name"] == name]
    return found[-1] if found else None


def messages_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list((body.get("meta") or {}).get("messages") or [])


# -- the cases ------------------------------------------------------------------------------------


def test_notebook_in_an_advance_reservation(
    slurm_broker: SlurmBroker, slurm: SlurmCluster, tmp_path: Path
) -> None:
    broker = slurm_broker()
    nb = write_notebook(tmp_path / "double.ipynb", "import time; time.sleep(8)", "print(x * 2)")
    body = notebook_request(1, 1, duration="PT2M", location=str(nb))
    body["executable"]["jeb:parameters"] = {"x": 21}
    with broker.client() as c:
        capabilities = c.get("/capabilities").json()
        assert capabilities["platform"] == "slurm"
        assert capabilities["max_compute"]["cores"] == 2
        answer = ask(c, body)
        assert answer["result"] == "YES", answer
        offer = precise(answer)[0]
        uuid = offer["meta"]["uuid"]
        name = f"{broker.prefix}{uuid}"
        assert our_reservation(slurm, name) is None  # offers create nothing in Slurm
        assert accept(c, offer["meta"]["url"]).status_code == 200

        fields = wait_until("the reservation", lambda: our_reservation(slurm, name), 20, 0.1)
        assert fields["CoreCnt"] == "1"
        assert fields["Users"] in ("root", broker_user())
        assert parse_instant(fields["StartTime"] + "Z") == start_of(offer)
        assert parse_instant(fields["EndTime"] + "Z") == end_of(offer)

        # while it runs: in its reservation, not started before the slot (--begin)
        running = wait_until(
            "the job running",
            lambda: (j := job_of(slurm, name)) and j["job_state"] == "RUNNING" and j,
            60,
            0.2,
        )
        assert running["resv_name"] == name
        slot_start = start_of(offer).timestamp()
        assert running["eligible_time"] >= slot_start  # --begin=<start>
        assert running["start_time"] >= slot_start
        done = wait_phase(c, uuid, "COMPLETED", "FAILED", "CANCELLED")
        assert done["phase"] == "COMPLETED", messages_of(done)
        out = nbformat.read(done["jeb:outputs"]["notebook"], as_version=4)
        assert "42" in json.dumps([cell.get("outputs") for cell in out.cells])
        assert Path(done["jeb:outputs"]["log"]).exists()
        job = job_of(slurm, name)
        assert job is not None and job["job_state"] == "COMPLETED"
        assert our_reservation(slurm, name) is None  # released


def broker_user() -> str:
    from tests.slurm.conftest import ME

    return ME


def test_taken_slot_gets_a_later_offer_and_cancel_stops_the_job(
    slurm_broker: SlurmBroker, slurm: SlurmCluster, tmp_path: Path
) -> None:
    broker = slurm_broker()
    nb = write_notebook(tmp_path / "long.ipynb", "import time; time.sleep(300)")
    body = notebook_request(2, 1, duration="PT2M", location=str(nb))
    with broker.client() as c:
        first = precise(ask(c, body))[0]
        assert accept(c, first["meta"]["url"]).status_code == 200
        uuid = first["meta"]["uuid"]
        wait_phase(c, uuid, "RUNNING")

        again = ask(c, body)  # the whole node, again: only after the first session
        assert again["result"] == "YES"
        for offer in again["offers"]:
            assert start_of(offer) >= end_of(first), (offer["schedule"], first["schedule"])
        reject_all(c, again)

        name = f"{broker.prefix}{uuid}"
        job = job_of(slurm, name)
        assert job is not None and job["job_state"] == "RUNNING"
        assert accept(c, first["meta"]["url"], "CANCELLED").status_code == 200
        done = wait_phase(c, uuid, "CANCELLED", "FAILED", "COMPLETED", timeout=60)
        assert done["phase"] == "CANCELLED", messages_of(done)
        assert slurm.job_state(job["job_id"]) == "CANCELLED"  # scancel
        assert our_reservation(slurm, name) is None  # deleted
        assert Path(done["jeb:outputs"]["notebook"]).exists()  # outputs and log are kept
        assert Path(done["jeb:outputs"]["log"]).exists()


def test_failing_notebook_fails_with_the_error(
    slurm_broker: SlurmBroker, slurm: SlurmCluster, tmp_path: Path
) -> None:
    broker = slurm_broker()
    nb = write_notebook(tmp_path / "fail.ipynb", "a = 1", "b = a / 0", "c = 3")
    with broker.client() as c:
        offer = precise(ask(c, notebook_request(1, 1, duration="PT2M", location=str(nb))))[0]
        accept(c, offer["meta"]["url"])
        done = wait_phase(c, offer["meta"]["uuid"], "COMPLETED", "FAILED", "CANCELLED")
        assert done["phase"] == "FAILED"
        (failure,) = [m for m in messages_of(done) if m["kind"] == msg.EXECUTION_FAILED]
        assert failure["values"]["cell"] == "2"  # 0-based, in the submitted notebook
        assert failure["values"]["ename"] == "ZeroDivisionError"
        assert "division by zero" in failure["values"]["evalue"]
        assert "output.ipynb" in done["jeb:outputs"]["notebook"]


def test_jupyter_server_is_available_through_its_connector(
    slurm_broker: SlurmBroker, slurm: SlurmCluster
) -> None:
    """The server listens on every address of its node, and the connector names the node
    (server_ip=0.0.0.0, server_host={hostname}), as on a cluster of many hosts."""
    broker = slurm_broker(
        "--SlurmPlatform.server_ip=0.0.0.0", "--SlurmPlatform.server_host={hostname}"
    )
    body = notebook_request(1, 1, duration="PT5M")
    body["executable"] = {"kind": SERVER}
    with broker.client() as c:
        offer = precise(ask(c, body))[0]
        uuid = offer["meta"]["uuid"]
        accept(c, offer["meta"]["url"])
        up = wait_phase(c, uuid, "AVAILABLE", "FAILED", timeout=120)
        assert up["phase"] == "AVAILABLE", messages_of(up)
        (connector,) = up["connectors"]
        assert connector["kind"] == "urn:jeb:v1:connector:jupyter-server"
        location = httpx.URL(connector["location"])
        assert location.host == socket.gethostname(), location
        assert httpx.get(connector["location"], timeout=10).status_code < 400
        # it listens on the node's other addresses too, not only on loopback
        elsewhere = str(location.copy_with(host=_other_address()))
        assert httpx.get(elsewhere, timeout=10).status_code < 400
        job = job_of(slurm, f"{broker.prefix}{uuid}")
        assert job is not None and job["job_state"] == "RUNNING"
        accept(c, offer["meta"]["url"], "CANCELLED")
        done = wait_phase(c, uuid, "CANCELLED", "FAILED", "COMPLETED", timeout=60)
        assert done["phase"] == "CANCELLED"
        assert our_reservation(slurm, f"{broker.prefix}{uuid}") is None


def _other_address() -> str:
    """An address of this machine that is not 127.0.0.1 (the node's other interfaces)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent
            address = str(probe.getsockname()[0])
        except OSError:
            address = ""
    return address if address and address != "127.0.0.1" else "127.0.0.2"


def test_queue_estimate_next_to_foreign_jobs_and_reservations(
    slurm_broker: SlurmBroker, slurm: SlurmCluster, tmp_path: Path
) -> None:
    broker = slurm_broker()
    now = datetime.now(UTC)
    blocker = slurm.sbatch("-c", "2", "-t", "3", "-J", "someone-else")  # the whole node
    wait_until("the foreign job to run", lambda: slurm.job_state(blocker) == "RUNNING")
    blocked_until = datetime.fromtimestamp(job_of(slurm, "someone-else")["end_time"], UTC)
    maint = (now + timedelta(minutes=6), now + timedelta(minutes=9))
    slurm.run(
        "scontrol", "create", "reservation", "ReservationName=maintenance",
        f"StartTime={maint[0]:%Y-%m-%dT%H:%M:%S}", f"EndTime={maint[1]:%Y-%m-%dT%H:%M:%S}",
        "Users=nobody", "Nodes=ALL", "Flags=MAINT,IGNORE_JOBS",
    )  # fmt: skip
    nb = write_notebook(tmp_path / "q.ipynb", "print('queued')")
    body = notebook_request(1, 1, duration="PT1M", location=str(nb), start=f"{iso(now)}/PT1H")

    def sees_the_cluster(answer: dict[str, Any]) -> bool:
        slots = precise(answer)
        return bool(slots) and all(start_of(o) >= blocked_until for o in slots)

    with broker.client() as c:
        answer = ask_until(c, body, sees_the_cluster, "offers that avoid the foreign job")
        for offer in precise(answer):  # never in the maintenance reservation
            assert end_of(offer) <= maint[0] or start_of(offer) >= maint[1], offer["schedule"]
        (queued,) = estimates(answer)
        estimate = queued["jeb:estimate"]
        expected = parse_instant(estimate["expected"])
        test_only = slurm.run(
            "sbatch", "--test-only", "-c", "1", "--mem=1G", "-t", "1", "--wrap=true"
        ).stderr
        slurm_says = parse_instant(test_only.split(" to start at ")[1].split()[0] + "Z")
        assert abs((expected - slurm_says).total_seconds()) <= 5, (estimate, test_only)
        interval = queued["schedule"]["available"]["start"]
        window = parse_interval(interval)
        earliest, latest = window.start, window.end
        assert earliest <= expected <= latest
        assert latest == parse_instant(iso(now + timedelta(hours=1)))  # the window's end
        assert "sbatch --test-only" in estimate["basis"]

        uuid = queued["meta"]["uuid"]
        accept(c, queued["meta"]["url"])
        name = f"{broker.prefix}{uuid}"
        job = wait_until("the queued job", lambda: job_of(slurm, name))
        assert job["job_state"] == "PENDING" and job["resv_name"] == ""
        assert our_reservation(slurm, name) is None  # estimates reserve nothing
        waiting = wait_until(
            "the queued message",
            lambda: [m for m in messages_of(session(c, uuid)) if "queued in" in m["message"]],
        )
        assert f"queued in Slurm as job {job['job_id']}" in waiting[0]["message"]
        assert session(c, uuid)["phase"] == "PREPARING"

        slurm.run("scancel", str(blocker))  # the node frees up early: the queue starts it
        done = wait_phase(c, uuid, "COMPLETED", "FAILED", "CANCELLED")
        assert done["phase"] == "COMPLETED", messages_of(done)
        ran = job_of(slurm, name)
        assert ran is not None and ran["start_time"] < expected.timestamp()


def test_what_cannot_run_here_is_refused(slurm_broker: SlurmBroker) -> None:
    broker = slurm_broker()
    with broker.client() as c:
        for executable in (
            {"kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"
             "executable/singularity-container.yaml", "location": "/img/a.sif"},
            {"kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"
             "executable/docker-container.yaml", "image": {"locations": ["a/b"]}},
        ):  # fmt: skip
            body = notebook_request(1, 1)
            body["executable"] = executable
            answer = ask(c, body)
            assert answer["result"] == "NO"
            kinds = {m["kind"] for m in answer["meta"]["messages"]}
            assert kinds == {msg.NOT_SUPPORTED}, answer


def test_slurmctld_down_means_no_offers_and_sessions_recover(
    slurm_broker: SlurmBroker, slurm: SlurmCluster, tmp_path: Path
) -> None:
    broker = slurm_broker()
    nb = write_notebook(tmp_path / "slow.ipynb", "import time; time.sleep(6)", "print('done')")
    body = notebook_request(1, 1, duration="PT3M", location=str(nb))
    with broker.client() as c:
        offer = precise(ask(c, body))[0]
        uuid = offer["meta"]["uuid"]
        accept(c, offer["meta"]["url"])
        running = wait_phase(c, uuid, "RUNNING")
        status_file = Path(running["jeb:outputs"]["log"]).parent / "status.json"

        slurm.stop_controller()
        try:

            def unavailable(answer: dict[str, Any]) -> bool:
                kinds = {m["kind"] for m in (answer.get("meta") or {}).get("messages") or []}
                return answer["result"] == "NO" and msg.PLATFORM_UNAVAILABLE in kinds

            refused = ask_until(c, body, unavailable, "NO with urn:platform-unavailable")
            (problem,) = refused["meta"]["messages"]
            assert "slurmctld" in problem["message"]

            # the notebook finishes while slurmctld is away: the session is not failed, and
            # stays as it was until Slurm can be asked again
            wait_until(
                "the runner to finish",
                lambda: '"SUCCEEDED"' in (status_file.read_text() if status_file.exists() else ""),
                timeout=90,
            )
            assert session(c, uuid)["phase"] == "RUNNING"
        finally:
            slurm.start_controller()  # recovers its saved state: jobs, reservations
        done = wait_phase(c, uuid, "COMPLETED", "FAILED", "CANCELLED", timeout=90)
        assert done["phase"] == "COMPLETED", messages_of(done)
        answer = ask_until(c, body, lambda a: a["result"] == "YES", "offers again")
        assert precise(answer)
