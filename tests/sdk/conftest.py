"""Fixtures for the SDK tests: two real brokers for the whole session, the quirks server,
a tiny parameterised notebook, and an environment that knows no brokers by accident."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import eb_sdk as eb
from tests.fixtures.notebooks import write_notebook
from tests.fixtures.services import BrokerProcess, free_port, start_sqlite_broker
from tests.sdk.reference_quirks import QuirksServer

ENV_VARS = (
    "EB_BROKERS",
    "EB_TOKEN",
    "EB_CONFIG",
    "EB_HUB_SERVICE",
    "EB_TIMEZONE",
    "JUPYTERHUB_API_TOKEN",
    "JUPYTERHUB_API_URL",
    "JUPYTERHUB_PUBLIC_URL",
    "JUPYTERHUB_PUBLIC_HUB_URL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No broker from the developer's environment or config file leaks into a test."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EB_CONFIG", str(tmp_path / "no-brokers.yaml"))
    eb.reset()
    eb.configure(retries=1)  # a dead broker costs one quick retry, not four
    yield
    eb.reset()


def _start(base: Path, cores: int, memory: int) -> BrokerProcess:
    return start_sqlite_broker(
        base,
        f"--LocalPlatform.cores={cores}",
        f"--LocalPlatform.memory_gib={memory}",
        # Tests share these brokers: offers must not hold capacity for five minutes.
        "--EBBroker.hold_offers=False",
    )


@pytest.fixture(scope="session")
def two_brokers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[BrokerProcess, BrokerProcess]]:
    """alpha (4 cores, 8 GiB) and beta (2 cores, 4 GiB), shared by the SDK tests.

    Session-scoped (the function-scoped ``broker_factory`` would start two processes per test
    and blow the time budget); tests that need special settings use ``broker_factory``.
    """
    base = tmp_path_factory.mktemp("sdk-brokers")
    alpha = _start(base / "alpha", 4, 8)
    try:
        beta = _start(base / "beta", 2, 4)
    except BaseException:
        alpha.stop()
        raise
    yield alpha, beta
    alpha.stop()
    beta.stop()


@pytest.fixture
def alpha(two_brokers: tuple[BrokerProcess, BrokerProcess]) -> eb.Broker:
    b = two_brokers[0]
    return eb.Broker(b.url, name="alpha", token=b.tokens["alice"])


@pytest.fixture
def beta(two_brokers: tuple[BrokerProcess, BrokerProcess]) -> eb.Broker:
    b = two_brokers[1]
    return eb.Broker(b.url, name="beta", token=b.tokens["alice"])


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def quirks() -> Iterator[QuirksServer]:
    server = QuirksServer().start()
    yield server
    server.stop()


@pytest.fixture
def reference(quirks: QuirksServer) -> Iterator[QuirksServer]:
    """The quirks server with its knobs reset for this test."""
    quirks.state.empty_303_body = False
    quirks.state.expires_in = 300.0
    quirks.state.delay = 0.0
    quirks.state.forbidden = False
    quirks.state.log.clear()
    quirks.state.authorizations.clear()
    yield quirks


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    """Doubles ``n`` and prints it: ``n is 42`` for ``parameters={"n": 21}``."""
    return write_notebook(tmp_path / "double.ipynb", "print('n is', n * 2)", parameters="n = 1")
