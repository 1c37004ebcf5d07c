"""Concurrent accepts: capacity is never exceeded, on SQLite and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.broker.helpers import notebook_request
from tests.fixtures.services import TOKENS, BrokerProcess, Postgres

CLIENTS = 50
USERS = list(TOKENS)


def _slot() -> str:
    start = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ") + "/PT0S"


def _request_and_accept(broker: BrokerProcess, i: int, body: dict[str, Any]) -> tuple[str, Any]:
    user = USERS[i % len(USERS)]
    with httpx.Client(base_url=broker.url, headers=broker.headers(user), timeout=60) as c:
        answer = c.post("/requests", json=body).json()
        if answer["result"] != "YES":
            return "no-offer", answer
        url = answer["offers"][0]["meta"]["url"]
        r = c.post(
            url, json={"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"}
        )
        return ("accepted" if r.status_code == 200 else f"http-{r.status_code}"), r.json()


def _accept_offer(broker: BrokerProcess, user: str, url: str) -> tuple[int, Any]:
    with httpx.Client(headers=broker.headers(user), timeout=60) as c:
        r = c.post(
            url, json={"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"}
        )
        return r.status_code, r.json()


def _race_with_holds(broker: BrokerProcess) -> None:
    body = notebook_request(1, 1, start=_slot(), duration="PT1H")
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda i: _request_and_accept(broker, i, body), range(CLIENTS)))
    outcomes = [r[0] for r in results]
    assert outcomes.count("accepted") == 4, outcomes
    assert set(outcomes) <= {"accepted", "no-offer"}, outcomes


def _race_without_holds(broker: BrokerProcess) -> None:
    """Offers don't hold capacity: all 50 get an offer for the same slot; exactly 4 win."""
    body = notebook_request(1, 1, start=_slot(), duration="PT1H")
    offers = []
    for i in range(CLIENTS):
        user = USERS[i % len(USERS)]
        with httpx.Client(base_url=broker.url, headers=broker.headers(user), timeout=60) as c:
            answer = c.post("/requests", json=body).json()
            assert answer["result"] == "YES"
            offers.append((user, answer["offers"][0]["meta"]["url"]))
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda o: _accept_offer(broker, *o), offers))
    statuses = [status for status, _ in results]
    assert statuses.count(200) == 4, statuses
    assert statuses.count(409) == CLIENTS - 4
    for status, body_ in results:
        if status == 409:
            assert body_["kind"] == "urn:no-capacity" and "no longer free" in body_["message"]


ARGS = ("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=64")


def test_concurrent_accepts_sqlite(broker_factory) -> None:  # type: ignore[no-untyped-def]
    _race_with_holds(broker_factory(*ARGS))
    _race_without_holds(broker_factory(*ARGS, "--EBBroker.hold_offers=False"))


@pytest.mark.postgres
def test_concurrent_accepts_postgres(broker_factory, postgres: Postgres) -> None:  # type: ignore[no-untyped-def]
    _race_with_holds(broker_factory(*ARGS, db_url=postgres.database("race_holds")))
    _race_without_holds(
        broker_factory(*ARGS, "--EBBroker.hold_offers=False", db_url=postgres.database("race_free"))
    )
