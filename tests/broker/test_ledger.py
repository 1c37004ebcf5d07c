"""The ledger on both databases: an expired accept leaves the offer EXPIRED (committed), and a
second broker process on the same PostgreSQL ledger sees it so, over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eb_broker.ledger import Ledger, OfferDraft, OfferExpiredError, make_engine, migrate
from eb_broker.scheduling import Resources
from tests.broker.helpers import accept, notebook_request
from tests.conftest import BrokerFactory
from tests.fixtures.services import Postgres


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    else:
        pg: Postgres = request.getfixturevalue("postgres")
        yield pg.database(f"ledger_{int(time.time() * 1000)}")


def test_accepting_an_expired_offer_records_the_expiry(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    ledger = Ledger(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    _, (row,) = ledger.create_offerset(
        owner="alice",
        groups=[],
        request={},
        result="YES",
        messages=[],
        offers=[
            OfferDraft(
                now + timedelta(hours=1),
                now + timedelta(hours=2),
                Resources(1, 1),
                timedelta(0),
            )
        ],
        now=now,
        expires=now + timedelta(minutes=5),
    )
    later = now + timedelta(minutes=6)
    with pytest.raises(OfferExpiredError, match="expired at"):
        ledger.accept(row.uuid, later, lambda _row, _overlap: [])
    stored = ledger.get_session(row.uuid)
    assert stored is not None and stored.phase == "EXPIRED"  # committed, not rolled back
    assert [e.phase for e in ledger.events(row.uuid)][-1] == "EXPIRED"
    with pytest.raises(OfferExpiredError, match="has expired"):
        ledger.accept(row.uuid, later, lambda _row, _overlap: [])


@pytest.mark.postgres
def test_an_offer_another_broker_made_expires_on_accept(
    broker_factory: BrokerFactory, postgres: Postgres
) -> None:
    url = postgres.database("shared_ledger")
    first = broker_factory("--EBBroker.offer_expiry=1", db_url=url, name="first")
    second = broker_factory("--EBBroker.offer_expiry=1", db_url=url, name="second")
    with first.client() as c:
        offer = c.post("/requests", json=notebook_request()).json()["offers"][0]["meta"]["uuid"]
    time.sleep(1.5)
    # the second process never held this offer: only the ledger knows it has expired
    with second.client() as c:
        r = accept(c, f"/sessions/{offer}")
        assert r.status_code == 409 and r.json()["kind"] == "urn:offer-expired"
        assert c.get(f"/sessions/{offer}").json()["phase"] == "EXPIRED"
