"""The detached runner of one local session: ``python -m eb_broker.platforms.local_runner DIR``.

:class:`~eb_broker.platforms.local.LocalPlatform` writes ``DIR/spec.json`` (what to run) and
starts this program in a new session, so it keeps running when the broker stops or is killed.
The runner records every step in ``DIR/status.json`` (written atomically: a temporary file and
``os.replace``), which is all the broker reads to follow the session::

    {"state": "PREPARING" | "RUNNING" | "AVAILABLE" | "SUCCEEDED" | "FAILED",
     "pid": runner pid, "started": iso, "finished": iso, "error": {...}, "url": ..., "output": ...}

* ``kind: notebook`` — papermill executes the notebook into ``DIR/output.ipynb`` (RUNNING while
  executing); a cell error is recorded as FAILED with the cell index, ``ename`` and ``evalue``.
* ``kind: notebook-batch`` — the notebook once per input, a few at a time, each input with its
  own output notebook and status record (:mod:`eb_broker.platforms.batch_runner`).
* ``kind: server`` — a Jupyter server (or ``jupyterhub-singleuser``) on a free loopback port;
  AVAILABLE with its URL once it answers HTTP. The runner stays until SIGTERM (then it stops the
  server and records SUCCEEDED) or until the server dies by itself (FAILED, with its exit code
  and the end of ``DIR/server.log``).

SIGTERM is handled at any time: the runner stops its child and records the final state. Only one
runner can work on a directory: it holds an exclusive ``flock`` on ``DIR/runner.lock`` for its
whole life, and a second runner started for the same directory exits at once without touching
anything (so a session is never started twice, whatever happens to the broker).

This module only uses the standard library at import time (papermill is imported when a
notebook runs), and the helpers at the top are shared with the platform.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

log = logging.getLogger("eb_broker.local_runner")

# -- file names in a session directory ----------------------------------------------------------

SPEC_FILE = "spec.json"
STATUS_FILE = "status.json"
PID_FILE = "runner.pid"
LOCK_FILE = "runner.lock"
LOG_FILE = "runner.log"
OUTPUT_FILE = "output.ipynb"
SERVER_LOG_FILE = "server.log"

FINAL_STATES = frozenset({"SUCCEEDED", "FAILED"})

#: Set by the platform when it added the package root to PYTHONPATH; the runner restores the
#: original value before starting kernels and servers (``ORIG`` absent: PYTHONPATH was unset).
PYTHONPATH_MARK = "_EB_RUNNER_PYTHONPATH_ADDED"
PYTHONPATH_ORIG = "_EB_RUNNER_PYTHONPATH_ORIG"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def now_iso() -> str:
    """The current time as an ISO-8601 UTC instant."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(value: Any) -> datetime | None:
    """An ISO-8601 instant written by :func:`now_iso` (or any aware ISO text), else None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def record_launch_failure(session_dir: Path, message: str, **fields: Any) -> None:
    """Record in ``status.json`` that a session failed before its runner could start (the
    platform's next poll reports it like any other failure)."""
    now = now_iso()
    write_json_atomic(
        session_dir / STATUS_FILE,
        {
            "state": "FAILED",
            **fields,
            "started": now,
            "finished": now,
            "error": {"message": message},
        },
    )


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically (readers see the old or the new file)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            # one line: with ``indent``, json encodes in Python (several times slower), and a
            # batch's manifest is rewritten twice a second while its inputs finish
            fh.write(json.dumps(data, sort_keys=True, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_pid(path: Path) -> int | None:
    """The pid written in ``path`` (``runner.pid``), or None."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def write_pid(path: Path, pid: int) -> None:
    """Write ``pid`` to ``path`` atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(f"{pid}\n")
    os.replace(tmp, path)


def tail(path: Path, lines: int = 20, max_bytes: int = 16384) -> str:
    """The last ``lines`` lines of a log file (empty when missing), without colour codes."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    text = _ANSI.sub("", data.decode("utf-8", "replace"))
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (and is not a zombie, where /proc tells)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def runner_alive(pid: int | None) -> bool:
    """True when ``pid`` is a live local runner (its command line names this module).

    The command-line check guards against pid reuse after a reboot or a long downtime. Where
    there is no /proc, the pid's existence has to do.
    """
    if not pid or not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except FileNotFoundError:
        return not os.path.isdir("/proc/self")
    except OSError:
        return True
    if not cmdline:
        # Mid-exec: execve closes the close-on-exec fds (so Popen has returned) before the
        # kernel sets the new argv; a loaded machine can show that window to a reader.
        return True
    return b"local_runner" in cmdline


def lock_held(path: Path) -> bool:
    """True when a runner holds the exclusive lock ``path`` (``runner.lock``)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases our probe lock
    return False


LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_singleuser(command: list[str]) -> bool:
    """True when ``command`` starts JupyterHub's single-user server."""
    return any("jupyterhub-singleuser" in os.path.basename(part) for part in command[:3])


def server_argv(
    command: list[str], *, port: int, root_dir: str, allow_root: bool, ip: str = LOOPBACK
) -> list[str]:
    """The full command line of a Jupyter server on ``ip:port`` (loopback by default).

    The token is not on the command line (other users can read that): the runner passes it in
    the ``JUPYTER_TOKEN`` environment variable. ``port_retries=0`` makes the server fail rather
    than silently move to another port than the one we report.
    """
    argv = [
        *command,
        f"--ip={ip}",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--no-browser",
        f"--ServerApp.root_dir={root_dir}",
    ]
    if allow_root:
        argv.append("--allow-root")
    return argv


def server_urls(
    port: int,
    token: str | None,
    prefix: str = "/",
    *,
    ip: str = LOOPBACK,
    host: str = "",
    open_path: str = "",
) -> tuple[str, str]:
    """``(user URL, health-check URL)`` of a server listening on ``ip:port``.

    With a token (plain Jupyter server) the user URL carries it and the health check asks the
    authenticated ``api/status``; without (JupyterHub single-user, the hub authenticates) the
    URL is the service prefix and the health check asks ``api``. The user URL names ``host``
    (default: ``ip``, or this machine's name when the server listens on every address); the
    runner checks health over loopback when it can. ``open_path`` (e.g. ``lab/tree/a.ipynb``)
    is what the user URL opens, below the prefix.
    """
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    if not prefix.endswith("/"):
        prefix += "/"
    everywhere = ip in ("0.0.0.0", "::", "")
    user_host = url_host(host, ip)
    check_host = LOOPBACK if everywhere else ip
    base = f"http://{_bracket(user_host)}:{port}{prefix}"
    check = f"http://{_bracket(check_host)}:{port}{prefix}"
    if token:
        return f"{base}{open_path}?token={token}", f"{check}api/status?token={token}"
    return base + open_path, f"{check}api"


def open_path(notebook: str | None) -> str:
    """The URL path (below the server's prefix) that opens ``notebook`` (relative to the root
    directory) in JupyterLab; empty without a notebook or without JupyterLab."""
    if not notebook:
        return ""
    import importlib.util
    from urllib.parse import quote

    if importlib.util.find_spec("jupyterlab") is None:
        return ""
    return "lab/tree/" + quote(notebook.lstrip("/"))


def url_host(template: str, ip: str) -> str:
    """The host name users reach a server on this machine by: ``template`` with ``{hostname}``
    and ``{fqdn}`` filled in; empty: ``ip``, or this machine's name for a wildcard ``ip``."""
    if not template:
        template = "{fqdn}" if ip in ("0.0.0.0", "::", "") else ip
    return template.format(hostname=socket.gethostname(), fqdn=socket.getfqdn())


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def http_answers(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` gives any HTTP answer below 500."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def _children_of(pid: int) -> list[int]:
    """Direct child pids of ``pid`` (Linux /proc; empty elsewhere)."""
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(entry))
    return out


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (or to ``pid`` alone if it leads none)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- the runner ---------------------------------------------------------------------------------


class Stopped(BaseException):
    """Raised by the SIGTERM handler to interrupt a notebook execution."""


class Runner:
    """Runs the session described by ``DIR/spec.json`` and keeps ``DIR/status.json`` current."""

    def __init__(self, session_dir: Path) -> None:
        self.dir = session_dir
        self.status: dict[str, Any] = {"state": "PREPARING", "pid": os.getpid()}
        self.stop_requested = False
        self._interruptible = False
        self._lock_fd: int | None = None

    # -- status ----------------------------------------------------------------------------

    def update(self, **fields: Any) -> None:
        self.status.update(fields)
        self.status["updated"] = now_iso()
        write_json_atomic(self.dir / STATUS_FILE, self.status)

    def finish(self, state: str, error: dict[str, Any] | None = None, **fields: Any) -> int:
        self._interruptible = False
        if error is not None:
            fields["error"] = error
        self.update(state=state, finished=now_iso(), **fields)
        log.info("finished: %s %s", state, json.dumps(error) if error else "")
        return 0 if state == "SUCCEEDED" else 1

    # -- signals ---------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received signal %d: stopping", signum)
        self.stop_requested = True
        if self._interruptible:
            self._interruptible = False
            raise Stopped()

    # -- main ------------------------------------------------------------------------------

    def acquire_lock(self) -> bool:
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd  # held until the process exits
        return True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if not self.acquire_lock():
            log.warning("another runner already works on %s; exiting", self.dir)
            return 0
        existing = read_json(self.dir / STATUS_FILE)
        if existing is not None:
            # A runner ran here before (its lock is gone): never start the work a second time.
            log.warning("%s already has a status (%s); not starting again", self.dir, existing)
            return 0
        write_pid(self.dir / PID_FILE, os.getpid())
        self.update(state="PREPARING", started=now_iso())
        spec = read_json(self.dir / SPEC_FILE)
        if spec is None:
            return self.finish("FAILED", {"message": f"cannot read {self.dir / SPEC_FILE}"})
        self.status["kind"] = spec.get("kind")
        try:
            if self.stop_requested:
                return self._stopped(spec)
            if spec.get("kind") == "notebook":
                return self.run_notebook(spec)
            if spec.get("kind") == "server":
                return self.run_server(spec)
            if spec.get("kind") == "notebook-batch":
                from .batch_runner import BatchRun

                return BatchRun(self, spec).run()
            return self.finish("FAILED", {"message": f"unknown kind in spec: {spec.get('kind')}"})
        except Stopped:
            return self._stopped(spec)
        except Exception as exc:
            log.exception("runner failed")
            return self.finish(
                "FAILED",
                {
                    "message": f"the runner failed: {type(exc).__name__}: {exc}",
                    "ename": type(exc).__name__,
                    "evalue": str(exc),
                },
            )

    def _stopped(self, spec: dict[str, Any]) -> int:
        self._kill_children()
        if spec.get("kind") == "server":
            return self.finish("SUCCEEDED", stopped=True)
        return self.finish(
            "FAILED", {"message": "stopped before the notebook finished"}, stopped=True
        )

    def _kill_children(self) -> None:
        """Terminate what we started (a kernel lives in its own process group)."""
        children = _children_of(os.getpid())
        for pid in children:
            signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(pid_alive(p) for p in children):
            for pid in children:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        for pid in children:
            if pid_alive(pid):
                signal_group(pid, signal.SIGKILL)

    # -- notebooks -------------------------------------------------------------------------

    def run_notebook(self, spec: dict[str, Any]) -> int:
        import papermill

        source = spec["notebook"]
        output = spec.get("output") or str(self.dir / OUTPUT_FILE)
        self.update(state="RUNNING", output=output)
        self._interruptible = True
        if self.stop_requested:
            raise Stopped()
        # the kernel inherits it (e.g. EB_DATA_<NAME>: where the staged data is)
        os.environ.update({str(k): str(v) for k, v in (spec.get("environment") or {}).items()})
        try:
            execute_papermill(
                lambda: self.stop_requested,
                input_path=source,
                output_path=output,
                parameters=spec.get("parameters") or None,
                kernel_name=spec.get("kernel_name") or None,
                language=kernel_language(spec.get("kernel_name")),
                cwd=spec.get("cwd") or str(self.dir),
                log_output=False,
                progress_bar=False,
                start_timeout=int(spec.get("kernel_start_timeout") or 60),
            )
        except papermill.PapermillExecutionError as exc:
            self._interruptible = False
            return self.finish("FAILED", notebook_error(exc, source, output))
        except (Stopped, KeyboardInterrupt):
            raise Stopped() from None
        except Exception as exc:
            self._interruptible = False
            log.exception("papermill failed")
            return self.finish(
                "FAILED",
                {
                    "message": f"the notebook could not be executed: {type(exc).__name__}: {exc}",
                    "ename": type(exc).__name__,
                    "evalue": str(exc),
                },
            )
        self._interruptible = False
        return self.finish("SUCCEEDED")

    # -- servers ---------------------------------------------------------------------------

    def run_server(self, spec: dict[str, Any]) -> int:
        command = list(spec.get("command") or ["jupyter", "server"])
        hub = bool(spec.get("hub", is_singleuser(command)))
        root_dir = spec.get("root_dir") or str(self.dir)
        start_timeout = float(spec.get("start_timeout") or 60)
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (spec.get("environment") or {}).items()})
        server_log = self.dir / SERVER_LOG_FILE
        self.status["server_log"] = str(server_log)
        ip = str(spec.get("ip") or LOOPBACK)
        for attempt in range(3):
            port = free_port(ip if ip not in ("", "::") else "0.0.0.0")
            token = None if hub else secrets.token_urlsafe(24)
            if token:
                env["JUPYTER_TOKEN"] = token
            prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/") if hub else "/"
            url, health = server_urls(
                port,
                token,
                prefix,
                ip=ip,
                host=str(spec.get("host") or ""),
                open_path=open_path(spec.get("notebook")),
            )
            argv = server_argv(
                command, port=port, root_dir=root_dir, allow_root=os.geteuid() == 0, ip=ip
            )
            log.info("starting server: %s", " ".join(argv))
            with server_log.open("ab") as out:
                proc = subprocess.Popen(
                    argv,
                    cwd=root_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.update(state="PREPARING", server_pid=proc.pid, port=port)
            outcome = self._wait_until_up(proc, health, start_timeout)
            if outcome == "up":
                break
            if outcome == "stopped":
                self._stop_server(proc, spec)
                return self.finish("SUCCEEDED", stopped=True, exit_code=proc.returncode)
            if outcome == "timeout":
                self._stop_server(proc, spec)
                return self.finish(
                    "FAILED",
                    {
                        "message": f"the server did not answer within {start_timeout:g} s",
                        "log": tail(server_log),
                    },
                )
            # it exited: a lost race for the port is worth another try
            log_tail = tail(server_log)
            if attempt < 2 and "already in use" in log_tail.lower():
                log.warning("port %d was taken; trying another one", port)
                continue
            return self.finish(
                "FAILED",
                {
                    "message": f"the server exited with code {proc.returncode} before it answered",
                    "exit_code": proc.returncode,
                    "log": log_tail,
                },
            )
        self.update(state="AVAILABLE", url=url)
        while proc.poll() is None and not self.stop_requested:
            time.sleep(0.25)
        if self.stop_requested:
            self._stop_server(proc, spec)
            return self.finish("SUCCEEDED", stopped=True, exit_code=proc.returncode)
        return self.finish(
            "FAILED",
            {
                "message": f"the server exited with code {proc.returncode}",
                "exit_code": proc.returncode,
                "log": tail(server_log),
            },
        )

    def _wait_until_up(self, proc: subprocess.Popen[bytes], health: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            if self.stop_requested:
                return "stopped"
            if proc.poll() is not None:
                return "exited"
            if http_answers(health):
                return "up"
            if time.monotonic() > deadline:
                return "timeout"
            time.sleep(0.25)

    def _stop_server(self, proc: subprocess.Popen[bytes], spec: dict[str, Any]) -> None:
        """SIGTERM the server's process group; SIGKILL it when it does not end in time."""
        if proc.poll() is None:
            signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=float(spec.get("stop_timeout") or 5))
        except subprocess.TimeoutExpired:
            log.warning("the server did not stop in time: killing it")
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        # whatever else is left in its process group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


#: How often a notebook run is tried when its kernel dies before it answers (no cell ran).
KERNEL_START_ATTEMPTS = 3


def kernel_never_started(exc: BaseException) -> bool:
    """Whether ``exc`` says the kernel died or hung before its first reply (``kernel_info``):
    nothing of the notebook ran, so running it again is safe. Seen when several kernels start
    at once (a batch's workers) and one loses the race for its TCP ports."""
    text = str(exc)
    return "kernel_info" in text or "Kernel didn't respond" in text


def execute_papermill(stopping: Callable[[], bool], **kwargs: Any) -> Any:
    """``papermill.execute_notebook(**kwargs)``, tried again (up to
    :data:`KERNEL_START_ATTEMPTS` times) when the kernel never started — unless ``stopping()``
    says the runner is being stopped (its kernels are killed on purpose then); any other
    failure, and a cell's error, is raised as it is."""
    import papermill

    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            return papermill.execute_notebook(**kwargs)
        except papermill.PapermillExecutionError:
            raise
        except Exception as exc:
            last = attempt == KERNEL_START_ATTEMPTS
            if last or stopping() or not kernel_never_started(exc):
                raise
            log.warning("the kernel did not start (%s): trying again (%d)", exc, attempt + 1)
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def kernel_language(kernel_name: str | None) -> str | None:
    """The language of an installed kernel (papermill needs it when the notebook has none)."""
    if not kernel_name:
        return None
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        language = KernelSpecManager().get_kernel_spec(kernel_name).language
    except Exception:
        return None
    return str(language) if language else None


def notebook_error(exc: Any, source: str, output: str) -> dict[str, Any]:
    """The ``error`` record of a papermill execution error.

    ``cell`` is the 0-based index of the failing cell in the *submitted* notebook (papermill's
    ``cell_index`` counts its injected-parameters cell too); ``exec_count`` is the ``In [n]``
    number in the output notebook.
    """
    index = getattr(exc, "cell_index", None)
    cell = _source_cell_index(index, source, output) if isinstance(index, int) else None
    ename = str(getattr(exc, "ename", "") or type(exc).__name__)
    evalue = str(getattr(exc, "evalue", "") or "")
    trace = [_ANSI.sub("", str(line)) for line in (getattr(exc, "traceback", None) or [])]
    text = "\n".join(trace)
    where = f"cell {cell}" if cell is not None else "a cell"
    return {
        "message": f"{where} raised {ename}: {evalue}" if evalue else f"{where} raised {ename}",
        "cell": cell,
        "exec_count": getattr(exc, "exec_count", None),
        "ename": ename,
        "evalue": evalue,
        "traceback": text[-4000:],
    }


def _source_cell_index(index: int, source: str, output: str) -> int:
    """Map papermill's index (in the executed notebook) to the submitted notebook's index."""
    executed = read_json(Path(output)) or {}
    cells = [
        c
        for c in executed.get("cells", [])
        if "papermill-error-cell-tag" not in (c.get("metadata", {}).get("tags") or [])
    ]
    if 0 <= index < len(cells):
        cell_id = cells[index].get("id")
        submitted = read_json(Path(source)) or {}
        for i, c in enumerate(submitted.get("cells", [])):
            if cell_id and c.get("id") == cell_id:
                return i
        injected = sum(
            1
            for c in cells[:index]
            if "injected-parameters" in (c.get("metadata", {}).get("tags") or [])
        )
        return index - injected
    return index


def _restore_pythonpath() -> None:
    """Undo the PYTHONPATH entry the platform added to find this package."""
    if os.environ.pop(PYTHONPATH_MARK, None) is None:
        return
    original = os.environ.pop(PYTHONPATH_ORIG, None)
    if original is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = original


def _prepend_interpreter_bin() -> None:
    """Put the interpreter's bin directory first on PATH (``jupyter`` of the same environment)."""
    bin_dir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bin_dir and path.split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + (os.pathsep + path if path else "")


def main(argv: list[str] | None = None, stream: TextIO | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m eb_broker.platforms.local_runner SESSION_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(
        stream=stream or sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _restore_pythonpath()
    _prepend_interpreter_bin()
    session_dir = Path(args[0]).resolve()
    if not session_dir.is_dir():
        print(f"no such directory: {session_dir}", file=sys.stderr)
        return 2
    return Runner(session_dir).run()


#: Modules a runner process does without, though papermill would import them when installed:
#: jsonschema's optional format checkers (``rfc3987_syntax`` compiles a grammar at import: 1.6 s;
#: the others ~0.1 s), which notebook validation never uses, and papermill's S3 and HDFS
#: handlers (boto3, pyarrow with numpy: 0.15 s), which a runner never uses: it reads and
#: writes local paths. The kernels are processes of their own and do not inherit this.
_UNUSED_IN_RUNNER = (
    "rfc3987_syntax",
    "isoduration",
    "arrow",
    "fqdn",
    "webcolors",
    "uri_template",
    "jsonpointer",
    "rfc3339_validator",
    "rfc3986_validator",
    "boto3",
    "botocore",
    "pyarrow",
)


def _skip_slow_imports() -> None:
    """Keep a runner's start quick (papermill imports in 0.3 s instead of 2.2 s here): tell
    Python the modules of ``_UNUSED_IN_RUNNER`` are absent — their importers all treat that as
    an optional dependency that is not installed. The runner is a process of its own, so
    nothing else is affected."""
    for name in _UNUSED_IN_RUNNER:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


if __name__ == "__main__":
    _skip_slow_imports()
    sys.exit(main())
