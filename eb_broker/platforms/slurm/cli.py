"""The one place that talks to Slurm: :class:`SlurmClient`, and its CLI implementation.

The platform only uses the :class:`SlurmClient` protocol. :class:`SlurmCLI` runs Slurm's own
commands (``sinfo --json``, ``squeue --json``, ``scontrol``, ``sbatch``, ``scancel``) as async
subprocesses with a timeout. It is the implementation that works on Debian's Slurm 22.05,
whose ``slurmrestd`` offers OpenAPI v0.0.36 to v0.0.38 only, authenticates over a local UNIX
socket only (no JWT) and has no endpoint to create reservations or to estimate start times.
A REST client for newer sites implements the same protocol.

Errors: :class:`~.objects.SlurmUnavailable` when slurmctld cannot be reached (or the commands
are missing, or do not answer in time), :class:`~.objects.SlurmError` when Slurm refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Protocol

from . import objects as so
from .objects import (
    Job,
    JobRequest,
    Node,
    Reservation,
    ReservationRequest,
    SlurmError,
    SlurmUnavailable,
    TestOnly,
)


class SlurmClient(Protocol):
    """What the Slurm platform needs from a cluster (every method may raise SlurmUnavailable)."""

    async def nodes(self) -> list[Node]:
        """Every node with its CPUs, memory and state."""
        ...

    async def jobs(self) -> list[Job]:
        """Every job slurmctld still knows (pending, running, recently finished)."""
        ...

    async def reservations(self) -> list[Reservation]:
        """Every advance reservation."""
        ...

    async def submit(self, job: JobRequest) -> int:
        """Submit a batch job; its id."""
        ...

    async def test_only(self, job: JobRequest) -> TestOnly:
        """When Slurm would start ``job`` if it were submitted now (nothing is submitted)."""
        ...

    async def create_reservation(self, req: ReservationRequest) -> None:
        """Create an advance reservation (SlurmError when the cores are not free)."""
        ...

    async def delete_reservation(self, name: str) -> bool:
        """Delete a reservation; False when there was none of that name."""
        ...

    async def cancel(self, job_ids: Sequence[int]) -> None:
        """Cancel jobs (finished or unknown ones are fine)."""
        ...


class SlurmCLI:
    """:class:`SlurmClient` over Slurm's command-line tools."""

    def __init__(
        self,
        *,
        bin_dir: str = "",
        slurm_conf: str = "",
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.bin_dir = bin_dir
        self.timeout = timeout
        self.env = dict(os.environ if env is None else env)
        # Slurm prints and reads text times in the local zone: make that UTC, always.
        self.env["TZ"] = "UTC"
        if slurm_conf:
            self.env["SLURM_CONF"] = slurm_conf
        #: How many times each command ran (the platform's tests check the batching).
        self.calls: Counter[str] = Counter()

    def _path(self, command: str) -> str:
        return os.path.join(self.bin_dir, command) if self.bin_dir else command

    async def run(
        self, command: str, args: Sequence[str], stdin: str | None = None
    ) -> tuple[int, str, str]:
        """Run one Slurm command: ``(exit code, stdout, stderr)``."""
        self.calls[command] += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                self._path(command),
                *args,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
            )
        except FileNotFoundError:
            raise SlurmUnavailable(
                f"the Slurm command {command!r} is not installed here (install the Slurm client, "
                "e.g. Debian's slurm-client, or set SlurmPlatform.bin_dir)"
            ) from None
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), self.timeout
            )
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise SlurmUnavailable(f"{command} did not answer within {self.timeout:g} s") from None
        return (
            proc.returncode if proc.returncode is not None else -1,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
        )

    async def _checked(
        self, command: str, args: Sequence[str], stdin: str | None = None
    ) -> tuple[str, str]:
        code, out, err = await self.run(command, args, stdin)
        if code != 0:
            text = so.clean_error(err or out)
            if so.is_unreachable(err or out):
                raise SlurmUnavailable(f"slurmctld cannot be reached: {text}")
            raise SlurmError(f"{command}: {text}")
        return out, err

    # -- SlurmClient ----------------------------------------------------------------------------

    async def nodes(self) -> list[Node]:
        out, _ = await self._checked("sinfo", ["--json"])
        return so.parse_sinfo_json(out)

    async def jobs(self) -> list[Job]:
        out, _ = await self._checked("squeue", ["--json"])
        return so.parse_squeue_json(out)

    async def reservations(self) -> list[Reservation]:
        out, _ = await self._checked("scontrol", ["show", "reservation", "-o"])
        return so.parse_reservations(out)

    async def submit(self, job: JobRequest) -> int:
        out, _ = await self._checked("sbatch", so.sbatch_args(job), stdin=job.script)
        return so.parse_sbatch_parsable(out)

    async def test_only(self, job: JobRequest) -> TestOnly:
        # the answer is on stderr, with exit code 0
        _, err = await self._checked("sbatch", so.sbatch_args(job, test_only=True), job.script)
        return so.parse_test_only(err)

    async def create_reservation(self, req: ReservationRequest) -> None:
        await self._checked("scontrol", so.reservation_create_args(req))

    async def delete_reservation(self, name: str) -> bool:
        code, out, err = await self.run("scontrol", so.reservation_delete_args(name))
        if code == 0:
            return True
        text = err or out
        if "invalid" in text.lower() or "not found" in text.lower():
            return False
        if so.is_unreachable(text):
            raise SlurmUnavailable(f"slurmctld cannot be reached: {so.clean_error(text)}")
        raise SlurmError(f"scontrol delete reservation {name}: {so.clean_error(text)}")

    async def cancel(self, job_ids: Sequence[int]) -> None:
        if not job_ids:
            return
        code, out, err = await self.run("scancel", [str(j) for j in job_ids])
        so.check_scancel(code, err or out)
