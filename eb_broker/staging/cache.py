"""The staging cache: verified objects on the platform's storage, shared by sessions.

Layout under the staging directory (on the file system the sessions see: the local disk, or
the Slurm cluster's shared file system)::

    objects/<name>/data        one verified object (read-only), <name> = entry_name(key)
    objects/<name>/meta.json   key, source, size, checksum; its mtime is the last use
    parts/<name>               a download in progress (resumed after a restart)
    locks/<name>.lock          held (flock) while the object is fetched or removed

An entry appears with one ``rename`` after its checksum was verified, so a half-staged file is
never visible under ``objects/``; removing renames it away first for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .objects import entry_name


@dataclass(frozen=True)
class Entry:
    """One cached object."""

    name: str
    key: str
    size: int
    last_used: float
    path: Path


class StagingCache:
    """The cache directory of one broker (several broker processes may share it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.parts = root / "parts"
        self.locks = root / "locks"

    def ensure(self) -> None:
        for path in (self.objects, self.parts, self.locks):
            path.mkdir(parents=True, exist_ok=True)
        for path in (self.root, self.objects):
            path.chmod(0o755)  # sessions of other Unix users (Slurm) read the objects

    def lookup(self, key: str) -> Path | None:
        """The cached object of ``key``, if there is one."""
        data = self.objects / entry_name(key) / "data"
        return data if data.exists() else None

    def part_path(self, key: str) -> Path:
        """Where ``key`` is downloaded to (the same path after a restart: resumed)."""
        return self.parts / entry_name(key)

    @contextlib.asynccontextmanager
    async def locked(self, key: str, poll: float = 0.1) -> AsyncIterator[None]:
        """Hold ``key``'s lock (other processes and tasks wait; a dead holder's lock is free)."""
        fd = os.open(self.locks / f"{entry_name(key)}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(poll)
            yield
        finally:
            os.close(fd)  # releases the lock

    def try_lock(self, key: str) -> int | None:
        """The fd of ``key``'s lock if it is free now (close it to release), else None."""
        return self._try_lock(entry_name(key))

    def _try_lock(self, name: str) -> int | None:
        fd = os.open(self.locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def publish(self, key: str, part: Path, meta: dict[str, Any]) -> Path:
        """Make the verified download ``part`` the cache entry of ``key`` (atomically)."""
        name = entry_name(key)
        staging = self.parts / f"{name}.{os.getpid()}.{secrets.token_hex(4)}.entry"
        staging.mkdir(mode=0o755)
        data = staging / "data"
        os.replace(part, data)
        data.chmod(0o444)
        (staging / "meta.json").write_text(json.dumps({**meta, "key": key}), encoding="utf-8")
        target = self.objects / name
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "data").exists():
                raise
            shutil.rmtree(staging, ignore_errors=True)  # another process published it first
        return target / "data"

    def touch(self, key: str) -> None:
        """Mark ``key`` as used now (its retention starts again)."""
        with contextlib.suppress(OSError):
            os.utime(self.objects / entry_name(key) / "meta.json")

    def entries(self) -> list[Entry]:
        out: list[Entry] = []
        if not self.objects.is_dir():
            return out
        for entry in self.objects.iterdir():
            meta_path = entry / "meta.json"
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                stat = meta_path.stat()
                size = (entry / "data").stat().st_size
            except (OSError, ValueError):
                continue
            out.append(Entry(entry.name, str(meta.get("key", "")), size, stat.st_mtime, entry))
        return out

    def remove(self, entry: Entry) -> None:
        """Remove an entry (renamed away first: never seen half-deleted)."""
        trash = self.parts / f"trash.{entry.name}.{secrets.token_hex(4)}"
        try:
            os.rename(entry.path, trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def sweep_parts(self, older_than: float) -> None:
        """Remove downloads nobody resumed for ``older_than`` seconds, leftovers of publishes
        that crashed half-way, and trash."""
        if not self.parts.is_dir():
            return
        cutoff = time.time() - older_than
        for path in self.parts.iterdir():
            with contextlib.suppress(OSError):
                trash = path.name.startswith("trash.")
                if not trash and path.stat().st_mtime >= cutoff:
                    continue
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                    continue
                fd = self._try_lock(path.name)
                if fd is None:
                    continue  # being downloaded right now
                try:
                    path.unlink()
                finally:
                    os.close(fd)
