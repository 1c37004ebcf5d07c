"""The local platform with real papermill runs, real kernels and real Jupyter servers."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from eb_broker.platforms import load_platform
from eb_broker.platforms import local_runner as rn
from eb_broker.platforms.base import Platform, PlatformState, PlatformStatus, SessionSpec
from eb_broker.platforms.local import JUPYTER_SERVER_CONNECTOR, LocalPlatform
from eb_broker.scheduling import Resources
from eb_sdk.model import (
    DockerContainer,
    ExecutionRequest,
    JupyterNotebook,
    JupyterServer,
    MessageItem,
)
from eb_sdk.model.messages import NOT_SUPPORTED
from tests.fixtures.notebooks import write_notebook

WAIT = 120.0  # kernels and servers are slow on a small test machine
FINAL = (PlatformState.SUCCEEDED, PlatformState.FAILED)


# -- helpers ------------------------------------------------------------------------------------


def make_spec(request: ExecutionRequest | dict[str, Any], **kw: Any) -> SessionSpec:
    if isinstance(request, dict):
        request = ExecutionRequest.model_validate(request)
    now = datetime.now(UTC)
    return SessionSpec(
        uuid=kw.pop("uuid", None) or str(uuid.uuid4()),
        owner="alice",
        groups=(),
        request=request,
        resources=Resources(cores=1, memory_gib=1),
        start=now,
        end=now + timedelta(hours=1),
        preparation=timedelta(seconds=5),
        **kw,
    )


def notebook_request(location: str, **fields: Any) -> ExecutionRequest:
    return ExecutionRequest(executable=JupyterNotebook(location=location, **fields))


def with_handle(spec: SessionSpec, handle: dict[str, Any]) -> SessionSpec:
    return SessionSpec(**{**spec.__dict__, "handle": handle})


async def wait_for(
    platform: Platform,
    spec: SessionSpec,
    until: Callable[[PlatformStatus], bool],
    limit: float = WAIT,
) -> PlatformStatus:
    """Poll until ``until(status)`` holds; fail with the last status and the logs otherwise."""
    deadline = time.monotonic() + limit
    status = (await platform.poll([spec]))[spec.uuid]
    while not until(status):
        if time.monotonic() > deadline:
            logs = ""
            for name in ("runner.log", "server.log", "status.json"):
                logs += f"\n--- {name}\n{rn.tail(Path(spec.handle['dir']) / name, 40)}"
            pytest.fail(f"timed out waiting; last status {status}{logs}")
        await asyncio.sleep(0.3)
        status = (await platform.poll([spec]))[spec.uuid]
    return status


async def wait_gone(pid: int, limit: float = 30) -> bool:
    deadline = time.monotonic() + limit
    while rn.pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def runners_for(session_dir: Path) -> list[int]:
    """Live runner processes working on ``session_dir`` (from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            b"eb_broker.platforms.local_runner" in cmdline
            and str(session_dir).encode() in cmdline
            and rn.pid_alive(int(entry))
        ):
            pids.append(int(entry))
    return pids


def status_file(session_dir: str | Path) -> dict[str, Any]:
    status = rn.read_json(Path(session_dir) / rn.STATUS_FILE)
    assert status is not None
    return status


def process_environment(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")


def run_runner_by_hand(session_dir: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(
        [sys.executable, "-m", "eb_broker.platforms.local_runner", session_dir],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def exited_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def exists(path: str | Path) -> bool:
    return Path(path).exists()


def texts(messages: list[MessageItem]) -> str:
    return " | ".join(str(m) for m in messages)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[LocalPlatform]:
    plat = LocalPlatform(work_dir=str(tmp_path / "work"), stop_timeout=10.0)
    yield plat
    # never leave runners behind, whatever a test did
    work = tmp_path / "work"
    if work.is_dir():
        for session_dir in work.iterdir():
            for pid in runners_for(session_dir):
                rn.signal_group(pid, signal.SIGKILL)
            status = rn.read_json(session_dir / rn.STATUS_FILE) or {}
            if isinstance(status.get("server_pid"), int) and rn.pid_alive(status["server_pid"]):
                rn.signal_group(status["server_pid"], signal.SIGKILL)
    await plat.close()


# -- configuration and loading ------------------------------------------------------------------


def test_load_platform_by_name_and_path() -> None:
    assert load_platform("local") is LocalPlatform
    assert load_platform("eb_broker.platforms.local:LocalPlatform") is LocalPlatform
    assert load_platform("eb_broker.platforms.local.LocalPlatform") is LocalPlatform
    with pytest.raises(ValueError, match=r"available: .*local"):
        load_platform("no-such-platform")
    with pytest.raises(ValueError, match="not a Platform"):
        load_platform("eb_broker.platforms.local:LaunchError")
    with pytest.raises(ValueError, match="cannot import"):
        load_platform("no_such_module:Thing")


def test_defaults_and_capacity(tmp_path: Path) -> None:
    plat = LocalPlatform(work_dir=str(tmp_path / "not-yet" / "work"))
    assert plat.cores == os.cpu_count()
    assert plat.memory_gib >= 1
    assert plat.storage_gib >= 0
    assert plat.python == sys.executable
    assert plat.server_command == ["jupyter", "server"]
    assert plat.executable_kinds() == [
        JupyterNotebook.KIND,
        JupyterServer.KIND,
        "urn:jeb:v1:executable:notebook-batch",
    ]
    cap = LocalPlatform(cores=3, memory_gib=5, storage_gib=7).capacity()
    assert cap.base == Resources(cores=3, memory_gib=5, storage_gib=7)
    assert cap.periods == ()
    request = notebook_request("/x.ipynb")
    assert plat.preparation(request) == timedelta(seconds=5)
    assert LocalPlatform(startup_preparation=12).preparation(request) == timedelta(seconds=12)


def test_server_command_line() -> None:
    argv = rn.server_argv(["jupyter", "server"], port=8123, root_dir="/srv", allow_root=True)
    assert argv[:2] == ["jupyter", "server"]
    assert "--ip=127.0.0.1" in argv and "--port=8123" in argv and "--no-browser" in argv
    assert "--ServerApp.root_dir=/srv" in argv and "--allow-root" in argv
    assert not any("token" in a for a in argv)  # the token travels in the environment
    assert rn.is_singleuser(["jupyterhub-singleuser"])
    assert rn.is_singleuser(["/opt/hub/bin/jupyterhub-singleuser", "--debug"])
    assert not rn.is_singleuser(["jupyter", "server"])
    assert rn.server_urls(8123, "T") == (
        "http://127.0.0.1:8123/?token=T",
        "http://127.0.0.1:8123/api/status?token=T",
    )
    # JupyterHub authenticates: no token, URL under the service prefix
    assert rn.server_urls(8123, None, "/user/alice") == (
        "http://127.0.0.1:8123/user/alice/",
        "http://127.0.0.1:8123/user/alice/api",
    )


def test_server_on_every_address_is_named_by_its_host() -> None:
    """A server on a node of a cluster (Slurm's server_ip=0.0.0.0): it listens everywhere,
    users get the node's name, the runner checks its health over loopback."""
    argv = rn.server_argv(
        ["jupyter", "server"], port=8123, root_dir="/", allow_root=False, ip="0.0.0.0"
    )
    assert "--ip=0.0.0.0" in argv
    name = socket.gethostname()
    assert rn.server_urls(8123, "T", ip="0.0.0.0", host="{hostname}.ib.example.org") == (
        f"http://{name}.ib.example.org:8123/?token=T",
        "http://127.0.0.1:8123/api/status?token=T",
    )
    assert rn.server_urls(8123, None, ip="0.0.0.0")[0] == f"http://{socket.getfqdn()}:8123/"
    assert rn.server_urls(8123, None, ip="10.0.0.5") == (
        "http://10.0.0.5:8123/",
        "http://10.0.0.5:8123/api",
    )


# -- check ----------------------------------------------------------------------------------


def kinds_of(messages: list[MessageItem]) -> set[str | None]:
    return {m.kind for m in messages}


def test_check_accepts_notebooks_and_servers(tmp_path: Path) -> None:
    plat = LocalPlatform()
    assert plat.check(notebook_request(str(tmp_path / "a.ipynb"))) == []
    assert plat.check(notebook_request(f"file://{tmp_path}/a.ipynb")) == []
    assert plat.check(ExecutionRequest(executable=JupyterServer())) == []


def test_check_rejects_what_cannot_run_here() -> None:
    plat = LocalPlatform()
    docker = plat.check(ExecutionRequest(executable=DockerContainer()))
    assert kinds_of(docker) == {NOT_SUPPORTED}
    assert "no container engine" in texts(docker)

    unknown_kind = "urn:example:executable:fortran-binary"
    unknown = plat.check(ExecutionRequest.model_validate({"executable": {"kind": unknown_kind}}))
    assert kinds_of(unknown) == {NOT_SUPPORTED}
    assert unknown_kind in texts(unknown)

    singularity = plat.check(
        ExecutionRequest.model_validate(
            {
                "executable": {
                    "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/"
                    "kinds/executable/singularity-container.yaml"
                }
            }
        )
    )
    assert kinds_of(singularity) == {NOT_SUPPORTED}
    assert "Singularity/Apptainer" in texts(singularity)

    missing = plat.check(ExecutionRequest())
    assert kinds_of(missing) == {NOT_SUPPORTED}
    assert "no executable" in texts(missing)

    no_location = plat.check(ExecutionRequest(executable=JupyterNotebook()))
    assert kinds_of(no_location) == {NOT_SUPPORTED}
    assert "no location" in texts(no_location)

    remote = plat.check(notebook_request("https://example.org/a.ipynb"))
    assert kinds_of(remote) == {NOT_SUPPORTED}
    assert "https://" in texts(remote)


def test_check_takes_data_and_rejects_accelerators(tmp_path: Path) -> None:
    plat = LocalPlatform(work_dir=str(tmp_path))
    request = ExecutionRequest.model_validate(
        {
            "executable": {"kind": JupyterNotebook.KIND, "location": "/a.ipynb"},
            "data": [
                {
                    "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/"
                    "kinds/data/simple-data-resource.yaml",
                    "location": "https://example.org/data.fits",
                }
            ],
        }
    )
    assert plat.check(request) == []  # the broker stages data into the staging directory
    assert plat.staging_dir() == str(tmp_path / ".eb-staging")

    gpu = ExecutionRequest.model_validate(
        {
            "executable": {"kind": JupyterNotebook.KIND, "location": "/a.ipynb"},
            "compute": {
                "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/"
                "kinds/compute/simple-compute-resource.yaml",
                "jeb:accelerators": [{"type": "GPU", "model": "A100"}],
            },
        }
    )
    accel = plat.check(gpu)
    assert kinds_of(accel) == {NOT_SUPPORTED}
    assert "no accelerators" in texts(accel)
    assert LocalPlatform(accelerators={"gpu:A100": 1}).check(gpu) == []


# -- notebooks ------------------------------------------------------------------------------


async def test_notebook_succeeds_with_parameters(platform: LocalPlatform, tmp_path: Path) -> None:
    source = write_notebook(
        tmp_path / "double.ipynb",
        "result = x * 2\nprint(f'result={result} greeting={greeting}')",
        parameters="x = 1\ngreeting = 'hello'",
    )
    spec = make_spec(
        notebook_request(str(source), parameters={"x": 21, "greeting": "from the broker"})
    )
    handle = await platform.launch(spec)
    session_dir = Path(handle["dir"])
    assert session_dir == tmp_path / "work" / spec.uuid
    assert isinstance(handle["pid"], int)
    assert rn.read_pid(session_dir / rn.PID_FILE) == handle["pid"]
    spec = with_handle(spec, handle)

    status = await wait_for(platform, spec, lambda s: s.state in FINAL)
    assert status.state == PlatformState.SUCCEEDED, texts(status.messages)
    assert status.messages == []
    output = Path(status.outputs["notebook"])
    assert output == session_dir / "output.ipynb"
    assert status.outputs["log"] == str(session_dir / "runner.log")

    executed = nbformat.read(output, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert "x = 21" in injected[0].source
    printed = "".join(
        out.get("text", "") for cell in executed.cells for out in cell.get("outputs", [])
    )
    assert "result=42 greeting=from the broker" in printed
    assert await wait_gone(handle["pid"])
    # the input notebook is untouched
    assert "injected-parameters" not in source.read_text()


async def test_notebook_error_names_cell_and_exception(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    source = write_notebook(
        tmp_path / "broken.ipynb",
        "a = 1",
        "b = a / 0",
        "print('never')",
        parameters="x = 1",
    )
    spec = make_spec(notebook_request(source.as_uri(), parameters={"x": 2}))
    spec = with_handle(spec, await platform.launch(spec))
    status = await wait_for(platform, spec, lambda s: s.state in FINAL)
    assert status.state == PlatformState.FAILED
    assert len(status.messages) == 1
    item = status.messages[0]
    assert item.level == "ERROR"
    # 0-based index in the submitted notebook: parameters cell 0, "a = 1" cell 1, then cell 2
    assert item.values is not None
    assert item.values["cell"] == "2"
    assert item.values["ename"] == "ZeroDivisionError"
    assert item.values["evalue"] == "division by zero"
    assert str(item) == "cell 2 raised ZeroDivisionError: division by zero"
    assert "ZeroDivisionError" in status_file(spec.handle["dir"])["error"]["traceback"]
    # the output notebook shows how far it got
    assert exists(status.outputs["notebook"])


async def test_unsupported_location_fails_at_launch(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    spec = make_spec(notebook_request("https://example.org/remote.ipynb"))
    handle = await platform.launch(spec)
    assert handle["pid"] is None
    status = (await platform.poll([with_handle(spec, handle)]))[spec.uuid]
    assert status.state == PlatformState.FAILED
    assert "local paths and file:// URLs only" in texts(status.messages)

    missing = make_spec(notebook_request(str(tmp_path / "missing.ipynb")))
    status = (await platform.poll([with_handle(missing, await platform.launch(missing))]))[
        missing.uuid
    ]
    assert status.state == PlatformState.FAILED
    assert "notebook not found" in texts(status.messages)


async def test_stop_a_running_notebook(platform: LocalPlatform, tmp_path: Path) -> None:
    source = write_notebook(
        tmp_path / "slow.ipynb",
        "import os, time\nopen('started', 'w').write(str(os.getpid()))\ntime.sleep(600)",
    )
    spec = make_spec(notebook_request(str(source)))  # runs in the notebook's directory
    handle = await platform.launch(spec)
    spec = with_handle(spec, handle)
    marker = tmp_path / "started"
    await wait_for(platform, spec, lambda s: marker.is_file() and bool(marker.read_text()))
    kernel_pid = int(marker.read_text())
    assert rn.pid_alive(kernel_pid)
    started = time.monotonic()
    await platform.stop(spec)
    assert time.monotonic() - started < 15
    assert not rn.runner_alive(handle["pid"])
    assert await wait_gone(kernel_pid, 10), "the kernel outlived its runner"
    status = (await platform.poll([spec]))[spec.uuid]
    assert status.state == PlatformState.FAILED
    assert "stopped" in texts(status.messages)
    await platform.stop(spec)  # idempotent


# -- servers --------------------------------------------------------------------------------


async def test_server_becomes_available_and_stops(platform: LocalPlatform, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    spec = make_spec(
        ExecutionRequest(
            executable=JupyterServer(root_dir=str(root), environment={"EB_TEST_VAR": "42"})
        )
    )
    handle = await platform.launch(spec)
    spec = with_handle(spec, handle)
    status = await wait_for(platform, spec, lambda s: s.state != PlatformState.PREPARING)
    assert status.state == PlatformState.AVAILABLE, texts(status.messages)
    [connector] = status.connectors
    assert connector.kind == JUPYTER_SERVER_CONNECTOR
    assert connector.protocol == "HTTP"
    assert connector.status == "AVAILABLE"
    url = connector.location
    assert url is not None and url.startswith("http://127.0.0.1:")
    base, _, query = url.partition("?")
    token = query.removeprefix("token=")
    assert token

    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{base}api/status", params={"token": token})
        assert answer.status_code == 200
        assert "started" in answer.json()
        contents = await client.get(f"{base}api/contents", params={"token": token})
        assert contents.status_code == 200  # root_dir is served
    async with httpx.AsyncClient(timeout=10) as client:  # no cookie from the token login
        denied = await client.get(f"{base}api/status")
        assert denied.status_code == 403

    server_pid = status_file(handle["dir"])["server_pid"]
    assert "EB_TEST_VAR=42" in process_environment(server_pid)

    await platform.stop(spec)
    assert await wait_gone(handle["pid"], 5)
    assert await wait_gone(server_pid, 5)
    status = (await platform.poll([spec]))[spec.uuid]
    assert status.state == PlatformState.SUCCEEDED
    assert status.connectors == []
    async with httpx.AsyncClient(timeout=3) as client:
        with pytest.raises(httpx.TransportError):
            await client.get(f"{base}api/status", params={"token": token})
    await platform.stop(spec)  # idempotent
    await platform.release(spec)
    assert exists(handle["dir"])  # outputs are kept


async def test_server_that_dies_fails_with_its_log(platform: LocalPlatform, tmp_path: Path) -> None:
    script = "import sys; print('cannot serve today'); sys.exit(3)"
    spec = make_spec(
        ExecutionRequest(executable=JupyterServer(command=[sys.executable, "-c", script]))
    )
    spec = with_handle(spec, await platform.launch(spec))
    status = await wait_for(platform, spec, lambda s: s.state in FINAL)
    assert status.state == PlatformState.FAILED
    assert "exited with code 3" in texts(status.messages)
    assert status.messages[0].values == {"exit_code": "3"}
    assert "cannot serve today" in rn.tail(Path(status.outputs["server_log"]))


# -- adoption and restarts ------------------------------------------------------------------


async def test_launch_twice_adopts_the_runner(platform: LocalPlatform, tmp_path: Path) -> None:
    source = write_notebook(tmp_path / "nap.ipynb", "import time\ntime.sleep(8)")
    spec = make_spec(notebook_request(str(source)))
    first = await platform.launch(spec)
    second = await platform.launch(spec)  # at once: before the runner wrote any status
    assert second == first
    session_dir = Path(first["dir"])
    spec = with_handle(spec, first)
    await wait_for(platform, spec, lambda s: s.state == PlatformState.RUNNING)
    third = await platform.launch(spec)  # with a status on disk
    assert third == first
    assert runners_for(session_dir) == [first["pid"]]
    status = await wait_for(platform, spec, lambda s: s.state in FINAL)
    assert status.state == PlatformState.SUCCEEDED, texts(status.messages)
    # after the end, launching again still does not run it a second time
    assert await wait_gone(first["pid"])
    assert (await platform.launch(spec))["dir"] == first["dir"]
    assert runners_for(session_dir) == []
    assert (await platform.poll([spec]))[spec.uuid].state == PlatformState.SUCCEEDED


async def test_second_runner_on_the_same_dir_exits(platform: LocalPlatform, tmp_path: Path) -> None:
    source = write_notebook(tmp_path / "nap.ipynb", "import time\ntime.sleep(5)")
    spec = make_spec(notebook_request(str(source)))
    handle = await platform.launch(spec)
    await wait_for(platform, with_handle(spec, handle), lambda s: s.state == PlatformState.RUNNING)
    # bypass launch: even a runner started by hand must not run the session again
    extra = await asyncio.to_thread(run_runner_by_hand, handle["dir"])
    assert extra.returncode == 0
    assert "another runner" in extra.stderr
    assert status_file(handle["dir"])["pid"] == handle["pid"]


async def test_runner_survives_a_broker_restart(tmp_path: Path) -> None:
    work = tmp_path / "work"
    source = write_notebook(
        tmp_path / "nap.ipynb", "import time\ntime.sleep(6)\nprint('done')", parameters="x = 0"
    )
    spec = make_spec(notebook_request(str(source), parameters={"x": 1}))
    old = LocalPlatform(work_dir=str(work))
    handle = await old.launch(spec)
    await wait_for(old, with_handle(spec, handle), lambda s: s.state == PlatformState.RUNNING)
    await old.close()
    del old
    gc.collect()

    new = LocalPlatform(work_dir=str(work))
    try:
        # the ledger may hold the handle ...
        status = (await new.poll([with_handle(spec, handle)]))[spec.uuid]
        assert status.state == PlatformState.RUNNING
        # ... or not (the broker died before persisting it): launch adopts, no second run
        assert await new.launch(spec) == handle
        assert runners_for(work / spec.uuid) == [handle["pid"]]
        status = await wait_for(new, spec, lambda s: s.state in FINAL)
        assert status.state == PlatformState.SUCCEEDED, texts(status.messages)
    finally:
        for pid in runners_for(work / spec.uuid):
            rn.signal_group(pid, signal.SIGKILL)


async def test_dead_runner_is_failed(platform: LocalPlatform, tmp_path: Path) -> None:
    source = write_notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(600)")
    spec = make_spec(notebook_request(str(source)))
    handle = await platform.launch(spec)
    spec = with_handle(spec, handle)
    await wait_for(platform, spec, lambda s: s.state == PlatformState.RUNNING)
    rn.signal_group(handle["pid"], signal.SIGKILL)  # no chance to record anything
    status = await wait_for(platform, spec, lambda s: s.state != PlatformState.RUNNING, 30)
    assert status.state == PlatformState.FAILED
    assert "the runner process died" in texts(status.messages)


async def test_status_of_a_reused_pid_is_failed(platform: LocalPlatform, tmp_path: Path) -> None:
    """A non-final status whose pid now belongs to another process (or none) is FAILED."""
    for pid in (await asyncio.to_thread(exited_pid), os.getpid()):  # gone / alive but not a runner
        spec = make_spec(notebook_request("/nowhere.ipynb"))
        session_dir = tmp_path / "work" / spec.uuid
        session_dir.mkdir(parents=True)
        rn.write_json_atomic(session_dir / rn.STATUS_FILE, {"state": "RUNNING", "pid": pid})
        status = (await platform.poll([spec]))[spec.uuid]
        assert status.state == PlatformState.FAILED, pid
        assert "the runner process died" in texts(status.messages)


async def test_missing_directory_is_gone(platform: LocalPlatform) -> None:
    spec = make_spec(notebook_request("/nowhere.ipynb"))
    assert (await platform.poll([spec]))[spec.uuid].state == PlatformState.GONE
    await platform.stop(spec)  # nothing to stop: no error
    await platform.release(spec)
