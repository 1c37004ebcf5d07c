"""Fixtures for the panel tests: one real broker for the module, ipywidgets' test comm."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from ipywidgets.widgets.tests import utils as widget_utils

import eb_sdk as eb
from eb_sdk import aio
from tests.fixtures.notebooks import write_notebook
from tests.fixtures.services import BrokerProcess, free_port

ENV_VARS = (
    "EB_BROKERS",
    "EB_TOKEN",
    "EB_CONFIG",
    "EB_HUB_SERVICE",
    "EB_TIMEZONE",
    "JUPYTERHUB_API_TOKEN",
    "JUPYTERHUB_API_URL",
    "JPY_SESSION_NAME",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No broker from the developer's environment or config file leaks into a test."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EB_CONFIG", str(tmp_path / "no-brokers.yaml"))
    eb.reset()
    eb.configure(retries=1)
    yield
    eb.reset()


@pytest.fixture
def test_comm() -> Iterator[None]:
    """Widgets talk to a dummy comm instead of a kernel (ipywidgets' own test helper)."""
    widget_utils.setup_test_comm()
    yield
    widget_utils.teardown_test_comm()


@pytest.fixture
async def close_clients() -> AsyncIterator[None]:
    """Close the test loop's HTTP clients when the test ends."""
    yield
    await aio.aclose()


@pytest.fixture(scope="session")
def panel_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A local-platform broker (4 cores, 8 GiB) shared by the panel tests."""
    base = tmp_path_factory.mktemp("panel-broker")
    broker = BrokerProcess(
        dir=base,
        port=free_port(),
        db_url=f"sqlite:///{base / 'ledger.sqlite'}",
        args=("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8"),
    ).start()
    yield broker
    broker.stop()


@pytest.fixture
def alpha(panel_broker: BrokerProcess) -> eb.Broker:
    return eb.Broker(panel_broker.url, name="alpha", token=panel_broker.tokens["alice"])


@pytest.fixture
def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def short_notebook(tmp_path: Path) -> Path:
    """Prints ``n is 2`` (``n`` doubled): runs in a few seconds."""
    return write_notebook(tmp_path / "short.ipynb", "print('n is', n * 2)", parameters="n = 1")
