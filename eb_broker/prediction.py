"""Predictions from the archive: how long a repeated executable runs, how fast a host sends.

* Run time: the past successful runs of the same executable — the same notebook content
  (``notebook:sha256:...``) or container image digest — give a median and a high quantile.
  With enough runs the offer shows them (``jeb:prediction`` and a message), and a request that
  gives no duration is offered the high quantile plus a margin instead of the broker's default.
* Transfer time: the bytes and seconds of the last transfers from a source host give its
  bandwidth; until there is history, a configured default.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from traitlets import Bool, Float, Int
from traitlets.config import LoggingConfigurable

from eb_sdk.model import (
    DockerContainer,
    ExecutionRequest,
    JupyterNotebook,
    JupyterServer,
    SingularityContainer,
)
from eb_sdk.model.times import format_duration

from .ledger.archive import Archive
from .staging.objects import human_bytes, human_seconds

_NOTEBOOK_HASHES: dict[tuple[str, int, int], str] = {}


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear between the nearest ranks)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def notebook_code(content: bytes) -> bytes:
    """What of a notebook decides how it runs: its code cells and kernel, not the outputs, cell
    ids or execution counts a save in JupyterLab changes (the bytes, if it is not JSON)."""
    try:
        notebook = json.loads(content)
        cells = [
            "".join(c["source"]) if isinstance(c.get("source"), list) else str(c.get("source"))
            for c in notebook.get("cells", [])
            if c.get("cell_type") == "code"
        ]
        kernel = ((notebook.get("metadata") or {}).get("kernelspec") or {}).get("name")
    except (ValueError, AttributeError, TypeError, KeyError):
        return content
    return json.dumps({"kernel": kernel, "code": cells}).encode()


def _notebook_digest(location: str) -> str | None:
    """sha256 of a local notebook's code (cached by path, size and mtime); None if unreadable."""
    from .platforms.local import LaunchError, resolve_notebook

    try:
        path = resolve_notebook(location)
        stat = path.stat()
    except (LaunchError, OSError):
        return None
    cache_key = (str(path), stat.st_size, stat.st_mtime_ns)
    digest = _NOTEBOOK_HASHES.get(cache_key)
    if digest is None:
        try:
            digest = hashlib.sha256(notebook_code(path.read_bytes())).hexdigest()
        except OSError:
            return None
        if len(_NOTEBOOK_HASHES) > 4096:
            _NOTEBOOK_HASHES.clear()
        _NOTEBOOK_HASHES[cache_key] = digest
    return digest


def executable_key(request: ExecutionRequest) -> str | None:
    """What runs, as a key repeated runs share (None: nothing to predict, e.g. a server).

    Notebooks by content when the broker can read them, else by location; containers by image
    digest, else by image reference; other kinds by their description (without names/uuids).
    """
    executable = request.executable
    if executable is None or isinstance(executable, JupyterServer):
        return None
    if isinstance(executable, JupyterNotebook) and executable.location:
        digest = _notebook_digest(executable.location)
        if digest:
            return f"notebook:sha256:{digest}"
        return "notebook:url:" + hashlib.sha256(executable.location.encode()).hexdigest()
    if isinstance(executable, DockerContainer) and executable.image:
        if executable.image.digest:
            return f"image:{executable.image.digest}"
        if executable.image.locations:
            return f"image-ref:{executable.image.locations[0]}"
    if isinstance(executable, SingularityContainer) and executable.location:
        return f"image-ref:{executable.location}"
    described = {k: v for k, v in executable.dump().items() if k not in ("meta", "uuid", "name")}
    text = json.dumps(described, sort_keys=True, default=str)
    return f"{executable.kind.rsplit('/', 1)[-1]}:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RunTime:
    """A run-time prediction from ``runs`` past runs."""

    median: float
    high: float
    quantile: float
    runs: int

    def proposed(self, margin: float, rounding: float) -> timedelta:
        """A duration to book when the request gives none: the high quantile plus ``margin``,
        rounded up to ``rounding`` seconds."""
        seconds = self.high * (1.0 + margin)
        step = max(1.0, rounding)
        return timedelta(seconds=max(step, math.ceil(seconds / step) * step))

    def record(self, proposed: timedelta | None = None) -> dict[str, Any]:
        """The ``jeb:prediction`` of an offer."""
        out: dict[str, Any] = {
            "runtime": {
                "median": format_duration(timedelta(seconds=round(self.median))),
                "high": format_duration(timedelta(seconds=math.ceil(self.high))),
                "quantile": self.quantile,
                "runs": self.runs,
            }
        }
        if proposed is not None:
            out["duration"] = format_duration(proposed)
        return out

    def message(self) -> str:
        percent = round(self.quantile * 100)
        return (
            f"expected run time {human_seconds(self.median)}, from {self.runs} past runs "
            f"({percent} % took at most {human_seconds(self.high)})"
        )


class Predictions(LoggingConfigurable):
    """Run-time and transfer-time predictions made from the archive."""

    min_runs = Int(
        3, config=True, help="Past successful runs of an executable needed before predicting."
    )
    history = Int(100, config=True, help="At most this many recent runs are considered.")
    quantile = Float(
        0.9,
        config=True,
        help="The high quantile shown and used for a proposed duration (0.5 to 1).",
    )
    propose_duration = Bool(
        True,
        config=True,
        help="When a request gives no duration and the run time can be predicted, book the "
        "high quantile plus duration_margin (instead of EBBroker.default_duration_hours).",
    )
    duration_margin = Float(
        0.25, config=True, help="Margin added to the high quantile for a proposed duration."
    )
    duration_rounding = Float(
        60.0, config=True, help="Proposed durations are rounded up to this many seconds."
    )
    default_bandwidth_mbit = Float(
        100.0,
        config=True,
        help="Bandwidth (Mbit/s) assumed from a source host the broker never fetched from.",
    )
    transfer_history = Int(
        20, config=True, help="The last this many transfers from a host give its bandwidth."
    )

    def __init__(self, archive: Archive | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.archive = archive
        self._bandwidths: dict[str, tuple[float, Bandwidth]] = {}

    def run_time(self, key: str | None) -> RunTime | None:
        """The prediction for ``key``'s next run (None: fewer than ``min_runs`` runs)."""
        if key is None or self.archive is None:
            return None
        seconds = self.archive.run_times(key, self.history)
        if len(seconds) < max(1, self.min_runs):
            return None
        q = min(1.0, max(0.5, self.quantile))
        return RunTime(quantile(seconds, 0.5), quantile(seconds, q), q, len(seconds))

    def bandwidth(self, host: str) -> Bandwidth:
        """Bytes per second to expect from ``host`` (cached for a few seconds)."""
        now = time.monotonic()
        cached = self._bandwidths.get(host)
        if cached is not None and cached[0] > now:
            return cached[1]
        history = self.archive.host_history(host, self.transfer_history) if self.archive else []
        moved = sum(b for b, _ in history)
        took = sum(s for _, s in history)
        if history and took > 0:
            found = Bandwidth(moved / took, len(history))
        else:
            found = Bandwidth(self.default_bandwidth_mbit * 1e6 / 8, 0)
        self._bandwidths[host] = (now + 5.0, found)
        return found

    def forget(self, host: str) -> None:
        """A transfer from ``host`` finished: measure its bandwidth again next time."""
        self._bandwidths.pop(host, None)


@dataclass(frozen=True)
class Bandwidth:
    """A host's expected bandwidth, and how many past transfers it was measured over."""

    bytes_per_second: float
    transfers: int

    def basis(self) -> str:
        if not self.transfers:
            return "the broker's default bandwidth (no transfers from this host yet)"
        plural = "s" if self.transfers != 1 else ""
        return f"measured over {self.transfers} past transfer{plural}"

    def describe(self) -> str:
        return f"{human_bytes(self.bytes_per_second)}/s, {self.basis()}"
