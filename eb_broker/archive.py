"""Archive records: one accepted session, flat for exports and with its details for JSON.

Pure: ledger rows in, dicts / CSV / Parquet bytes out (the handler does the HTTP; see
docs/archive.md for the fields).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from eb_sdk.model import messages as msg

from .errors import BrokerError
from .ledger import SessionRow
from .ledger.tables import TransferRow
from .translate import staging_to_wire

#: The flat columns of a record, in export order (CSV and Parquet).
COLUMNS: tuple[str, ...] = (
    "uuid",
    "name",
    "owner",
    "phase",
    "exit_message",
    "created",
    "accepted",
    "launched",
    "running",
    "ended",
    "finished",
    "start",
    "end",
    "preparation_s",
    "waiting_s",
    "preparing_s",
    "running_s",
    "cores",
    "memory_gib",
    "storage_gib",
    "accelerators",
    "executable_kind",
    "executable_hash",
    "data_objects",
    "data_bytes",
    "data_cached_bytes",
    "data_seconds",
    "data_sources",
)
_INTEGER = {"preparation_s", "cores", "memory_gib", "storage_gib", "data_objects", "data_bytes"}
_INTEGER |= {"data_cached_bytes"}
_FLOAT = {"waiting_s", "preparing_s", "running_s", "data_seconds"}
_TIME = {"created", "accepted", "launched", "running", "ended", "finished", "start", "end"}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, (end - start).total_seconds()), 3)


def exit_message(row: SessionRow) -> str | None:
    """Why the session ended as it did: its last error (or, without one, its last message)."""
    messages = [m for m in (row.messages or []) if isinstance(m, dict) and m.get("message")]
    errors = [m for m in messages if m.get("level") == "ERROR"]
    chosen = errors or messages
    return str(chosen[-1]["message"]) if chosen else None


def record(row: SessionRow, transfers: Sequence[TransferRow] = ()) -> dict[str, Any]:
    """The flat record of one session (the export columns)."""
    executable = (row.request or {}).get("executable") or {}
    ok = [t for t in transfers if t.ok]
    running_from = row.running_at
    return {
        "uuid": row.uuid,
        "name": row.name,
        "owner": row.owner,
        "phase": row.phase,
        "exit_message": exit_message(row),
        "created": _iso(row.created),
        "accepted": _iso(row.accepted_at),
        "launched": _iso(row.launched),
        "running": _iso(row.running_at),
        "ended": _iso(row.ended_at),
        "finished": _iso(row.finished_at),
        "start": _iso(row.start),
        "end": _iso(row.end),
        "preparation_s": row.preparation_s,
        "waiting_s": _seconds(row.accepted_at, row.launched),
        "preparing_s": _seconds(row.launched, running_from or row.ended_at),
        "running_s": _seconds(running_from, row.ended_at),
        "cores": row.cores,
        "memory_gib": row.memory_gib,
        "storage_gib": row.storage_gib,
        "accelerators": json.dumps(dict(row.accelerators or {}), sort_keys=True),
        "executable_kind": executable.get("kind") if isinstance(executable, dict) else None,
        "executable_hash": row.executable_hash,
        "data_objects": len(ok),
        "data_bytes": sum(t.bytes for t in ok),
        "data_cached_bytes": sum(t.size for t in ok if t.cached),
        "data_seconds": round(sum(t.seconds for t in ok), 3),
        "data_sources": " ".join(sorted({t.host for t in ok})),
    }


def detailed(row: SessionRow, transfers: Sequence[TransferRow] = ()) -> dict[str, Any]:
    """The JSON record: the flat fields plus the request, the accepted offer, the data moved
    and the messages."""
    out = record(row, transfers)
    out["accelerators"] = dict(row.accelerators or {})
    out["request"] = row.request
    offer: dict[str, Any] = {
        "start": out["start"],
        "end": out["end"],
        "preparation_s": row.preparation_s,
    }
    if row.estimate:
        offer["estimate"] = dict(row.estimate)
    if row.staging:
        offer["staging"] = staging_to_wire(row.staging)
    if row.prediction:
        offer["prediction"] = dict(row.prediction)
    out["offer"] = offer
    out["data"] = [
        {
            "source": t.source,
            "host": t.host,
            "bytes": t.bytes,
            "size": t.size,
            "seconds": round(t.seconds, 3),
            "started": _iso(t.started),
            "cached": t.cached,
            "ok": t.ok,
            **({"error": t.error} if t.error else {}),
        }
        for t in transfers
    ]
    out["messages"] = list(row.messages or [])
    return out


def to_csv(records: Sequence[dict[str, Any]]) -> bytes:
    """Flat records as CSV (UTF-8, a header row, empty cells for missing values)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for item in records:
        writer.writerow({k: "" if item.get(k) is None else item[k] for k in COLUMNS})
    return buffer.getvalue().encode("utf-8")


class ParquetUnavailable(BrokerError):
    """pyarrow is not installed (HTTP 501: this broker cannot export Parquet)."""

    kind = msg.NOT_SUPPORTED
    status = 501


def to_parquet(records: Sequence[dict[str, Any]]) -> bytes:
    """Flat records as a Parquet file (typed columns; times as UTC timestamps)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ParquetUnavailable(
            "the Parquet export needs pyarrow on the broker "
            "(pip install 'jupyter-execution-broker[parquet]'); format=csv works without it"
        ) from None

    def kind(name: str) -> Any:
        if name in _INTEGER:
            return pa.int64()
        if name in _FLOAT:
            return pa.float64()
        if name in _TIME:
            return pa.timestamp("us", tz="UTC")
        return pa.string()

    columns = {}
    for name in COLUMNS:
        values = [item.get(name) for item in records]
        if name in _TIME:
            values = [datetime.fromisoformat(v) if v else None for v in values]
        columns[name] = pa.array(values, type=kind(name))
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()
