"""Fuzz the broker's own OpenAPI with schemathesis: no 5xx, every response matches the schema.

Schemathesis's lazy pytest fixture does not work with pytest 9, so each operation's
schemathesis strategy is driven by hypothesis directly (one pytest test per operation).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from eb_sdk.model.openapi import build_openapi
from tests.fixtures.services import BrokerProcess, free_port

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]

OPERATIONS = [
    (method.upper(), path) for path, item in build_openapi()["paths"].items() for method in item
]


@pytest.fixture(scope="module")
def fuzz_broker() -> Iterator[BrokerProcess]:
    base = Path(tempfile.mkdtemp(prefix="eb-fuzz-"))
    broker = BrokerProcess(
        dir=base,
        port=free_port(),
        db_url=f"sqlite:///{base / 'ledger.sqlite'}",
        args=(
            "--LocalPlatform.cores=4",
            "--LocalPlatform.memory_gib=8",
            "--EBBroker.offer_expiry=30",
        ),
    ).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_broker: BrokerProcess) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(fuzz_broker.url + "/openapi.json")


@pytest.mark.parametrize("method,path", OPERATIONS)
def test_operation_conforms(
    method: str, path: str, api_schema: schemathesis.BaseSchema, fuzz_broker: BrokerProcess
) -> None:
    operation = api_schema[path][method]
    headers = fuzz_broker.headers("alice")

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(headers=headers, allow_redirects=False, timeout=30)
        case.validate_response(response, checks=CHECKS)

    fuzz()
