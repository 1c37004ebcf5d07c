"""Fixtures of the batch tests: a real local broker, a notebook that leaves a marker per run,
and batches kept in the test's own directory."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import eb_sdk as eb
from tests.fixtures.notebooks import write_notebook
from tests.fixtures.services import BrokerProcess, start_sqlite_broker
from tests.sdk.conftest import ENV_VARS

#: The notebook of the batch tests: it appends a line to ``<markers>/<input stem>.run`` (so a
#: test can count how often each input ran) and fails in cell 3 for inputs named ``*-bad*``
#: while the file ``<markers>/broken`` exists (so a retry after "the fix" succeeds).
MARKED = (
    "import os, pathlib\nstem = pathlib.Path(input_file).stem",
    "with open(os.path.join(markers, stem + '.run'), 'a') as fh:\n    fh.write('ran\\n')",
    "if '-bad' in stem and os.path.exists(os.path.join(markers, 'broken')):\n"
    "    raise ValueError(f'cannot reduce {input_file}')\nprint('reduced', stem, scale)",
)


def marked_notebook(path: Path) -> Path:
    return write_notebook(path, *MARKED, parameters="input_file = ''\nmarkers = ''\nscale = 1")


def marked_story(base: Path, *, broken: bool = True) -> tuple[Path, Path]:
    """The notebook (``base/reduce.ipynb``) and its markers directory; ``broken``: the
    ``*-bad`` inputs fail until the file ``broken`` is removed."""
    markers = base / "markers"
    markers.mkdir()
    if broken:
        (markers / "broken").write_text("")
    return marked_notebook(base / "reduce.ipynb"), markers


def run_counts(markers: Path) -> dict[str, int]:
    """How often each input ran, from the marker files."""
    return {p.stem: len(p.read_text().splitlines()) for p in markers.glob("*.run") if p.is_file()}


@pytest.fixture(autouse=True)
def batch_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No broker or batch of the developer's leaks in: batches live in the test's directory."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EB_CONFIG", str(tmp_path / "no-brokers.yaml"))
    monkeypatch.setenv("EB_BATCHES", str(tmp_path / "batches"))
    eb.reset()
    eb.configure(retries=1)
    yield tmp_path / "batches"
    eb.reset()


def start_local_broker(base: Path, cores: int = 2, *args: str) -> BrokerProcess:
    return start_sqlite_broker(
        base,
        f"--LocalPlatform.cores={cores}",
        "--LocalPlatform.memory_gib=4",
        f"--LocalPlatform.python={sys.executable}",
        *args,
    )


@pytest.fixture(scope="module")
def batch_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One local broker (2 cores) for a module's batch tests."""
    broker = start_local_broker(tmp_path_factory.mktemp("batch-broker"))
    yield broker
    broker.stop()


@pytest.fixture
def local(batch_broker: BrokerProcess) -> eb.Broker:
    return eb.Broker(batch_broker.url, name="local", token=batch_broker.tokens["alice"])
