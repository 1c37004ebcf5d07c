"""A Cinder volume driver whose volumes are sparse files: the test OpenStack's block storage.

LVM and NFS need block devices or mounts this machine cannot give; like Nova's fake virt
driver this one needs nothing, but the bytes are real: each volume is the file
``<eb_file_volumes_dir>/volume-<id>`` (sparse, its size the volume's), create, delete, extend,
clone and snapshots work on the files, and "create a volume from an image" streams the Glance
image's bytes into the file (zero chunks are skipped, so the file stays sparse). Attaching
gives Nova a ``local`` connection with the file's path (Nova's fake virt driver records it).
The scheduler places volumes by the capacity reported here: ``eb_file_capacity_gb`` less the
sizes of the volumes there are.

Used by scripts/openstack/start.sh (on the services' PYTHONPATH)::

    [file]
    volume_driver = eb_cinder_file_driver.FileVolumeDriver
    eb_file_volumes_dir = BASE/cinder/volumes
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from cinder import exception
from cinder.volume import configuration, driver
from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)
GIB = 1 << 30
CHUNK = 1 << 20

OPTS = [
    cfg.StrOpt("eb_file_volumes_dir", help="Directory of the volume files."),
    cfg.IntOpt("eb_file_capacity_gb", default=100, help="Capacity reported to the scheduler."),
]
cfg.CONF.register_opts(OPTS, group=configuration.SHARED_CONF_GROUP)


class FileVolumeDriver(driver.VolumeDriver):
    """Volumes as sparse files (see the module's docstring)."""

    VERSION = "1.0.0"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(OPTS)
        self.directory = ""

    # -- set-up and stats ---------------------------------------------------------------------

    def do_setup(self, context: Any) -> None:
        self.directory = self.configuration.eb_file_volumes_dir or os.path.join(
            cfg.CONF.state_path, "volumes"
        )
        os.makedirs(self.directory, exist_ok=True)

    def check_for_setup_error(self) -> None:
        if not os.access(self.directory, os.W_OK):
            raise exception.VolumeBackendAPIException(data=f"{self.directory} is not writable")

    def _allocated_gb(self) -> int:
        return sum(
            -(-os.stat(os.path.join(self.directory, n)).st_size // GIB)
            for n in os.listdir(self.directory)
            if n.startswith("volume-")
        )

    def _update_volume_stats(self) -> None:
        total = int(self.configuration.eb_file_capacity_gb)
        self._stats = {
            "volume_backend_name": self.configuration.safe_get("volume_backend_name") or "file",
            "vendor_name": "Execution Broker tests",
            "driver_version": self.VERSION,
            "storage_protocol": "local",
            "total_capacity_gb": total,
            "free_capacity_gb": max(total - self._allocated_gb(), 0),
            "reserved_percentage": 0,
            "thick_provisioning_support": True,
            "thin_provisioning_support": False,
            "multiattach": False,
            "QoS_support": False,
        }

    # -- volumes ------------------------------------------------------------------------------

    def local_path(self, volume: Any) -> str:
        return os.path.join(self.directory, f"volume-{volume['id']}")

    @staticmethod
    def _resize(path: str, size_gb: int) -> None:
        with open(path, "ab") as f:
            f.truncate(size_gb * GIB)

    def create_volume(self, volume: Any) -> None:
        self._resize(self.local_path(volume), volume["size"])

    def delete_volume(self, volume: Any) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.local_path(volume))

    def extend_volume(self, volume: Any, new_size: int) -> None:
        self._resize(self.local_path(volume), new_size)

    def _copy(self, source: str, target: str, size_gb: int) -> None:
        with open(source, "rb") as src, open(target, "wb") as dst:
            _sparse_copy(iter(lambda: src.read(CHUNK), b""), dst)
        self._resize(target, size_gb)

    def create_cloned_volume(self, volume: Any, src_vref: Any) -> None:
        self._copy(self.local_path(src_vref), self.local_path(volume), volume["size"])

    def _snapshot_path(self, snapshot: Any) -> str:
        return os.path.join(self.directory, f"snapshot-{snapshot['id']}")

    def create_snapshot(self, snapshot: Any) -> None:
        volume = snapshot.volume
        self._copy(self.local_path(volume), self._snapshot_path(snapshot), volume["size"])

    def delete_snapshot(self, snapshot: Any) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._snapshot_path(snapshot))

    def create_volume_from_snapshot(self, volume: Any, snapshot: Any) -> None:
        self._copy(self._snapshot_path(snapshot), self.local_path(volume), volume["size"])

    # -- images -------------------------------------------------------------------------------

    def copy_image_to_volume(
        self,
        context: Any,
        volume: Any,
        image_service: Any,
        image_id: str,
        disable_sparse: bool = False,
    ) -> None:
        """Stream the image's bytes into the volume's file (raw images: the bytes are the
        disk). An image larger than the volume fails the volume (ImageTooBig)."""
        path = self.local_path(volume)
        size = volume["size"] * GIB
        with open(path, "r+b" if os.path.exists(path) else "wb") as f:
            written = _sparse_copy(image_service.download(context, image_id), f, limit=size)
        if written is None:
            raise exception.ImageTooBig(
                image_id=image_id, reason=f"it is larger than the {volume['size']} GiB volume"
            )
        self._resize(path, volume["size"])
        LOG.info("volume %s: %d bytes of image %s", volume["id"], written, image_id)

    def clone_image(
        self, context: Any, volume: Any, image_location: Any, image_meta: Any, image_service: Any
    ) -> tuple[dict[str, Any], bool]:
        """Volumes from images are made here, not by Cinder's generic path (that downloads
        the image to a temporary file and asks qemu-img about it: not installed here)."""
        self.create_volume(volume)
        self.copy_image_to_volume(context, volume, image_service, image_meta["id"])
        return {}, True

    # -- attachments (Nova's fake virt driver only records the connection) --------------------

    def initialize_connection(self, volume: Any, connector: Any, **kwargs: Any) -> dict[str, Any]:
        return {
            "driver_volume_type": "local",
            "data": {"device_path": self.local_path(volume), "access_mode": "rw"},
        }

    def terminate_connection(self, volume: Any, connector: Any, **kwargs: Any) -> None:
        pass

    def create_export(self, context: Any, volume: Any, connector: Any) -> None:
        pass

    def ensure_export(self, context: Any, volume: Any) -> None:
        pass

    def remove_export(self, context: Any, volume: Any) -> None:
        pass


def _sparse_copy(chunks: Any, out: Any, limit: int | None = None) -> int | None:
    """Write ``chunks`` to ``out`` from its start, seeking over all-zero chunks (the file
    stays sparse); the bytes written, or None once they pass ``limit``."""
    out.seek(0)
    total = 0
    for chunk in chunks:
        if not chunk:
            break
        total += len(chunk)
        if limit is not None and total > limit:
            return None
        if chunk.count(0) == len(chunk):
            out.seek(len(chunk), os.SEEK_CUR)
        else:
            out.write(chunk)
    return total
