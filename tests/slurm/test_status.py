"""How a Slurm job's end becomes the session's status: ``SlurmPlatform._status_of`` on jobs
captured from a real Slurm (``data/squeue_end_states.json``) and on runner records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from eb_broker.platforms.base import PlatformState, SessionSpec
from eb_broker.platforms.slurm import SlurmPlatform
from eb_broker.platforms.slurm import objects as so
from eb_broker.scheduling import Resources
from eb_sdk.model import ExecutionRequest, JupyterNotebook
from eb_sdk.model import messages as msg

DATA = Path(__file__).parent / "data"


def ended() -> dict[str, so.Job]:
    return {j.name: j for j in so.parse_squeue_json((DATA / "squeue_end_states.json").read_text())}


def spec(tmp_path: Path, job_id: int | None = None) -> SessionSpec:
    start = datetime(2026, 11, 28, tzinfo=UTC)
    handle: dict[str, Any] = {"dir": str(tmp_path / "s")}
    if job_id is not None:
        handle["job_id"] = job_id
    return SessionSpec(
        uuid="s",
        owner="alice",
        groups=(),
        request=ExecutionRequest(executable=JupyterNotebook(location="/nb.ipynb")),
        resources=Resources(cores=1, memory_gib=1),
        start=start,
        end=start + timedelta(minutes=5),
        preparation=timedelta(seconds=2),
        handle=handle,
    )


@pytest.mark.parametrize(
    ("name", "kind", "text"),
    [
        ("timeout", msg.RESOURCE_LIMIT, "reached its time limit (signal 15)"),
        ("outside-cancel", msg.PLATFORM, "was cancelled in Slurm (signal 15)"),
        ("deadline", msg.PLATFORM, "could not start before the end of the requested start"),
        ("nodefail", msg.PLATFORM, "was ended by a node failure"),
        ("oom (derived)", msg.RESOURCE_LIMIT, "ran out of memory"),
    ],
)
def test_failed_end_states(tmp_path: Path, name: str, kind: str, text: str) -> None:
    job = ended()[name]
    status = SlurmPlatform(work_dir=str(tmp_path))._status_of(spec(tmp_path, job.job_id), job, None)
    assert status.state == PlatformState.FAILED
    (message,) = status.messages
    assert message.kind == kind
    assert f"Slurm job {job.job_id} {text}" in str(message.message)
    assert message.values is not None and message.values["slurm_state"] == job.state


def test_what_the_runner_recorded_is_added(tmp_path: Path) -> None:
    """Killed at its time limit, the runner had recorded its own end: both are reported."""
    job = ended()["timeout"]
    recorded = {"state": "FAILED", "error": {"message": "stopped by SIGTERM"}}
    status = SlurmPlatform(work_dir=str(tmp_path))._status_of(
        spec(tmp_path, job.job_id), job, recorded
    )
    assert status.state == PlatformState.FAILED
    assert status.messages[0].kind == msg.RESOURCE_LIMIT
    assert "stopped by SIGTERM" in str(status.messages[1].message)


def test_a_job_slurm_forgot(tmp_path: Path) -> None:
    """Gone from squeue (MinJobAge): the runner's record decides; without one it failed."""
    platform = SlurmPlatform(work_dir=str(tmp_path))
    done = platform._status_of(spec(tmp_path, 7), None, {"state": "SUCCEEDED"})
    assert done.state == PlatformState.SUCCEEDED
    lost = platform._status_of(spec(tmp_path, 7), None, None)
    assert lost.state == PlatformState.FAILED
    assert "Slurm job 7 is no longer known to Slurm" in str(lost.messages[0].message)


def test_a_stopped_runner_waits_for_slurms_reason(tmp_path: Path) -> None:
    """The runner records "stopped" on SIGTERM before Slurm shows CANCELLED or TIMEOUT: the
    session is left as it is until Slurm's final state says why."""
    jobs = ended()
    ending = so.Job(**{**jobs["outside-cancel"].__dict__, "state": "COMPLETING"})
    recorded = {
        "state": "FAILED",
        "stopped": True,
        "error": {"message": "stopped before the notebook finished"},
    }
    platform = SlurmPlatform(work_dir=str(tmp_path))
    one = spec(tmp_path, ending.job_id)
    assert platform._status_of(one, ending, recorded).state == PlatformState.UNKNOWN
    status = platform._status_of(one, jobs["outside-cancel"], recorded)
    assert status.state == PlatformState.FAILED
    assert "was cancelled in Slurm" in str(status.messages[0].message)
    assert "stopped before the notebook finished" in str(status.messages[1].message)
