"""The pure Slurm parsers and builders, on outputs captured from a real Slurm 22.05."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eb_broker.platforms.base import PlatformUnavailable
from eb_broker.platforms.slurm import objects as so

DATA = Path(__file__).parent / "data"
#: when data/squeue.json was captured
CAPTURED = datetime.fromtimestamp(1795270251, UTC)


def data(name: str) -> str:
    return (DATA / name).read_text()


# -- parsing --------------------------------------------------------------------------------------


def test_sinfo_nodes() -> None:
    (node,) = so.parse_sinfo_json(data("sinfo.json"))
    assert node.name == "localhost"
    assert (node.cpus, node.memory_mb, node.state) == (2, 4000, "mixed")
    assert node.partitions == ("debug",)
    assert node.usable


@pytest.mark.parametrize(
    ("state", "flags", "usable"),
    [
        ("idle", (), True),
        ("allocated", ("RESERVED",), True),
        ("mixed", ("DRAIN",), False),
        ("down", (), False),
        ("idle", ("NOT_RESPONDING",), False),
        ("idle", ("POWERED_DOWN",), False),
    ],
)
def test_node_usable(state: str, flags: tuple[str, ...], usable: bool) -> None:
    assert so.Node("n", 2, 1000, state, flags).usable is usable


def test_squeue_jobs() -> None:
    jobs = {j.name: j for j in so.parse_squeue_json(data("squeue.json"))}
    assert len(jobs) == 10
    running = jobs["inf"]
    assert running.running and not running.final
    assert running.time_limit is None  # UNLIMITED
    assert (running.cpus, running.memory_mb, running.nodes) == (1, 500, ("localhost",))
    held = jobs["hold"]
    assert held.pending and held.start is None and held.reason == "JobHeldUser"
    big = jobs["big"]
    assert big.pending and big.start is not None and big.time_limit == timedelta(minutes=5)
    assert big.memory_mb == 1000  # from tres_req_str while pending
    failed = jobs["failjob"]
    assert failed.final and failed.exit_status() == (3, None)
    cancelled = jobs["foreign"]
    assert cancelled.state == "CANCELLED" and cancelled.exit_status() == (None, 15)
    assert jobs["dl"].state == "DEADLINE" and jobs["dl"].final
    assert jobs["long"].state == "COMPLETED" and jobs["long"].exit_status() == (0, None)


def test_squeue_while_slurmctld_is_down_is_unavailable() -> None:
    # 22.05 answers exit code 0 with an "errors" list when it cannot reach slurmctld
    with pytest.raises(so.SlurmUnavailable, match="Failed while looking for jobs"):
        so.parse_squeue_json(data("squeue_unreachable.json"))
    assert issubclass(so.SlurmUnavailable, PlatformUnavailable)


def test_garbage_is_an_error_not_an_outage() -> None:
    with pytest.raises(so.SlurmError) as info:
        so.parse_sinfo_json("not json")
    assert not isinstance(info.value, so.SlurmUnavailable)


def test_reservations() -> None:
    ours, maint, active = so.parse_reservations(data("reservations.txt"))
    assert ours.name == "eb-5f0c3f1e-0000-4000-8000-000000000001"
    assert ours.start == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    assert ours.end == datetime(2026, 11, 22, 11, 30, tzinfo=UTC)
    assert (ours.core_count, ours.users, ours.partition, ours.flags) == (1, ("root",), "debug", ())
    assert maint.partition == "" and "MAINT" in maint.flags and maint.core_count == 2
    assert active.state == "ACTIVE" and active.flags == () and active.nodes == ("localhost",)
    assert so.parse_reservations("No reservations in the system\n") == []


def test_test_only() -> None:
    answer = so.parse_test_only(data("test_only.txt"))
    assert answer.start == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert (answer.cpus, answer.nodes, answer.partition) == (1, ("localhost",), "debug")
    with pytest.raises(so.SlurmError, match="Requested node configuration is not available"):
        so.parse_test_only("allocation failure: Requested node configuration is not available\n")


def test_sbatch_parsable() -> None:
    assert so.parse_sbatch_parsable("123\n") == 123
    assert so.parse_sbatch_parsable("77;cluster\n") == 77
    with pytest.raises(so.SlurmError):
        so.parse_sbatch_parsable("")


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("localhost", ["localhost"]),
        ("node[1-3,7]", ["node1", "node2", "node3", "node7"]),
        ("n[01-02]-ib,login", ["n01-ib", "n02-ib", "login"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
        ("", []),
        ("(null)", []),
    ],
)
def test_hostlists(text: str, hosts: list[str]) -> None:
    assert so.expand_hostlist(text) == hosts


@pytest.mark.parametrize(
    ("text", "mib"), [("500M", 500), ("2G", 2048), ("1.5G", 1536), ("1024", 1024), ("x", 0)]
)
def test_memory(text: str, mib: int) -> None:
    assert so.parse_memory_mb(text) == mib
    assert so.parse_tres_memory_mb(f"cpu=1,mem={text},node=1") == mib


def test_unreachable_phrases() -> None:
    assert so.is_unreachable(
        "slurm_load_reservations error: Unable to contact slurm controller (connect failure)"
    )
    assert so.is_unreachable("allocation failure: Unable to contact slurm controller")
    assert not so.is_unreachable("Requested nodes are busy")


# -- building -------------------------------------------------------------------------------------


def test_time_limits() -> None:
    assert so.time_limit_minutes(timedelta(minutes=2), round_up=False) == 2
    assert so.time_limit_minutes(timedelta(minutes=2, seconds=30), round_up=False) == 2
    assert so.time_limit_minutes(timedelta(minutes=2, seconds=30), round_up=True) == 3
    assert so.time_limit_minutes(timedelta(seconds=20), round_up=False) == 1
    assert so.slurm_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05"
    with pytest.raises(ValueError):
        so.slurm_time(datetime(2026, 1, 2))


def test_reservation_command() -> None:
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    req = so.ReservationRequest("eb-x", start, start + timedelta(hours=2), "alice", 4, "batch")
    assert so.reservation_create_args(req) == [
        "create",
        "reservation",
        "ReservationName=eb-x",
        "StartTime=2026-11-23T09:00:00",
        "EndTime=2026-11-23T11:00:00",
        "Users=alice",
        "CoreCnt=4",
        "PartitionName=batch",
    ]
    assert so.reservation_delete_args("eb-x") == ["delete", "ReservationName=eb-x"]


def test_sbatch_options_precise_and_estimate() -> None:
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    precise = so.JobRequest(
        name="eb-u",
        cores=2,
        memory_mb=2048,
        time_limit=60,
        comment="eb-u",
        workdir="/w/u",
        output="/w/u/runner.log",
        begin=start,
        reservation="eb-u",
        user="alice",
        group="100",
        extra_args=("--qos=short",),
    )
    args = so.sbatch_args(precise)
    for option in (
        "--job-name=eb-u",
        "--cpus-per-task=2",
        "--mem=2048M",
        "--time=60",
        "--export=NONE",
        "--no-requeue",
        "--begin=2026-11-23T09:00:00",
        "--reservation=eb-u",
        "--uid=alice",
        "--gid=100",
        "--chdir=/w/u",
        "--output=/w/u/runner.log",
        "--qos=short",
    ):
        assert option in args, option
    queued = so.JobRequest(
        name="eb-v", cores=1, memory_mb=0, time_limit=5, begin=start, deadline=start
    )
    args = so.sbatch_args(queued)
    assert "--deadline=2026-11-23T09:00:00" in args
    assert not any(a.startswith("--mem") for a in args)  # the partition's default
    test = so.sbatch_args(precise, test_only=True)
    assert test[0] == "--test-only"
    assert not any(a.startswith(("--uid", "--deadline", "--export")) for a in test)


def test_batch_script_runs_the_session_runner() -> None:
    script = so.batch_script(
        python="/opt/py env/bin/python",
        session_dir="/work/s 1",
        package_path="/src",
        pythonpath_mark="MARK",
        pythonpath_orig="ORIG",
    )
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert lines[-1] == (
        "exec '/opt/py env/bin/python' -m eb_broker.platforms.local_runner '/work/s 1'"
    )
    assert "export MARK=1" in lines
    container = so.batch_script(
        python="p", session_dir="/w", command=["apptainer", "run", "/img/a b.sif"]
    )
    assert container.splitlines()[-1] == "exec apptainer run " + shlex.quote("/img/a b.sif")


# -- usage ----------------------------------------------------------------------------------------


def _node(name: str = "n1", cpus: int = 4, memory_mb: int = 8192) -> so.Node:
    return so.Node(name, cpus, memory_mb, "mixed", partitions=("batch",))


def test_capacity_of_usable_nodes_in_the_partition() -> None:
    nodes = [
        _node("n1"),
        _node("n2", 8, 16384),
        so.Node("n3", 64, 1 << 20, "idle", ("DRAIN",), ("batch",)),
        so.Node("g1", 32, 1 << 20, "idle", partitions=("gpu",)),
    ]
    view = so.ClusterView(nodes, partition="batch")
    assert view.capacity() == (12, 24)
    assert view.largest_node() == (8, 16)
    assert so.ClusterView(nodes).capacity() == (4 + 8 + 32, (8192 + 16384 + (1 << 20)) // 1024)


def test_usage_from_captured_jobs() -> None:
    (node,) = so.parse_sinfo_json(data("sinfo.json"))
    jobs = so.parse_squeue_json(data("squeue.json"))
    view = so.ClusterView([node], prefix="eb-")
    usage = {u.key: u for u in view.usage(jobs, [], CAPTURED)}
    # the unlimited running job and the pending job with an estimate; not the held one
    # (no estimate) and none of the finished ones
    assert set(usage) == {"job:17", "job:19"}
    assert usage["job:17"].cores == 1 and usage["job:17"].memory_gib == 1
    assert usage["job:19"].end - usage["job:19"].start == timedelta(minutes=5)


def test_usage_of_reservations_and_what_is_ours() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    hour = timedelta(hours=1)
    view = so.ClusterView([_node("n1"), _node("n2")], partition="batch", prefix="eb-")
    reservations = [
        so.Reservation("maint", now + hour, now + 2 * hour, ("n1", "n2"), 8),
        so.Reservation("half", now, now + hour, ("n1",), 2),
        so.Reservation("eb-ours", now, now + hour, ("n1",), 2),
        so.Reservation("past", now - 2 * hour, now - hour, ("n1",), 4),
        so.Reservation("elsewhere", now, now + hour, ("g1",), 4),
    ]
    jobs = [
        so.Job(1, "in-resv", "RUNNING", reservation="half", nodes=("n1",), cpus=2, start=now),
        so.Job(2, "eb-precise", "RUNNING", reservation="eb-ours", nodes=("n1",), cpus=2),
        so.Job(3, "other", "RUNNING", nodes=("g1",), cpus=4, start=now, end=now + hour),
        so.Job(4, "wrong-part", "PENDING", partition="gpu", cpus=4, start=now + hour),
    ]
    usage = {u.key: u for u in view.usage(jobs, reservations, now)}
    assert set(usage) == {"resv:maint", "resv:half"}
    assert (usage["resv:maint"].cores, usage["resv:maint"].memory_gib) == (8, 16)
    assert (usage["resv:half"].cores, usage["resv:half"].memory_gib) == (2, 4)  # half of n1


def test_usage_of_our_queued_job_outside_its_held_slot() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    minute = timedelta(minutes=1)
    uuid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    job = so.Job(
        9,
        f"eb-{uuid}",
        "RUNNING",
        nodes=("n1",),
        cpus=1,
        memory_mb=1024,
        start=now - 5 * minute,
        end=now + 25 * minute,
        time_limit=30 * minute,
    )
    # the broker holds [now, now + 30 min) for it: only the first 5 minutes are extra
    view = so.ClusterView([_node()], prefix="eb-", holds={uuid: (now, now + 30 * minute)})
    (extra,) = view.usage([job], [], now)
    assert (extra.key, extra.start, extra.end) == ("job:9:before", now - 5 * minute, now)
    # without a known hold (a broker that just started) the whole job counts
    (whole,) = so.ClusterView([_node()], prefix="eb-").usage([job], [], now)
    assert (whole.start, whole.end) == (now - 5 * minute, now + 25 * minute)


# -- the simulated queue --------------------------------------------------------------------------


def test_simulated_queue_places_pending_jobs_core_by_core() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    minute = timedelta(minutes=1)
    view = so.ClusterView([so.Node("n1", 4, 8192, "mixed")])

    def job(job_id: int, state: str, **kw: object) -> so.Job:
        fields: dict[str, object] = {
            "cpus": 1, "memory_mb": 1024, "time_limit": 10 * minute, "nodes": ("n1",), **kw
        }  # fmt: skip
        return so.Job(job_id, f"j{job_id}", state, **fields)  # type: ignore[arg-type]

    jobs = [
        job(1, "RUNNING", cpus=3, start=now - minute, end=now + 9 * minute),
        # priority order: 3 before 2; each 1 core: 3 fits beside job 1 now, 2 once job 1 ends
        job(2, "PENDING", priority=10, submit=now - 2 * minute),
        job(3, "PENDING", priority=20, submit=now - minute),
        job(4, "PENDING", priority=30, reason="JobHeldUser"),  # held: never placed
        job(5, "PENDING", priority=5, eligible=now + 60 * minute),  # --begin in an hour
        job(6, "PENDING", priority=1, reservation="maint"),  # waits for its reservation
    ]
    queue = so.simulate_queue(view, jobs, [], now)
    placed = {item.key: item.start for item in queue.items()}
    assert placed == {
        "job:1": now,
        "job:3": now,
        "job:2": now + 9 * minute,  # the only free core is job 3's until job 1 ends
        "job:5": now + 60 * minute,
    }

    def start(cores: int, begin: datetime = now) -> datetime | None:
        return so.earliest_start(
            view, queue, cores=cores, memory_mb=1024, duration=10 * minute, begin=begin,
            now=now, horizon=timedelta(days=1),
        )  # fmt: skip

    assert start(1) == now + 9 * minute  # job 1 frees three cores after 9 minutes
    assert start(2) == now + 9 * minute
    assert start(4) == now + 19 * minute  # after job 2 ends
    assert start(1, now + 5 * minute) == now + 9 * minute
    assert start(5) is None  # more than the node has


def test_usage_places_pending_jobs_where_the_simulated_queue_does() -> None:
    """With the simulated queue, a pending job counts where the queue model expects it, not
    at Slurm's whole-node estimate; our container engine probe (a second's work whatever its
    time limit) counts nowhere; our extra reservation cores for memory count."""
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    minute = timedelta(minutes=1)
    view = so.ClusterView([so.Node("n1", 4, 8192, "mixed")], prefix="eb-", padding={"eb-r": 1})
    common: dict[str, object] = {"cpus": 1, "memory_mb": 1024, "time_limit": 10 * minute}
    jobs = [
        so.Job(1, "eb-probe", "RUNNING", nodes=("n1",), start=now, end=now + minute, **common),  # type: ignore[arg-type]
        so.Job(2, "other", "PENDING", start=now + 30 * minute, **common),  # type: ignore[arg-type]
    ]
    reservations = [so.Reservation("eb-r", now + 60 * minute, now + 70 * minute, ("n1",), 2)]
    queue = so.simulate_queue(view, jobs, reservations, now)
    planned = {
        u.key: (u.start, u.cores) for u in view.usage(jobs, reservations, now, planned=queue)
    }
    assert planned == {"job:2": (now, 1), "resv-pad:eb-r": (now + 60 * minute, 1)}
    slurms = {u.key: u.start for u in view.usage(jobs, reservations, now)}
    assert slurms["job:2"] == now + 30 * minute and "job:1" not in slurms


def test_cores_held_for_memory() -> None:
    view = so.ClusterView([so.Node("a", 2, 6144, "idle"), so.Node("b", 8, 32768, "idle")])
    assert view.cores_for_memory(1, 1024) == 1
    assert view.cores_for_memory(1, 5 * 1024) == 2  # the smallest share: 3 GiB a core
    assert view.cores_for_memory(4, 5 * 1024) == 4
    assert view.cores_for_memory(1, 64 * 1024) == 8  # at most the largest node


def test_scancel_outcomes() -> None:
    so.check_scancel(0, "")
    so.check_scancel(1, "scancel: error: Kill job error on job id 7: Invalid job id specified")
    with pytest.raises(so.SlurmError, match="exited with code 1 and no message"):
        so.check_scancel(1, "  ")
    with pytest.raises(PlatformUnavailable):
        so.check_scancel(1, "scancel: error: Unable to contact slurm controller (connect failure)")
    with pytest.raises(so.SlurmError, match="Access/permission denied"):
        so.check_scancel(1, "scancel: error: Kill job error on job id 7: Access/permission denied")


def test_simulated_queue_keeps_reservations_free() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    hour = timedelta(hours=1)
    view = so.ClusterView([so.Node("n1", 2, 4096, "idle")], prefix="eb-")
    reservations = [so.Reservation("eb-ours", now + hour, now + 2 * hour, ("n1",), 2)]
    queue = so.simulate_queue(view, [], reservations, now)
    start = so.earliest_start(
        view, queue, cores=1, memory_mb=1024, duration=90 * timedelta(minutes=1),
        begin=now, now=now, horizon=timedelta(days=1),
    )  # fmt: skip
    assert start == now + 2 * hour  # 90 minutes do not fit before our own reservation
