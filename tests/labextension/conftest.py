"""Fixtures for the JupyterLab extension: a real broker and a real Jupyter server using it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eb_sdk as eb
from tests.fixtures.jupyter import JupyterProcess
from tests.fixtures.notebooks import write_notebook
from tests.fixtures.services import BrokerProcess, free_port


def local_broker(base: Path) -> BrokerProcess:
    """A local-platform broker (4 cores, 8 GiB) with the usual tokens."""
    return BrokerProcess(
        dir=base,
        port=free_port(),
        db_url=f"sqlite:///{base / 'ledger.sqlite'}",
        args=("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8"),
    ).start()


@pytest.fixture(scope="module")
def lab_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """The broker ``alpha`` of the module's tests."""
    broker = local_broker(tmp_path_factory.mktemp("alpha"))
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def beta_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A second broker, ``beta``: offers come from both."""
    broker = local_broker(tmp_path_factory.mktemp("beta"))
    yield broker
    broker.stop()


def book_from_code(
    broker: BrokerProcess, what: Path | Any, start: str, name: str | None = None
) -> eb.Session:
    """What a notebook cell does: eb.request(...).earliest().accept(), as alice; ``what`` is
    a notebook's path or an executable (eb.JupyterServer(...))."""
    alpha = eb.Broker(broker.url, name="alpha", token=broker.tokens["alice"])
    executable = eb.Notebook(what) if isinstance(what, Path) else what
    offers = eb.request(
        executable, duration="10 min", start=start, brokers=alpha, compute={}, name=name
    )
    return offers.earliest().accept()


def server_env(*brokers: BrokerProcess, user: str = "alice") -> dict[str, str]:
    """What a spawner or ./dev demo gives the server: the brokers (alpha, beta, ...) and the
    user's token (the same on every test broker)."""
    names = ("alpha", "beta", "gamma")
    listed = ",".join(f"{n}={b.url}" for n, b in zip(names, brokers, strict=False))
    return {"EB_BROKERS": listed, "EB_TOKEN": brokers[0].tokens[user]}


@pytest.fixture(scope="module")
def jupyter(
    tmp_path_factory: pytest.TempPathFactory, lab_broker: BrokerProcess, beta_broker: BrokerProcess
) -> Iterator[JupyterProcess]:
    """``jupyter server`` with the extension enabled as installed (nothing passed to enable
    it), its environment naming the brokers ``alpha`` and ``beta`` with alice's token."""
    env = server_env(lab_broker, beta_broker)
    server = JupyterProcess(tmp_path_factory.mktemp("jupyter"), env=env)
    server.start()
    write_notebook(server.root / "short.ipynb", "print('n is', n * 2)", parameters="n = 1")
    (server.root / "sub").mkdir()
    write_notebook(server.root / "sub" / "nested.ipynb", "print(1)")
    yield server
    server.stop()


@pytest.fixture
def short_notebook(jupyter: JupyterProcess) -> Path:
    return jupyter.root / "short.ipynb"
