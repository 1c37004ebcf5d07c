"""State is in the ledger: a kill -9 and restart loses nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine

from eb_broker.ledger import current_revision, make_engine, migrate
from tests.broker.helpers import accept, notebook_request
from tests.fixtures.services import BrokerProcess


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


def test_migrations_are_versioned_and_idempotent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    engine = make_engine(url)
    assert current_revision(engine) is None
    migrate(engine)
    assert current_revision(engine) == "0001"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO offersets (uuid, owner, created, expires, result, request, messages) "
            "VALUES ('x', 'alice', '2026-01-01 00:00:00', '2026-01-01 00:05:00', 'NO', '{}', '[]')"
        )
    migrate(make_engine(url))  # upgrading again keeps the data
    with create_engine(url).connect() as conn:
        assert conn.exec_driver_sql("SELECT owner FROM offersets").scalar() == "alice"
