"""State is in the ledger: a kill -9 and restart loses nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from eb_broker.ledger import current_revision, make_engine, migrate
from tests.broker.helpers import accept, notebook_request
from tests.fixtures.services import BrokerProcess, Postgres


def test_kill9_keeps_bookings_and_offers(broker: BrokerProcess) -> None:
    start = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with broker.client() as c:
        booked = c.post("/requests", json=notebook_request(4, 1, start=f"{start}/PT0S")).json()
        session_url = booked["offers"][0]["meta"]["url"]
        assert accept(c, session_url).status_code == 200
        pending = c.post("/requests", json=notebook_request(1, 1)).json()
        offer_url = pending["offers"][0]["meta"]["url"]
    broker.kill9()
    broker.start()
    with broker.client() as c:
        assert c.get(session_url).json()["phase"] == "WAITING"
        assert c.get(offer_url).json()["phase"] == "OFFERED"
        # the booking still holds its capacity after the restart
        again = c.post("/requests", json=notebook_request(1, 1, start=f"{start}/PT0S")).json()
        assert again["result"] == "NO"
        # and the pending offer can still be accepted
        assert accept(c, offer_url).status_code == 200


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty ledger database URL: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'l.sqlite'}"
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.database(f"upgrade_{uuid.uuid4().hex[:12]}")


def test_upgrade_from_0001_keeps_bookings_and_backfills(empty_db: str) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from eb_broker.ledger.db import MIGRATIONS

    url = empty_db
    engine = make_engine(url)
    assert current_revision(engine) is None
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    assert current_revision(engine) == "0001"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO offersets (uuid, owner, created, expires, result, request, messages) "
            "VALUES ('o', 'alice', '2026-01-01 00:00:00', '2026-01-01 00:05:00', 'YES', '{}', '[]')"
        )
        conn.exec_driver_sql(
            "INSERT INTO sessions (uuid, offerset, owner, groups, phase, created, modified, start, "
            '"end", preparation_s, cores, memory_gib, storage_gib, accelerators, request, '
            "messages, connectors, outputs, handle) VALUES ('s', 'o', 'alice', '[]', 'WAITING', "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00', '2026-01-02 10:00:00', "
            "'2026-01-02 12:00:00', 30, 2, 2, 0, '{}', '{}', '[]', '[]', '{}', '{}')"
        )
    head = ScriptDirectory.from_config(config).get_current_head()
    migrate(make_engine(url))  # to head: keeps the booking, back-fills launch_at, adds estimate
    assert current_revision(engine) == head
    with create_engine(url).connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT owner, phase, launch_at, estimate, pools FROM sessions"
        ).one()
    assert row[0] == "alice" and row[1] == "WAITING"
    assert row[3] is None  # 0003: a precise slot, not a queue estimate
    assert row[4] is None  # 0004: no allocation pools
    assert str(row[2]).startswith("2026-01-02 09:59:30")
    migrate(make_engine(url))  # idempotent at head
    assert current_revision(engine) == head


def test_upgrade_from_0004_keeps_bookings_and_backfills_the_archive(empty_db: str) -> None:
    """0005 adds the archive's columns: phase times back-filled from the events, nothing lost."""
    from alembic import command
    from alembic.config import Config

    from eb_broker.ledger import Ledger
    from eb_broker.ledger.archive import Archive, ArchiveFilter
    from eb_broker.ledger.db import MIGRATIONS

    engine = make_engine(empty_db)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO offersets (uuid, owner, created, expires, result, request, messages) "
            "VALUES ('o', 'alice', '2026-01-01 00:00:00', '2026-01-01 00:05:00', 'YES', '{}', '[]')"
        )
        for uuid, phase in (("done", "COMPLETED"), ("booked", "WAITING")):
            conn.exec_driver_sql(
                "INSERT INTO sessions (uuid, offerset, owner, groups, phase, created, modified, "
                'start, "end", preparation_s, launch_at, cores, memory_gib, storage_gib, '
                "accelerators, request, messages, connectors, outputs, handle, launched) VALUES "
                f"('{uuid}', 'o', 'alice', '[]', '{phase}', '2026-01-01 00:00:00', "
                "'2026-01-01 00:00:00', '2026-01-02 10:00:00', '2026-01-02 12:00:00', 30, "
                "'2026-01-02 09:59:30', 2, 2, 0, '{}', '{}', '[]', '[]', '{}', '{}', NULL)"
            )
        events = [
            ("done", "ACCEPTED", "2026-01-01 00:01:00"),
            ("done", "PREPARING", "2026-01-02 09:59:30"),
            ("done", "RUNNING", "2026-01-02 10:00:05"),
            ("done", "RELEASING", "2026-01-02 10:20:05"),
            ("done", "COMPLETED", "2026-01-02 10:20:06"),
            ("booked", "ACCEPTED", "2026-01-01 00:02:00"),
        ]
        for session, phase, time in events:
            conn.exec_driver_sql(
                "INSERT INTO events (session, time, phase, message) "
                f"VALUES ('{session}', '{time}', '{phase}', NULL)"
            )
    migrate(make_engine(empty_db))
    assert current_revision(engine) == "0005"
    ledger = Ledger(make_engine(empty_db))
    booked = ledger.get_session("booked")
    done = ledger.get_session("done")
    assert booked is not None and done is not None
    assert booked.phase == "WAITING" and booked.start.hour == 10  # the booking is kept
    assert booked.accepted_at is not None and booked.running_at is None
    assert done.accepted_at is not None and done.accepted_at.minute == 1
    assert done.running_at is not None and done.ended_at is not None
    assert (done.ended_at - done.running_at).total_seconds() == 1200
    assert done.finished_at is not None
    rows, total = Archive(ledger).page(ArchiveFilter(owner="alice"))
    assert total == 2 and {r.uuid for r in rows} == {"done", "booked"}
    assert Archive(ledger).transfers_of(["done"]) == {"done": []}
