"""Shared fixtures: real brokers on loopback, a throwaway PostgreSQL."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.hub import Hub, start_hub
from tests.fixtures.services import (
    TOKENS,
    BrokerProcess,
    Postgres,
    free_port,
    start_postgres,
    stop_postgres,
)

BrokerFactory = Callable[..., BrokerProcess]


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[BrokerFactory]:
    """Start ``eb-broker`` processes: ``broker_factory(*args, db_url=None, env=None)``."""
    started: list[BrokerProcess] = []

    def start(
        *args: str,
        db_url: str | None = None,
        name: str | None = None,
        port: int | None = None,
        tokens: dict[str, str] | None = None,
        groups: dict[str, list[str]] | None = None,
        config: str = "",
        broker_name: str = "test-broker",
        env: dict[str, str] | None = None,
    ) -> BrokerProcess:
        base = tmp_path / (name or f"broker{len(started)}")
        base.mkdir(exist_ok=True)
        broker = BrokerProcess(
            dir=base,
            port=port or free_port(),
            db_url=db_url or f"sqlite:///{base / 'ledger.sqlite'}",
            args=args,
            tokens=dict(tokens) if tokens is not None else dict(TOKENS),
            groups=dict(groups or {}),
            config=config,
            broker_name=broker_name,
            env=env or {},
        ).start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> BrokerProcess:
    """One broker: local platform with 4 cores and 8 GiB."""
    return broker_factory("--LocalPlatform.cores=4", "--LocalPlatform.memory_gib=8")


@pytest.fixture(scope="session")
def jupyterhub() -> Iterator[Hub]:
    """A real JupyterHub with configurable-http-proxy, shared by the session's tests."""
    hub = start_hub(Path(tempfile.mkdtemp(prefix="eb-hub-")))
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the whole test session."""
    base = Path(tempfile.mkdtemp(prefix="eb-pg-"))
    pg = start_postgres(base / "pg")
    try:
        yield pg
    finally:
        stop_postgres(pg)
