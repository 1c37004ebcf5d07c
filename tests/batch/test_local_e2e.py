"""The seeds' story on a real local broker: run a notebook over 200 inputs, some failing on
purpose; the client is killed half way and a new one resumes (no input runs twice); the
failures are looked at, one is reopened in a Jupyter server, then retried after the fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx

import eb_sdk as eb
from eb_sdk._batch_state import BatchState, ChunkRecord, RunRecord, run_ids
from eb_sdk.model import BatchInput, NotebookBatch
from tests.batch.conftest import marked_story, run_counts
from tests.fixtures.notebooks import write_notebook
from tests.fixtures.services import REPO_ROOT, BrokerProcess
from tests.slurm.conftest import wait_until

WAIT = 600.0  # 200 kernels on two cores shared with other test runs


def inputs_for(data: Path, n: int, bad_every: int) -> list[str]:
    """``n`` input paths; every ``bad_every``-th fails while the notebook is broken."""
    data.mkdir(exist_ok=True)
    bad = {i for i in range(n) if i % bad_every == bad_every - 1}
    return [str(data / f"obs-{i:03d}{'-bad' if i in bad else ''}.fits") for i in range(n)]


def final_runs(state_path: Path) -> int:
    try:
        data = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return 0
    return sum(1 for r in data["runs"] if r["phase"] in ("COMPLETED", "FAILED"))


def test_two_hundred_inputs_killed_resumed_triaged_retried(
    batch_broker: BrokerProcess, local: eb.Broker, tmp_path: Path, batch_env: Path
) -> None:
    nb, markers = marked_story(tmp_path)
    inputs = inputs_for(tmp_path / "data", 200, 25)
    bad = {Path(i).stem for i in inputs if "-bad" in i}
    assert len(bad) == 8

    # 1. a client starts the batch and is killed (SIGKILL) half way
    args = {
        "notebook": str(nb),
        "inputs": inputs,
        "parameters": {"markers": str(markers), "scale": 2},
        "url": local.url,
        "token": local.token,
        "chunk_size": 20,
    }
    client = subprocess.Popen(
        [sys.executable, "-m", "tests.batch.map_client", json.dumps(args)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert client.stdout is not None
        batch_id = client.stdout.readline().strip()
        assert batch_id, client.stderr.read() if client.stderr else ""
        state_path = batch_env / batch_id / "batch.json"
        wait_until("half the runs", lambda: final_runs(state_path) >= 70, timeout=WAIT)
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    before = BatchState.load(batch_id)
    finished_before = {r.id for r in before.runs if r.is_final}
    assert 70 <= len(finished_before) < 200
    assert any(c.in_flight for c in before.chunks)  # it was killed while sessions ran

    # 2. a new client resumes: sessions in flight are followed, the rest placed
    batch = eb.Batch.load(batch_id, brokers=local)
    batch.wait(timeout=WAIT, progress=False)
    assert batch.done and batch.status() == {
        "PENDING": 0,
        "WAITING": 0,
        "RUNNING": 0,
        "COMPLETED": 192,
        "FAILED": 8,
        "CANCELLED": 0,
    }
    assert set(run_counts(markers).values()) == {1} and len(run_counts(markers)) == 200
    for run in batch:
        if run.id in finished_before:
            assert before.runs[run.index].phase == run.phase  # kept, not run again

    # 3. triage: the results, the failures, the output notebook with the failing cell
    frame = batch.results()
    assert list(frame.columns[:9]) == [
        "index",
        "input",
        "phase",
        "duration",
        "broker",
        "error_name",
        "error_value",
        "failing_cell",
        "output",
    ]
    failed = frame[frame.phase == "FAILED"]
    assert {Path(i).stem for i in failed.input} == bad
    assert set(failed.error_name) == {"ValueError"} and set(failed.failing_cell) == {3}
    assert set(frame.broker) == {"local"} and frame.duration.min() > 0
    assert all(Path(p).is_file() for p in frame.output)
    run = batch.failed()[0]
    assert run.cell == 3 and "cannot reduce" in run.error["evalue"]
    opened = run.open()
    assert "raise ValueError" in opened.failing_cell.source
    assert "ValueError: cannot reduce" in opened.traceback
    assert any("papermill-error-cell-tag" in c.metadata.get("tags", []) for c in opened.nb.cells)
    (summary,) = eb.batches()
    assert summary["id"] == batch_id and summary["counts"]["FAILED"] == 8
    assert {f["cell"] for f in summary["failed"]} == {3} and summary["done"] is True

    # 4. reopen one failure: a Jupyter server with its notebook, parameters and input
    session = run.reopen(start="now", duration="15min")
    try:
        session.wait(["AVAILABLE"], timeout=180).raise_if_failed()
        url = session.connectors[0].location or ""
        copy = f"reduce.debug-{run.id}.ipynb"
        assert f"/lab/tree/{copy}?token=" in url
        parts = urlsplit(url)
        contents = httpx.get(
            f"{parts.scheme}://{parts.netloc}/api/contents/{copy}?{parts.query}", timeout=30
        )
        assert contents.status_code == 200, contents.text
        cells = contents.json()["content"]["cells"]
        injected = [c for c in cells if "injected-parameters" in c["metadata"].get("tags", [])]
        assert f'input_file = "{run.input}"' in injected[0]["source"]
        assert f'markers = "{markers}"' in injected[0]["source"]
    finally:
        session.cancel()
    assert (tmp_path / copy).is_file()  # next to the notebook: relative paths work there

    # 5. the fix, then a retry: only the failed runs run again
    (markers / "broken").unlink()
    batch.retry()
    batch.wait(timeout=WAIT, progress=False)
    assert batch.status()["COMPLETED"] == 200
    counts = run_counts(markers)
    assert {k for k, v in counts.items() if v == 2} == bad
    assert {v for k, v in counts.items() if k not in bad} == {1}


def test_an_interrupted_session_reruns_only_its_unfinished_inputs(
    batch_broker: BrokerProcess, local: eb.Broker, tmp_path: Path
) -> None:
    nb, markers = marked_story(tmp_path, broken=False)
    slow = nb.with_name("slow.ipynb")
    content = json.loads(nb.read_text())
    content["cells"].append({**content["cells"][-1], "source": "import time; time.sleep(1)"})
    slow.write_text(json.dumps(content))
    inputs = inputs_for(tmp_path / "data", 10, 1000)
    batch = eb.map(slow, inputs, parameters={"markers": str(markers)}, brokers=local)
    (chunk,) = batch._state.chunks
    session_dir = Path(batch_broker.dir) / "work" / chunk.session

    def some_finished() -> list[str]:
        found = [json.loads(p.read_text()) for p in (session_dir / "inputs").glob("*.json")]
        return [r["id"] for r in found if r.get("state") == "SUCCEEDED"]

    wait_until("a few inputs", lambda: len(some_finished()) >= 3, timeout=WAIT)
    finished = some_finished()
    status = json.loads((session_dir / "status.json").read_text())
    os.killpg(status["pid"], signal.SIGKILL)  # the node dies: runner and running inputs
    batch.wait(timeout=WAIT, progress=False)
    assert batch.status()["COMPLETED"] == 10
    assert len(batch._state.chunks) == 2 and batch._state.chunks[0].message
    again = set(batch._state.chunks[1].runs)
    runs = {r.id: r for r in batch}
    assert not again & {runs[i].index for i in finished}  # finished ones are not run again
    counts = run_counts(markers)
    assert all(counts[Path(runs[i].input).stem] == 1 for i in finished)
    assert {runs[i].attempts for i in runs if runs[i].index in again} == {1}


def test_resume_finds_an_offer_the_client_was_accepting(
    local: eb.Broker, tmp_path: Path, batch_env: Path
) -> None:
    """Killed between writing down the offer and accepting it: the next client accepts it
    (or, were it gone, places its runs again) — the runs are never in two sessions."""
    nb, markers = marked_story(tmp_path, broken=False)
    inputs = inputs_for(tmp_path / "data", 2, 1000)
    state = BatchState(
        id="interrupted",
        notebook=str(nb),
        parameter="input_file",
        parameters={"markers": str(markers)},
        runs=[],
        options={"brokers": [f"local={local.url}"], "chunk_size": 50},
    )
    state.runs = [
        RunRecord(i, v, rid) for i, (v, rid) in enumerate(zip(inputs, run_ids(inputs), strict=True))
    ]
    request = NotebookBatch(
        location=str(nb),
        parameter="input_file",
        parameters=state.parameters,
        inputs=[BatchInput(id=r.id, value=r.input) for r in state.runs],
    )
    offers = eb.request(request, brokers=local, duration="10min")
    offer = offers.earliest()
    chunk = ChunkRecord(0, [0, 1], "accepting", "local", local.url, offer.uuid, url=offer.url)
    chunk.others = [[local.url, o.uuid] for o in offers if o is not offer]
    state.chunks, state.next_chunk = [chunk], 1
    for run in state.runs:
        run.phase, run.chunk, run.session, run.broker = "WAITING", 0, offer.uuid, "local"
    state.save()
    batch = eb.Batch.load("interrupted", brokers=local)
    batch.wait(timeout=WAIT, progress=False)
    assert batch.status()["COMPLETED"] == 2 and len(batch._state.chunks) == 1
    assert all(eb.session(o.uuid, brokers=local).phase.value == "REJECTED" for o in offers[1:])
    assert set(run_counts(markers).values()) == {1}


def test_the_eb_command(
    batch_broker: BrokerProcess, local: eb.Broker, tmp_path: Path, batch_env: Path
) -> None:
    nb, markers = marked_story(tmp_path)
    for path in inputs_for(tmp_path / "data", 6, 3):  # obs-002-bad, obs-005-bad fail
        Path(path).write_text("x")
    env = {
        **os.environ,
        "EB_BROKERS": f"local={local.url}",
        "EB_TOKEN": batch_broker.tokens["alice"],
    }

    def eb_cmd(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eb_sdk.cli", *argv],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )

    ran = eb_cmd(
        "map", str(nb), "--inputs", "data/*.fits", "-p", f"markers={markers}", "--chunk-size", "3"
    )
    assert ran.returncode == 1, ran.stderr  # some runs failed
    assert "COMPLETED 4, FAILED 2" in ran.stdout
    assert "obs-002-bad.fits" in ran.stdout and "cell 3 raised ValueError" in ran.stdout
    assert "100%" in ran.stderr  # the progress bar
    listed = json.loads(eb_cmd("batches", "--json").stdout)
    batch_id = listed[0]["id"]
    assert listed[0]["counts"]["FAILED"] == 2 and listed[0]["total"] == 6
    shown = eb_cmd("batch", "show", batch_id, "--json", "--runs")
    assert shown.returncode == 1 and len(json.loads(shown.stdout)["runs"]) == 6
    assert f"{tmp_path}/data/obs-000.fits" in shown.stdout  # inputs are absolute paths
    (markers / "broken").unlink()
    retried = eb_cmd("batch", "retry", batch_id, "--no-progress")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "COMPLETED 6" in retried.stdout
    assert eb_cmd("batch", "show", "no-such-batch").returncode == 4
    usage = eb_cmd("map", str(nb), "--inputs", "nothing/*.fits")
    assert usage.returncode == 2 and "matches no file" in usage.stderr
    nobody = eb_cmd("map", str(nb), "--inputs", "data/*.fits", "--cores", "64")
    assert nobody.returncode == 3, nobody.stderr  # nobody offers 64 cores
    assert len(json.loads(eb_cmd("batches", "--json").stdout)) == 1  # nothing left behind


def test_cancel_keeps_what_finished(local: eb.Broker, tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "slow.ipynb",
        "import time\ntime.sleep(0.1 if input_file.startswith('quick') else 300)",
        parameters="input_file = ''",
    )
    inputs = ["quick-0", "quick-1", "slow-2", "slow-3", "slow-4", "slow-5"]
    batch = eb.map(nb, inputs, brokers=local, chunk_size=2)
    wait_until("the quick runs", lambda: batch.status()["COMPLETED"] == 2, timeout=WAIT)
    batch.cancel()
    batch.wait(timeout=WAIT, progress=False)
    assert batch.status()["COMPLETED"] == 2 and batch.status()["CANCELLED"] == 4
    for chunk in batch._state.chunks:
        assert chunk.phase in ("COMPLETED", "CANCELLED", "REJECTED", "EXPIRED")
    assert batch.retry().status()["CANCELLED"] == 4  # failed_only: nothing failed
    batch.retry(failed_only=False)  # the cancelled ones again...
    assert batch.status()["COMPLETED"] == 2  # ...never the completed ones
    batch.cancel().wait(timeout=WAIT, progress=False)
    assert batch.status()["CANCELLED"] == 4
