"""An aggregator's settings: ``c.Aggregator.*``, and ``c.AggregatePlatform.*`` (the earlier name)
as an alias; either way ``eb-broker --platform aggregate`` serves an AggregatorService."""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config

from eb_broker.aggregate import AggregatorService
from eb_broker.app import EBBroker
from eb_broker.core_service import CoreService

LEAF_A = {"name": "leaf-a", "url": "http://127.0.0.1:9/a"}
LEAF_B = {"name": "leaf-b", "url": "http://127.0.0.1:9/b"}


def _app(tmp_path: Path, **sections: dict[str, object]) -> EBBroker:
    config = Config()
    config.EBBroker.db_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    config.EBBroker.platform = "aggregate"
    config.EBBroker.authenticators = []
    for section, values in sections.items():
        for key, value in values.items():
            config[section][key] = value
    app = EBBroker(config=config)
    app.init_broker()
    return app


def _aggregator(app: EBBroker) -> AggregatorService:
    assert isinstance(app.service, AggregatorService)
    return app.service


def test_aggregator_settings(tmp_path: Path) -> None:
    service = _aggregator(_app(tmp_path, Aggregator={"brokers": [LEAF_A], "deadline": 2.0}))
    assert [d.name for d in service.brokers.all] == ["leaf-a"]
    assert service.brokers.patience.deadline == 2.0


def test_the_earlier_name_still_configures_it_and_wins(tmp_path: Path) -> None:
    service = _aggregator(
        _app(
            tmp_path,
            Aggregator={"brokers": [LEAF_A], "cooldown": 7.0},
            AggregatePlatform={"brokers": [LEAF_B], "deadline": 1.5},
        )
    )
    assert [d.name for d in service.brokers.all] == ["leaf-b"]
    assert service.brokers.patience.deadline == 1.5
    assert service.brokers.patience.cooldown == 7.0  # c.Aggregator.* is read too


def test_a_bad_broker_entry_names_the_section_it_is_in(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"Aggregator\.brokers: entry 1: every broker needs"):
        _app(tmp_path, Aggregator={"brokers": [{"name": "x"}]})
    with pytest.raises(Exception, match=r"AggregatePlatform\.brokers: entry 1"):
        _app(tmp_path, AggregatePlatform={"brokers": [{"name": "x"}]})


def test_a_platform_makes_a_broker_not_an_aggregator(tmp_path: Path) -> None:
    config = Config()
    config.EBBroker.db_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    config.EBBroker.work_dir = str(tmp_path / "work")
    config.EBBroker.authenticators = []
    app = EBBroker(config=config)
    app.init_broker()
    assert isinstance(app.service, CoreService)
