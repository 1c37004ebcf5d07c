"""A stand-in for the SDK's batch API (``eb.batches()``, ``eb.Batch``), which is being written
in parallel: it gives the sidebar's batch section the contract eb_labextension/batches.py
reads (docs/labextension.md, "Batches"), so that the browser test can drive the section.

Loaded into a Jupyter server by a config file (``install(...)``). One batch of three inputs:
two COMPLETED, ``b.fits`` FAILED at cell 2 with its output notebook under the server's root.
It is RUNNING until the file ``batch-done`` appears in the root. ``reopen(start="now")``
books a real interactive Jupyter server on the broker, as the real API will.

TODO(integrator): once ``eb.map`` merges, drive the real API instead of this stand-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import eb_sdk as eb


@dataclass
class StandInRun:
    input: str
    output: str
    cell: int
    broker: eb.Broker
    root: Path
    error: str = "ValueError: cannot read b.fits"

    def reopen(self, start: str = "now") -> eb.Session:
        offers = eb.request(
            eb.JupyterServer(self.root),
            duration="10 min",
            start=start,
            brokers=self.broker,
            compute={},
            name=f"reopen {self.input}",
        )
        return offers.earliest().accept()


@dataclass
class StandInBatch:
    root: Path
    broker: eb.Broker
    id: str = "fits-0001"
    finished: datetime | None = None

    @property
    def done(self) -> bool:
        if self.finished is None and (self.root / "batch-done").exists():
            self.finished = datetime.now(UTC)
        return self.finished is not None

    def failed(self) -> list[StandInRun]:
        output = str(self.root / "out" / "b.fits.ipynb")
        return [StandInRun("b.fits", output, 2, self.broker, self.root)]

    def summary(self) -> dict[str, Any]:
        counts = {"COMPLETED": 2, "FAILED": 1} if self.done else {"COMPLETED": 1, "RUNNING": 2}
        return {
            "id": self.id,
            "name": "fits",
            "notebook": str(self.root / "short.ipynb"),
            "total": 3,
            "counts": counts,
            "done": self.done,
            "finished": self.finished,
            "failed": self.failed() if self.done else [],
        }


def install(root: str, broker_url: str, token: str) -> None:
    """Give ``eb_sdk`` the batch API the sidebar reads (in the server's process)."""
    broker = eb.Broker(broker_url, name="alpha", token=token)
    batch = StandInBatch(Path(root), broker)

    class Batch:
        @staticmethod
        def load(batch_id: str) -> StandInBatch:
            assert batch_id == batch.id, batch_id
            return batch

    eb.batches = lambda: [batch]  # type: ignore[attr-defined]
    eb.Batch = Batch  # type: ignore[attr-defined]
