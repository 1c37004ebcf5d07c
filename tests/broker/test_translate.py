"""Pure translation rules: defaults, limits, windows, accelerators, the wire form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eb_broker.scheduling import Resources
from eb_broker.translate import (
    Limits,
    SessionView,
    options_for,
    request_to_demands,
    session_to_wire,
)
from eb_sdk.model import ExecutionRequest, Phase
from tests.broker.helpers import COMPUTE, notebook_request

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
LIMITS = Limits(
    max_resources=Resources(cores=8, memory_gib=16, accelerators={"gpu:A100": 2, "gpu:V100": 4})
)


def _demands(body: dict, **kw):  # type: ignore[no-untyped-def]
    return request_to_demands(
        ExecutionRequest.model_validate(body),
        now=NOW,
        limits=kw.pop("limits", LIMITS),
        preparation=timedelta(seconds=5),
        accelerator_pools=kw.pop("pools", ["gpu:A100", "gpu:V100"]),
    )


def test_defaults_and_min_as_max() -> None:
    out = _demands({"executable": notebook_request()["executable"]})
    assert not out.problems
    (demand,) = out.demands
    assert demand.minimum == Resources(cores=1, memory_gib=1) == demand.maximum
    assert demand.duration == timedelta(hours=1) and demand.windows == ()


def test_ranges_and_limits() -> None:
    out = _demands(notebook_request(2, 4, max_cores=6))
    assert out.demands[0].maximum.cores == 6 and out.demands[0].minimum.cores == 2
    too_many = _demands(notebook_request(9))
    assert [p.kind for p in too_many.problems] == ["urn:resource-limit"]
    assert "9 cores" in str(too_many.problems[0])
    long = _demands(notebook_request(duration="P30D"))
    assert long.problems[0].kind == "urn:resource-limit" and "longer" in str(long.problems[0])
    negative = _demands(notebook_request(duration="-PT1H"))
    assert negative.problems[0].kind == "urn:invalid-request"


def test_windows_in_the_past_are_clipped_or_refused() -> None:
    clipped = _demands(notebook_request(start="2026-11-23T07:00:00Z/PT2H"))
    assert clipped.demands[0].windows[0].start == NOW
    past = _demands(notebook_request(start="2026-11-22T07:00:00Z/PT2H"))
    assert "in the past" in str(past.problems[0])
    far = _demands(notebook_request(start="2027-06-01T07:00:00Z/PT2H"))
    assert far.problems[0].kind == "urn:resource-limit"


def test_several_windows_from_the_extension() -> None:
    body = notebook_request(starts=["2026-11-24T09:00:00Z/PT3H", "2026-11-23T09:00:00Z/PT3H"])
    windows = _demands(body).demands[0].windows
    assert [w.start.day for w in windows] == [23, 24]


def test_accelerators_any_model_gives_one_demand_per_pool() -> None:
    body = notebook_request()
    body["compute"] = {"kind": COMPUTE, "jeb:accelerators": [{"type": "GPU", "count": {"min": 1}}]}
    out = _demands(body)
    pools = sorted(next(iter(d.minimum.accelerators)) for d in out.demands)
    assert pools == ["gpu:A100", "gpu:V100"]
    body["compute"]["jeb:accelerators"] = [{"type": "GPU", "model": "H100"}]
    missing = _demands(body)
    assert missing.problems[0].kind == "urn:not-supported" and "gpu:H100" in str(
        missing.problems[0]
    )


def test_unknown_compute_kind_is_not_supported() -> None:
    out = _demands({"compute": {"kind": "urn:example:quantum", "qubits": 3}})
    assert out.problems[0].kind == "urn:not-supported"


def test_wire_form_of_a_booked_session() -> None:
    start = NOW + timedelta(hours=1)
    view = SessionView(
        uuid="2e164a1b-7ff6-11ef-8412-4bc36fe2face",
        phase=Phase.OFFERED,
        name="x",
        created=NOW,
        modified=NOW,
        expires=NOW + timedelta(minutes=5),
        start=start,
        end=start + timedelta(hours=2),
        preparation=timedelta(seconds=30),
        resources=Resources(cores=2, memory_gib=3, accelerators={"gpu:A100": 1}),
        request=notebook_request(),
        messages=[],
        connectors=[],
        outputs={},
    )
    wire = session_to_wire(view, url="http://b/sessions/x", platform="local", broker="b").dump()
    assert wire["compute"]["cores"] == {"min": 2, "max": 2}
    assert wire["compute"]["jeb:accelerators"][0]["model"] == "A100"
    assert wire["schedule"]["available"] == {
        "start": "2026-11-23T09:00:00Z/PT0S",
        "duration": "PT2H",
    }
    assert wire["schedule"]["preparing"] == {"start": "2026-11-23T08:59:30Z", "duration": "PT30S"}
    assert wire["expires"] == "2026-11-23T08:05:00Z"
    assert wire["jeb:platform"] == {"name": "local", "broker": "b"}
    assert wire["meta"]["options"][0]["values"] == ["ACCEPTED", "REJECTED"]
    assert options_for(Phase.RUNNING)[0].values == ["CANCELLED"]
    assert options_for(Phase.COMPLETED) == []
