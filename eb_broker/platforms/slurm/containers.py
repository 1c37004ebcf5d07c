"""Which container engine (Apptainer or Singularity) the nodes have: asked on the nodes.

The broker often runs on a login or service host that has neither, or another version than
the compute nodes. So ``container_engine = "auto"`` does not look at the broker's own PATH: it
submits one small probe job (``command -v apptainer singularity``, 1 core, 1 minute) into the
broker's partition and reads its answer. The answer is cached in
``<work_dir>/.eb-probe/container-engine.json`` and reused for ``max_age`` seconds, so a
restarted broker does not probe again. While the probe job waits, Singularity requests get NO
saying so; a probe job that ends without an answer is retried after ``retry`` seconds.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .cli import SlurmClient
from .objects import Job, JobRequest

log = logging.getLogger("eb_broker.platforms.slurm")

CACHE_FILE = "container-engine.json"
_MARK = "eb-container-engine="


def probe_script(candidates: Sequence[str]) -> str:
    """A batch script printing ``eb-container-engine=<path>`` of the first candidate found on
    the node (``eb-container-engine=`` when none is)."""
    words = " ".join(shlex.quote(c) for c in candidates)
    return (
        "#!/bin/sh\n"
        f"for c in {words}; do\n"
        '  p=$(command -v "$c" 2>/dev/null) && { echo "' + _MARK + '$p"; exit 0; }\n'
        "done\n"
        f'echo "{_MARK}"\n'
    )


def parse_probe_output(text: str) -> str | None:
    """The engine path a probe job printed ('' = none); None when it printed no answer."""
    for line in reversed(text.splitlines()):
        if line.startswith(_MARK):
            return line[len(_MARK) :].strip()
    return None


@dataclass
class EngineProbe:
    """The probe's state: the engine found (None: not known yet) and the job asking."""

    directory: Path
    candidates: tuple[str, ...]
    max_age: float = 86400.0
    retry: float = 600.0
    engine: str | None = None
    note: str = ""
    job: tuple[int, Path] | None = None
    _checked_at: float = field(default=float("-inf"))
    _retry_at: float = field(default=float("-inf"))

    # -- the cache -------------------------------------------------------------------------------

    def _cache(self) -> Path:
        return self.directory / CACHE_FILE

    def load_cache(self) -> bool:
        """Use a recent answer of an earlier probe (True when there was one)."""
        try:
            data: dict[str, Any] = json.loads(self._cache().read_text(encoding="utf-8"))
            probed = datetime.fromisoformat(str(data["probed"]))
        except (OSError, ValueError, KeyError, TypeError):
            return False
        age = (datetime.now(UTC) - probed).total_seconds()
        if age > self.max_age or tuple(data.get("candidates") or ()) != self.candidates:
            return False
        self.engine = str(data.get("engine") or "")
        self.note = str(data.get("note") or "")
        self._checked_at = time.monotonic() - age
        return True

    def _store(self, engine: str, note: str) -> None:
        self.engine, self.note = engine, note
        self._checked_at = time.monotonic()
        record = {
            "engine": engine,
            "note": note,
            "candidates": list(self.candidates),
            "probed": datetime.now(UTC).isoformat(),
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._cache().write_text(json.dumps(record), encoding="utf-8")
        except OSError as exc:
            log.warning("cannot cache the container engine probe: %s", exc)

    # -- the probe job ---------------------------------------------------------------------------

    def due(self) -> bool:
        """Is there something to do (no answer yet, an old one, or a probe job to read)?"""
        if self.job is not None:
            return True
        if self.engine is None and self.load_cache():
            return False
        now = time.monotonic()
        if now < self._retry_at:
            return False
        return self.engine is None or now - self._checked_at > self.max_age

    async def step(self, client: SlurmClient, jobs: list[Job], template: JobRequest) -> None:
        """Submit the probe job, or read its answer once it has ended."""
        if self.job is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            output = self.directory / f"probe-{time.time_ns()}.out"
            request = JobRequest(
                **{
                    **template.__dict__,
                    "script": probe_script(self.candidates),
                    "workdir": str(self.directory),
                    "output": str(output),
                }
            )
            job_id = await client.submit(request)
            self.job = (job_id, output)
            log.info("probing the nodes for %s: Slurm job %d", "/".join(self.candidates), job_id)
            return
        job_id, output = self.job
        mine = next((j for j in jobs if j.job_id == job_id), None)
        if mine is not None and not mine.final:
            return  # still queued or running
        try:
            answer = parse_probe_output(output.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            answer = None
        self.job = None
        output.unlink(missing_ok=True)
        if answer is None:
            state = mine.state if mine is not None else "unknown to Slurm"
            self.note = f"the probe job {job_id} ended ({state}) without an answer"
            self._retry_at = time.monotonic() + self.retry
            log.warning("container engine probe: %s; trying again later", self.note)
            return
        if answer:
            self._store(answer, f"found by the probe job {job_id} on {_where(mine)}")
        else:
            self._store(
                "",
                f"the probe job {job_id} found none of {', '.join(self.candidates)} on "
                f"{_where(mine)}",
            )
        log.info("container engine on the nodes: %s (%s)", answer or "none", self.note)


def _where(job: Job | None) -> str:
    return ", ".join(job.nodes) if job is not None and job.nodes else "a node"
