"""What the sidebar is sent, built from SDK objects without a server (eb_labextension.views,
.batches, .offerstore). Batches are built from ``eb.batches()`` summaries (docs/batch.md);
the browser test drives a real batch end to end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import eb_sdk
from eb_labextension import batches
from eb_labextension.offerstore import OfferStore
from eb_labextension.views import lab_path, sessions_view
from eb_sdk.model import ScheduledExecutionSession
from eb_sdk.offers import AsyncOffers
from eb_sdk.sessions import AsyncSession

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


#: A batch as ``eb.batches()`` lists it (docs/batch.md): two failed runs, one with a cell.
SUMMARY: dict[str, Any] = {
    "id": "20261121-130000-analysis-1a2b",
    "name": None,
    "notebook": "/home/u/work/analysis.ipynb",
    "parameter": "input_file",
    "created": "2026-11-21T12:00:00Z",
    "updated": "2026-11-21T13:00:00Z",
    "directory": "/home/u/.eb/batches/20261121-130000-analysis-1a2b",
    "total": 200,
    "counts": {"PENDING": 0, "RUNNING": 0, "COMPLETED": 198, "FAILED": 2},
    "done": True,
    "cancelled": False,
    "error": None,
    "failed": [
        {
            "index": 3,
            "id": "00003-a.fits",
            "input": "a.fits",
            "output": "/home/u/work/out/00003-a.fits.ipynb",
            "cell": 4,
            "ename": "ValueError",
            "evalue": "bad a.fits",
            "message": "cell 4 raised ValueError: bad a.fits",
            "broker": "alpha",
            "session": uid("a"),
        },
        {
            "index": 7,
            "id": "00007-x",
            "input": {"path": "x.fits", "band": 2},
            "output": None,
            "cell": None,
            "ename": None,
            "evalue": None,
            "message": "the session ended before this input ran",
            "broker": "alpha",
            "session": uid("b"),
        },
    ],
}


def test_a_batch_as_the_sidebar_shows_it() -> None:
    view = batches.batch_view(SUMMARY, Path("/home/u/work"))
    assert view == {
        "id": "20261121-130000-analysis-1a2b",
        "name": "analysis.ipynb",
        "notebook": "/home/u/work/analysis.ipynb",
        "total": 200,
        "counts": {"PENDING": 0, "RUNNING": 0, "COMPLETED": 198, "FAILED": 2},
        "done": True,
        "finished": "2026-11-21T13:00:00Z",
        "error": None,
        "failed": [
            {
                "run": "00003-a.fits",
                "input": "a.fits",
                "error": "ValueError: bad a.fits",
                "cell": 4,
                "output": "/home/u/work/out/00003-a.fits.ipynb",
                "lab_path": "out/00003-a.fits.ipynb",
            },
            {
                "run": "00007-x",
                "input": '{"band":2,"path":"x.fits"}',
                "error": "the session ended before this input ran",
                "cell": None,
                "output": None,
                "lab_path": None,
            },
        ],
    }


def test_a_running_batch_has_not_finished_and_says_why_it_stopped() -> None:
    running = {**SUMMARY, "done": False, "name": "nightly", "error": "nobody can run it"}
    view = batches.batch_view(running, None)
    assert view["name"] == "nightly" and view["finished"] is None
    assert view["error"] == "nobody can run it"
    assert view["failed"][0]["lab_path"] is None  # no root: nothing to open in the lab


async def test_the_saved_batches_are_listed_from_their_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EB_BATCHES", str(tmp_path / "none-yet"))
    assert await batches.list_batches(tmp_path) == {"available": True, "batches": []}
    with pytest.raises(eb_sdk.NotFound):
        await batches.reopen("no-such-batch", "00000-a")


def test_the_offer_store_keeps_the_newest_sets() -> None:
    store = OfferStore(size=2)
    first = store.add("one", AsyncOffers([]))
    second = store.add("two", AsyncOffers([]))
    third = store.add("three", AsyncOffers([]))
    assert store.get(first.id) is None
    assert store.get(second.id) is second and store.get(third.id) is third
    assert len(store) == 2 and first.id != second.id
