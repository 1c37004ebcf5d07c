"""SlurmPlatform against the real test cluster, without a broker around it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from eb_broker.platforms import load_platform
from eb_broker.platforms import local_runner as rn
from eb_broker.platforms.base import PlatformState, SessionSpec
from eb_broker.platforms.slurm import SlurmCLI, SlurmPlatform
from eb_broker.scheduling import Demand, Resources, Window
from eb_sdk.model import ExecutionRequest, JupyterNotebook, SingularityContainer
from eb_sdk.model.messages import NOT_SUPPORTED, PLATFORM, PLATFORM_UNAVAILABLE, RESOURCE_LIMIT
from tests.fixtures.slurm import SlurmCluster
from tests.slurm.conftest import ME, unique_prefix, wait_until, write_notebook


def make_platform(cluster: SlurmCluster, work_dir: Path, **kw: Any) -> SlurmPlatform:
    options: dict[str, Any] = {
        "slurm_conf": str(cluster.conf),
        "default_user": ME,
        "reservation_prefix": unique_prefix(),
        "preparation_seconds": 2,
        "poll_interval": 0,
        "stop_timeout": 20,
        "work_dir": str(work_dir),
        "container_engine": "",
        **kw,
    }
    return SlurmPlatform(**options)


def make_spec(request: ExecutionRequest, *, start: datetime, minutes: int = 2, **kw: Any) -> Any:
    return SessionSpec(
        uuid=str(uuid.uuid4()),
        owner="alice",
        groups=(),
        request=request,
        resources=Resources(cores=1, memory_gib=1),
        start=start,
        end=start + timedelta(minutes=minutes),
        preparation=timedelta(seconds=2),
        **kw,
    )


def with_handle(spec: SessionSpec, handle: dict[str, Any]) -> SessionSpec:
    return SessionSpec(**{**spec.__dict__, "handle": handle})


def test_found_by_entry_point() -> None:
    assert load_platform("slurm") is SlurmPlatform


def test_capacity_and_foreign_usage(slurm: SlurmCluster, tmp_path: Path) -> None:
    platform = make_platform(slurm, tmp_path)
    assert platform.capacity().base == Resources(cores=2, memory_gib=6)
    assert platform.external_usage() == []
    now = datetime.now(UTC)
    running = slurm.sbatch("-c", "1", "--mem=1G", "-t", "5", "-J", "foreign")
    wait_until("the foreign job to run", lambda: slurm.job_state(running) == "RUNNING")
    start = (now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
    slurm.run(
        "scontrol", "create", "reservation", "ReservationName=maint", f"StartTime={start}",
        "Duration=60", f"Users={ME}", "Nodes=ALL", "Flags=MAINT,IGNORE_JOBS",
    )  # fmt: skip
    ours = f"{platform.reservation_prefix}{uuid.uuid4()}"
    later = (now + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%S")
    slurm.run(
        "scontrol", "create", "reservation", f"ReservationName={ours}", f"StartTime={later}",
        "Duration=60", f"Users={ME}", "CoreCnt=1",
    )  # fmt: skip
    asyncio.run(platform.refresh())
    usage = {key: (s, e, r) for key, s, e, r in platform.external_usage()}
    assert set(usage) == {f"job:{running}", "resv:maint"}  # not our own reservation
    job_start, job_end, job_res = usage[f"job:{running}"]
    assert job_res == Resources(cores=1, memory_gib=1)
    assert job_end - job_start == timedelta(minutes=5)
    maint_start, maint_end, maint_res = usage["resv:maint"]
    assert maint_end - maint_start == timedelta(hours=1)
    assert maint_res == Resources(cores=2, memory_gib=6)


def test_check_refuses_what_it_cannot_run(slurm: SlurmCluster, tmp_path: Path) -> None:
    platform = make_platform(slurm, tmp_path)
    container = ExecutionRequest(executable=SingularityContainer(location="/img/a.sif"))
    (problem,) = platform.check(container)
    assert problem.kind == NOT_SUPPORTED and "Singularity/Apptainer" in str(problem)
    with_engine = make_platform(slurm, tmp_path, container_engine="/usr/bin/apptainer")
    assert with_engine.check(container) == []
    assert SingularityContainer.KIND in with_engine.executable_kinds()
    big = ExecutionRequest.model_validate(
        {
            "executable": {"kind": JupyterNotebook.KIND, "location": "/nb.ipynb"},
            "compute": {
                "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"
                "compute/simple-compute-resource.yaml",
                "cores": {"min": 3},
            },
        }
    )
    (problem,) = platform.check(big)
    assert problem.kind == RESOURCE_LIMIT and "largest node here has 2 cores" in str(problem)


def test_unreachable_controller_is_platform_unavailable(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    # the same cluster's configuration with a port nobody listens on
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        slurm.conf.read_text().replace(f"SlurmctldPort={slurm.ctld_port}", "SlurmctldPort=1")
    )
    platform = make_platform(slurm, tmp_path, slurm_conf=str(conf))
    request = ExecutionRequest(executable=JupyterNotebook(location="/nb.ipynb"))
    (problem,) = platform.check(request)
    assert problem.kind == PLATFORM_UNAVAILABLE
    assert "slurmctld" in str(problem)
    spec = make_spec(request, start=datetime.now(UTC))
    statuses = asyncio.run(platform.poll([with_handle(spec, {"job_id": 1})]))
    assert statuses[spec.uuid].state == PlatformState.UNKNOWN


def test_book_launch_poll_release(slurm: SlurmCluster, tmp_path: Path) -> None:
    """A reservation per session, one squeue per poll for all, idempotent book and launch."""
    client = SlurmCLI(slurm_conf=str(slurm.conf))
    platform = make_platform(slurm, tmp_path / "work", poll_interval=0)
    platform._client = client
    notebook = write_notebook(tmp_path / "nb.ipynb", "import time; time.sleep(1)", "print(41 + 1)")
    request = ExecutionRequest(executable=JupyterNotebook(location=str(notebook)))
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    specs = [make_spec(request, start=start) for _ in range(2)]

    async def scenario() -> dict[str, Any]:
        handles = {}
        for spec in specs:
            handle = await platform.book(spec)
            assert handle["reservation"] == f"{platform.reservation_prefix}{spec.uuid}"
            assert await platform.book(with_handle(spec, {})) == handle  # duplicate: adopted
            handles[spec.uuid] = await platform.launch(with_handle(spec, handle))
            again = await platform.launch(with_handle(spec, handle))  # idempotent
            assert again["job_id"] == handles[spec.uuid]["job_id"]
        booked = [with_handle(s, handles[s.uuid]) for s in specs]
        before = client.calls["squeue"]
        first = await platform.poll(booked)
        assert client.calls["squeue"] - before == 1  # one squeue for every session
        assert {s.state for s in first.values()} <= {
            PlatformState.PREPARING,
            PlatformState.RUNNING,
        }
        deadline = asyncio.get_running_loop().time() + 90
        statuses = first
        while asyncio.get_running_loop().time() < deadline:
            statuses = await platform.poll(booked)
            if all(s.state == PlatformState.SUCCEEDED for s in statuses.values()):
                break
            await asyncio.sleep(0.3)
        jobs = {j.job_id: j for j in await platform.client.jobs()}
        for spec in booked:  # each ran in its own reservation
            job = jobs[handles[spec.uuid]["job_id"]]
            assert job.reservation == f"{platform.reservation_prefix}{spec.uuid}"
        for spec in booked:
            await platform.release(spec)
            await platform.release(spec)  # idempotent
        return {"handles": handles, "statuses": statuses}

    result = asyncio.run(scenario())
    for spec in specs:
        status = result["statuses"][spec.uuid]
        assert status.state == PlatformState.SUCCEEDED, status.messages
        assert "42" in Path(status.outputs["notebook"]).read_text()
        name = f"{platform.reservation_prefix}{spec.uuid}"
        assert name not in slurm.reservations()
        job_id = result["handles"][spec.uuid]["job_id"]
        assert slurm.job_state(job_id) == "COMPLETED"
    names = slurm.run("squeue", "-h", "-t", "all", "-o", "%j").stdout.split()
    assert len([n for n in names if n.startswith(platform.reservation_prefix)]) == 2


def test_queue_estimate_from_test_only(slurm: SlurmCluster, tmp_path: Path) -> None:
    platform = make_platform(slurm, tmp_path)
    blocker = slurm.sbatch("-c", "2", "-t", "3", "-J", "blocker")
    wait_until("the blocker to run", lambda: slurm.job_state(blocker) == "RUNNING")
    now = datetime.now(UTC)
    request = ExecutionRequest(executable=JupyterNotebook(location="/nb.ipynb"))
    window = Window(now, now + timedelta(hours=1))

    def demand(*windows: Window) -> Demand:
        return Demand(
            minimum=Resources(cores=1, memory_gib=1),
            maximum=Resources(cores=1, memory_gib=1),
            duration=timedelta(minutes=1),
            windows=windows,
            preparation=timedelta(seconds=2),
        )

    (estimate,) = asyncio.run(platform.estimate(request, demand(window), now))
    blocker_end = now + timedelta(minutes=3)
    assert abs((estimate.expected - blocker_end).total_seconds()) < 10
    assert estimate.earliest <= estimate.expected <= estimate.latest == window.end
    assert "sbatch --test-only" in estimate.basis
    # a narrow window is not flexible: precise slots only
    narrow = Window(now, now + timedelta(minutes=10))
    assert asyncio.run(platform.estimate(request, demand(narrow), now)) == []
    # a wide window that Slurm cannot start it in: no estimate
    early = Window(now, now + timedelta(minutes=2))
    tight = make_platform(slurm, tmp_path, estimate_min_window=60)
    assert asyncio.run(tight.estimate(request, demand(early), now)) == []
    # as soon as possible: always flexible, up to estimate_max_wait
    (asap,) = asyncio.run(platform.estimate(request, demand(), now))
    assert asap.latest == now + timedelta(seconds=platform.estimate_max_wait)


def test_stop_cancels_a_pending_job(slurm: SlurmCluster, tmp_path: Path) -> None:
    platform = make_platform(slurm, tmp_path / "work")
    notebook = write_notebook(tmp_path / "nb.ipynb", "print(1)")
    request = ExecutionRequest(executable=JupyterNotebook(location=str(notebook)))
    spec = make_spec(request, start=datetime.now(UTC) + timedelta(hours=1))

    async def scenario() -> tuple[dict[str, Any], PlatformState]:
        handle = await platform.book(spec)
        handle = await platform.launch(with_handle(spec, handle))
        booked = with_handle(spec, handle)
        status = (await platform.poll([booked]))[spec.uuid]
        assert status.state == PlatformState.PREPARING
        assert "queued in Slurm" in str(status.messages[0])
        await platform.stop(booked)
        await platform.stop(booked)  # idempotent
        await platform.release(booked)
        return handle, status.state

    handle, _ = asyncio.run(scenario())
    assert slurm.job_state(handle["job_id"]) == "CANCELLED"
    assert handle["reservation"] not in slurm.reservations()


@pytest.mark.parametrize("kind", ["missing-notebook"])
def test_launch_failure_is_reported_without_submitting(
    slurm: SlurmCluster, tmp_path: Path, kind: str
) -> None:
    platform = make_platform(slurm, tmp_path / "work")
    request = ExecutionRequest(executable=JupyterNotebook(location=str(tmp_path / "nope.ipynb")))
    spec = make_spec(request, start=datetime.now(UTC))

    async def scenario() -> Any:
        handle = await platform.launch(spec)
        assert "job_id" not in handle
        return (await platform.poll([with_handle(spec, handle)]))[spec.uuid]

    status = asyncio.run(scenario())
    assert status.state == PlatformState.FAILED
    assert "notebook not found" in str(status.messages[0])


def test_poll_does_not_ask_again_for_jobs_whose_runner_ended(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    """A finished session whose job slurmctld forgot (MinJobAge) costs no second squeue."""
    client = SlurmCLI(slurm_conf=str(slurm.conf))
    platform = make_platform(slurm, tmp_path / "work", poll_interval=30)
    platform._client = client
    request = ExecutionRequest(executable=JupyterNotebook(location="/nb.ipynb"))
    spec = make_spec(request, start=datetime.now(UTC))
    session_dir = platform.session_dir(spec)
    session_dir.mkdir(parents=True)
    rn.write_json_atomic(session_dir / rn.STATUS_FILE, {"state": "SUCCEEDED"})
    gone = with_handle(spec, {"job_id": 999_999, "dir": str(session_dir)})

    async def scenario() -> PlatformState:
        await platform.refresh()
        await asyncio.sleep(0.6)  # the listing is older than the re-ask threshold
        before = client.calls["squeue"]
        status = (await platform.poll([gone]))[spec.uuid]
        assert client.calls["squeue"] == before  # the cached listing served
        return status.state

    assert asyncio.run(scenario()) == PlatformState.SUCCEEDED


def test_jobs_slurm_ends_badly_fail_with_slurms_reason(slurm: SlurmCluster, tmp_path: Path) -> None:
    """For real: DEADLINE (a queue estimate that could not start in its window), CANCELLED by
    someone else's scancel, TIMEOUT (the 1-minute limit of a notebook sleeping 5 minutes:
    Slurm takes 60 to 90 s to notice)."""
    platform = make_platform(slurm, tmp_path / "work")
    notebook = write_notebook(tmp_path / "long.ipynb", "import time; time.sleep(300)")
    request = ExecutionRequest(executable=JupyterNotebook(location=str(notebook)))

    def queued(minutes: int, window: timedelta) -> SessionSpec:
        now = datetime.now(UTC)
        estimate = {
            "earliest": now.isoformat(),
            "expected": now.isoformat(),
            "latest": (now + window).isoformat(),
            "basis": "test",
        }
        return make_spec(request, start=now, minutes=minutes, estimate=estimate)

    async def launched(spec: SessionSpec) -> SessionSpec:
        return with_handle(spec, await platform.launch(spec))

    seen: list[str] = []

    async def state_of(spec: SessionSpec, *wanted: PlatformState) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 150
        while loop.time() < deadline:
            status = (await platform.poll([spec]))[spec.uuid]
            seen.extend(str(m.message) for m in status.messages)
            if status.state in wanted:
                return status
            await asyncio.sleep(0.5)
        raise AssertionError(f"{spec.uuid} not {wanted} within 150 s: {status}")

    def only_slurms(status: Any) -> Any:
        assert status.state == PlatformState.FAILED
        return status.messages[0]

    async def scenario() -> None:
        await platform.refresh()  # the nodes (a broker reads them at start-up)
        # two 1-core jobs fill the 2-core node
        timeout = await launched(queued(1, timedelta(hours=1)))
        cancel = await launched(queued(5, timedelta(hours=1)))
        for spec in (timeout, cancel):
            await state_of(spec, PlatformState.RUNNING)
        # DEADLINE: may start only within the next 5 s, and the node is full
        late = await launched(queued(1, timedelta(seconds=5)))
        message = only_slurms(await state_of(late, PlatformState.FAILED))
        assert "could not start before the end of the requested start window" in str(message)
        # while it was queued, the session said that the queue plans it too late
        assert any("plans this job's start after the end of its start window" in m for m in seen)
        assert message.values["slurm_state"] == "DEADLINE"
        # CANCELLED outside the broker
        slurm.run("scancel", str(cancel.handle["job_id"]))
        message = only_slurms(await state_of(cancel, PlatformState.FAILED))
        assert message.kind == PLATFORM and "was cancelled in Slurm" in str(message)
        # TIMEOUT: urn:resource-limit
        message = only_slurms(await state_of(timeout, PlatformState.FAILED))
        assert message.kind == RESOURCE_LIMIT, message
        assert "reached its time limit" in str(message)
        assert message.values["slurm_state"] == "TIMEOUT"

    asyncio.run(scenario())


def test_reservation_holds_cores_for_the_memory(slurm: SlurmCluster, tmp_path: Path) -> None:
    """Slurm 22.05 reserves cores, not memory: 1 core + 5 GiB on a 2-core 6 GiB node holds
    both cores (the broker counts the second as foreign usage); when the second core is
    taken, the booked core only, and the session says what that means."""
    platform = make_platform(slurm, tmp_path / "work")
    request = ExecutionRequest(executable=JupyterNotebook(location="/nb.ipynb"))
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)

    def big(start: datetime) -> SessionSpec:
        spec = make_spec(request, start=start, minutes=10)
        return SessionSpec(**{**spec.__dict__, "resources": Resources(cores=1, memory_gib=5)})

    padded = big(later)
    handle = asyncio.run(platform.book(padded))
    fields = dict(kv.split("=", 1) for kv in slurm.reservations().split() if "=" in kv)
    assert fields["CoreCnt"] == "2" and handle["reserved_cores"] == 2
    assert "holds 2 cores (1 booked)" in handle["memory_note"]
    fresh = make_platform(slurm, tmp_path / "work", reservation_prefix=platform.reservation_prefix)
    usage = {key: res for key, _, _, res in fresh.external_usage()}  # after a restart too
    assert usage == {f"resv-pad:{handle['reservation']}": Resources(cores=1, memory_gib=0)}
    asyncio.run(platform.release(with_handle(padded, handle)))

    # the other core is taken by someone else's job: only the booked core can be held
    other = slurm.sbatch("-c", "1", "--mem=1G", "-t", "10", "-J", "other")
    wait_until("the other job to run", lambda: slurm.job_state(other) == "RUNNING")
    soon = big(datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=2))
    handle = asyncio.run(platform.book(soon))
    assert handle["reserved_cores"] == 1
    assert "may take memory this session needs (5 GiB)" in handle["memory_note"]
    (line,) = [r for r in slurm.reservations().splitlines() if handle["reservation"] in r]
    assert "CoreCnt=1" in line
    asyncio.run(platform.release(with_handle(soon, handle)))


def test_container_engine_is_asked_on_the_nodes(slurm: SlurmCluster, tmp_path: Path) -> None:
    """container_engine="auto" asks the nodes with a probe job, not the broker's PATH.

    Neither Apptainer nor Singularity is packaged for Debian 12, so the node has none: the
    answer is NO. Then a stand-in ``apptainer`` script (it only prints its arguments) shows
    the probe finding an engine, the answer being cached, and a container session running
    ``<engine> run <image>`` as its batch job."""
    container = ExecutionRequest(executable=SingularityContainer(location="/img/a.sif"))

    def probed(platform: SlurmPlatform) -> SlurmPlatform:
        def answered() -> bool:
            asyncio.run(platform.refresh())
            return platform._probe is not None and platform._probe.engine is not None

        wait_until("the probe job's answer", answered, 60, 0.5)
        return platform

    platform = make_platform(slurm, tmp_path / "work", container_engine="auto")
    (problem,) = platform.check(container)
    assert "not known yet: a probe job asks them (Slurm job" in str(problem)
    (problem,) = probed(platform).check(container)
    assert problem.kind == NOT_SUPPORTED
    assert "found none of apptainer, singularity on localhost" in str(problem)
    assert SingularityContainer.KIND not in platform.executable_kinds()

    engine = tmp_path / "bin" / "apptainer"
    engine.parent.mkdir()
    engine.write_text('#!/bin/sh\necho "stand-in apptainer: $*"\n')
    engine.chmod(0o755)
    options: dict[str, Any] = {
        "container_engine": "auto",
        "container_engine_candidates": ["no-such-engine", str(engine)],
    }
    found = probed(make_platform(slurm, tmp_path / "work2", **options))
    assert found.engine == str(engine)
    assert SingularityContainer.KIND in found.executable_kinds()
    assert found.check(container) == []

    restarted = make_platform(slurm, tmp_path / "work2", **options)
    restarted._client = client = SlurmCLI(slurm_conf=str(slurm.conf))
    assert restarted.check(container) == []  # the cached answer, without a new probe job
    assert restarted.engine == str(engine) and client.calls["sbatch"] == 0

    spec = make_spec(container, start=datetime.now(UTC))

    booked = with_handle(spec, asyncio.run(restarted.launch(spec)))

    def ended() -> Any:
        status = asyncio.run(restarted.poll([booked]))[spec.uuid]
        return status if status.state in (PlatformState.SUCCEEDED, PlatformState.FAILED) else None

    status = wait_until("the container job to end", ended, 60, 0.5)
    assert status.state == PlatformState.SUCCEEDED, status.messages
    assert "stand-in apptainer: run /img/a.sif" in Path(status.outputs["log"]).read_text()
