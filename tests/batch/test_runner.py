"""A notebook batch on the local platform, without a broker: the runner runs every input with
real papermill and kernels, keeps going after a failure, records each input, and is reported
as a message per input; stopping it keeps what finished. Other platforms say NO."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from eb_broker.platforms import local_runner as rn
from eb_broker.platforms.base import PlatformState, PlatformStatus, SessionSpec
from eb_broker.platforms.batch import input_message, with_batch_progress
from eb_broker.platforms.local import LocalPlatform
from eb_broker.scheduling import Resources
from eb_sdk.model import BatchInput, ExecutionRequest, NotebookBatch
from eb_sdk.model.messages import BATCH_INPUT, NOT_SUPPORTED
from tests.batch.conftest import marked_story, run_counts
from tests.fixtures.notebooks import write_notebook

WAIT = 180.0


def batch_request(notebook: Path, values: list[str], **fields: Any) -> ExecutionRequest:
    inputs = [BatchInput(id=f"in-{i}", value=v) for i, v in enumerate(values)]
    return ExecutionRequest(
        executable=NotebookBatch(
            location=str(notebook), parameter="input_file", inputs=inputs, **fields
        )
    )


def spec_for(request: ExecutionRequest, cores: int = 1, handle: Any = None) -> SessionSpec:
    now = datetime.now(UTC)
    return SessionSpec(
        uuid=str(uuid.uuid4()),
        owner="alice",
        groups=(),
        request=request,
        resources=Resources(cores=cores, memory_gib=1),
        start=now,
        end=now + timedelta(hours=1),
        preparation=timedelta(seconds=1),
        handle=handle or {},
    )


async def launched(platform: LocalPlatform, spec: SessionSpec) -> SessionSpec:
    handle = await platform.launch(spec)
    return SessionSpec(**{**spec.__dict__, "handle": handle})


async def poll_until(platform: LocalPlatform, spec: SessionSpec, until: Any) -> PlatformStatus:
    deadline = time.monotonic() + WAIT
    while True:
        status = (await platform.poll([spec]))[spec.uuid]
        if until(status):
            return status
        if time.monotonic() > deadline:
            log = rn.tail(Path(spec.handle["dir"]) / rn.LOG_FILE, 40)
            pytest.fail(f"timed out; last status {status}\n{log}")
        await asyncio.sleep(0.3)


@pytest.fixture
def platform(tmp_path: Path) -> LocalPlatform:
    return LocalPlatform(work_dir=str(tmp_path / "work"), cores=2, memory_gib=2, stop_timeout=10)


async def test_every_input_runs_and_a_failure_stops_none(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    nb, markers = marked_story(tmp_path)
    values = ["a.fits", "b-bad.fits", "c.fits", "d-bad.fits", "e.fits"]
    request = batch_request(nb, values, parameters={"markers": str(markers), "scale": 3})
    spec = await launched(platform, spec_for(request))
    session_dir = Path(spec.handle["dir"])
    runner_spec = rn.read_json(session_dir / rn.SPEC_FILE)
    assert runner_spec is not None and runner_spec["kind"] == "notebook-batch"
    assert runner_spec["workers"] == 2  # one core: two inputs at once (batch_workers_per_core)
    assert runner_spec["cwd"] == str(tmp_path)  # the notebook's directory
    status = await poll_until(platform, spec, lambda s: s.state in (PlatformState.SUCCEEDED,))
    assert run_counts(markers) == {"a": 1, "b-bad": 1, "c": 1, "d-bad": 1, "e": 1}
    # one message per input, INFO when it succeeded, WARN when it failed
    reports = {m.values["id"]: m for m in status.messages if m.kind == BATCH_INPUT}
    assert sorted(reports) == [f"in-{i}" for i in range(5)]
    assert [reports[f"in-{i}"].level for i in range(5)] == ["INFO", "WARN", "INFO", "WARN", "INFO"]
    bad = reports["in-1"].values
    assert (bad["state"], bad["cell"], bad["ename"]) == ("FAILED", "3", "ValueError")
    assert "cannot reduce b-bad.fits" in bad["evalue"]
    assert (
        str(reports["in-1"])
        == "input in-1 failed: cell 3 raised ValueError: cannot reduce b-bad.fits"
    )
    assert status.outputs["batch"] == str(session_dir / "batch.json")
    assert status.outputs["outputs"] == str(session_dir / "outputs")
    assert status.outputs["progress"] == "5/5 inputs finished, 2 failed"
    # each input has its own output notebook; papermill marked the failing cell
    output = json.loads((session_dir / "outputs" / "in-1.ipynb").read_text())
    tags = [c["metadata"].get("tags", []) for c in output["cells"]]
    assert ["papermill-error-cell-tag"] in tags and ["injected-parameters"] in tags
    good = json.loads((session_dir / "outputs" / "in-4.ipynb").read_text())
    assert "reduced e 3" in json.dumps(good["cells"][-1]["outputs"])
    record = rn.read_json(session_dir / "inputs" / "in-3.json")
    assert record is not None and record["state"] == "FAILED" and record["duration_s"] > 0
    final = rn.read_json(session_dir / rn.STATUS_FILE)
    assert final is not None and (final["inputs"], final["failed"]) == (5, 2)


async def test_stopping_keeps_what_finished(platform: LocalPlatform, tmp_path: Path) -> None:
    """SIGTERM mid-way: finished inputs keep their records, the others are STOPPED (not
    FAILED: they did not finish, the client runs them again), no kernel is left behind."""
    nb = write_notebook(
        tmp_path / "slow.ipynb",
        "import os, time\nopen(input_file + '.pid', 'w').write(str(os.getpid()))",
        "time.sleep(0.2 if input_file == 'quick' else 300)",
        parameters="input_file = ''",
    )
    request = batch_request(nb, ["quick", "slow-1", "slow-2"], workers=2)
    spec = await launched(platform, spec_for(request, cores=2))
    session_dir = Path(spec.handle["dir"])
    assert rn.read_json(session_dir / rn.SPEC_FILE)["workers"] == 2  # type: ignore[index]

    def records() -> dict[str, str]:
        found = (rn.read_json(p) for p in (session_dir / "inputs").glob("*.json"))
        return {r["id"]: r["state"] for r in found if r}

    await poll_until(
        platform,
        spec,
        lambda s: records().get("in-0") == "SUCCEEDED" and records().get("in-1") == "RUNNING",
    )
    started = time.monotonic()
    await platform.stop(spec)
    assert time.monotonic() - started < 20
    status = (await platform.poll([spec]))[spec.uuid]
    assert status.state == PlatformState.FAILED
    assert "stopped before every input finished" in " ".join(map(str, status.messages))
    states = records()
    assert states["in-0"] == "SUCCEEDED"
    assert states.get("in-1") in ("STOPPED", "RUNNING")
    assert "in-2" not in states or states["in-2"] in ("STOPPED", "RUNNING")
    reports = [m.values["id"] for m in status.messages if m.kind == BATCH_INPUT]
    assert reports == ["in-0"]
    kernel = int((tmp_path / "slow-1.pid").read_text())
    for _ in range(75):
        if not rn.pid_alive(kernel):
            break
        await asyncio.sleep(0.2)
    assert not rn.pid_alive(kernel), "a kernel outlived its batch"


def test_checks_of_the_platforms(tmp_path: Path) -> None:
    plat = LocalPlatform()
    nb = str(tmp_path / "a.ipynb")
    assert NotebookBatch.KIND in plat.executable_kinds()
    assert plat.check(batch_request(Path(nb), ["x"])) == []
    for request, text in (
        (batch_request(Path(nb), []), "no inputs"),
        (
            ExecutionRequest(
                executable=NotebookBatch(
                    location="https://example.org/a.ipynb", inputs=[BatchInput(id="a")]
                )
            ),
            "not https://",
        ),
        (batch_request(Path(nb), ["x"], output_dir="out"), "absolute path"),
    ):
        problems = plat.check(request)
        assert [p.kind for p in problems] == [NOT_SUPPORTED] and text in str(problems[0])


def test_a_broken_manifest_does_not_stop_the_poll(tmp_path: Path) -> None:
    broken = {"inputs": [{"id": 1, "state": "FAILED", "error": "x"}], "counts": "?"}
    (tmp_path / "batch.json").write_text(json.dumps(broken))
    status = with_batch_progress(tmp_path, PlatformStatus(PlatformState.RUNNING))
    assert status.state == PlatformState.RUNNING
    assert input_message({"id": "a", "state": "RUNNING"}) is None
    done = input_message({"id": "a", "state": "SUCCEEDED", "duration_s": 1.25})
    assert done is not None and str(done) == "input a succeeded in 1.2 s"


def test_workers_are_capped_by_the_cores(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "n.ipynb", "pass")
    plat = LocalPlatform(work_dir=str(tmp_path / "work"), batch_workers_per_core=1.5)
    for cores, asked, expected in ((1, None, 2), (4, None, 6), (4, 2, 2), (1, 64, 2)):
        request = batch_request(nb, ["x"], workers=asked)
        spec = spec_for(request, cores=cores)
        made = plat._runner_spec(spec, tmp_path / spec.uuid)
        assert made["workers"] == expected, (cores, asked)
        assert made["inputs"] == [
            {"id": "in-0", "value": "x", "output": str(tmp_path / spec.uuid / "outputs/in-0.ipynb")}
        ]


def flaky_kernel(base: Path) -> str:
    """A kernelspec (in ``base/share/jupyter/kernels``) whose first start dies at once, before
    it answers ``kernel_info`` (as a kernel that lost the race for its ports does); later
    starts are a real ipykernel. Returns its name."""
    marker = base / "started-once"
    script = base / "flaky_kernel.py"
    script.write_text(
        "import pathlib, sys\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.touch()\n"
        "    sys.exit(1)\n"
        "from ipykernel import kernelapp\n"
        "kernelapp.launch_new_instance()\n"
    )
    spec_dir = base / "share" / "jupyter" / "kernels" / "flaky"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, str(script), "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "flaky", "language": "python"})
    )
    return "flaky"


def test_a_kernel_that_dies_before_it_answers_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = flaky_kernel(tmp_path)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    notebook = write_notebook(tmp_path / "n.ipynb", "print('ran', x)", parameters="x = 0")
    out = tmp_path / "out.ipynb"
    rn.execute_papermill(
        lambda: False,
        input_path=str(notebook),
        output_path=str(out),
        parameters={"x": 7},
        kernel_name=kernel,
        progress_bar=False,
        start_timeout=60,
    )
    assert (tmp_path / "started-once").exists()  # the first start did die
    assert "ran 7" in out.read_text()


def test_a_kernel_failure_after_the_start_is_not_retried() -> None:
    assert rn.kernel_never_started(RuntimeError("Kernel died before replying to kernel_info"))
    assert not rn.kernel_never_started(RuntimeError("Kernel died"))  # a cell may have run


def test_the_runner_validates_notebooks_without_the_slow_iri_checker() -> None:
    """The runner process leaves rfc3987_syntax out (docs in _skip_slow_imports); notebooks
    are still read, validated and executed (the runner tests above run through it)."""
    code = (
        "import sys\n"
        "from eb_broker.platforms import local_runner as rn\n"
        "rn._skip_slow_imports()\n"
        "import nbformat, papermill\n"
        "nbformat.validate(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('1')]))\n"
        "assert sys.modules['rfc3987_syntax'] is None\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
