"""What people read: relative times, the user's zone, resources, costs in the offers table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import eb_sdk as eb
from eb_sdk._format import human_duration, local_time, relative
from eb_sdk.model import ScheduledExecutionSession

NOW = datetime(2026, 11, 21, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(hours=2, minutes=10), "2 h 10 min"),
        (timedelta(hours=2, minutes=10, seconds=59, milliseconds=800), "2 h 11 min"),
        (timedelta(minutes=59, seconds=59, milliseconds=900), "1 h"),
        (timedelta(seconds=45), "45 s"),
        (timedelta(days=3, hours=4, minutes=5), "3 d 4 h"),
        (timedelta(0), "0 s"),
    ],
)
def test_human_durations(delta: timedelta, text: str) -> None:
    assert human_duration(delta) == text


def test_relative_and_local_times(monkeypatch: pytest.MonkeyPatch) -> None:
    assert relative(NOW + timedelta(hours=2, minutes=10), NOW) == "starts in 2 h 10 min"
    assert relative(NOW + timedelta(seconds=10), NOW) == "starts now"
    assert relative(NOW - timedelta(minutes=5), NOW) == "started 5 min ago"
    assert relative(NOW - timedelta(minutes=5), NOW, verb="expires") == "expired 5 min ago"
    monkeypatch.setenv("EB_TIMEZONE", "Europe/Berlin")
    assert local_time(NOW) == "Sat 21 Nov 14:00 CET"
    monkeypatch.setenv("EB_TIMEZONE", "America/New_York")
    assert local_time(NOW) == "Sat 21 Nov 08:00 EST"


def _offer(start: datetime, cost: float | None, uuid: str) -> eb.Offer:
    wire = ScheduledExecutionSession.model_validate(
        {
            "meta": {"uuid": uuid},
            "phase": "OFFERED",
            "expires": "2099-01-01T00:00:00Z",
            "compute": {
                "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"
                "compute/simple-compute-resource.yaml",
                "cores": {"min": 4, "max": 4},
                "memory": {"min": 8, "max": 8},
                "jeb:accelerators": [{"type": "GPU", "model": "A100", "count": 1}],
            },
            "schedule": {"available": {"start": f"{start:%Y-%m-%dT%H:%M:%SZ}/PT0S"}},
            "costs": [
                {
                    "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"
                    "costs/simple-minmax-float-cost.yaml",
                    "min": cost,
                }
            ]
            if cost is not None
            else None,
            "jeb:platform": {"name": "slurm", "broker": "hpc"},
        }
    )
    return eb.Offer(wire, eb.Broker("http://hpc.example", name="hpc"))


def test_offers_sort_by_cost_and_show_resources() -> None:
    soon = datetime.now(UTC) + timedelta(hours=1)
    offers = eb.Offers(
        [
            _offer(soon, 5.0, "00000000-0000-0000-0000-000000000001"),
            _offer(soon + timedelta(hours=1), 2.5, "00000000-0000-0000-0000-000000000002"),
            _offer(soon - timedelta(minutes=30), None, "00000000-0000-0000-0000-000000000003"),
        ]
    )
    assert offers.cheapest().cost == 2.5
    assert offers.earliest().cost is None
    assert [o.cost for o in offers.sorted("cost")] == [2.5, 5.0, None]
    assert offers[0].gpus == 1 and offers[0].resources == "4 cores, 8 GiB, 1 GPU A100"
    text = str(offers)
    assert "slurm" in text and "2.5" in text and "starts in 1 h" in text
    assert offers[1:].brokers == ["hpc"] and len(offers[1:]) == 2
    frame = offers.to_pandas()
    assert list(frame["cost"].fillna(-1)) == [5.0, 2.5, -1]
    with pytest.raises(ValueError, match="sort by"):
        offers.sorted("colour")
