"""The rules of a batch without a broker: ids, the state file, placement, what a session's
report does to its runs, and the checks eb.map makes before asking anyone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import eb_sdk as eb
from eb_sdk._batch_plan import (
    apply_report,
    assign,
    booking_duration,
    choose,
    chunk_of,
    release_chunk,
    seconds_per_input,
)
from eb_sdk._batch_state import (
    BatchState,
    ChunkRecord,
    RunRecord,
    StateLock,
    list_states,
    new_batch_id,
    run_ids,
)
from tests.batch.conftest import marked_notebook

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@dataclass
class FakeOffer:
    start: datetime | None
    cores: int | None


def state_of(n: int, **options: object) -> BatchState:
    values = [f"data/obs-{i:03d}.fits" for i in range(n)]
    runs = [
        RunRecord(i, v, rid) for i, (v, rid) in enumerate(zip(values, run_ids(values), strict=True))
    ]
    return BatchState(
        id="b", notebook="/nb.ipynb", parameter="input_file", runs=runs, options=dict(options)
    )


def chunk_for(state: BatchState, runs: list[int], session: str = "s1", cid: int = 0) -> ChunkRecord:
    chunk = ChunkRecord(cid, runs, "accepted", "alpha", "http://alpha", session)
    state.chunks.append(chunk)
    assign(state, chunk)
    return chunk


def test_ids_name_files_and_sort() -> None:
    ids = run_ids(["data/obs 1.fits", "data/obs 1.fits", 7, {"a": 1}, Path("x/y.txt")])
    assert ids == ["00000-obs-1", "00001-obs-1", "00002", "00003", "00004-y"]
    assert run_ids(list(range(123456)))[-1] == "123455"
    batch_id = new_batch_id("/home/a/My Reduction!.ipynb", NOW)
    assert batch_id.startswith("My-Reduction-20261123-090000-") and len(batch_id) == 33


def test_state_round_trip_is_atomic_json(batch_env: Path) -> None:
    state = state_of(3, chunk_size=2)
    chunk_for(state, [0, 1])
    state.runs[0].phase, state.runs[0].error = "FAILED", {"ename": "ValueError", "cell": 2}
    state.save()
    assert state.path == batch_env / "b" / "batch.json"
    assert [p.name for p in state.path.parent.iterdir()] == ["batch.json"]  # no leftovers
    data = json.loads(state.path.read_text())
    assert data["version"] == 1 and data["runs"][2] == {
        "index": 2,
        "input": "data/obs-002.fits",
        "id": "00002-obs-002",
        "phase": "PENDING",
        "attempts": 0,
    }
    again = BatchState.load("b")
    assert again.to_dict() == state.to_dict()
    assert BatchState.load(state.path.parent).id == "b"
    assert [s.id for s in list_states()] == ["b"]
    summary = again.summary()
    assert summary["counts"] == {
        "PENDING": 1,
        "WAITING": 1,
        "RUNNING": 0,
        "COMPLETED": 0,
        "FAILED": 1,
        "CANCELLED": 0,
    }
    assert summary["failed"][0]["cell"] == 2 and summary["failed"][0]["ename"] == "ValueError"
    with pytest.raises(eb.NotFound, match="no batch 'nope'"):
        BatchState.load("nope")
    data["version"] = 99
    state.path.write_text(json.dumps(data))
    with pytest.raises(eb.InvalidRequest, match="version 99"):
        BatchState.load("b")


def test_one_process_follows_a_batch(batch_env: Path) -> None:
    state = state_of(1)
    first, second = StateLock(state), StateLock(state)
    first.acquire()
    with pytest.raises(eb.Conflict, match="followed by another process"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


def test_placement_is_by_earliest_expected_finish() -> None:
    offers = [
        FakeOffer(NOW + timedelta(minutes=5), 1),  # 10 runs x 60 s on 1 core: ends 09:15
        FakeOffer(NOW + timedelta(minutes=8), 4),  # 3 rounds x 60 s: ends 09:11
        FakeOffer(NOW + timedelta(minutes=2), 1),  # ends 09:12
    ]
    choice = choose(offers, 10, 60.0, NOW)
    assert choice is not None and choice.index == 1
    assert choice.expected_end == NOW + timedelta(minutes=11)
    # a chunk in flight ends at 09:06: an offer starting later than that does not help yet
    assert choose(offers[:2], 10, 60.0, NOW, [NOW + timedelta(minutes=6)]) is None
    assert choose(offers, 10, 60.0, NOW, [NOW + timedelta(minutes=9)]) == choice
    # a chunk that runs late does not stop an offer that starts soon
    soon = [FakeOffer(NOW + timedelta(seconds=30), 1)]
    assert choose(soon, 10, 60.0, NOW, [NOW - timedelta(minutes=5)]) is not None
    assert choose(offers[:2], 10, 60.0, NOW, [NOW - timedelta(minutes=5)]) is None
    assert choose([], 10, 60.0, NOW) is None


def test_durations_come_from_the_options_then_from_what_ran() -> None:
    state = state_of(6, per_input_s=30.0)
    assert booking_duration(state, 10, 1) == timedelta(seconds=30 * 10 * 1.5 + 120)
    assert booking_duration(state, 10, 4) == timedelta(seconds=30 * 3 * 1.5 + 120)
    assert booking_duration(state_of(1, duration_s=600.0), 10, 1) == timedelta(minutes=10)
    assert seconds_per_input(state) == 30.0
    chunk = chunk_for(state, [0, 1, 2, 3])
    chunk.cores = 2
    for i in range(4):
        state.runs[i].started = "2026-11-23T09:00:00Z"
        state.runs[i].finished = "2026-11-23T09:00:04Z"
    # 4 runs in 4 s of wall time on 2 cores: 2 core-seconds each
    assert seconds_per_input(state) == pytest.approx(2.0)
    assert [r.index for r in chunk_of(state)] == [4, 5]


def test_chunks_are_an_eighth_and_shrink_at_the_end() -> None:
    assert len(chunk_of(state_of(200))) == 25
    assert len(chunk_of(state_of(10000))) == 100
    assert len(chunk_of(state_of(30))) == 10
    state = state_of(1000)
    for run in state.runs[:900]:
        run.phase = "COMPLETED"
    assert len(chunk_of(state, in_flight=3)) == 25  # 100 left, four sessions: a quarter
    assert len(chunk_of(state, in_flight=20)) == 10
    state.options["chunk_size"] = 40  # given: always that many
    assert len(chunk_of(state, in_flight=20)) == 40


def test_a_report_finishes_runs_and_requeues_the_lost_ones() -> None:
    state = state_of(4, max_attempts=2)
    chunk = chunk_for(state, [0, 1, 2, 3])
    assert apply_report(state, chunk, "RUNNING", []) is True
    assert [r.phase for r in state.runs] == ["RUNNING"] * 4
    results = [
        {"id": state.runs[0].id, "state": "SUCCEEDED", "output": "/o/0.ipynb", "duration_s": "1.5"},
        {
            "id": state.runs[1].id,
            "state": "FAILED",
            "output": "/o/1.ipynb",
            "cell": "3",
            "ename": "ValueError",
            "evalue": "bad",
            "reason": "cell 3 raised ValueError: bad",
        },
        {"id": "someone-else", "state": "SUCCEEDED"},
    ]
    apply_report(state, chunk, "RUNNING", results)
    done, failed = state.runs[0], state.runs[1]
    assert (done.phase, done.output, done.duration) == ("COMPLETED", "/o/0.ipynb", 1.5)
    assert failed.phase == "FAILED"
    assert failed.error == {
        "ename": "ValueError",
        "evalue": "bad",
        "message": "cell 3 raised ValueError: bad",
        "cell": 3,
    }
    assert apply_report(state, chunk, "RUNNING", results) is False  # nothing new
    # the session ends without results for runs 2 and 3: they go back for another session
    apply_report(state, chunk, "FAILED", [], reason="the runner process died")
    assert [r.phase for r in state.runs] == ["COMPLETED", "FAILED", "PENDING", "PENDING"]
    assert chunk.state == "done" and chunk.message == "the runner process died"
    assert state.runs[2].attempts == 1 and state.runs[2].chunk is None
    # lost a second time: FAILED, saying why
    again = chunk_for(state, [2, 3], session="s2", cid=1)
    apply_report(state, again, "FAILED", [], reason="the booked time ended")
    assert state.runs[2].phase == "FAILED"
    assert "did not finish in 2 sessions" in state.runs[2].error["message"]
    assert "the booked time ended" in state.runs[2].error["message"]
    assert state.done


def test_cancelled_sessions_and_offers_that_never_became_sessions() -> None:
    state = state_of(3)
    chunk = chunk_for(state, [0, 1])
    apply_report(state, chunk, "CANCELLED", [{"id": state.runs[0].id, "state": "SUCCEEDED"}])
    assert [r.phase for r in state.runs] == ["COMPLETED", "CANCELLED", "PENDING"]
    offered = chunk_for(state, [2], session="s2", cid=1)
    offered.state = "accepting"
    release_chunk(state, offered, "EXPIRED")
    assert state.runs[2].phase == "PENDING" and state.runs[2].attempts == 0
    assert offered.state == "done" and not state.done
    state.runs[1].reset()
    assert state.runs[1].phase == "PENDING"


def test_map_checks_what_it_is_given_before_asking_anyone(tmp_path: Path) -> None:
    nb = marked_notebook(tmp_path / "reduce.ipynb")
    with pytest.raises(eb.InvalidRequest, match="not a notebook file"):
        eb.map(tmp_path / "missing.ipynb", ["a"])
    with pytest.raises(eb.InvalidRequest, match="at least one input"):
        eb.map(nb, [])
    with pytest.raises(eb.InvalidRequest, match=r"inputs\[1\]"):
        eb.map(nb, ["a", object()])
    with pytest.raises(eb.InvalidRequest, match="not a Python name"):
        eb.map(nb, ["a"], parameter="input-file")
    with pytest.raises(eb.InvalidRequest, match="chunk_size: must be at least 1"):
        eb.map(nb, ["a"], chunk_size=0)
    with pytest.raises(eb.InvalidRequest, match="per_input"):
        eb.map(nb, ["a"], per_input="a while")
    with pytest.raises(eb.InvalidRequest, match="start"):
        eb.map(nb, ["a"], start="when pigs fly")
    with pytest.raises(eb.ConfigError, match="no brokers configured"):
        eb.map(nb, ["a"])
    assert eb.batches() == []  # nothing was left behind
