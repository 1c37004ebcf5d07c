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


def link_staged_data(data: tuple[StagedData, ...], session_dir: Path) -> dict[str, str]:
    """Make ``data`` appear under ``session_dir`` (idempotent); returns the environment."""
    if not data:
        return {}
    root = session_dir.resolve()
    env = {MOUNT_ROOT_ENV: str(root)}
    for item in data:
        target = root / item.mount
        if root not in target.resolve().parents and target.resolve() != root:
            raise ValueError(f"the mount path {item.mount!r} leaves the session directory")
        if item.directory:
            for path, source in item.files:
                _place(source, target / path, item.readonly)
        elif item.files:
            _place(item.files[0][1], target, item.readonly)
        if item.env:
            env[item.env] = str(target)
    return env
