"""What the sidebar is sent, built from SDK objects without a server (eb_labextension.views,
.batches, .offerstore). The batch API is not in eb_sdk yet: the batch tests give the module
the contract it reads (docs/labextension.md) the way the SDK will."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import eb_sdk
from eb_labextension import batches
from eb_labextension.offerstore import OfferStore
from eb_labextension.views import lab_path, sessions_view
from eb_sdk import aio
from eb_sdk.model import ScheduledExecutionSession
from eb_sdk.offers import AsyncOffers
from eb_sdk.sessions import AsyncSession, Session

NOW = datetime(2026, 11, 21, 13, 0, tzinfo=UTC)
ALPHA = eb_sdk.Broker("http://alpha.example", name="alpha", token="secret-token")


def uid(letter: str) -> str:
    return f"{letter * 8}-0000-0000-0000-000000000000"


def wire(letter: str, phase: str, start: datetime, modified: datetime | None = None) -> Any:
    uuid = uid(letter)
    return ScheduledExecutionSession.model_validate(
        {
            "meta": {
                "uuid": uuid,
                "modified": (modified or start).isoformat(),
                "url": f"http://alpha.example/sessions/{uuid}",
                "messages": [{"level": "ERROR", "message": "cell 3: ZeroDivisionError"}],
            },
            "phase": phase,
            "executable": {
                "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"
                "executable/jupyter-notebook.yaml",
                "location": "/home/u/work/analysis.ipynb",
            },
            "schedule": {"available": {"start": f"{start:%Y-%m-%dT%H:%M:%SZ}/PT0S"}},
            "jeb:outputs": {"notebook": "/home/u/work/out/analysis.ipynb", "log": "/var/x.log"},
        }
    )


def session(uuid: str, phase: str, start: datetime, modified: datetime | None = None) -> Any:
    return AsyncSession(wire(uuid, phase, start, modified), ALPHA)


def test_lab_path_is_relative_to_the_root_or_none() -> None:
    root = Path("/home/u/work")
    assert lab_path("/home/u/work/out/a.ipynb", root) == "out/a.ipynb"
    assert lab_path("/elsewhere/a.ipynb", root) is None
    assert lab_path("https://x/a.ipynb", root) is None
    assert lab_path(None, root) is None
    assert lab_path("/home/u/work/a.ipynb", None) is None


def test_sessions_live_first_then_recently_ended_and_no_credentials() -> None:
    listed = [
        session("b", "WAITING", NOW + timedelta(hours=2)),
        session("a", "RUNNING", NOW - timedelta(minutes=5)),
        session("c", "FAILED", NOW - timedelta(hours=3), modified=NOW - timedelta(hours=1)),
        session("d", "COMPLETED", NOW - timedelta(days=3), modified=NOW - timedelta(days=2)),
        session("e", "COMPLETED", NOW - timedelta(hours=2), modified=NOW - timedelta(minutes=30)),
    ]
    views = sessions_view(listed, Path("/home/u/work"), finished_hours=24, now=NOW)
    assert [v["uuid"] for v in views] == [uid("a"), uid("b"), uid("e"), uid("c")]
    failed = views[-1]
    assert failed["key"] == f"alpha/{uid('c')}" and failed["final"] is True
    assert failed["error"] == "cell 3: ZeroDivisionError"
    assert failed["name"] == "analysis.ipynb" and failed["lab_path"] == "analysis.ipynb"
    assert failed["outputs"] == [
        {
            "name": "notebook",
            "path": "/home/u/work/out/analysis.ipynb",
            "lab_path": "out/analysis.ipynb",
        },
        {"name": "log", "path": "/var/x.log", "lab_path": None},
    ]
    assert views[0]["error"] == "" and views[0]["start"] == "2026-11-21T12:55:00Z"
    assert "secret-token" not in repr(views)


class Run:
    """A failed run as the batch API describes it (attributes, no summary())."""

    def __init__(self, input: str, cell: int) -> None:
        self.input = input
        self.error = {"name": "ValueError", "value": f"bad {input}"}
        self.cell = cell
        self.output = f"/home/u/work/out/{input}.ipynb"
        self.reopened: dict[str, Any] = {}

    def reopen(self, **kwargs: Any) -> Session:
        self.reopened = kwargs
        return Session(wire("f", "WAITING", NOW), ALPHA)


@dataclass
class Batch:
    """A batch as the batch API describes it: summary() and failed()."""

    id: str = "b1"
    runs: list[Run] = field(default_factory=lambda: [Run("a.fits", 4), Run("b.fits", 2)])

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "notebook": "/home/u/work/analysis.ipynb",
            "counts": {"COMPLETED": 198, "FAILED": 2},
            "done": True,
            "finished": NOW,
            "failed": self.runs,
        }

    def failed(self) -> list[Run]:
        return self.runs

    @classmethod
    def load(cls, batch_id: str) -> Batch:
        return LOADED[batch_id]


LOADED = {"b1": Batch()}


async def test_batches_without_the_api_are_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(eb_sdk, "batches", raising=False)
    monkeypatch.delattr(aio, "batches", raising=False)
    assert batches.available() is False
    assert await batches.list_batches(Path("/home/u/work")) == {"available": False, "batches": []}
    monkeypatch.delattr(eb_sdk, "Batch", raising=False)
    with pytest.raises(batches.BatchesUnavailable):
        await batches.reopen("b1", "a.fits")


async def test_batches_through_the_sync_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eb_sdk, "batches", lambda: [Batch()], raising=False)
    found = await batches.list_batches(Path("/home/u/work"))
    assert found["available"] is True
    [view] = found["batches"]
    assert view == {
        "id": "b1",
        "name": "analysis.ipynb",
        "notebook": "/home/u/work/analysis.ipynb",
        "total": 200,
        "counts": {"COMPLETED": 198, "FAILED": 2},
        "done": True,
        "finished": "2026-11-21T13:00:00Z",
        "failed": [
            {
                "input": "a.fits",
                "error": "ValueError: bad a.fits",
                "cell": 4,
                "output": "/home/u/work/out/a.fits.ipynb",
                "lab_path": "out/a.fits.ipynb",
            },
            {
                "input": "b.fits",
                "error": "ValueError: bad b.fits",
                "cell": 2,
                "output": "/home/u/work/out/b.fits.ipynb",
                "lab_path": "out/b.fits.ipynb",
            },
        ],
    }


async def test_batches_through_the_async_api_as_dicts(monkeypatch: pytest.MonkeyPatch) -> None:
    async def listing() -> list[dict[str, Any]]:
        return [{"id": "b2", "name": "run 2", "counts": {"RUNNING": 3}, "failed": []}]

    monkeypatch.setattr(aio, "batches", listing, raising=False)
    [view] = (await batches.list_batches(None))["batches"]
    assert view["name"] == "run 2" and view["total"] == 3 and view["done"] is False


async def test_reopen_a_failed_run_interactively(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eb_sdk, "Batch", Batch, raising=False)
    session = await batches.reopen("b1", "b.fits")
    assert isinstance(session, AsyncSession) and session.uuid == uid("f")
    assert LOADED["b1"].runs[1].reopened == {"start": "now"}
    with pytest.raises(eb_sdk.NotFound):
        await batches.reopen("b1", "c.fits")


def test_the_offer_store_keeps_the_newest_sets() -> None:
    store = OfferStore(size=2)
    first = store.add("one", AsyncOffers([]))
    second = store.add("two", AsyncOffers([]))
    third = store.add("three", AsyncOffers([]))
    assert store.get(first.id) is None
    assert store.get(second.id) is second and store.get(third.id) is third
    assert len(store) == 2 and first.id != second.id
