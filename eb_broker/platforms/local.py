"""The embedded default platform: sessions run as local processes on the broker's machine.

Each session gets a directory ``<work_dir>/<uuid>/`` holding what to run (``spec.json``), the
runner's status (``status.json``), its log (``runner.log``) and the outputs (``output.ipynb``,
``server.log``). A detached runner process (:mod:`eb_broker.platforms.local_runner`, started in
a new session) does the work, so sessions outlive the broker: after a restart, or a ``kill -9``,
the broker finds them again from the directory alone. See ``docs/platforms/local.md``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from traitlets import Dict, Enum, Float, Int, List, Unicode, default

from eb_sdk.model import (
    DockerContainer,
    ExecutionRequest,
    JupyterNotebook,
    JupyterServer,
    MessageItem,
    NotebookBatch,
    SimpleComputeResource,
    SimpleSessionConnector,
    SingularityContainer,
)
from eb_sdk.model import messages as msg
from eb_sdk.model.kinds import kind_label
from eb_sdk.model.sessions import ConnectorStatus

from ..scheduling import Capacity, Resources
from ..staging.mounts import link_staged_data
from . import local_runner as rn
from .base import JUPYTER_SERVER_CONNECTOR, Platform, PlatformState, PlatformStatus, SessionSpec
from .batch import batch_problems, batch_runner_spec, with_batch_progress

_GIB = 1024**3

# Where this package lives, so the runner finds it even when the project is not installed.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class LaunchError(Exception):
    """A session cannot be started (recorded as FAILED in its status, not raised to callers)."""


def _total_memory_gib() -> int:
    """Total RAM in GiB (rounded down), from /proc/meminfo or sysconf; 0 when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024 // _GIB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // _GIB
    except (OSError, ValueError, AttributeError):
        return 0


def _free_disk_gib(path: str) -> int:
    """Free space in GiB on the file system of ``path`` (or its nearest existing parent)."""
    current = Path(path).expanduser().absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    try:
        return shutil.disk_usage(current).free // _GIB
    except OSError:
        return 0


def _location_scheme(location: str) -> str:
    """The URL scheme of a notebook location ('' for a plain path)."""
    scheme = urlparse(location).scheme
    return "" if len(scheme) <= 1 else scheme.lower()  # 'c:' of a Windows path is no scheme


def resolve_notebook(location: str) -> Path:
    """The absolute local path of a notebook location (a path or a ``file://`` URL).

    Raises :class:`LaunchError` for other schemes and for files that do not exist.
    """
    scheme = _location_scheme(location)
    if scheme == "file":
        parsed = urlparse(location)
        if parsed.netloc not in ("", "localhost"):
            raise LaunchError(f"file URL on another host is not supported: {location}")
        path = Path(url2pathname(unquote(parsed.path)))
    elif scheme:
        raise LaunchError(
            f"the local platform reads notebooks from local paths and file:// URLs only, "
            f"not {scheme}:// ({location})"
        )
    else:
        path = Path(location).expanduser()
    path = path.resolve()
    if not path.is_file():
        raise LaunchError(f"notebook not found: {path}")
    return path


class LocalPlatform(Platform):
    """Runs notebooks (papermill) and Jupyter servers as processes on this machine."""

    name = "local"

    cores = Int(
        config=True,
        help="Cores the broker may book on this machine (default: all CPUs, os.cpu_count()).",
    )
    memory_gib = Int(
        config=True,
        help="Memory in GiB the broker may book (default: the machine's total RAM, rounded down).",
    )
    storage_gib = Int(
        config=True,
        help=(
            "Storage in GiB offered for sessions (default: the free disk space of work_dir at "
            "start-up; 0 offers no storage)."
        ),
    )
    accelerators = Dict(
        value_trait=Int(),
        default_value={},
        config=True,
        help=(
            "Accelerator pools of this machine, e.g. {'gpu:A100': 1}. Empty by default: the local "
            "platform offers no accelerators and answers requests for them with urn:not-supported."
        ),
    )
    work_dir = Unicode(
        "./eb-work",
        config=True,
        help=(
            "Directory of the session directories: each session runs in <work_dir>/<uuid>/ and "
            "keeps its outputs and logs there. Relative paths are taken from the broker's "
            "working directory."
        ),
    )
    server_command = List(
        Unicode(),
        default_value=["jupyter", "server"],
        config=True,
        help=(
            "Command of an interactive Jupyter server session (when the JupyterServer "
            "executable gives none). 'jupyterhub-singleuser' is the other typical value, when "
            "JupyterHub spawns the session. The runner adds --ip, --port, --no-browser, "
            "--ServerApp.root_dir (and --allow-root as root)."
        ),
    )
    kernel_name = Unicode(
        "python3",
        config=True,
        help=(
            "Kernel that executes notebooks unless the request names one (jeb:kernel). "
            "Empty: the kernel named in the notebook's own metadata."
        ),
    )
    python = Unicode(
        config=True,
        help=(
            "Python interpreter that runs the session runner (default: the broker's own, "
            "sys.executable). Its bin directory goes first on the sessions' PATH, so "
            "'jupyter' and kernels come from the same environment."
        ),
    )
    notebook_cwd = Enum(
        ["notebook", "session"],
        default_value="notebook",
        config=True,
        help=(
            "Working directory of executed notebooks: 'notebook' (the notebook's own "
            "directory, so relative paths in it work) or 'session' (the session directory)."
        ),
    )
    batch_workers_per_core = Float(
        2.0,
        config=True,
        help=(
            "Inputs of a notebook batch that run at once, per booked core (a request may ask "
            "for fewer). Each input is a papermill run with its own kernel, which waits much "
            "of its time for the kernel to start and answer, so two per core keep a core busy "
            "(benchmarks/RESULTS.md); 1 runs one input per core (notebooks that need a whole "
            "core's memory)."
        ),
    )
    startup_preparation = Float(
        5.0,
        config=True,
        help="Seconds of preparation before a local session starts (the estimate offers use).",
    )
    server_start_timeout = Float(
        60.0,
        config=True,
        help="Seconds a Jupyter server may take to answer HTTP before the session FAILs.",
    )
    kernel_start_timeout = Float(
        60.0,
        config=True,
        help="Seconds a notebook's kernel may take to start before the session FAILs.",
    )
    stop_timeout = Float(
        10.0,
        config=True,
        help="Seconds a session may take to end after SIGTERM before it is killed (SIGKILL).",
    )

    @default("cores")
    def _cores_default(self) -> int:
        return os.cpu_count() or 1

    @default("memory_gib")
    def _memory_default(self) -> int:
        return _total_memory_gib()

    @default("storage_gib")
    def _storage_default(self) -> int:
        return _free_disk_gib(self.work_dir)

    @default("python")
    def _python_default(self) -> str:
        return sys.executable

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # runners this process started, kept to reap them (no zombies while the broker lives)
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # -- what this platform offers ------------------------------------------------------------

    def executable_kinds(self) -> list[str]:
        return [JupyterNotebook.KIND, JupyterServer.KIND, NotebookBatch.KIND]

    def capacity(self) -> Capacity:
        return Capacity(
            Resources(
                cores=self.cores,
                memory_gib=self.memory_gib,
                accelerators=dict(self.accelerators),
                storage_gib=self.storage_gib,
            )
        )

    def check(self, request: ExecutionRequest) -> list[MessageItem]:
        problems: list[MessageItem] = []
        executable = request.executable

        def no(message: str, **values: Any) -> None:
            problems.append(msg.error(msg.NOT_SUPPORTED, message, **values))

        if executable is None:
            no("the request has no executable: say what to run (a notebook or a Jupyter server)")
        elif isinstance(executable, DockerContainer):
            no(
                "no container engine on this platform: Docker containers cannot run here",
                executable=executable.kind,
            )
        elif isinstance(executable, SingularityContainer):
            engine = shutil.which("apptainer") or shutil.which("singularity")
            if engine:
                no(
                    f"Singularity/Apptainer containers are not supported by the local platform "
                    f"yet ({engine} is installed, but running images is not implemented)",
                    executable=executable.kind,
                )
            else:
                no("no Singularity/Apptainer on this platform", executable=executable.kind)
        elif executable.kind not in self.executable_kinds():
            no(
                f"the local platform cannot run executables of kind {executable.kind} "
                f"({kind_label(executable.kind)}); it runs Jupyter notebooks, notebook batches "
                "and Jupyter servers",
                executable=executable.kind,
            )
        elif isinstance(executable, JupyterNotebook):
            if not executable.location:
                no("the notebook has no location: say where the notebook is")
            elif _location_scheme(executable.location) not in ("", "file"):
                no(
                    f"the local platform reads notebooks from local paths and file:// URLs only, "
                    f"not {_location_scheme(executable.location)}://",
                    location=executable.location,
                )
        elif isinstance(executable, NotebookBatch):
            problems += batch_problems(executable, "local")
        compute = request.compute
        if (
            isinstance(compute, SimpleComputeResource)
            and compute.accelerators
            and not self.accelerators
        ):
            no(
                "no accelerators on the local platform",
                accelerators=", ".join(a.pool_name for a in compute.accelerators),
            )
        return problems

    def preparation(self, request: ExecutionRequest) -> timedelta:
        return timedelta(seconds=self.startup_preparation)

    def staging_dir(self) -> str | None:
        """``<work_dir>/.eb-staging``: staged data is linked into the session directories."""
        return str(Path(self.work_dir).expanduser().absolute() / ".eb-staging")

    # -- session directories ------------------------------------------------------------------

    def session_dir(self, spec: SessionSpec) -> Path:
        """``<work_dir>/<uuid>`` (or the directory recorded in the handle)."""
        recorded = spec.handle.get("dir") if spec.handle else None
        if recorded:
            return Path(recorded)
        if not spec.uuid or "/" in spec.uuid or "\\" in spec.uuid or spec.uuid in (".", ".."):
            raise ValueError(f"not a usable session uuid: {spec.uuid!r}")
        return Path(self.work_dir).expanduser().absolute() / spec.uuid

    def _adopt(self, session_dir: Path) -> dict[str, Any] | None:
        """The handle of a runner that already exists for ``session_dir``, if any."""
        if not session_dir.is_dir():
            return None
        status = rn.read_json(session_dir / rn.STATUS_FILE)
        recorded = rn.read_pid(session_dir / rn.PID_FILE)
        if status is not None:
            pid = status.get("pid") or recorded
        elif (recorded and rn.runner_alive(recorded)) or rn.lock_held(session_dir / rn.LOCK_FILE):
            pid = recorded
        else:
            return None
        self.log.info("adopting the existing runner of %s (pid %s)", session_dir, pid)
        return {"dir": str(session_dir), "pid": pid}

    # -- life cycle ---------------------------------------------------------------------------

    async def launch(self, spec: SessionSpec) -> dict[str, Any]:
        session_dir = self.session_dir(spec)
        adopted = self._adopt(session_dir)
        if adopted is not None:
            return adopted
        session_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle: dict[str, Any] = {"dir": str(session_dir), "pid": None}
        try:
            runner_spec = self._runner_spec(spec, session_dir)
        except LaunchError as exc:
            self.log.warning("cannot launch %s: %s", spec.uuid, exc)
            rn.record_launch_failure(session_dir, str(exc), pid=None)
            return handle
        rn.write_json_atomic(session_dir / rn.SPEC_FILE, runner_spec)
        proc = self._start_runner(session_dir)
        rn.write_pid(session_dir / rn.PID_FILE, proc.pid)
        self._children[proc.pid] = proc
        self._tell_when_exited(proc)
        self.log.info("launched %s: runner pid %d in %s", spec.uuid, proc.pid, session_dir)
        handle["pid"] = proc.pid
        return handle

    def _runner_spec(self, spec: SessionSpec, session_dir: Path) -> dict[str, Any]:
        """What the runner needs to know (``spec.json``); raises LaunchError if impossible."""
        executable = spec.request.executable
        try:
            data_env = link_staged_data(spec.data, session_dir)
        except (OSError, ValueError) as exc:
            raise LaunchError(f"the staged data cannot be placed: {exc}") from None
        common: dict[str, Any] = {
            "uuid": spec.uuid,
            "owner": spec.owner,
            "start": spec.start.isoformat(),
            "end": spec.end.isoformat(),
            "cores": spec.resources.cores,
            "memory_gib": spec.resources.memory_gib,
        }
        if isinstance(executable, JupyterNotebook):
            if not executable.location:
                raise LaunchError("the notebook has no location")
            notebook = resolve_notebook(executable.location)
            return {
                **common,
                "kind": "notebook",
                "environment": data_env,
                "notebook": str(notebook),
                "output": str(session_dir / rn.OUTPUT_FILE),
                "parameters": executable.parameters or {},
                "kernel_name": executable.kernel or self.kernel_name or None,
                "cwd": self._notebook_cwd(notebook, session_dir),
                "kernel_start_timeout": self.kernel_start_timeout,
            }
        if isinstance(executable, NotebookBatch):
            if not executable.location:
                raise LaunchError("the notebook batch has no location")
            notebook = resolve_notebook(executable.location)
            return {
                **common,
                **batch_runner_spec(
                    executable,
                    notebook,
                    session_dir,
                    cores=spec.resources.cores,
                    workers_per_core=self.batch_workers_per_core,
                    kernel_name=self.kernel_name or None,
                    cwd=self._notebook_cwd(notebook, session_dir),
                    kernel_start_timeout=self.kernel_start_timeout,
                ),
            }
        if isinstance(executable, JupyterServer):
            command = list(executable.command or self.server_command)
            if not command:
                raise LaunchError("no server command configured")
            root_dir = (
                str(Path(executable.root_dir).expanduser().absolute())
                if executable.root_dir
                else str(session_dir)
            )
            return {
                **common,
                "kind": "server",
                "command": command,
                "hub": rn.is_singleuser(command),
                "environment": {**data_env, **dict(executable.environment or {})},
                "root_dir": root_dir,
                "notebook": executable.notebook,
                "start_timeout": self.server_start_timeout,
                "stop_timeout": max(1.0, self.stop_timeout / 2),
            }
        kind = executable.kind if executable is not None else "none"
        raise LaunchError(f"the local platform cannot run executables of kind {kind}")

    def _notebook_cwd(self, notebook: Path, session_dir: Path) -> str:
        return str(notebook.parent) if self.notebook_cwd == "notebook" else str(session_dir)

    def _start_runner(self, session_dir: Path) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        original = env.get("PYTHONPATH")
        env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + original if original else "")
        env[rn.PYTHONPATH_MARK] = "1"
        if original is not None:
            env[rn.PYTHONPATH_ORIG] = original
        with (session_dir / rn.LOG_FILE).open("ab") as log:
            return subprocess.Popen(
                [self.python, "-m", "eb_broker.platforms.local_runner", str(session_dir)],
                cwd=session_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the broker (no shared process group)
                close_fds=True,
            )

    def _tell_when_exited(self, proc: subprocess.Popen[bytes]) -> None:
        """Call :attr:`changed` when the runner exits (its pidfd becomes readable on the
        loop): the session's end is then seen at once, not on the reconciler's next pass —
        for a batch, the next chunk starts up to a second earlier. Without pidfds (not
        Linux), the reconciler's polling sees it as before."""
        changed = self.changed
        if changed is None:
            return
        try:
            loop = asyncio.get_running_loop()
            fd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError, RuntimeError):
            return

        def exited() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            proc.poll()  # reap it
            changed()

        loop.add_reader(fd, exited)

    def _child_running(self, pid: int | None) -> bool:
        """True when ``pid`` is a runner this process started and it has not exited."""
        proc = self._children.get(pid) if pid else None
        return proc is not None and proc.poll() is None

    def _reap(self) -> None:
        for pid, proc in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[pid]

    async def poll(self, specs: list[SessionSpec]) -> dict[str, PlatformStatus]:
        self._reap()
        return {
            spec.uuid: with_batch_progress(self.session_dir(spec), self._status_of(spec))
            for spec in specs
        }

    def _status_of(self, spec: SessionSpec) -> PlatformStatus:
        session_dir = self.session_dir(spec)
        if not session_dir.is_dir():
            return PlatformStatus(
                PlatformState.GONE,
                [msg.error(msg.PLATFORM, f"the session directory {session_dir} is gone")],
            )
        log_path = session_dir / rn.LOG_FILE
        outputs = {"log": str(log_path)}
        status_path = session_dir / rn.STATUS_FILE
        status = rn.read_json(status_path)
        handle_pid = spec.handle.get("pid") if spec.handle else None
        if status is None or status.get("state") not in rn.FINAL_STATES:
            pid = (status or {}).get("pid") or handle_pid or rn.read_pid(session_dir / rn.PID_FILE)
            alive = (
                self._child_running(pid)
                or rn.runner_alive(pid)
                or (status is None and rn.lock_held(session_dir / rn.LOCK_FILE))
            )
            if not alive:
                # it may have finished between our read and the liveness check: read again
                status = rn.read_json(status_path)
                if status is None:
                    return PlatformStatus(
                        PlatformState.FAILED,
                        [
                            msg.error(
                                msg.PLATFORM,
                                "the runner process died before it started",
                                log=log_path,
                                detail=rn.tail(log_path, 5),
                            )
                        ],
                        outputs=outputs,
                    )
                if status.get("state") not in rn.FINAL_STATES:
                    status = {
                        **status,
                        "state": "FAILED",
                        "error": {
                            "message": "the runner process died (it was killed or crashed) "
                            "before the session ended",
                        },
                    }
            elif status is None:
                return PlatformStatus(PlatformState.PREPARING, outputs=outputs)
        if status.get("output"):
            outputs["notebook"] = str(status["output"])
        if status.get("server_log"):
            outputs["server_log"] = str(status["server_log"])
        pid = status.get("pid")
        handle = None
        if pid and pid != handle_pid:
            handle = {"dir": str(session_dir), "pid": pid}
        return runner_status(status, handle=handle, outputs=outputs)

    async def stop(self, spec: SessionSpec) -> None:
        """SIGTERM the runner's process group, SIGKILL it after ``stop_timeout``. Idempotent."""
        session_dir = self.session_dir(spec)
        status = rn.read_json(session_dir / rn.STATUS_FILE) or {}
        pid = (
            status.get("pid")
            or (spec.handle.get("pid") if spec.handle else None)
            or rn.read_pid(session_dir / rn.PID_FILE)
        )
        if pid and rn.runner_alive(pid):
            self.log.info("stopping %s (runner pid %d)", spec.uuid, pid)
            rn.signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while time.monotonic() < deadline:
                self._reap()
                if not rn.runner_alive(pid):
                    break
                await asyncio.sleep(0.1)
            if rn.runner_alive(pid):
                self.log.warning("runner %d did not stop in time: killing it", pid)
                rn.signal_group(pid, signal.SIGKILL)
                for _ in range(50):
                    self._reap()
                    if not rn.runner_alive(pid):
                        break
                    await asyncio.sleep(0.1)
        self._reap()
        status = rn.read_json(session_dir / rn.STATUS_FILE) or status
        self._kill_server(status)
        if status and status.get("state") not in rn.FINAL_STATES:
            # The runner could not record its end: record it for it.
            rn.write_json_atomic(
                session_dir / rn.STATUS_FILE,
                {
                    **status,
                    "state": "FAILED",
                    "finished": rn.now_iso(),
                    "error": {"message": "the runner was killed before it could stop cleanly"},
                },
            )

    def _kill_server(self, status: dict[str, Any]) -> None:
        """Kill a server left behind by a runner that was killed (it has its own group)."""
        server_pid = status.get("server_pid")
        if not isinstance(server_pid, int) or not rn.pid_alive(server_pid):
            return
        try:
            if os.getsid(server_pid) != server_pid:
                return  # not the session leader we started: the pid was reused
        except OSError:
            return
        self.log.warning("killing the leftover server process group %d", server_pid)
        rn.signal_group(server_pid, signal.SIGKILL)

    async def release(self, spec: SessionSpec) -> None:
        """Nothing to delete: the session directory keeps the outputs and logs for the user.

        Removing old session directories is left to the operator (or a cron job). A server whose
        runner was killed is stopped here, so nothing keeps running after the session ended.
        """
        status = rn.read_json(self.session_dir(spec) / rn.STATUS_FILE)
        if status is not None and not rn.runner_alive(status.get("pid")):
            self._kill_server(status)
        self._reap()

    async def close(self) -> None:
        """The broker shuts down: runners keep running (they are adopted after a restart)."""
        self._children.clear()


def runner_status(
    status: dict[str, Any], *, handle: dict[str, Any] | None, outputs: dict[str, str]
) -> PlatformStatus:
    """A session's status as its runner recorded it in ``status.json``.

    Shared with the Slurm platform, whose jobs run the same runner: FAILED with the runner's
    error, AVAILABLE with a connector once a server has its URL (before that: PREPARING),
    else the recorded state.
    """
    state = str(status.get("state") or "PREPARING")
    if state == "FAILED":
        return PlatformStatus(
            PlatformState.FAILED, [_failure_message(status)], handle=handle, outputs=outputs
        )
    if state == "AVAILABLE" and status.get("url"):
        connector = SimpleSessionConnector(
            kind=JUPYTER_SERVER_CONNECTOR,
            protocol="HTTP",
            location=str(status["url"]),
            status=ConnectorStatus.AVAILABLE,
        )
        return PlatformStatus(
            PlatformState.AVAILABLE, connectors=[connector], handle=handle, outputs=outputs
        )
    try:
        platform_state = PlatformState(state)
    except ValueError:
        platform_state = PlatformState.PREPARING
    if platform_state == PlatformState.AVAILABLE:  # no URL yet: still starting
        platform_state = PlatformState.PREPARING
    return PlatformStatus(platform_state, handle=handle, outputs=outputs)


def _failure_message(status: dict[str, Any]) -> MessageItem:
    error = status.get("error") if isinstance(status.get("error"), dict) else {}
    assert isinstance(error, dict)
    if error.get("ename") and error.get("cell") is not None:
        text = f"cell {error['cell']} raised {error['ename']}"
        if error.get("evalue"):
            text += f": {error['evalue']}"
        item = msg.error(
            msg.EXECUTION_FAILED,
            text,
            cell=error["cell"],
            ename=error["ename"],
            evalue=error.get("evalue", ""),
            exec_count=error.get("exec_count"),
        )
    else:
        text = str(error.get("message") or "the session failed")
        values = {k: error[k] for k in ("exit_code", "ename", "evalue") if error.get(k) is not None}
        item = msg.error(msg.PLATFORM, text, **values)
    item.time = rn.parse_iso(status.get("finished")) or item.time
    return item
