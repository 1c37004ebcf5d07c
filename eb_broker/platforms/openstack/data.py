"""Staged data on OpenStack as a Cinder volume: pure builders, no I/O (see docs/data.md).

The broker stages a session's data into its own cache like on every platform; at launch the
OpenStack platform packs the staged files into a raw ext4 image (``mkfs.ext4 -d``, the files
at their mount paths), uploads it to Glance, makes a Cinder volume of it and boots the server
with the volume attached (deleted with the server). cloud-init mounts the volume read-only at
:data:`DATA_MOUNT` and links each resource to its mount path (a ``READWRITE`` one: a private
copy on the VM's disk, owned by the VM user), and tells the session where its data is in
``/etc/profile.d/eb-data.sh`` (``EB_DATA_<NAME>``, ``EB_MOUNT_ROOT=/``), like the other
platforms.

Here: what goes where in the image (:func:`image_layout`), how large the image and the volume
are (:func:`image_bytes`, :func:`volume_gib`), the server's block device mapping
(:func:`block_devices`), the cloud-config part (:func:`data_cloud_config`) and the room the
project's volume quota leaves (:func:`volume_room`).
"""

from __future__ import annotations

import math
import posixpath
import shlex
from collections.abc import Iterable, Mapping
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Any

import yaml

from ...staging.mounts import placements, staged_env
from ..base import StagedData

#: Where the data volume is mounted (read-only) in the VM.
DATA_MOUNT = "/mnt/eb-data"
#: The profile script telling login shells where the data is.
DATA_ENV_FILE = "/etc/profile.d/eb-data.sh"
#: Names of the session's image and volume (also found by them after a broker crash).
DATA_PREFIX = "eb-data-"

GIB = 1 << 30
MIB = 1 << 20
_BLOCK = 4096
#: ext4 metadata besides the files: superblocks, group descriptors, bitmaps, inode tables
#: (mkfs.ext4 -N sizes those by the file count), the root and lost+found; measured with
#: e2fsprogs 1.47 to stay below this for 1 to 10 000 files.
_FIXED_OVERHEAD = 16 * MIB
_PER_FILE = 2 * _BLOCK
_SLACK = 1.05


def data_name(uuid: str) -> str:
    """The name of a session's data image and volume."""
    return f"{DATA_PREFIX}{uuid}"


def data_label(uuid: str) -> str:
    """The ext4 label of a session's data volume (16 characters at most): the VM finds the
    volume by it (/dev/disk/by-label), whatever device name the hypervisor gives it."""
    return f"eb-{uuid.replace('-', '')[:12]}"


def image_layout(data: Iterable[StagedData]) -> list[tuple[str, str]]:
    """``(path in the image, cached file)`` of every staged file: the image's root stands for
    ``/`` of the mount paths, so ``/data/cube.fits`` is ``data/cube.fits`` in it."""
    return [pair for item in data for pair in placements(item)]


def image_bytes(sizes: Iterable[int]) -> int:
    """The size of an ext4 image holding files of ``sizes`` bytes (whole MiB): every file
    rounded up to blocks, a block of metadata per file, 5 % slack and the fixed overhead."""
    sizes = list(sizes)
    blocks = sum(-(-size // _BLOCK) * _BLOCK for size in sizes)
    total = int(blocks * _SLACK) + _PER_FILE * len(sizes) + _FIXED_OVERHEAD
    return -(-total // MIB) * MIB


def inode_count(files: int) -> int:
    """Inodes for ``files`` files and the directories above them (mkfs.ext4 -N)."""
    return 2 * files + 64


def volume_gib(image_size: int, booked_gib: int) -> int:
    """The data volume's size: what the session booked for its data, or more when the file
    system's overhead needs it (Cinder sizes are whole GiB, at least 1)."""
    return max(booked_gib, math.ceil(image_size / GIB), 1)


def block_devices(image_id: str, volume_id: str) -> list[dict[str, Any]]:
    """block_device_mapping_v2 of a server booting ``image_id`` with the data volume
    attached as a second disk, deleted with the server."""
    return [
        {
            "boot_index": 0,
            "uuid": image_id,
            "source_type": "image",
            "destination_type": "local",
            "delete_on_termination": True,
        },
        {
            "boot_index": -1,
            "uuid": volume_id,
            "source_type": "volume",
            "destination_type": "volume",
            "delete_on_termination": True,
        },
    ]


def _place_command(item: StagedData, user: str) -> str:
    """The shell command putting ``item`` at its mount path: a link into the read-only
    volume, or (``READWRITE``) a private copy the VM user owns."""
    source = shlex.quote(posixpath.join(DATA_MOUNT, item.mount))
    target = shlex.quote("/" + item.mount)
    parent = shlex.quote(posixpath.dirname("/" + item.mount))
    if item.readonly:
        return f"mkdir -p {parent} && ln -sfn {source} {target}"
    owner = shlex.quote(user)
    return (
        f"mkdir -p {parent} && rm -rf {target} && cp -a {source} {target} && "
        f"chmod -R u+w {target} && chown -R {owner} {target}"
    )


def data_cloud_config(data: Iterable[StagedData], label: str, user: str) -> dict[str, Any]:
    """The cloud-config (``write_files``, ``runcmd``) that mounts the data volume labelled
    ``label`` read-only at :data:`DATA_MOUNT` and puts each resource at its mount path. It
    runs before the session's own commands (merged first by the caller); a volume that does
    not appear within 120 s stops the commands (the session's readiness then fails)."""
    data = tuple(data)
    device = shlex.quote(f"/dev/disk/by-label/{label}")
    script = [
        "set -e",
        f"for i in $(seq 1 240); do [ -e {device} ] && break; udevadm settle || true; "
        "sleep 0.5; done",
        f"mkdir -p {DATA_MOUNT}",
        f"mountpoint -q {DATA_MOUNT} || mount -o ro {device} {DATA_MOUNT}",
        *(_place_command(item, user) for item in data),
    ]
    env = "".join(
        f"export {key}={shlex.quote(value)}\n" for key, value in staged_env(data, "/").items()
    )
    return {
        "write_files": [{"path": DATA_ENV_FILE, "permissions": "0644", "content": env}],
        "runcmd": [["sh", "-c", "\n".join(script)]],
    }


def merged_cloud_config(first: Mapping[str, Any], user_data: str) -> str:
    """User data running the cloud-config ``first`` before ``user_data``: one
    ``#cloud-config`` document when ``user_data`` is one too (or empty), else a MIME
    multi-part message cloud-init runs part by part (a VM's own script, say)."""
    if not user_data.strip() or user_data.startswith("#cloud-config"):
        config = yaml.safe_load(user_data) or {} if user_data.strip() else {}
        merged = dict(config)
        for key, values in first.items():
            merged[key] = [*values, *(config.get(key) or [])]
        return "#cloud-config\n" + yaml.safe_dump(merged, sort_keys=False, width=1000)
    message = MIMEMultipart()
    head = "#cloud-config\n" + yaml.safe_dump(dict(first), sort_keys=False, width=1000)
    message.attach(MIMEText(head, "cloud-config"))
    subtype = "x-shellscript" if user_data.startswith("#!") else "plain"
    message.attach(MIMEText(user_data, subtype))
    return message.as_string()


def volume_room(limits: Mapping[str, Any], ours_gib: int) -> int | None:
    """GiB of volumes the broker may hold: the project's ``maxTotalVolumeGigabytes`` less
    what volumes the broker did not make use (``totalGigabytesUsed`` minus ``ours_gib``);
    None when the quota is unlimited (or unknown)."""
    limit = limits.get("maxTotalVolumeGigabytes")
    if limit is None or int(limit) < 0:
        return None
    used = int(limits.get("totalGigabytesUsed") or 0)
    return max(int(limit) - max(used - ours_gib, 0), 0)
