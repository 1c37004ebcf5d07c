"""The job archive (owner-only access, filters, paging, CSV/Parquet) and run-time predictions,
through a real broker."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from tests.broker.helpers import accept
from tests.conftest import BrokerFactory
from tests.fixtures.notebooks import write_notebook
from tests.fixtures.services import BrokerProcess
from tests.staging.helpers import data_request, wait_final


@pytest.fixture
def archive_broker(broker_factory: BrokerFactory) -> BrokerProcess:
    return broker_factory(
        "--LocalPlatform.cores=4",
        "--LocalPlatform.memory_gib=8",
        "--LocalPlatform.startup_preparation=1",
        "--Predictions.min_runs=2",
        '--EBBroker.admin_users=["carol"]',
    )


def direct(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/direct", json=body)
    assert response.status_code == 303, response.text
    session: dict[str, Any] = response.json()
    return session


def later(hours: int) -> str:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=hours)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") + "/PT0S"


@pytest.fixture
def booked(archive_broker: BrokerProcess, tmp_path: Path) -> Iterator[dict[str, list[str]]]:
    """Cancelled bookings of alice (two notebooks) and bob (one), a day and two ahead."""
    first = write_notebook(tmp_path / "first.ipynb", "print(1)")
    second = write_notebook(tmp_path / "second.ipynb", "print(2)")
    owned: dict[str, list[str]] = {"alice": [], "bob": []}
    for user, notebook, hours in (("alice", first, 24), ("alice", second, 48), ("bob", first, 24)):
        with archive_broker.client(user) as c:
            body = data_request(str(notebook), {}, duration="PT1H", start=later(hours))
            session = direct(c, body)
            assert accept(c, session["meta"]["url"], "CANCELLED").status_code == 200
            owned[user].append(session["meta"]["uuid"])
    yield owned


def test_archive_is_owner_only_and_admins_see_all(
    archive_broker: BrokerProcess, booked: dict[str, list[str]]
) -> None:
    def uuids(caller: str, **params: Any) -> list[str]:
        with archive_broker.client(caller) as c:
            answer = c.get("/archive", params=params)
        assert answer.status_code == 200, answer.text
        return [item["uuid"] for item in answer.json()["items"]]

    assert sorted(uuids("alice")) == sorted(booked["alice"])
    assert uuids("bob") == booked["bob"]
    assert uuids("alice", user="bob") == []  # someone else's records are simply not there
    assert sorted(uuids("carol")) == sorted(booked["alice"] + booked["bob"])
    assert uuids("carol", user="bob") == booked["bob"]
    assert httpx.get(archive_broker.url + "/archive").status_code == 401
    with archive_broker.client("alice") as c:
        item = c.get("/archive").json()["items"][0]
    assert item["phase"] == "CANCELLED" and item["owner"] == "alice"
    assert item["accepted"] and item["finished"] and item["running"] is None
    assert item["cores"] == 1 and item["offer"]["preparation_s"] == 1
    assert item["request"]["executable"]["location"].endswith(".ipynb")
    assert item["executable_hash"].startswith("notebook:sha256:")


def test_archive_filters_paging_and_exports(
    archive_broker: BrokerProcess, booked: dict[str, list[str]]
) -> None:
    with archive_broker.client("carol") as c:
        everything = c.get("/archive").json()
        first_key = next(i for i in everything["items"] if i["owner"] == "bob")["executable_hash"]
        same = c.get("/archive", params={"executable": first_key}).json()
        assert {i["owner"] for i in same["items"]} == {"alice", "bob"} and same["total"] == 2
        soon = (datetime.now(UTC) + timedelta(hours=36)).isoformat()
        assert c.get("/archive", params={"until": soon}).json()["total"] == 2
        assert c.get("/archive", params={"since": soon}).json()["total"] == 1
        assert c.get("/archive", params={"phase": "COMPLETED"}).json()["total"] == 0
        assert c.get("/archive", params={"phase": "CANCELLED"}).json()["total"] == 3
        page = c.get("/archive", params={"limit": 2}).json()
        assert len(page["items"]) == 2 and page["total"] == 3
        rest = c.get(page["next"]).json()
        assert [i["uuid"] for i in rest["items"]] not in ([i["uuid"] for i in page["items"]],)
        assert len(rest["items"]) == 1 and "next" not in rest
        for bad in (
            {"limit": "0"},
            {"since": "yesterday"},
            {"phase": "SLEEPING"},
            {"format": "xls"},
        ):
            answer = c.get("/archive", params=bad)
            assert answer.status_code == 400 and answer.json()["kind"] == "urn:invalid-request"
        exported = c.get("/archive", params={"format": "csv"})
        parquet = c.get("/archive", params={"format": "parquet", "user": "alice"})
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["x-total-count"] == "3"
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 3 and {r["owner"] for r in rows} == {"alice", "bob"}
    assert rows[0]["phase"] == "CANCELLED" and rows[0]["running_s"] == ""
    table = pq.read_table(io.BytesIO(parquet.content))
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    assert table.num_rows == 2 and set(table.column("owner").to_pylist()) == {"alice"}
    assert str(table.schema.field("created").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("cores").type) == "int64"


def test_run_time_predictions_after_repeated_runs(
    archive_broker: BrokerProcess, tmp_path: Path
) -> None:
    """After two runs of the same notebook the third offer predicts the run time and, as no
    duration is given, books the predicted one instead of the broker's default hour."""
    notebook = write_notebook(tmp_path / "sleepy.ipynb", "import time\ntime.sleep(1)")
    with archive_broker.client() as c:
        first = c.post("/requests", json=data_request(str(notebook), {})).json()
        assert "jeb:prediction" not in first["offers"][0]
        assert first["offers"][0]["schedule"]["available"]["duration"] == "PT1H"
        for offer in first["offers"]:
            accept(c, offer["meta"]["url"], "REJECTED")
        for _ in range(2):
            session = direct(c, data_request(str(notebook), {}))
            assert wait_final(c, session["meta"]["url"])["phase"] == "COMPLETED"
        third = c.post("/requests", json=data_request(str(notebook), {})).json()
        explicit = c.post("/requests", json=data_request(str(notebook), {}, duration="PT2H")).json()
    offer = third["offers"][0]
    prediction = offer["jeb:prediction"]
    assert prediction["runtime"]["runs"] == 2 and prediction["duration"] == "PT1M"
    assert offer["schedule"]["available"]["duration"] == "PT1M"
    said = " ".join(m["message"] for m in third["meta"]["messages"])
    assert "from 2 past runs" in said and "no duration was given: offering PT1M" in said
    # a request that names its duration keeps it, and is still told the prediction
    assert explicit["offers"][0]["schedule"]["available"]["duration"] == "PT2H"
    assert explicit["offers"][0]["jeb:prediction"]["runtime"]["runs"] == 2
    assert "duration" not in explicit["offers"][0]["jeb:prediction"]
