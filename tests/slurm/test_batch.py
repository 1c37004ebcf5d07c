"""A batch on the real Slurm cluster: the chunks are sessions whose jobs run the same session
runner as the local platform, each input with its own output notebook; failures are results,
and a retry runs only them."""

from __future__ import annotations

from pathlib import Path

import pytest

import eb_sdk as eb
from tests.batch.conftest import marked_story, run_counts
from tests.fixtures.slurm import SlurmCluster
from tests.sdk.conftest import ENV_VARS
from tests.slurm.conftest import SlurmBroker

WAIT = 420.0


@pytest.fixture(autouse=True)
def batch_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EB_CONFIG", str(tmp_path / "no-brokers.yaml"))
    monkeypatch.setenv("EB_BATCHES", str(tmp_path / "batches"))
    eb.reset()


def test_a_batch_runs_in_slurm_jobs_in_chunks(
    slurm_broker: SlurmBroker, slurm: SlurmCluster, tmp_path: Path
) -> None:
    process = slurm_broker()
    broker = eb.Broker(process.url, name="slurm", token=process.tokens["alice"])
    nb, markers = marked_story(tmp_path)
    inputs = [str(tmp_path / f"obs-{i:02d}{'-bad' * (i % 4 == 3)}.fits") for i in range(12)]
    batch = eb.map(
        nb,
        inputs,
        parameters={"markers": str(markers)},
        brokers=broker,
        chunk_size=4,
        per_input="30s",
    )
    batch.wait(timeout=WAIT, progress=False)
    status = batch.status()
    assert (status["COMPLETED"], status["FAILED"]) == (9, 3), batch.warnings
    assert set(run_counts(markers).values()) == {1} and len(run_counts(markers)) == 12
    chunks = batch._state.chunks
    assert len(chunks) == 3 and {c.broker for c in chunks} == {"slurm"}
    for chunk in chunks:  # each chunk was a session the Slurm platform ran as a job
        session = eb.session(chunk.session, brokers=broker)
        assert session.platform == "slurm" and session.phase == eb.Phase.COMPLETED
        assert "4/4 inputs finished" in session.outputs["progress"]
        assert Path(session.outputs["batch"]).is_file()
        job_id = (Path(session.outputs["batch"]).parent / "slurm_job_id").read_text().strip()
        assert slurm.job_state(int(job_id)) in ("COMPLETED", "")  # "": Slurm forgot it
    frame = batch.results()
    assert set(frame[frame.phase == "FAILED"].failing_cell) == {3}
    assert all(Path(p).is_file() for p in frame.output)
    failed = batch.failed()[0]
    assert "cannot reduce" in failed.open().traceback
    assert str(Path(failed.output).parent).startswith(str(process.dir / "work"))

    (markers / "broken").unlink()
    batch.retry()
    batch.wait(timeout=WAIT, progress=False)
    assert batch.status()["COMPLETED"] == 12
    assert sorted(v for v in run_counts(markers).values()) == [1] * 9 + [2] * 3
    assert len(batch._state.chunks) == 4  # the three failed runs: one more chunk
