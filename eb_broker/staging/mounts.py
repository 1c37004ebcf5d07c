"""Staged data in a session directory: what "mounted" means for the local and Slurm platforms.

Processes there see the host's file system, so nothing is mounted: a volume mount path
``/data/x.fits`` becomes ``<session dir>/data/x.fits``, a symbolic link to the read-only file in
the staging cache (``READWRITE`` mounts get a private copy instead, so the cache is never
changed). A directory resource (a bucket) becomes a directory of such links. The session is
told the paths in environment variables: ``EB_DATA_<NAME>`` per resource and ``EB_MOUNT_ROOT``
(the session directory, which stands for ``/``).
"""

from __future__ import annotations

import os
import posixpath
import shutil
from pathlib import Path

from ..platforms.base import StagedData

MOUNT_ROOT_ENV = "EB_MOUNT_ROOT"


def _place(source: str, target: Path, readonly: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    if readonly:
        os.symlink(source, target)
    else:
        shutil.copyfile(source, target)
        target.chmod(0o644)


def placements(item: StagedData) -> list[tuple[str, str]]:
    """``(target, cached file)`` of each file of ``item``; targets are relative to the
    session's root (the mount path; for a directory resource, the path of each file in it)."""
    if item.directory:
        return [(posixpath.join(item.mount, path), source) for path, source in item.files]
    return [(item.mount, item.files[0][1])] if item.files else []


def staged_env(data: tuple[StagedData, ...], root: str) -> dict[str, str]:
    """The environment telling a session where its data is: ``EB_MOUNT_ROOT`` (``root``, which
    stands for ``/`` of the mount paths) and ``EB_DATA_<NAME>`` per resource."""
    if not data:
        return {}
    env = {MOUNT_ROOT_ENV: root}
    env.update({item.env: posixpath.join(root, item.mount) for item in data if item.env})
    return env


def link_staged_data(data: tuple[StagedData, ...], session_dir: Path) -> dict[str, str]:
    """Make ``data`` appear under ``session_dir`` (idempotent); returns the environment."""
    if not data:
        return {}
    root = session_dir.resolve()
    for item in data:
        target = root / item.mount
        if root not in target.resolve().parents and target.resolve() != root:
            raise ValueError(f"the mount path {item.mount!r} leaves the session directory")
        for path, source in placements(item):
            _place(source, root / path, item.readonly)
    return staged_env(data, str(root))
