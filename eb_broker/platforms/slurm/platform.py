"""The Slurm platform: brokered notebooks, Jupyter servers and containers on a Slurm cluster.

* Capacity comes from the nodes (``sinfo --json``); foreign jobs and reservations
  (``squeue --json``, ``scontrol show reservation``) go on the broker's timeline as external
  usage, so offers never collide with them.
* Precise slots: on accept, :meth:`SlurmPlatform.book` creates an advance reservation
  ``<prefix><uuid>`` for the user's Unix account, the cores and the slot; at start minus
  preparation :meth:`~SlurmPlatform.launch` submits the job with ``--reservation`` and
  ``--begin``. Unaccepted offers create nothing in Slurm.
* Queue estimates (flexible requests): :meth:`SlurmPlatform.estimate` asks
  ``sbatch --test-only``; an accepted estimate is submitted at once with ``--begin`` (the
  window's start) and ``--deadline`` (its latest start + the duration), without a reservation.
* The job runs the broker's session runner (:mod:`eb_broker.platforms.local_runner`) on the
  node, in ``<work_dir>/<uuid>/`` on the shared file system: notebooks (papermill), notebook
  batches (one job per chunk of inputs) and Jupyter servers are handled and reported exactly as
  on the local platform.
* :meth:`~SlurmPlatform.poll` makes one ``squeue --json`` call for every session; while
  slurmctld is unreachable sessions stay as they are (``UNKNOWN``) and new requests get NO
  with ``urn:platform-unavailable``.

See ``docs/platforms/slurm.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pwd
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Enum, Float, List, Unicode, default

from eb_sdk.model import (
    DockerContainer,
    ExecutionRequest,
    JupyterNotebook,
    JupyterServer,
    MessageItem,
    NotebookBatch,
    SimpleComputeResource,
    SingularityContainer,
)
from eb_sdk.model import messages as msg
from eb_sdk.model.kinds import kind_label

from ...clock import utcnow
from ...scheduling import Capacity, Demand, Resources, Timeline
from .. import local_runner as rn
from .._availability import TracksAvailability
from ..base import EstimatedSlot, Platform, PlatformState, PlatformStatus, SessionSpec
from ..batch import batch_problems, with_batch_progress
from ..local import (
    LaunchError,
    LocalPlatform,
    _failure_message,
    _location_scheme,
    runner_status,
)
from .cli import SlurmCLI, SlurmClient
from .containers import EngineProbe
from .objects import (
    FAILED_STATES,
    ClusterView,
    Job,
    JobRequest,
    Node,
    Reservation,
    ReservationRequest,
    SlurmError,
    SlurmUnavailable,
    batch_script,
    earliest_start,
    simulate_queue,
    time_limit_minutes,
)

#: The directory holding the ``eb_broker`` package (put on the runner's PYTHONPATH).
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])
JOB_ID_FILE = "slurm_job_id"
RESERVATION_FILE = "reservation.json"
SCRIPT_FILE = "job.sh"
_MIB_PER_GIB = 1024


class SlurmPlatform(TracksAvailability, Platform):
    """Runs sessions as Slurm batch jobs, in advance reservations or from the queue."""

    name = "slurm"
    unavailable_log = "Slurm is unavailable: %s"
    available_log = "slurmctld answers"
    unavailable_error = SlurmUnavailable

    # -- where the cluster is -----------------------------------------------------------------

    slurm_conf = Unicode(
        "",
        config=True,
        help=(
            "slurm.conf of the cluster: set as SLURM_CONF for the Slurm commands. Empty: the "
            "broker's own SLURM_CONF, or Slurm's default (/etc/slurm/slurm.conf)."
        ),
    )
    bin_dir = Unicode(
        "",
        config=True,
        help="Directory of sbatch, squeue, sinfo, scontrol and scancel (empty: found on PATH).",
    )
    partition = Unicode(
        "",
        config=True,
        help=(
            "Partition the broker books and submits to. Its nodes are the broker's capacity. "
            "Empty: every node counts, and jobs go to the cluster's default partition."
        ),
    )
    account = Unicode(
        "", config=True, help="Slurm account for jobs and reservations (empty: the user's default)."
    )
    reservation_prefix = Unicode(
        "eb-",
        config=True,
        help=(
            "Prefix of the names of the reservations and jobs this broker creates "
            "(<prefix><session uuid>). Everything else on the cluster is foreign usage. Give "
            "each broker that books on one cluster its own prefix."
        ),
    )
    users = Dict(
        value_trait=Unicode(),
        default_value={},
        config=True,
        help=(
            "Broker user → Unix account on the cluster, e.g. {'alice': 'asmith'}. Jobs run and "
            "reservations are made for that account."
        ),
    )
    default_user = Unicode(
        "",
        config=True,
        help=(
            "Unix account for broker users not in 'users'. Empty: the account with the broker "
            "user's own name. (One service account for everybody: set it here.)"
        ),
    )
    work_dir = Unicode(
        "./eb-work",
        config=True,
        help=(
            "Parent of the session directories (<work_dir>/<uuid>/: spec, status, log and the "
            "output notebook). Must be on a file system the nodes see at the same path. "
            "eb-broker sets it to its --EBBroker.work_dir unless configured here."
        ),
    )
    python = Unicode(
        config=True,
        help=(
            "Python on the nodes that has eb_broker, papermill and jupyter_server installed "
            "(default: the broker's own interpreter, sys.executable — right when the broker's "
            "environment is on the shared file system)."
        ),
    )
    package_path = Unicode(
        config=True,
        help=(
            "Directory put on the runner's PYTHONPATH so the nodes find eb_broker (default: "
            "the directory this eb_broker is in). Empty: rely on 'python' having it installed."
        ),
    )
    sbatch_args = List(
        Unicode(),
        default_value=[],
        config=True,
        help="Extra sbatch options for every session, e.g. ['--qos=interactive'].",
    )
    container_engine = Unicode(
        "auto",
        config=True,
        help=(
            "How SingularityContainer executables run: 'auto' (default) asks the nodes with "
            "one small probe job which of container_engine_candidates they have (cached in "
            "<work_dir>/.eb-probe/ for container_probe_max_age); a command or path "
            "('apptainer', '/opt/apptainer/bin/apptainer') says so without a probe; empty: "
            "containers are answered with urn:not-supported."
        ),
    )
    container_engine_candidates = List(
        Unicode(),
        default_value=["apptainer", "singularity"],
        config=True,
        help="Commands (or paths) the 'auto' probe looks for on the nodes, in this order.",
    )
    container_probe_max_age = Float(
        86400.0,
        config=True,
        help="Seconds a probe's answer is used before the nodes are asked again.",
    )

    # -- timing ---------------------------------------------------------------------------------

    preparation_seconds = Float(
        30.0,
        config=True,
        help=(
            "Seconds before a session's start at which its job is submitted (scheduling, "
            "starting the runner); the offers plan them in."
        ),
    )
    refresh_interval = Float(
        15.0,
        config=True,
        help=(
            "Seconds between re-reads of nodes, jobs and reservations (capacity, foreign usage, "
            "whether slurmctld answers)."
        ),
    )
    poll_interval = Float(
        2.0,
        config=True,
        help=(
            "Least seconds between two squeue calls for the sessions' status (one call serves "
            "every session; squeue --json lists every job of the cluster)."
        ),
    )
    command_timeout = Float(
        30.0,
        config=True,
        help="Seconds a Slurm command may take before slurmctld counts as unreachable.",
    )
    stop_timeout = Float(
        30.0,
        config=True,
        help=(
            "Seconds to wait after scancel for a job to end (its runner records the final "
            "status on SIGTERM; Slurm sends SIGKILL after its KillWait)."
        ),
    )

    # -- queue estimates ---------------------------------------------------------------------

    estimates = Bool(
        True,
        config=True,
        help="Offer queue estimates (sbatch --test-only) for flexible requests.",
    )
    estimate_min_window = Float(
        1800.0,
        config=True,
        help=(
            "A requested start window at least this wide (seconds) is flexible and also gets a "
            "queue estimate. Requests without a window (as soon as possible) always do."
        ),
    )
    estimator = Enum(
        ["queue", "slurm"],
        default_value="queue",
        config=True,
        help=(
            "How the expected start of a queue estimate is computed. 'queue': Slurm's queue "
            "(squeue --json) simulated core by core: running jobs until their time limits, "
            "pending jobs in priority order, reservations. 'slurm': sbatch --test-only's own "
            "answer, which on Slurm 22.05 plans whole nodes per pending job and is far too "
            "late for small jobs (benchmarks/RESULTS.md). Either way sbatch --test-only must "
            "accept the job, or no estimate is offered."
        ),
    )
    estimate_max_wait = Float(
        86400.0,
        config=True,
        help=(
            "For requests without a start window: a queue estimate promises a start before "
            "now + this (seconds); Slurm cancels the job (--deadline) when it cannot."
        ),
    )

    # -- what runs (as on the local platform) -------------------------------------------------

    server_command = List(
        Unicode(),
        default_value=["jupyter", "server"],
        config=True,
        help="Command of a JupyterServer session that names none (see LocalPlatform).",
    )
    kernel_name = Unicode(
        "python3",
        config=True,
        help="Kernel that executes notebooks unless the request names one (jeb:kernel).",
    )
    notebook_cwd = Enum(
        ["notebook", "session"],
        default_value="notebook",
        config=True,
        help="Working directory of executed notebooks: the notebook's or the session's.",
    )
    server_start_timeout = Float(
        120.0, config=True, help="Seconds a Jupyter server may take to answer HTTP."
    )
    server_ip = Unicode(
        "127.0.0.1",
        config=True,
        help=(
            "Address a session's Jupyter server listens on, on its node. 127.0.0.1 (default): "
            "reachable from that node only (right for one-machine clusters and for sites that "
            "tunnel). '0.0.0.0': every address of the node, so users and the broker reach it "
            "at the host name in server_host (token-protected, or by the hub's OAuth)."
        ),
    )
    server_host = Unicode(
        "",
        config=True,
        help=(
            "Host name in a server's connector URL, filled in on the node: '{hostname}' and "
            "'{fqdn}' are replaced, e.g. '{hostname}.ib.example.org'. Empty: server_ip, or "
            "the node's fully qualified name when server_ip is 0.0.0.0."
        ),
    )
    kernel_start_timeout = Float(
        120.0, config=True, help="Seconds a notebook's kernel may take to start."
    )
    batch_workers_per_core = Float(
        2.0,
        config=True,
        help=(
            "Inputs of a notebook batch that run at once in its job, per core (see "
            "LocalPlatform.batch_workers_per_core; a request may ask for fewer)."
        ),
    )

    @default("python")
    def _python_default(self) -> str:
        return sys.executable

    @default("package_path")
    def _package_path_default(self) -> str:
        return _PACKAGE_ROOT

    def __init__(self, client: SlurmClient | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._client = client
        self._nodes: list[Node] = []
        self._jobs: list[Job] = []
        self._jobs_at = float("-inf")
        self._reservations: list[Reservation] = []
        self._loaded = False
        self._available = False
        self._reason = "the cluster has not been asked yet"
        #: slots the broker holds for our queued (estimate) jobs, by session uuid
        self._holds: dict[str, tuple[datetime, datetime]] = {}
        self._queue_cache: tuple[list[Job], Timeline] | None = None
        self._probe: EngineProbe | None = None
        #: cores our reservations hold beyond their bookings (for memory), by name
        self._padding: dict[str, int] = {}

    @property
    def client(self) -> SlurmClient:
        if self._client is None:
            self._client = SlurmCLI(
                bin_dir=self.bin_dir, slurm_conf=self.slurm_conf, timeout=self.command_timeout
            )
        return self._client

    @property
    def available(self) -> bool:
        """Did slurmctld answer the last time it was asked?"""
        self._ensure_loaded()
        return self._available

    # -- the cluster's state --------------------------------------------------------------------

    def _view(self) -> ClusterView:
        return ClusterView(
            self._nodes,
            self.partition,
            self.reservation_prefix,
            holds=dict(self._holds),
            padding=dict(self._padding),
        )

    def _ensure_loaded(self) -> None:
        """Read the cluster once, synchronously (the broker needs its size at start-up)."""
        if self._loaded:
            return
        self._loaded = True
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, self.refresh()).result()

    async def refresh(self) -> None:
        """Re-read nodes, jobs and reservations (one call each, concurrently)."""
        self._loaded = True
        # every call runs to its end (no orphaned commands when one of them fails)
        nodes, jobs, reservations = await asyncio.gather(
            self.client.nodes(),
            self.client.jobs(),
            self.client.reservations(),
            return_exceptions=True,
        )
        for result in (nodes, jobs, reservations):
            if isinstance(result, SlurmUnavailable):
                self._mark_unavailable(str(result))
                return
        for result in (nodes, jobs, reservations):
            if isinstance(result, BaseException):
                self.log.error("reading the cluster's state failed: %s", result)
                return
        assert isinstance(nodes, list) and isinstance(jobs, list)
        assert isinstance(reservations, list)
        self._nodes, self._reservations = nodes, reservations
        self._load_padding()
        self._set_jobs(jobs)
        self._mark_available()
        await self._probe_engine(jobs)

    # -- the container engine ---------------------------------------------------------------

    @property
    def engine(self) -> str:
        """The container engine of the nodes ('' when there is none, or not known yet)."""
        if self.container_engine != "auto":
            return self.container_engine
        return (self._probe.engine or "") if self._probe is not None else ""

    def _engine_probe(self) -> EngineProbe:
        if self._probe is None:
            self._probe = EngineProbe(
                self._work_path() / ".eb-probe",
                tuple(self.container_engine_candidates),
                max_age=self.container_probe_max_age,
            )
        return self._probe

    async def _probe_engine(self, jobs: list[Job]) -> None:
        """Ask the nodes for their container engine (``container_engine = "auto"``)."""
        if self.container_engine != "auto" or not self.container_engine_candidates:
            return
        probe = self._engine_probe()
        if not probe.due():
            return
        template = JobRequest(
            name=f"{self.reservation_prefix}probe",
            cores=1,
            memory_mb=0,
            time_limit=1,
            partition=self.partition,
            account=self.account,
        )
        try:
            await probe.step(self.client, jobs, template)
        except SlurmError as exc:  # refused (limits, a bad partition): say so, try later
            probe.note = f"the probe job could not be submitted: {exc}"
            self.log.warning("container engine probe: %s", probe.note)

    def _set_jobs(self, jobs: list[Job]) -> None:
        self._jobs = jobs
        self._jobs_at = time.monotonic()

    async def _current_jobs(self, *, fresh: bool = False) -> list[Job]:
        """Jobs from one ``squeue --json`` (reused for ``poll_interval`` unless ``fresh``)."""
        if fresh or time.monotonic() - self._jobs_at >= self.poll_interval:
            with self._calling_api():
                jobs = await self.client.jobs()
            self._set_jobs(jobs)
        return self._jobs

    def capacity(self) -> Capacity:
        self._ensure_loaded()
        cores, memory = self._view().capacity()
        return Capacity(Resources(cores=cores, memory_gib=memory))

    def external_usage(self) -> list[tuple[str, datetime, datetime, Resources]]:
        self._ensure_loaded()
        # pending jobs where the offers' own queue model (estimator) expects them
        planned = self._queue(self._jobs) if self.estimator == "queue" else None
        usage = self._view().usage(self._jobs, self._reservations, utcnow(), planned=planned)
        return [
            (u.key, u.start, u.end, Resources(cores=u.cores, memory_gib=u.memory_gib))
            for u in usage
        ]

    def executable_kinds(self) -> list[str]:
        kinds = [JupyterNotebook.KIND, JupyterServer.KIND, NotebookBatch.KIND]
        if self.engine:
            kinds.append(SingularityContainer.KIND)
        return kinds

    # -- requests ---------------------------------------------------------------------------------

    def check(self, request: ExecutionRequest) -> list[MessageItem]:
        problems: list[MessageItem] = []
        if not self.available:
            problems.append(
                msg.error(
                    msg.PLATFORM_UNAVAILABLE,
                    "the Slurm controller (slurmctld) cannot be reached, so no offers can be "
                    f"made now; please try again later ({self._reason})",
                )
            )
            return problems

        def no(message: str, **values: Any) -> None:
            problems.append(msg.error(msg.NOT_SUPPORTED, message, **values))

        executable = request.executable
        if executable is None:
            no("the request has no executable: say what to run (a notebook or a Jupyter server)")
        elif isinstance(executable, DockerContainer):
            no(
                "no Docker on this Slurm cluster: use a Singularity/Apptainer image",
                executable=executable.kind,
            )
        elif isinstance(executable, SingularityContainer):
            if not self.engine:
                no(self._no_engine_reason(), executable=executable.kind)
            elif not executable.location:
                no("the container has no location: say where the image is")
        elif executable.kind not in self.executable_kinds():
            no(
                f"the Slurm platform cannot run executables of kind {executable.kind} "
                f"({kind_label(executable.kind)})",
                executable=executable.kind,
            )
        elif isinstance(executable, JupyterNotebook):
            if not executable.location:
                no("the notebook has no location: say where the notebook is")
            elif _location_scheme(executable.location) not in ("", "file"):
                no(
                    "the Slurm platform reads notebooks from paths on the shared file system "
                    f"(or file:// URLs), not {_location_scheme(executable.location)}://",
                    location=executable.location,
                )
        elif isinstance(executable, NotebookBatch):
            problems += batch_problems(executable, "Slurm")
        compute = request.compute
        if isinstance(compute, SimpleComputeResource):
            if compute.accelerators:
                no(
                    "accelerators (Slurm GRES) are not offered by this broker yet",
                    accelerators=", ".join(a.pool_name for a in compute.accelerators),
                )
            node_cores, node_memory = self._view().largest_node()
            cores = compute.cores.min if compute.cores and compute.cores.min else 0
            memory = compute.memory.min if compute.memory and compute.memory.min else 0
            if node_cores and cores > node_cores:
                problems.append(
                    msg.error(
                        msg.RESOURCE_LIMIT,
                        f"a session runs on one node, and the largest node here has "
                        f"{node_cores} cores (asked for at least {cores})",
                        requested=cores,
                        limit=node_cores,
                    )
                )
            if node_memory and memory > node_memory:
                problems.append(
                    msg.error(
                        msg.RESOURCE_LIMIT,
                        f"a session runs on one node, and the largest node here has "
                        f"{node_memory} GiB of memory (asked for at least {memory} GiB)",
                        requested=memory,
                        limit=node_memory,
                    )
                )
        return problems

    def _no_engine_reason(self) -> str:
        probe = self._probe if self.container_engine == "auto" else None
        if probe is None:
            return "no Singularity/Apptainer on this Slurm cluster's nodes"
        if probe.engine is None:
            waiting = f" (Slurm job {probe.job[0]})" if probe.job else ""
            return (
                "whether this Slurm cluster's nodes have Singularity/Apptainer is not known "
                f"yet: a probe job asks them{waiting}; please try again shortly"
                + (f" ({probe.note})" if probe.note else "")
            )
        return f"no Singularity/Apptainer on this Slurm cluster's nodes ({probe.note})"

    def preparation(self, request: ExecutionRequest) -> timedelta:
        return timedelta(seconds=self.preparation_seconds)

    def staging_dir(self) -> str | None:
        """``<work_dir>/.eb-staging``: on the shared file system, so every node sees it."""
        return str(self._work_path() / ".eb-staging")

    async def estimate(
        self, request: ExecutionRequest, demand: Demand, now: datetime
    ) -> list[EstimatedSlot]:
        """One queue estimate for a flexible request (see ``estimator``).

        The interval is the requested window: not before its start (``--begin``), and Slurm
        cancels the job when it cannot start by its end (``--deadline``). The expected start
        comes from the simulated queue or from ``sbatch --test-only``.
        """
        if not self.estimates or not self.available:
            return []
        earliest_allowed = now + demand.preparation
        window: tuple[datetime, datetime] | None = None
        if not demand.windows:
            window = (earliest_allowed, now + timedelta(seconds=self.estimate_max_wait))
        else:
            for w in sorted(demand.windows, key=lambda w: w.start):
                wide = (w.end - w.start).total_seconds() >= self.estimate_min_window
                if wide and w.end > earliest_allowed:
                    window = (max(w.start, earliest_allowed), w.end)
                    break
        if window is None:
            return []
        begin = _ceil_second(window[0])
        latest = window[1]
        resources = Resources(
            cores=max(1, demand.minimum.cores), memory_gib=demand.minimum.memory_gib
        )
        limit = time_limit_minutes(demand.duration, round_up=True)
        job = JobRequest(
            name=f"{self.reservation_prefix}estimate",
            cores=resources.cores,
            memory_mb=resources.memory_gib * _MIB_PER_GIB,
            time_limit=limit,
            begin=begin,
            partition=self.partition,
            account=self.account,
        )
        try:
            # Slurm's own answer: also whether it would take the job at all (limits, QOS)
            answer = await self.client.test_only(job)
            queue = self._queue(await self._current_jobs()) if self.estimator == "queue" else None
        except SlurmUnavailable as exc:
            self._mark_unavailable(str(exc))
            raise
        except SlurmError as exc:
            self.log.info("no queue estimate: %s", exc)
            return []
        slurm_says = max(answer.start, begin)
        expected, basis = slurm_says, "Slurm's estimate (sbatch --test-only)"
        if queue is not None:
            simulated = earliest_start(
                self._view(),
                queue,
                cores=job.cores,
                memory_mb=job.memory_mb,
                duration=timedelta(minutes=limit),
                begin=begin,
                now=now,
                horizon=latest - now + timedelta(seconds=1),
            )
            if simulated is not None:
                expected = simulated
                basis = (
                    "Slurm's queue, simulated core by core (running jobs until their time "
                    "limits, pending jobs by priority, reservations); Slurm's own estimate "
                    f"(sbatch --test-only): {slurm_says.isoformat()}"
                )
        if expected > latest:
            return []  # it would not start within the window: no estimate to offer
        return [
            EstimatedSlot(
                earliest=begin,
                expected=expected,
                latest=latest,
                duration=demand.duration,
                resources=resources,
                basis=f"{basis}; queued, no reservation",
            )
        ]

    def _queue(self, jobs: list[Job]) -> Timeline:
        """The simulated queue for this job listing (rebuilt only when the listing changed)."""
        if self._queue_cache is None or self._queue_cache[0] is not jobs:
            timeline = simulate_queue(self._view(), jobs, self._reservations, utcnow())
            self._queue_cache = (jobs, timeline)
        return self._queue_cache[1]

    # -- users and directories ----------------------------------------------------------------

    def unix_user(self, owner: str) -> str:
        """The Unix account a broker user's jobs run as."""
        return self.users.get(owner) or self.default_user or owner

    def _account_of(self, owner: str) -> pwd.struct_passwd:
        user = self.unix_user(owner)
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise SlurmError(
                f"no Unix account {user!r} for broker user {owner!r} on this cluster "
                "(configure SlurmPlatform.users or default_user)"
            ) from None
        if entry.pw_uid != os.geteuid() and os.geteuid() != 0:
            raise SlurmError(
                f"the broker runs as uid {os.geteuid()} and cannot submit jobs as {user!r}: "
                "run it as root, or map users to its own account"
            )
        return entry

    def session_dir(self, spec: SessionSpec) -> Path:
        recorded = spec.handle.get("dir") if spec.handle else None
        if recorded:
            return Path(recorded)
        if not spec.uuid or "/" in spec.uuid or spec.uuid in (".", ".."):
            raise ValueError(f"not a usable session uuid: {spec.uuid!r}")
        return self._work_path() / spec.uuid

    def _work_path(self) -> Path:
        return Path(self.work_dir).expanduser().absolute()

    def job_name(self, spec: SessionSpec) -> str:
        return f"{self.reservation_prefix}{spec.uuid}"

    def _runner(self) -> LocalPlatform:
        """The local platform's runner-spec builder, configured like this platform."""
        return LocalPlatform(
            work_dir=self.work_dir,
            server_command=list(self.server_command),
            kernel_name=self.kernel_name,
            notebook_cwd=self.notebook_cwd,
            server_start_timeout=self.server_start_timeout,
            kernel_start_timeout=self.kernel_start_timeout,
            batch_workers_per_core=self.batch_workers_per_core,
            stop_timeout=self.stop_timeout,
            python=self.python,
            cores=1,
            memory_gib=1,
            storage_gib=0,
        )

    # -- life cycle ---------------------------------------------------------------------------

    async def book(self, spec: SessionSpec) -> dict[str, Any]:
        """Create the advance reservation of an accepted precise slot (idempotent).

        It holds enough cores for the session's memory too (see
        :meth:`ClusterView.cores_for_memory`: Slurm 22.05 cannot reserve memory); when those
        extra cores are not free, the booked cores only, and the session says so.
        """
        handle = dict(spec.handle)
        if spec.estimate:
            return handle  # queued: nothing is held in Slurm
        name = self.job_name(spec)
        if handle.get("reservation") == name:
            return handle
        account = self._account_of(spec.owner)
        self._ensure_loaded()  # the nodes' memory per core
        cores = max(1, spec.resources.cores)
        memory_mb = spec.resources.memory_gib * _MIB_PER_GIB
        request = ReservationRequest(
            name=name,
            start=max(_ceil_second(spec.start), _ceil_second(utcnow() + timedelta(seconds=1))),
            end=spec.end,
            user=account.pw_name,
            cores=self._view().cores_for_memory(cores, memory_mb),
            partition=self.partition,
            account=self.account,
        )
        try:
            reserved = await self._reserve(request, cores)
        except SlurmUnavailable as exc:
            self._mark_unavailable(str(exc))
            raise
        self._set_padding(name, reserved - cores, self.session_dir(spec))
        self.log.info(
            "reserved %d cores for %s from %s to %s (%s)",
            reserved,
            account.pw_name,
            request.start.isoformat(),
            request.end.isoformat(),
            name,
        )
        out = {**handle, "reservation": name, "user": account.pw_name, "reserved_cores": reserved}
        if request.cores > cores:
            out["memory_note"] = _memory_note(cores, reserved, spec.resources.memory_gib)
        return out

    async def _reserve(self, request: ReservationRequest, cores: int) -> int:
        """Create the reservation (or adopt one made before a crash); the cores it holds."""
        try:
            await self.client.create_reservation(request)
            return request.cores
        except SlurmError as refused:
            # Made before a crash? (Slurm checks the cores before the name, so a duplicate
            # may well be refused with "Requested nodes are busy".)
            existing = {r.name: r for r in await self.client.reservations()}
            if request.name in existing:
                self.log.info("adopting the existing reservation %s", request.name)
                return existing[request.name].core_count or request.cores
            if request.cores <= cores:
                raise
            self.log.info(
                "%d cores for the memory of %s are not free (%s): reserving the %d booked",
                request.cores,
                request.name,
                refused,
                cores,
            )
            await self.client.create_reservation(replace(request, cores=cores))
            return cores

    def _set_padding(self, name: str, extra: int, session_dir: Path) -> None:
        """Remember (in memory and in the session directory, for restarts) the cores our
        reservation holds beyond the booking: foreign usage on the broker's timeline."""
        self._padding[name] = extra
        session_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        rn.write_json_atomic(session_dir / RESERVATION_FILE, {"name": name, "extra_cores": extra})

    def _load_padding(self) -> None:
        """The extra cores of our reservations this broker did not make since it started."""
        ours = {r.name for r in self._reservations if r.name.startswith(self.reservation_prefix)}
        for name in ours - set(self._padding):
            uuid = name[len(self.reservation_prefix) :]
            if not uuid or "/" in uuid or uuid in (".", ".."):
                continue
            record = rn.read_json(self._work_path() / uuid / RESERVATION_FILE)
            self._padding[name] = int((record or {}).get("extra_cores") or 0)
        for name in set(self._padding) - ours:
            del self._padding[name]

    async def launch(self, spec: SessionSpec) -> dict[str, Any]:
        """Submit the session's job (idempotent: an existing job of this session is adopted)."""
        session_dir = self.session_dir(spec)
        handle: dict[str, Any] = {**spec.handle, "dir": str(session_dir)}
        if spec.estimate:
            self._holds[spec.uuid] = (spec.start, spec.end)
        if handle.get("job_id"):
            return handle
        recorded = _read_job_id(session_dir / JOB_ID_FILE)
        if recorded is not None:
            return {**handle, "job_id": recorded}
        name = self.job_name(spec)
        for job in await self._current_jobs(fresh=True):
            if job.name == name:
                self.log.info("adopting Slurm job %d of %s", job.job_id, spec.uuid)
                _write_job_id(session_dir, job.job_id)
                return {**handle, "job_id": job.job_id}
        if (session_dir / rn.STATUS_FILE).exists():
            return handle  # a launch that failed before submitting: poll reports it
        account = self._account_of(spec.owner)
        session_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            script = self._script(spec, session_dir)
        except LaunchError as exc:
            self.log.warning("cannot launch %s: %s", spec.uuid, exc)
            rn.record_launch_failure(session_dir, str(exc))
            return handle
        (session_dir / SCRIPT_FILE).write_text(script, encoding="utf-8")
        other_user = account.pw_uid != os.geteuid()
        if other_user:
            _chown_tree(session_dir, account.pw_uid, account.pw_gid)
        request = self._job_request(spec, session_dir, script, account, other_user)
        try:
            job_id = await self.client.submit(request)
        except SlurmUnavailable as exc:
            self._mark_unavailable(str(exc))
            raise
        _write_job_id(session_dir, job_id)
        self._jobs_at = float("-inf")  # the next poll must see the new job
        self.log.info("submitted %s as Slurm job %d", spec.uuid, job_id)
        return {**handle, "job_id": job_id, "user": account.pw_name}

    def _script(self, spec: SessionSpec, session_dir: Path) -> str:
        executable = spec.request.executable
        if isinstance(executable, SingularityContainer):
            if not self.engine:
                raise LaunchError("no Singularity/Apptainer on this cluster")
            if not executable.location:
                raise LaunchError("the container has no location")
            return batch_script(
                python=self.python,
                session_dir=str(session_dir),
                command=[self.engine, "run", executable.location],
            )
        runner_spec = self._runner()._runner_spec(spec, session_dir)
        if runner_spec.get("kind") == "server":
            runner_spec.update(ip=self.server_ip, host=self.server_host)
        rn.write_json_atomic(session_dir / rn.SPEC_FILE, runner_spec)
        return batch_script(
            python=self.python,
            session_dir=str(session_dir),
            package_path=self.package_path,
            pythonpath_mark=rn.PYTHONPATH_MARK,
            pythonpath_orig=rn.PYTHONPATH_ORIG,
        )

    def _job_request(
        self,
        spec: SessionSpec,
        session_dir: Path,
        script: str,
        account: pwd.struct_passwd,
        other_user: bool,
    ) -> JobRequest:
        common: dict[str, Any] = {
            "name": self.job_name(spec),
            "comment": self.job_name(spec),
            "cores": max(1, spec.resources.cores),
            "memory_mb": spec.resources.memory_gib * _MIB_PER_GIB,
            "script": script,
            "workdir": str(session_dir),
            "output": str(session_dir / rn.LOG_FILE),
            "partition": self.partition,
            "account": self.account,
            "user": account.pw_name if other_user else "",
            "group": str(account.pw_gid) if other_user else "",
            "extra_args": tuple(self.sbatch_args),
        }
        if spec.estimate:
            earliest = _parse_instant(spec.estimate.get("earliest")) or spec.start
            latest = _parse_instant(spec.estimate.get("latest")) or spec.start
            limit = time_limit_minutes(spec.duration, round_up=True)
            return JobRequest(
                **common,
                time_limit=limit,
                begin=_ceil_second(earliest),
                deadline=_ceil_second(max(latest, earliest) + timedelta(minutes=limit)),
            )
        return JobRequest(
            **common,
            time_limit=time_limit_minutes(spec.duration, round_up=False),
            begin=_ceil_second(spec.start),
            reservation=str(spec.handle.get("reservation") or ""),
        )

    async def poll(self, specs: list[SessionSpec]) -> dict[str, PlatformStatus]:
        """Status of every session from one ``squeue --json`` (plus each ``status.json``)."""
        try:
            jobs = await self._current_jobs()
        except SlurmUnavailable:
            return {spec.uuid: PlatformStatus(PlatformState.UNKNOWN) for spec in specs}
        by_id = {job.job_id: job for job in jobs}
        recorded = {s.uuid: rn.read_json(self.session_dir(s) / rn.STATUS_FILE) for s in specs}
        wanted = {
            spec.handle.get("job_id")
            for spec in specs
            if spec.handle.get("job_id") and not _runner_final(recorded[spec.uuid])
        }
        if not wanted.issubset(by_id) and time.monotonic() - self._jobs_at > 0.5:
            # a job we launched after the cached listing: ask again (once for all). Not for
            # jobs whose runner recorded its end: slurmctld forgets them after MinJobAge.
            try:
                jobs = await self._current_jobs(fresh=True)
            except SlurmUnavailable:
                return {spec.uuid: PlatformStatus(PlatformState.UNKNOWN) for spec in specs}
            by_id = {job.job_id: job for job in jobs}
        by_name = {job.name: job for job in jobs if job.name.startswith(self.reservation_prefix)}
        out = {}
        for spec in specs:
            if spec.estimate:
                self._holds[spec.uuid] = (spec.start, spec.end)
            job_id = spec.handle.get("job_id")
            job = by_id.get(job_id) if job_id else by_name.get(self.job_name(spec))
            status = self._status_of(spec, job, recorded[spec.uuid])
            out[spec.uuid] = status = with_batch_progress(self.session_dir(spec), status)
            note = spec.handle.get("memory_note")
            if note and status.state in (PlatformState.PREPARING, PlatformState.RUNNING):
                padded = int(spec.handle.get("reserved_cores") or 0) > spec.resources.cores
                status.messages.insert(0, (msg.info if padded else msg.warn)(msg.PLATFORM, note))
            if spec.estimate and job is not None and job.pending:
                status.messages += self._window_check(spec, job, jobs)
        return out

    def _window_check(self, spec: SessionSpec, job: Job, jobs: list[Job]) -> list[MessageItem]:
        """A queued estimate whose start the queue now plans after its window: say so.

        The plan is the one the offer's expected start came from (``estimator``): the
        simulated queue, or Slurm's own (``squeue --start``, the job's ``start_time``).
        """
        latest = _parse_instant((spec.estimate or {}).get("latest"))
        if latest is None:
            return []
        if self.estimator == "queue":
            booking = self._queue(jobs).get(f"job:{job.job_id}")
            planned = booking.start if booking is not None else None
        else:
            planned = job.start
        if planned is None or planned <= latest:
            return []
        return [
            msg.warn(
                msg.PLATFORM,
                "the queue now plans this job's start after the end of its start window: "
                "unless jobs ahead of it end early, Slurm will cancel it at its deadline "
                "(DEADLINE)",
                planned_start=planned.isoformat(),
                latest=latest.isoformat(),
            )
        ]

    def _status_of(
        self, spec: SessionSpec, job: Job | None, status: dict[str, Any] | None
    ) -> PlatformStatus:
        """A session's status from its Slurm job (None: Slurm no longer knows it) and what
        its runner recorded in ``status.json`` (None: nothing yet)."""
        session_dir = self.session_dir(spec)
        log_path = session_dir / rn.LOG_FILE
        outputs = {"log": str(log_path)}
        if status and status.get("output"):
            outputs["notebook"] = str(status["output"])
        if status and status.get("server_log"):
            outputs["server_log"] = str(status["server_log"])
        runner_state = str((status or {}).get("state") or "")
        final = _runner_final(status)
        handle = None
        if job is not None and spec.handle.get("job_id") != job.job_id:
            handle = {**spec.handle, "dir": str(session_dir), "job_id": job.job_id}

        def result(state: PlatformState, messages: list[MessageItem] | None = None) -> Any:
            return PlatformStatus(state, messages or [], handle=handle, outputs=outputs)

        if job is None:
            if status is not None and final:
                return runner_status(status, handle=handle, outputs=outputs)
            job_id = spec.handle.get("job_id")
            what = f"Slurm job {job_id}" if job_id else "the session's Slurm job"
            return result(
                PlatformState.FAILED,
                [
                    msg.error(
                        msg.PLATFORM,
                        f"{what} is no longer known to Slurm and its runner recorded no end",
                        log=log_path,
                        detail=rn.tail(log_path, 5),
                    )
                ],
            )
        if job.pending:
            why = f" ({job.reason})" if job.reason and job.reason != "None" else ""
            return result(
                PlatformState.PREPARING,
                [msg.info(msg.PLATFORM, f"queued in Slurm as job {job.job_id}{why}")],
            )
        if job.running:
            if final and (status or {}).get("stopped"):
                # Slurm is ending the job (scancel, its time limit) and the runner recorded
                # that it was stopped: Slurm's final state, due any moment, says why.
                return PlatformStatus(PlatformState.UNKNOWN, handle=handle, outputs=outputs)
            if status is not None and (final or runner_state == "AVAILABLE"):
                return runner_status(status, handle=handle, outputs=outputs)
            if runner_state == "RUNNING" or (status is None and _is_container(spec)):
                return result(PlatformState.RUNNING)
            return result(PlatformState.PREPARING)
        if job.state == "COMPLETED":
            if status is not None and final:
                return runner_status(status, handle=handle, outputs=outputs)
            if status is None and _is_container(spec):
                return result(PlatformState.SUCCEEDED)
            return result(
                PlatformState.FAILED,
                [
                    msg.error(
                        msg.PLATFORM,
                        f"Slurm job {job.job_id} ended before its runner recorded the end",
                        log=log_path,
                        detail=rn.tail(log_path, 5),
                    )
                ],
            )
        # a failed final state: say what Slurm says, and what the runner knew
        messages = [_slurm_failure(job)]
        if status is not None and runner_state == "FAILED":
            messages.append(_failure_message(status))
        return result(PlatformState.FAILED, messages)

    async def _job_of(self, spec: SessionSpec, *, fresh: bool = True) -> Job | None:
        jobs = await self._current_jobs(fresh=fresh)
        job_id = spec.handle.get("job_id") or _read_job_id(self.session_dir(spec) / JOB_ID_FILE)
        name = self.job_name(spec)
        for job in jobs:
            if (job_id and job.job_id == job_id) or (not job_id and job.name == name):
                return job
        return None

    async def stop(self, spec: SessionSpec) -> None:
        """``scancel`` the job and wait (bounded) until it has ended. Idempotent."""
        job = await self._job_of(spec)
        if job is not None and not job.final:
            self.log.info("cancelling Slurm job %d of %s", job.job_id, spec.uuid)
            await self.client.cancel([job.job_id])
            deadline = time.monotonic() + self.stop_timeout
            while time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                job = await self._job_of(spec)
                if job is None or job.final:
                    break
            else:
                self.log.warning(
                    "the Slurm job of %s did not end within %g s", spec.uuid, self.stop_timeout
                )
        self._jobs_at = float("-inf")
        status_path = self.session_dir(spec) / rn.STATUS_FILE
        status = rn.read_json(status_path)
        if status is not None and status.get("state") not in rn.FINAL_STATES:
            rn.write_json_atomic(
                status_path,
                {
                    **status,
                    "state": "FAILED",
                    "finished": rn.now_iso(),
                    "error": {"message": "cancelled before its runner recorded the end"},
                },
            )

    async def release(self, spec: SessionSpec) -> None:
        """Delete the session's reservation (the outputs and logs stay). Idempotent."""
        self._holds.pop(spec.uuid, None)
        name = spec.handle.get("reservation")
        if not name:
            return
        attempts = max(4, int(2 * self.stop_timeout))
        for attempt in range(attempts):
            try:
                deleted = await self.client.delete_reservation(str(name))
            except SlurmUnavailable as exc:
                self._mark_unavailable(str(exc))
                raise
            except SlurmError as exc:
                if "in use" not in str(exc).lower() or attempt == attempts - 1:
                    raise
                # Our job is still in it: it is ending (its runner recorded the end), so give
                # it a few seconds; cancel it only if it lingers.
                if attempt >= 10:
                    job = await self._job_of(spec)
                    if job is not None and not job.final:
                        await self.client.cancel([job.job_id])
                await asyncio.sleep(0.5)
                continue
            if deleted:
                self.log.info("deleted the reservation %s", name)
            return

    async def close(self) -> None:
        """Nothing to do: jobs and reservations live in Slurm, sessions are found again."""


# -- helpers ------------------------------------------------------------------------------------


def _runner_final(status: dict[str, Any] | None) -> bool:
    """Did the runner record the session's end in ``status.json``?"""
    return bool(status) and str((status or {}).get("state") or "") in rn.FINAL_STATES


def _is_container(spec: SessionSpec) -> bool:
    return isinstance(spec.request.executable, SingularityContainer)


def _ceil_second(when: datetime) -> datetime:
    if when.microsecond:
        return when.replace(microsecond=0) + timedelta(seconds=1)
    return when


def _parse_instant(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _read_job_id(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _write_job_id(session_dir: Path, job_id: int) -> None:
    session_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    rn.write_pid(session_dir / JOB_ID_FILE, job_id)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    for item in [path, *path.rglob("*")]:
        os.chown(item, uid, gid, follow_symlinks=False)  # not the staged data links point to


def _memory_note(cores: int, reserved: int, memory_gib: int) -> str:
    """Why a reservation holds other than the booked cores (Slurm cannot reserve memory)."""
    if reserved > cores:
        return (
            f"Slurm reservations hold cores, not memory: this one holds {reserved} cores "
            f"({cores} booked) so that other jobs taking their per-core share of the node's "
            f"memory leave the {memory_gib} GiB this session needs"
        )
    return (
        f"Slurm reservations hold cores, not memory, and only the {cores} booked core(s) "
        f"were free: other jobs on the node may take memory this session needs "
        f"({memory_gib} GiB) before it starts, and it then waits for them"
    )


def _slurm_failure(job: Job) -> MessageItem:
    """The message of a Slurm job that ended badly."""
    what = FAILED_STATES.get(job.state, f"ended {job.state}")
    code, sig = job.exit_status()
    text = f"Slurm job {job.job_id} {what}"
    if job.state == "FAILED" and code:
        text += f" (exit code {code})"
    elif sig:
        text += f" (signal {sig})"
    kind = msg.RESOURCE_LIMIT if job.state in ("TIMEOUT", "OUT_OF_MEMORY") else msg.PLATFORM
    values: dict[str, Any] = {"slurm_job": job.job_id, "slurm_state": job.state}
    if job.reason and job.reason != "None":
        values["reason"] = job.reason
    if code is not None:
        values["exit_code"] = code
    return msg.error(kind, text, **values)
