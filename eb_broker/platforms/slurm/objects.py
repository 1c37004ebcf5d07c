"""Pure Slurm objects: parsers of Slurm's output and builders of its command lines.

No I/O here (like kubespawner's ``objects.py``): everything is unit-tested without a cluster.
The formats are Slurm 22.05's (Debian bookworm): ``sinfo --json`` / ``squeue --json``
(OpenAPI v0.0.38), ``scontrol show reservation -o`` (one ``Key=Value`` line per reservation;
22.05 has no ``--json`` for it) and the ``sbatch --test-only`` line on stderr.

Times: the client runs Slurm's commands with ``TZ=UTC``, so every time Slurm prints or reads
as text is UTC; the JSON outputs use Unix epochs.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ...scheduling import Capacity, Demand, NoFit, Resources, Timeline, find_slots
from ..base import PlatformUnavailable

_MIB_PER_GIB = 1024


class SlurmError(Exception):
    """A Slurm command refused or failed (the message is Slurm's own, cleaned up)."""


class SlurmUnavailable(PlatformUnavailable, SlurmError):
    """slurmctld cannot be reached (or the Slurm commands are missing)."""


#: Phrases Slurm's clients print when they cannot reach the controller.
_UNREACHABLE = (
    "unable to contact slurm controller",
    "connection refused",
    "socket timed out",
    "zero bytes were transmitted",
    "communication connection failure",
    "slurm_persist_conn_open",
    "unable to establish a connection",
)


def is_unreachable(text: str) -> bool:
    """True when a Slurm client's error text says the controller could not be reached."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in _UNREACHABLE)


_PREFIX = re.compile(r"^(?:sbatch|scontrol|scancel|squeue|sinfo)?:?\s*(?:error|fatal):\s*", re.I)


def clean_error(text: str) -> str:
    """Slurm's error output as one short line."""
    lines = [_PREFIX.sub("", line).strip() for line in text.splitlines()]
    return "; ".join(line for line in lines if line)[:500] or "no message"


def check_scancel(code: int, text: str) -> None:
    """What ``scancel``'s exit code and output mean: nothing (the jobs are cancelled, or had
    ended, or are unknown), :class:`SlurmUnavailable` or :class:`SlurmError`.

    A nonzero exit without a word is an error too: the job may well still run.
    """
    if code == 0:
        return
    if not text.strip():
        raise SlurmError(f"scancel exited with code {code} and no message")
    if is_unreachable(text):
        raise SlurmUnavailable(f"slurmctld cannot be reached: {clean_error(text)}")
    lowered = text.lower()
    if "already completing or completed" in lowered or "invalid job id" in lowered:
        return
    raise SlurmError(f"scancel: {clean_error(text)}")


# -- time -----------------------------------------------------------------------------------------


def slurm_time(when: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` in UTC (the client runs Slurm with ``TZ=UTC``)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime given to Slurm")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_slurm_time(text: str) -> datetime | None:
    """A Slurm text time (UTC, see :func:`slurm_time`); None for ``N/A``, ``(null)`` etc."""
    text = text.strip()
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _epoch(value: Any) -> datetime | None:
    if not isinstance(value, int | float) or value <= 0:
        return None
    return datetime.fromtimestamp(value, UTC)


def time_limit_minutes(duration: timedelta, *, round_up: bool) -> int:
    """Slurm's time limit (whole minutes, at least 1) for ``duration``."""
    minutes = duration.total_seconds() / 60
    value = math.ceil(minutes - 1e-9) if round_up else math.floor(minutes + 1e-9)
    return max(1, int(value))


# -- host lists -----------------------------------------------------------------------------------


def expand_hostlist(text: str) -> list[str]:
    """Slurm host list syntax: ``node[1-3,7]``, ``a,b``, ``n[01-02]-ib`` → host names."""
    hosts: list[str] = []
    for part in _split_top_level(text.strip()):
        if not part or part == "(null)":
            continue
        pieces = re.split(r"(\[[^\]]*\])", part)
        choices: list[list[str]] = []
        for piece in pieces:
            if piece.startswith("[") and piece.endswith("]"):
                choices.append(_expand_range(piece[1:-1]))
            elif piece:
                choices.append([piece])
        hosts.extend("".join(combo) for combo in itertools.product(*choices))
    return hosts


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _expand_range(spec: str) -> list[str]:
    out: list[str] = []
    for item in spec.split(","):
        if "-" in item:
            low, high = item.split("-", 1)
            width = len(low)
            out.extend(str(n).zfill(width) for n in range(int(low), int(high) + 1))
        elif item:
            out.append(item)
    return out


# -- nodes ----------------------------------------------------------------------------------------

#: Node state flags that keep a node from taking new work.
_UNUSABLE_FLAGS = frozenset(
    {
        "DRAIN",
        "DRAINING",
        "DRAINED",
        "FAIL",
        "NOT_RESPONDING",
        "POWERED_DOWN",
        "POWER_DOWN",
        "POWERING_DOWN",
        "INVALID",
        "INVALID_REG",
    }
)
_USABLE_STATES = frozenset({"idle", "mixed", "allocated", "completing", "planned"})


@dataclass(frozen=True)
class Node:
    """A compute node as ``sinfo --json`` reports it."""

    name: str
    cpus: int
    memory_mb: int
    state: str
    flags: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        """Can the node take new work (up, not drained, failing or powered down)?"""
        if self.state.lower() not in _USABLE_STATES:
            return False
        return not any(flag.upper() in _UNUSABLE_FLAGS for flag in self.flags)


def _json_document(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SlurmError(f"{what} did not answer JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SlurmError(f"{what} answered {type(data).__name__}, not an object")
    errors = data.get("errors") or []
    if errors:
        texts = [
            str(e.get("description") or e.get("error") or e) if isinstance(e, dict) else str(e)
            for e in errors
        ]
        # With slurmctld down, 22.05 answers rc=0 and {"errors": [{"error": "Unspecified
        # error", ...}]} after its connect retries: nothing useful came back.
        raise SlurmUnavailable(f"{what}: {'; '.join(texts)}")
    return data


def parse_sinfo_json(text: str) -> list[Node]:
    """The nodes of ``sinfo --json``."""
    data = _json_document(text, "sinfo --json")
    nodes = []
    for item in data.get("nodes") or []:
        nodes.append(
            Node(
                name=str(item.get("name") or item.get("hostname") or ""),
                cpus=int(item.get("cpus") or 0),
                memory_mb=int(item.get("real_memory") or 0),
                state=str(item.get("state") or "unknown"),
                flags=tuple(str(f) for f in item.get("state_flags") or ()),
                partitions=tuple(str(p) for p in item.get("partitions") or ()),
            )
        )
    return nodes


# -- jobs -----------------------------------------------------------------------------------------

#: Slurm job states in which the job still waits for its start.
PENDING_STATES = frozenset(
    {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING"}
)
#: Slurm job states in which the job holds its resources.
RUNNING_STATES = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING"})
#: Final states in which the job failed, with what we tell the user.
FAILED_STATES: Mapping[str, str] = {
    "FAILED": "failed",
    "CANCELLED": "was cancelled in Slurm",
    "TIMEOUT": "reached its time limit",
    "NODE_FAIL": "was ended by a node failure",
    "PREEMPTED": "was preempted",
    "BOOT_FAIL": "could not start: its node failed to boot",
    "DEADLINE": "could not start before the end of the requested start window (its deadline)",
    "OUT_OF_MEMORY": "ran out of memory",
}
FINAL_STATES = frozenset({"COMPLETED", *FAILED_STATES})


@dataclass(frozen=True)
class Job:
    """A Slurm job as ``squeue --json`` reports it (22.05 lists every job it still knows)."""

    job_id: int
    name: str
    state: str
    reason: str = ""
    user: str = ""
    partition: str = ""
    reservation: str = ""
    comment: str = ""
    nodes: tuple[str, ...] = ()
    cpus: int = 0
    memory_mb: int = 0
    start: datetime | None = None
    end: datetime | None = None
    time_limit: timedelta | None = None  # None: unlimited
    exit_code: int | None = None
    priority: int = 0
    submit: datetime | None = None
    eligible: datetime | None = None  # --begin

    @property
    def pending(self) -> bool:
        return self.state in PENDING_STATES

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES or not (self.pending or self.running)

    def exit_status(self) -> tuple[int | None, int | None]:
        """``(exit code, signal)`` of the batch script (Slurm reports the raw wait status)."""
        if self.exit_code is None:
            return None, None
        if self.exit_code & 0x7F:
            return None, self.exit_code & 0x7F
        return self.exit_code >> 8, None


def parse_tres_memory_mb(tres: str) -> int:
    """The ``mem=`` of a TRES string (``cpu=1,mem=500M,node=1``) in MiB (0 when absent)."""
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "mem":
            return parse_memory_mb(value)
    return 0


def parse_memory_mb(value: str) -> int:
    """``500M``, ``2G``, ``1.5T``, ``1024`` (MiB) → MiB."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGTP]?)B?\s*", value.upper())
    if not match:
        return 0
    number = float(match.group(1))
    factor = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2, "P": 1024**3}[match.group(2)]
    return math.ceil(number * factor)


def parse_squeue_json(text: str) -> list[Job]:
    """The jobs of ``squeue --json``."""
    data = _json_document(text, "squeue --json")
    jobs = []
    for item in data.get("jobs") or []:
        limit = item.get("time_limit")
        tres = str(item.get("tres_alloc_str") or "") or str(item.get("tres_req_str") or "")
        exit_code = item.get("exit_code")
        jobs.append(
            Job(
                job_id=int(item.get("job_id") or 0),
                name=str(item.get("name") or ""),
                state=str(item.get("job_state") or "UNKNOWN").upper(),
                reason=str(item.get("state_reason") or ""),
                user=str(item.get("user_name") or ""),
                partition=str(item.get("partition") or ""),
                reservation=str(item.get("resv_name") or ""),
                comment=str(item.get("comment") or ""),
                nodes=tuple(expand_hostlist(str(item.get("nodes") or ""))),
                cpus=int(item.get("cpus") or 0),
                memory_mb=parse_tres_memory_mb(tres),
                start=_epoch(item.get("start_time")),
                end=_epoch(item.get("end_time")),
                time_limit=timedelta(minutes=int(limit)) if isinstance(limit, int) else None,
                exit_code=int(exit_code) if isinstance(exit_code, int) else None,
                priority=int(item.get("priority") or 0),
                submit=_epoch(item.get("submit_time")),
                eligible=_epoch(item.get("eligible_time")),
            )
        )
    return jobs


# -- reservations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reservation:
    """A line of ``scontrol show reservation -o``."""

    name: str
    start: datetime
    end: datetime
    nodes: tuple[str, ...] = ()
    core_count: int = 0
    users: tuple[str, ...] = ()
    partition: str = ""
    flags: tuple[str, ...] = ()
    state: str = ""


_KEY_VALUE = re.compile(r"(\w+)=(\S*)")


def parse_reservations(text: str) -> list[Reservation]:
    """The reservations of ``scontrol show reservation -o`` (``No reservations...`` → [])."""
    out = []
    for line in text.splitlines():
        if not line.startswith("ReservationName="):
            continue
        fields = dict(_KEY_VALUE.findall(line))
        start = parse_slurm_time(fields.get("StartTime", ""))
        end = parse_slurm_time(fields.get("EndTime", ""))
        if start is None or end is None:
            continue
        core_count = fields.get("CoreCnt", "0")
        out.append(
            Reservation(
                name=fields["ReservationName"],
                start=start,
                end=end,
                nodes=tuple(expand_hostlist(fields.get("Nodes", ""))),
                core_count=int(core_count) if core_count.isdigit() else 0,
                users=_listed(fields, "Users"),
                partition=""
                if fields.get("PartitionName") == "(null)"
                else fields.get("PartitionName", ""),
                flags=_listed(fields, "Flags"),
                state=fields.get("State", ""),
            )
        )
    return out


def _listed(fields: Mapping[str, str], key: str) -> tuple[str, ...]:
    value = fields.get(key, "")
    if value in ("", "(null)"):
        return ()
    return tuple(v for v in value.split(",") if v)


@dataclass(frozen=True)
class ReservationRequest:
    """An advance reservation to create for one booked session."""

    name: str
    start: datetime
    end: datetime
    user: str
    cores: int
    partition: str = ""
    account: str = ""


def reservation_create_args(req: ReservationRequest) -> list[str]:
    """``scontrol`` arguments creating ``req`` (the cores, the slot, for one user).

    Slurm 22.05 cannot reserve memory (``TRES type 'mem' not supported with reservations``):
    the reservation holds the cores; the job asks for its memory with ``--mem``.
    """
    args = [
        "create",
        "reservation",
        f"ReservationName={req.name}",
        f"StartTime={slurm_time(req.start)}",
        f"EndTime={slurm_time(req.end)}",
        f"Users={req.user}",
        f"CoreCnt={req.cores}",
    ]
    if req.partition:
        args.append(f"PartitionName={req.partition}")
    if req.account:
        args.append(f"Accounts={req.account}")
    return args


def reservation_delete_args(name: str) -> list[str]:
    return ["delete", f"ReservationName={name}"]


# -- sbatch ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRequest:
    """A batch job to submit (or to test with ``--test-only``)."""

    name: str
    cores: int
    memory_mb: int
    time_limit: int  # minutes
    script: str = "#!/bin/sh\ntrue\n"
    workdir: str = ""
    output: str = ""
    comment: str = ""
    begin: datetime | None = None
    deadline: datetime | None = None
    reservation: str = ""
    partition: str = ""
    account: str = ""
    user: str = ""  # run as this Unix user (sbatch --uid; the broker must be root)
    group: str = ""
    extra_args: tuple[str, ...] = ()


def sbatch_args(job: JobRequest, *, test_only: bool = False) -> list[str]:
    """``sbatch`` options for ``job`` (the script goes on stdin, or ``--wrap`` for tests)."""
    args = [
        "--parsable",
        f"--job-name={job.name}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={job.cores}",
        f"--time={job.time_limit}",
    ]
    if job.memory_mb > 0:  # none: the partition's default (--mem=0 would mean the whole node)
        args.append(f"--mem={job.memory_mb}M")
    if test_only:
        args.insert(0, "--test-only")
    else:
        # --export=NONE: the job gets the user's login environment, not the broker's (which may
        # hold secrets); --no-requeue: a session never runs twice after a node failure.
        args += ["--export=NONE", "--no-requeue"]
    if job.comment:
        args.append(f"--comment={job.comment}")
    if job.workdir:
        args.append(f"--chdir={job.workdir}")
    if job.output:
        args += [f"--output={job.output}", "--open-mode=append"]
    if job.begin is not None:
        args.append(f"--begin={slurm_time(job.begin)}")
    if job.deadline is not None and not test_only:
        args.append(f"--deadline={slurm_time(job.deadline)}")
    if job.reservation:
        args.append(f"--reservation={job.reservation}")
    if job.partition:
        args.append(f"--partition={job.partition}")
    if job.account:
        args.append(f"--account={job.account}")
    if job.user and not test_only:
        args.append(f"--uid={job.user}")
        if job.group:
            args.append(f"--gid={job.group}")
    args += list(job.extra_args)
    return args


def parse_sbatch_parsable(stdout: str) -> int:
    """The job id ``sbatch --parsable`` printed (``123`` or ``123;cluster``)."""
    for line in stdout.splitlines():
        head = line.strip().split(";", 1)[0]
        if head.isdigit():
            return int(head)
    raise SlurmError(f"sbatch printed no job id: {stdout.strip()!r}")


_TEST_ONLY = re.compile(
    r"Job\s+(?P<id>\d+)\s+to start at\s+(?P<start>\S+)\s+using\s+(?P<cpus>\d+)\s+processors?"
    r"\s+on nodes\s+(?P<nodes>\S+)(?:\s+in partition\s+(?P<partition>\S+))?"
)


@dataclass(frozen=True)
class TestOnly:
    """What ``sbatch --test-only`` said: when Slurm would start the job, and where."""

    __test__ = False  # not a pytest test class

    start: datetime
    cpus: int
    nodes: tuple[str, ...]
    partition: str = ""


def parse_test_only(stderr: str) -> TestOnly:
    """Parse ``sbatch: Job 4 to start at 2026-11-21T12:27:49 using 2 processors on nodes ...``."""
    match = _TEST_ONLY.search(stderr)
    if not match:
        text = " ".join(stderr.split()) or "no answer"
        raise SlurmError(f"sbatch --test-only: {text}")
    start = parse_slurm_time(match.group("start"))
    if start is None:
        raise SlurmError(f"sbatch --test-only gave no start time: {stderr.strip()!r}")
    return TestOnly(
        start=start,
        cpus=int(match.group("cpus")),
        nodes=tuple(expand_hostlist(match.group("nodes"))),
        partition=match.group("partition") or "",
    )


def batch_script(
    *,
    python: str,
    session_dir: str,
    package_path: str = "",
    pythonpath_mark: str = "",
    pythonpath_orig: str = "",
    command: Sequence[str] | None = None,
) -> str:
    """The batch script of a session.

    Notebooks and servers run the broker's session runner (``python -m
    eb_broker.platforms.local_runner DIR``) on the node: the same code path as the local
    platform, writing ``DIR/status.json``. ``command`` (a container run) replaces it.
    ``package_path`` puts this package on the runner's ``PYTHONPATH`` the way the local
    platform does (the runner removes it again before it starts kernels or servers).
    """
    lines = ["#!/bin/bash", "# written by the eb-broker Slurm platform", "set -e"]
    lines.append(f"cd {shlex.quote(session_dir)}")
    if command:
        lines.append("exec " + " ".join(shlex.quote(c) for c in command))
        return "\n".join(lines) + "\n"
    if package_path and pythonpath_mark:
        lines += [
            f'if [ -n "${{PYTHONPATH+x}}" ]; then export {pythonpath_orig}="$PYTHONPATH"; fi',
            f'export PYTHONPATH={shlex.quote(package_path)}"${{PYTHONPATH:+:$PYTHONPATH}}"',
            f"export {pythonpath_mark}=1",
        ]
    lines.append(
        f"exec {shlex.quote(python)} -m eb_broker.platforms.local_runner {shlex.quote(session_dir)}"
    )
    return "\n".join(lines) + "\n"


# -- usage for the broker's timeline ----------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Something that takes cores and memory over ``[start, end)``."""

    key: str
    start: datetime
    end: datetime
    cores: int
    memory_mb: int

    @property
    def memory_gib(self) -> int:
        return math.ceil(self.memory_mb / _MIB_PER_GIB)


@dataclass
class ClusterView:
    """The parts of a cluster one broker books on: nodes of its partition, and what is ours."""

    nodes: list[Node]
    partition: str = ""
    prefix: str = "eb-"
    #: Our queued (estimate) jobs' held slots on the broker's timeline, by session uuid.
    holds: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    #: Cores our reservations hold beyond what their sessions booked (for memory), by name.
    padding: dict[str, int] = field(default_factory=dict)

    def our_nodes(self) -> list[Node]:
        if not self.partition:
            return list(self.nodes)
        return [n for n in self.nodes if self.partition in n.partitions]

    def usable_nodes(self) -> list[Node]:
        return [n for n in self.our_nodes() if n.usable]

    def is_ours(self, name: str) -> bool:
        return name.startswith(self.prefix)

    def uuid_of(self, name: str) -> str:
        return name[len(self.prefix) :] if self.is_ours(name) else ""

    def capacity(self) -> tuple[int, int]:
        """``(cores, memory GiB)`` of the usable nodes (memory rounded down)."""
        nodes = self.usable_nodes()
        return sum(n.cpus for n in nodes), sum(n.memory_mb for n in nodes) // _MIB_PER_GIB

    def largest_node(self) -> tuple[int, int]:
        """``(cores, memory GiB)`` of the largest usable node: the most one session can have."""
        nodes = self.usable_nodes()
        if not nodes:
            return 0, 0
        return max(n.cpus for n in nodes), max(n.memory_mb for n in nodes) // _MIB_PER_GIB

    def cores_for_memory(self, cores: int, memory_mb: int) -> int:
        """How many cores a reservation holds so that ``memory_mb`` stays free for its job.

        Slurm 22.05 reserves cores, not memory: while the reservation waits for its job, other
        jobs may take the node's memory on the cores it leaves free. Holding enough cores
        that their per-core share of the node's memory (the smallest share of the usable
        nodes) covers the session's memory keeps jobs that ask no more than their share off
        it. At most a whole node; at least ``cores``.
        """
        nodes = [n for n in self.usable_nodes() if n.cpus > 0 and n.memory_mb > 0]
        if not nodes or memory_mb <= 0:
            return cores
        share = min(n.memory_mb / n.cpus for n in nodes)
        needed = math.ceil(memory_mb / share - 1e-9)
        return max(cores, min(needed, max(n.cpus for n in nodes)))

    def is_probe(self, job: Job) -> bool:
        """Our container engine probe: done in a second, whatever its time limit says."""
        return job.name == f"{self.prefix}probe"

    def usage(
        self,
        jobs: Iterable[Job],
        reservations: Iterable[Reservation],
        now: datetime,
        horizon: timedelta = timedelta(days=400),
        planned: Timeline | None = None,
    ) -> list[Usage]:
        """What the broker did not book, on its nodes: foreign reservations, foreign running
        jobs and foreign pending jobs with a start estimate (outside any reservation), and our
        queued jobs where they run outside the slot the broker holds for them.

        Pending jobs are placed where ``planned`` (the :func:`simulate_queue` of these jobs)
        puts them, without it at Slurm's own estimate (``squeue --start``)."""
        names = {n.name for n in self.our_nodes()}
        by_name = {n.name: n for n in self.nodes}
        limit = now + horizon
        out: list[Usage] = []
        for resv in reservations:
            if resv.end <= now:
                continue
            if self.is_ours(resv.name):
                extra = self.padding.get(resv.name, 0)  # booked: counted by the broker itself
                if extra > 0:
                    out.append(
                        Usage(f"resv-pad:{resv.name}", resv.start, min(resv.end, limit), extra, 0)
                    )
                continue
            covered = [by_name[h] for h in resv.nodes if h in by_name and h in names]
            if not covered:
                continue
            total_cpus = sum(n.cpus for n in covered)
            cores = min(resv.core_count or total_cpus, total_cpus)
            memory = sum(n.memory_mb for n in covered)
            if total_cpus and cores < total_cpus:
                memory = math.ceil(memory * cores / total_cpus)
            out.append(Usage(f"resv:{resv.name}", resv.start, min(resv.end, limit), cores, memory))
        for job in jobs:
            if job.reservation or self.is_probe(job):
                continue  # inside a reservation: counted with it (or it is one of our bookings)
            span = self._job_span(job, now, limit)
            if job.pending and planned is not None:
                booking = planned.get(f"job:{job.job_id}")
                span = (booking.start, min(booking.end, limit)) if booking is not None else None
            if span is None:
                continue
            if job.running and not names.intersection(job.nodes):
                continue
            if job.pending and self.partition and self.partition not in job.partition.split(","):
                continue
            start, end = span
            key = f"job:{job.job_id}"
            uuid = self.uuid_of(job.name)
            if uuid and uuid in self.holds:
                held_start, held_end = self.holds[uuid]
                if start < held_start:
                    out.append(
                        Usage(f"{key}:before", start, min(end, held_start), job.cpus, job.memory_mb)
                    )
                if end > held_end:
                    out.append(
                        Usage(f"{key}:after", max(start, held_end), end, job.cpus, job.memory_mb)
                    )
                continue
            out.append(Usage(key, start, end, job.cpus, job.memory_mb))
        return [u for u in out if u.end > u.start]

    @staticmethod
    def _job_span(job: Job, now: datetime, limit: datetime) -> tuple[datetime, datetime] | None:
        if job.running and job.state != "COMPLETING":
            start = job.start or now
            # past its end (over its limit, or being killed): it still holds its cores briefly
            end = job.end if job.end and job.end > now else now + timedelta(minutes=1)
            return start, min(end, limit)
        if job.pending and job.start is not None:
            start = max(job.start, now)
            if job.time_limit is None:
                return start, limit
            return start, min(start + job.time_limit, limit)
        return None


# -- the queue, simulated at core level -------------------------------------------------------

#: Reasons a pending job will not start by itself soon: left out of the simulation.
HELD_REASONS = frozenset(
    {
        "JobHeldUser",
        "JobHeldAdmin",
        "Dependency",
        "DependencyNeverSatisfied",
        "BadConstraints",
        "PartitionDown",
        "PartitionInactive",
        "PartitionTimeLimit",
        "PartitionNodeLimit",
        "AssocGrpCpuLimit",
        "InvalidAccount",
        "InvalidQOS",
    }
)


def simulate_queue(
    view: ClusterView,
    jobs: Iterable[Job],
    reservations: Iterable[Reservation],
    now: datetime,
    *,
    horizon: timedelta = timedelta(days=14),
    max_pending: int = 2000,
) -> Timeline:
    """What the cluster will run, core by core: a timeline to estimate a new job's start on.

    Every reservation (ours too) and every running job outside a reservation holds its cores
    until its end; then the pending jobs (not held, not waiting for a reservation) are placed
    in priority order, each at the earliest start where it fits (after its ``--begin``), as
    Slurm's scheduler and backfill do. Slurm 22.05's own estimates (``squeue --start``,
    ``sbatch --test-only``) come from a backfill plan that reserves whole nodes for pending
    jobs: for small jobs they are far too late (see benchmarks/RESULTS.md). This places at core
    level, on the pooled capacity of the usable nodes (node fragmentation is not modelled).
    """
    capacity = _capacity_mib(view)
    names = {n.name for n in view.our_nodes()}
    limit = now + horizon
    timeline = Timeline()
    for resv in reservations:
        if resv.end <= now or not names.intersection(resv.nodes):
            continue
        by_name = {n.name: n for n in view.nodes}
        covered = [by_name[h] for h in resv.nodes if h in by_name and h in names]
        total = sum(n.cpus for n in covered)
        cores = min(resv.core_count or total, total)
        memory = sum(n.memory_mb for n in covered)
        if total and cores < total:
            memory = math.ceil(memory * cores / total)
        start, end = max(resv.start, now), min(resv.end, limit)
        if end > start:
            timeline.add(f"resv:{resv.name}", start, end, _resources(cores, memory))
    pending: list[Job] = []
    for job in jobs:
        if job.reservation or view.is_probe(job):
            continue
        if job.running and job.state != "COMPLETING" and names.intersection(job.nodes):
            end = job.end if job.end and job.end > now else now + timedelta(minutes=1)
            timeline.add(f"job:{job.job_id}", now, min(end, limit), _job_resources(job))
        elif (
            job.pending
            and job.reason not in HELD_REASONS
            and (not view.partition or view.partition in job.partition.split(","))
        ):
            pending.append(job)
    far = datetime.max.replace(tzinfo=UTC)
    pending.sort(key=lambda j: (-j.priority, j.submit or far, j.job_id))
    for job in pending[:max_pending]:
        duration = job.time_limit or horizon
        begin = max(now, job.eligible or now)
        needs = _job_resources(job)
        demand = Demand(minimum=needs, maximum=needs, duration=duration, preparation=begin - now)
        found = find_slots(
            capacity, timeline, demand, now, max_offers=1, horizon=horizon,
            granularity=timedelta(seconds=1),
        )  # fmt: skip
        if isinstance(found, NoFit) or not found:
            continue  # never fits within the horizon: it does not hold anything we plan
        timeline.add(f"job:{job.job_id}", found[0].start, found[0].end, needs)
    return timeline


def earliest_start(
    view: ClusterView,
    queue: Timeline,
    *,
    cores: int,
    memory_mb: int,
    duration: timedelta,
    begin: datetime,
    now: datetime,
    horizon: timedelta,
) -> datetime | None:
    """Where a new job would start on the simulated queue (None: not within the horizon)."""
    capacity = _capacity_mib(view)
    needs = _resources(cores, memory_mb)
    demand = Demand(
        minimum=needs, maximum=needs, duration=duration, preparation=max(begin - now, timedelta(0))
    )
    found = find_slots(
        capacity, queue, demand, now, max_offers=1, horizon=horizon,
        granularity=timedelta(seconds=1),
    )  # fmt: skip
    if isinstance(found, NoFit) or not found:
        return None
    return found[0].start


# The simulated queue counts memory in MiB (in the ``memory_gib`` field: one unit throughout),
# so that many small jobs are not rounded up to a GiB each.


def _capacity_mib(view: ClusterView) -> Capacity:
    nodes = view.usable_nodes()
    return Capacity(
        Resources(cores=sum(n.cpus for n in nodes), memory_gib=sum(n.memory_mb for n in nodes))
    )


def _resources(cores: int, memory_mb: int) -> Resources:
    return Resources(cores=max(1, cores), memory_gib=max(0, memory_mb))


def _job_resources(job: Job) -> Resources:
    return _resources(job.cpus or 1, job.memory_mb)
