"""The staging service: plans data on the request path, stages it during PREPARING.

* :meth:`DataStaging.plan` (``POST /requests``): every data resource gets a stager by its kind
  (none: NO, ``urn:not-supported``); the stagers locate the objects (sizes and checksums from
  cached HEAD requests and listings, so a source that cannot be reached is a NO at once, with
  ``urn:data-unavailable``); objects already in the cache cost nothing, the rest size ÷ the
  source host's bandwidth (:class:`~eb_broker.prediction.Predictions`). The plan is stored with
  the offer (``sessions.staging``) and its time is part of the offer's preparation.
* :class:`StagingRunner` (the reconciler, at start - preparation): fetches what is not cached
  into the cache (temporary file, checksum, rename), records each transfer in the archive and
  marks the plan ``staged`` — or ``failed`` with the reason, and the session FAILS.
* :meth:`DataStaging.housekeeping`: removes cache entries no active session uses once their
  retention is over, and reports what the cache keeps (counted against storage capacity).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Float, Int, List, Unicode
from traitlets.config import LoggingConfigurable

from eb_sdk.model import ExecutionRequest, MessageItem
from eb_sdk.model import messages as msg
from eb_sdk.model.kinds import kind_label

from ..ledger import Ledger, SessionRow
from ..ledger.archive import Archive, Transfer
from ..platforms.base import StagedData
from ..plugins import available, load_plugin
from .base import Located, Stager
from .cache import StagingCache
from .objects import (
    GIB,
    PlannedResource,
    SourceObject,
    StagingError,
    gib_ceil,
    human_bytes,
    human_seconds,
    mount_for,
    resource_name,
)
from .transport import SourceGuard, Transport

if TYPE_CHECKING:
    from ..prediction import Predictions

#: Entry point group of stager plugins.
ENTRY_POINT_GROUP = "eb_broker.stagers"
_BUILTIN = {
    "http": "eb_broker.staging.http:HttpStager",
    "s3": "eb_broker.staging.s3:S3Stager",
    "ivoa": "eb_broker.staging.ivoa:IvoaStager",
}

PLANNED, STAGING, STAGED, FAILED, CANCELLED = "planned", "staging", "staged", "failed", "cancelled"


def available_stagers() -> dict[str, str]:
    """Stager names and the ``module:Class`` they load, built-in and installed."""
    return available(ENTRY_POINT_GROUP, _BUILTIN)


def load_stager(name: str) -> type[Stager]:
    return load_plugin(name, group=ENTRY_POINT_GROUP, builtin=_BUILTIN, base=Stager, what="stager")


@dataclass
class Plan:
    """What staging a request's data takes (empty for a request without data)."""

    problems: list[MessageItem] = field(default_factory=list)
    notes: list[MessageItem] = field(default_factory=list)
    #: ``sessions.staging`` of the offers (None: no data).
    record: dict[str, Any] | None = None
    #: Predicted seconds to fetch what is not cached.
    seconds: float = 0.0
    #: Bytes of all the data (booked as storage while the session is active).
    size: int = 0

    @property
    def storage_gib(self) -> int:
        return gib_ceil(self.size)


@dataclass
class Outcome:
    """One staging run: the updated plan and every transfer it made."""

    record: dict[str, Any]
    transfers: list[Transfer]


class DataStaging(LoggingConfigurable):
    """Data staging of one broker (see docs/data.md)."""

    enabled = Bool(
        True,
        config=True,
        help="Stage the data resources of requests. False: requests with data get NO.",
    )
    staging_dir = Unicode(
        "",
        config=True,
        help="The staging cache directory, on storage the sessions can read (default: the "
        "platform's, <work_dir>/.eb-staging for the local and Slurm platforms).",
    )
    stagers = List(
        Unicode(),
        ["http", "s3", "ivoa"],
        config=True,
        help="Stagers, by entry point name (group eb_broker.stagers) or 'module:Class'. A data "
        "kind no stager handles (Rucio, SKAO unless a site adds one) gets NO.",
    )
    allowed_hosts = List(
        Unicode(),
        ["*"],
        config=True,
        help="Source hosts data may come from (shell-style patterns of host or host:port).",
    )
    trusted_hosts = List(
        Unicode(),
        [],
        config=True,
        help="Hosts on internal addresses (loopback, private, link-local) data may still come "
        "from, e.g. the site's own data service.",
    )
    block_internal_addresses = Bool(
        True,
        config=True,
        help="Refuse sources on internal addresses unless listed in trusted_hosts (users must "
        "not be able to make the broker fetch from inside the data centre).",
    )
    probe_timeout = Float(
        5.0,
        config=True,
        help="Seconds a source may take to answer a HEAD request or a listing (on the request "
        "path: a source that does not answer in time gets NO).",
    )
    probe_cache_seconds = Float(
        300.0, config=True, help="Seconds a source's size and checksum are remembered."
    )
    read_timeout = Float(
        60.0, config=True, help="Seconds a transfer may stall before it counts as broken."
    )
    retries = Int(2, config=True, help="Tries after the first of a broken transfer (resumed).")
    retry_delay = Float(1.0, config=True, help="Seconds before the first retry (then more).")
    unknown_size_mib = Float(
        1024.0,
        config=True,
        help="Size (MiB) assumed for an object whose source does not say (for the estimate "
        "and the storage booked).",
    )
    cache_retention_hours = Float(
        24.0,
        config=True,
        help="Hours staged data stays in the cache after the last session using it ended "
        "(another session may use it meanwhile without fetching it again). 0: removed at once.",
    )
    capacity_gib = Int(
        0,
        config=True,
        help="Room for staged data (GiB) on platforms that offer no storage of their own (Slurm: "
        "the shared file system). 0: the free space of the staging directory at start-up.",
    )

    def __init__(
        self, *, root: str | None, predictions: Predictions, platform_name: str = "", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.predictions = predictions
        self.platform_name = platform_name
        chosen = self.staging_dir or root
        self.cache = StagingCache(Path(chosen).expanduser().absolute()) if chosen else None
        if self.cache is not None and self.enabled:
            self.cache.ensure()
        self._stagers: dict[str, Stager] = {}
        for name in self.stagers:
            stager = load_stager(name)(parent=self, log=self.log)
            for kind in stager.kinds:
                self._stagers.setdefault(kind, stager)
        self.transport = Transport(
            SourceGuard(
                allowed=list(self.allowed_hosts),
                trusted=list(self.trusted_hosts),
                block_internal=self.block_internal_addresses,
            ),
            probe_timeout=self.probe_timeout,
            read_timeout=self.read_timeout,
            probe_ttl=self.probe_cache_seconds,
            retries=self.retries,
            retry_delay=self.retry_delay,
        )
        self.retained_bytes = 0
        self._room_gib = self.capacity_gib or self._free_gib()

    def _free_gib(self) -> int:
        if self.cache is None or not self.enabled:
            return 0
        try:
            return int(shutil.disk_usage(self.cache.root).free // GIB)
        except OSError:
            return 0

    # -- what this broker stages ----------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self.enabled and self.cache is not None

    @property
    def room_gib(self) -> int:
        """Storage (GiB) for staged data where the platform offers none of its own."""
        return self._room_gib if self.available else 0

    @property
    def retained_gib(self) -> int:
        """What the cache keeps for no active session (counted against storage capacity)."""
        return gib_ceil(self.retained_bytes)

    def kinds(self) -> list[str]:
        return sorted(self._stagers) if self.available else []

    def capabilities(self) -> dict[str, Any]:
        """``jeb:staging`` of ``/capabilities``: the data kinds staged here."""
        return {"kinds": self.kinds(), "retention": self.cache_retention_hours * 3600}

    # -- the request path -----------------------------------------------------------------------

    async def plan(self, request: ExecutionRequest) -> Plan:
        """Locate, size and estimate the request's data (see the module docstring)."""
        plan = Plan()
        if not request.data:
            return plan
        if not self.available:
            plan.problems.append(
                msg.error(
                    msg.NOT_SUPPORTED,
                    f"data staging is not available on this broker's {self.platform_name} "
                    "platform (see docs/data.md)",
                    data_kinds=", ".join(sorted({d.kind for d in request.data})),
                )
            )
            return plan
        planned: list[PlannedResource] = []
        lookups = []
        for index, resource in enumerate(request.data):
            name = resource_name(resource, index)
            stager = self._stagers.get(resource.kind)
            if stager is None:
                labels = ", ".join(sorted({kind_label(k) for k in self._stagers})) or "nothing"
                plan.problems.append(
                    msg.error(
                        msg.NOT_SUPPORTED,
                        f"data {name}: this broker cannot stage {kind_label(resource.kind)} "
                        f"data (it stages {labels})",
                        data=name,
                        kind_uri=resource.kind,
                    )
                )
                continue
            try:
                mount = mount_for(request, resource, index)
            except StagingError as exc:
                plan.problems.append(msg.error(msg.INVALID_REQUEST, f"data {name}: {exc}"))
                continue
            planned.append(PlannedResource(name, resource.kind, mount))
            lookups.append(stager.locate(resource, self.transport))
        found = await asyncio.gather(*lookups, return_exceptions=True)
        for item, result in zip(planned, found, strict=True):
            if isinstance(result, StagingError):
                plan.problems.append(
                    msg.error(msg.DATA_UNAVAILABLE, f"data {item.name}: {result}", data=item.name)
                )
            elif isinstance(result, BaseException):
                self.log.error("locating data %s failed", item.name, exc_info=result)
                plan.problems.append(
                    msg.error(
                        msg.DATA_UNAVAILABLE,
                        f"data {item.name}: it could not be located ({type(result).__name__})",
                        data=item.name,
                    )
                )
            else:
                assert isinstance(result, Located)
                item.objects, item.directory = result.objects, result.directory
        mounts = [item.mount.path for item in planned]
        for path in {p for p in mounts if mounts.count(p) > 1}:
            plan.problems.append(
                msg.error(msg.INVALID_REQUEST, f"two data resources are mounted at {path}")
            )
        if plan.problems:
            return plan
        return self._estimate(plan, planned)

    def _estimate(self, plan: Plan, planned: list[PlannedResource]) -> Plan:
        assert self.cache is not None
        unknown = int(self.unknown_size_mib * 1024 * 1024)
        per_host: dict[str, list[float]] = {}  # host → [bytes, seconds, objects]
        cached = [0, 0]  # bytes, objects
        resources = []
        for item in planned:
            objects = []
            for obj in item.objects:
                size = obj.size if obj.size is not None else unknown
                hit = self.cache.lookup(obj.key) is not None
                entry: dict[str, Any] = {**obj.dump(), "key": obj.key, "host": obj.host}
                plan.size += size
                if hit:
                    cached[0] += size
                    cached[1] += 1
                    entry.update(cached=True, estimate_s=0.0)
                else:
                    bandwidth = self.predictions.bandwidth(obj.host)
                    seconds = size / max(1.0, bandwidth.bytes_per_second)
                    totals = per_host.setdefault(obj.host, [0.0, 0.0, 0.0])
                    totals[0] += size
                    totals[1] += seconds
                    totals[2] += 1
                    plan.seconds += seconds
                    entry.update(
                        cached=False,
                        estimate_s=round(seconds, 3),
                        bandwidth=round(bandwidth.bytes_per_second),
                        basis=bandwidth.basis(),
                    )
                objects.append(entry)
            resources.append(
                {
                    "name": item.name,
                    "kind": item.kind,
                    "mount": item.mount.path,
                    "readonly": item.mount.readonly,
                    "env": item.mount.env,
                    "directory": item.directory,
                    "objects": objects,
                }
            )
        plan.record = {
            "state": PLANNED,
            "estimate_s": round(plan.seconds, 3),
            "size_bytes": plan.size,
            "fetch_bytes": plan.size - cached[0],
            "cached_bytes": cached[0],
            "resources": resources,
        }
        plan.notes.append(
            msg.info(
                msg.DATA_STAGING,
                _plan_message(per_host, cached, self.predictions),
                seconds=math.ceil(plan.seconds),
                bytes=plan.size - cached[0],
                cached_bytes=cached[0],
            )
        )
        return plan

    # -- preparing ------------------------------------------------------------------------------

    async def stage(self, record: dict[str, Any]) -> Outcome:
        """Fetch what ``record`` plans and is not staged yet (see the module docstring)."""
        assert self.cache is not None
        record = {**record, "staged": dict(record.get("staged") or {})}
        transfers: list[Transfer] = []
        for resource in record.get("resources") or []:
            stager = self._stagers.get(str(resource.get("kind")))
            for item in resource.get("objects") or []:
                key = str(item["key"])
                if key in record["staged"]:
                    continue
                obj = SourceObject.load(item)
                try:
                    if stager is None:
                        raise StagingError(f"no stager for {resource.get('kind')} any more")
                    path, transfer = await self._stage_object(stager, obj, key)
                except StagingError as exc:
                    record.update(state=FAILED, error=f"data {resource.get('name')}: {exc}")
                    transfers.append(_failed(obj, key, str(exc)))
                    return Outcome(record, transfers)
                transfers.append(transfer)
                record["staged"][key] = str(path)
        record["state"] = STAGED
        return Outcome(record, transfers)

    async def _stage_object(
        self, stager: Stager, obj: SourceObject, key: str
    ) -> tuple[Path, Transfer]:
        assert self.cache is not None
        started = datetime.now(UTC)
        clock = time.monotonic()
        async with self.cache.locked(key):
            path = self.cache.lookup(key)
            if path is not None:
                self.cache.touch(key)
                size = path.stat().st_size
                return path, Transfer(
                    obj.url, obj.host, key, 0, size, 0.0, started, datetime.now(UTC), cached=True
                )
            part = self.cache.part_path(key)
            moved = await stager.fetch(obj, part, self.transport)
            size = part.stat().st_size
            if obj.size is not None and size != obj.size:
                part.unlink(missing_ok=True)
                raise StagingError(f"{obj.url} gave {size} bytes, not the {obj.size} announced")
            if obj.checksum:
                algo, _, expected = obj.checksum.partition(":")
                actual = await asyncio.to_thread(file_digest, part, algo)
                if actual != expected:
                    part.unlink(missing_ok=True)
                    raise StagingError(
                        f"the checksum of {obj.url} does not match: expected {obj.checksum}, "
                        f"got {algo}:{actual}"
                    )
            meta = {"source": obj.url, "id": obj.identifier, "size": size}
            path = self.cache.publish(key, part, {**meta, "checksum": obj.checksum})
        seconds = time.monotonic() - clock
        self.predictions.forget(obj.host)
        self.log.info(
            "staged %s (%s in %.1f s) into %s", obj.url, human_bytes(moved), seconds, path
        )
        return path, Transfer(
            obj.url, obj.host, key, moved, size, seconds, started, datetime.now(UTC)
        )

    def discard_part(self, record: dict[str, Any]) -> None:
        """A failed staging: forget its partial downloads (never resumed into another file)."""
        if self.cache is None:
            return
        for key in _keys(record):
            fd = self.cache.try_lock(key)
            if fd is None:
                continue
            try:
                self.cache.part_path(key).unlink(missing_ok=True)
            finally:
                os.close(fd)

    # -- sessions --------------------------------------------------------------------------------

    @staticmethod
    def staged_data(record: dict[str, Any] | None) -> tuple[StagedData, ...]:
        """What a platform mounts for a session whose data is staged."""
        if not record or record.get("state") != STAGED:
            return ()
        staged = record.get("staged") or {}
        out = []
        for resource in record.get("resources") or []:
            files = tuple(
                (str(o.get("path") or ""), str(staged[o["key"]]))
                for o in resource.get("objects") or []
                if o.get("key") in staged
            )
            out.append(
                StagedData(
                    name=str(resource.get("name")),
                    mount=str(resource.get("mount")),
                    readonly=bool(resource.get("readonly", True)),
                    env=str(resource.get("env") or ""),
                    directory=bool(resource.get("directory")),
                    files=files,
                )
            )
        return tuple(out)

    @staticmethod
    def storage_gib(record: dict[str, Any] | None) -> int:
        """The storage (GiB) a session booked for its data (as :attr:`Plan.storage_gib`)."""
        return gib_ceil(int((record or {}).get("size_bytes") or 0))

    def release(self, record: dict[str, Any] | None) -> None:
        """A session ended: the retention of its data starts now."""
        if self.cache is None or not record:
            return
        for key in _keys(record):
            self.cache.touch(key)

    def housekeeping(self, in_use: Iterable[dict[str, Any]]) -> None:
        """Remove unused entries past their retention; recount what the cache keeps."""
        if self.cache is None or not self.available:
            return
        used = {key for record in in_use for key in _keys(record)}
        retention = self.cache_retention_hours * 3600
        now = time.time()
        kept = 0
        for entry in self.cache.entries():
            if entry.key in used:
                continue
            if now - entry.last_used >= retention:
                fd = self.cache.try_lock(entry.key)
                if fd is not None:
                    try:
                        self.cache.remove(entry)
                        self.log.info("removed %s from the staging cache", entry.key)
                        continue
                    finally:
                        os.close(fd)
            kept += entry.size
        self.retained_bytes = kept
        self.cache.sweep_parts(older_than=max(retention, 86400.0))

    async def close(self) -> None:
        await self.transport.close()


def file_digest(path: Path, algo: str) -> str:
    """The hex digest of a file (read in 1 MiB blocks)."""
    digest = hashlib.new(algo)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _keys(record: dict[str, Any]) -> list[str]:
    return [
        str(o["key"])
        for resource in record.get("resources") or []
        for o in resource.get("objects") or []
        if o.get("key")
    ]


def _failed(obj: SourceObject, key: str, error: str) -> Transfer:
    now = datetime.now(UTC)
    return Transfer(obj.url, obj.host, key, 0, obj.size or 0, 0.0, now, now, ok=False, error=error)


def _plan_message(
    per_host: dict[str, list[float]], cached: list[int], predictions: Predictions
) -> str:
    parts = []
    for host, (size, seconds, count) in sorted(per_host.items()):
        objects = f"{int(count)} object{'s' if count != 1 else ''}"
        parts.append(
            f"{objects} ({human_bytes(size)}) from {host}: about {human_seconds(seconds)} at "
            f"{predictions.bandwidth(host).describe()}"
        )
    if cached[1]:
        plural = "s are" if cached[1] != 1 else " is"
        parts.append(f"{cached[1]} object{plural} already staged here ({human_bytes(cached[0])})")
    return "data staging: " + "; ".join(parts)


class StagingRunner:
    """Runs the staging of sessions as tasks on the broker's loop and records the outcome."""

    def __init__(self, staging: DataStaging, ledger: Ledger, archive: Archive) -> None:
        self.staging = staging
        self.ledger = ledger
        self.archive = archive
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def ensure(self, row: SessionRow, done: Callable[[], None]) -> None:
        """Start staging ``row``'s data unless it is already being staged here."""
        task = self._tasks.get(row.uuid)
        if task is not None and not task.done():
            return
        record = dict(row.staging or {})
        self._tasks[row.uuid] = asyncio.get_running_loop().create_task(
            self._run(row.uuid, record, done)
        )

    async def _run(self, uuid: str, record: dict[str, Any], done: Callable[[], None]) -> None:
        now = datetime.now(UTC)
        record = {**record, "state": STAGING, "started": record.get("started") or now.isoformat()}
        self.ledger.update_fields(uuid, now, staging=record)
        try:
            outcome = await self.staging.stage(record)
        except asyncio.CancelledError:
            # the session was cancelled: its partial download stays for a later resume
            self.ledger.update_fields(
                uuid, datetime.now(UTC), staging={**record, "state": CANCELLED}
            )
            raise
        except Exception as exc:  # a bug or a full disk: the session fails, the broker goes on
            self.staging.log.exception("staging %s failed", uuid)
            outcome = Outcome({**record, "state": FAILED, "error": f"staging failed: {exc}"}, [])
        finished = datetime.now(UTC)
        outcome.record["finished"] = finished.isoformat()
        moved = [t for t in outcome.transfers if t.ok]
        outcome.record["moved_bytes"] = sum(t.bytes for t in moved) + int(
            record.get("moved_bytes") or 0
        )
        if outcome.record["state"] == FAILED:
            self.staging.discard_part(record)
        self.archive.record_transfers(uuid, outcome.transfers)
        self.ledger.update_fields(uuid, finished, staging=outcome.record)
        self._tasks.pop(uuid, None)
        done()

    async def cancel(self, uuid: str) -> None:
        """Stop staging ``uuid`` (if it is being staged here) and wait until it stopped."""
        task = self._tasks.pop(uuid, None)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=10)

    async def close(self) -> None:
        for uuid in list(self._tasks):
            await self.cancel(uuid)
        await self.staging.close()


def staged_messages(record: dict[str, Any]) -> list[MessageItem]:
    """What a session is told once its data is staged: how much moved in how long, and a
    warning when that took clearly longer than the offer said (the session starts late)."""
    try:
        started = datetime.fromisoformat(str(record["started"]))
        finished = datetime.fromisoformat(str(record["finished"]))
    except (KeyError, ValueError):
        return []
    took = finished - started
    moved = int(record.get("moved_bytes") or 0)
    objects = sum(len(r.get("objects") or []) for r in record.get("resources") or [])
    out = [
        msg.info(
            msg.DATA_STAGING,
            f"the data is staged: {objects} object{'s' if objects != 1 else ''}, "
            f"{human_bytes(moved)} fetched in {human_seconds(took.total_seconds())}",
            bytes=moved,
            seconds=round(took.total_seconds(), 1),
        )
    ]
    planned = timedelta(seconds=float(record.get("estimate_s") or 0))
    if took > planned + max(timedelta(seconds=10), planned / 2):
        out.append(
            msg.warn(
                msg.DATA_STAGING,
                f"staging the data took {human_seconds(took.total_seconds())}, not the "
                f"{human_seconds(planned.total_seconds())} predicted: the session starts late",
            )
        )
    return out
