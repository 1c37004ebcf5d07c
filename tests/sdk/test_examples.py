"""The example notebook tells a true story: run it (in memory) against a real broker."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.fixtures.services import BrokerProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_examples_are_stored_without_outputs() -> None:
    for path in EXAMPLES.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path
    analysis = nbformat.read(EXAMPLES / "analysis.ipynb", as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in analysis.cells)


def test_when_and_where_story_runs(
    two_brokers: tuple[BrokerProcess, BrokerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta = two_brokers
    monkeypatch.setenv("EB_BROKERS", f"alpha={alpha.url},beta={beta.url}")
    monkeypatch.setenv("EB_TOKEN", alpha.tokens["alice"])  # the kernel inherits these
    nb = nbformat.read(EXAMPLES / "01-when-and-where.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    ).execute()
    text = json.dumps([cell.get("outputs") for cell in nb.cells])
    assert "pi is about 3.14159" in text and "after 1000000 terms" in text
    assert "COMPLETED" in text


def test_batch_story_runs(
    two_brokers: tuple[BrokerProcess, BrokerProcess],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    alpha, beta = two_brokers
    monkeypatch.setenv("EB_BROKERS", f"alpha={alpha.url},beta={beta.url}")
    monkeypatch.setenv("EB_TOKEN", alpha.tokens["alice"])  # both brokers know alice's token
    monkeypatch.setenv("EB_BATCHES", str(tmp_path / "batches"))
    nb = nbformat.read(EXAMPLES / "03-batch.ipynb", as_version=4)
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
        ).execute()
    finally:
        for copy in EXAMPLES.glob("reduce.debug-*.ipynb"):  # made by run.reopen()
            copy.unlink()
    text = json.dumps([cell.get("outputs") for cell in nb.cells])
    assert "'COMPLETED': 11" in text and "'FAILED': 1," in text  # one corrupt file
    assert "could not convert string to float" in text  # the failing cell, opened
    assert "/lab/tree/reduce.debug-00007-obs-007.ipynb?token=" in text  # reopened
    assert "'COMPLETED': 12" in text  # after the fix and the retry
    assert "reduce.ipynb  2" in text  # eb.batches(): the table
