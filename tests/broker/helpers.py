"""Request builders shared by the broker tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from eb_broker.clock import utcnow
from eb_broker.platforms.base import SessionSpec
from eb_broker.scheduling import Resources
from eb_sdk.model import IVOA_KIND_BASE as K
from eb_sdk.model import ExecutionRequest

NOTEBOOK = f"{K}/executable/jupyter-notebook.yaml"
COMPUTE = f"{K}/compute/simple-compute-resource.yaml"
SERVER = "urn:jeb:v1:executable:jupyter-server"


def notebook_request(
    cores: int = 1,
    memory: int = 1,
    *,
    start: str | None = None,
    starts: list[str] | None = None,
    duration: str | None = "PT1H",
    location: str = "/nonexistent.ipynb",
    max_cores: int | None = None,
) -> dict[str, Any]:
    requested: dict[str, Any] = {}
    if duration:
        requested["duration"] = duration
    if start:
        requested["start"] = start
    if starts:
        requested["jeb:starts"] = starts
    cores_range: dict[str, int] = {"min": cores}
    if max_cores is not None:
        cores_range["max"] = max_cores
    return {
        "executable": {"kind": NOTEBOOK, "location": location},
        "compute": {"kind": COMPUTE, "cores": cores_range, "memory": {"min": memory}},
        "schedule": {"requested": requested},
    }


def accept(client: Any, session_url: str, value: str = "ACCEPTED") -> Any:
    return client.post(
        session_url, json={"kind": "uri:enum-value-update", "path": "phase", "value": value}
    )


def session_spec(
    body: dict[str, Any],
    uuid: str = "u-1",
    handle: dict[str, Any] | None = None,
    resources: Resources | None = None,
) -> SessionSpec:
    """A booked session of ``body`` as a platform sees it: alice's, 1 core and 1 GiB, an hour
    from now on, 5 s of preparation (for driving a platform without a broker)."""
    now = utcnow()
    return SessionSpec(
        uuid=uuid,
        owner="alice",
        groups=(),
        request=ExecutionRequest.model_validate(body),
        resources=resources or Resources(1, 1),
        start=now,
        end=now + timedelta(hours=1),
        preparation=timedelta(seconds=5),
        handle=handle or {},
    )
