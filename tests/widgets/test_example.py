"""examples/02-panel.ipynb runs in a real kernel against a real broker, without errors."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.fixtures.services import BrokerProcess

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "02-panel.ipynb"


def test_panel_example_runs(panel_broker: BrokerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EB_BROKERS", f"alpha={panel_broker.url}")
    monkeypatch.setenv("EB_TOKEN", panel_broker.tokens["alice"])  # the kernel inherits these
    nb = nbformat.read(EXAMPLE, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(EXAMPLE.parent)}},
    ).execute()
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = json.dumps(outputs)
    assert "application/vnd.jupyter.widget-view+json" in text  # the panel was displayed
    assert "[]" in text  # no sessions accepted yet
