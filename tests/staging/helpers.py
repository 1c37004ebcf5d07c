"""Request builders for the staging and archive tests."""

from __future__ import annotations

import time
from typing import Any

import httpx

from eb_sdk.model import (
    IvoaDataResource,
    JupyterNotebook,
    S3DataResource,
    SimpleComputeResource,
    SimpleDataResource,
    SimpleVolumeMount,
)


def data_request(
    notebook: str,
    data: dict[str, str | dict[str, Any]],
    *,
    mounts: dict[str, tuple[str, str]] | None = None,
    duration: str | None = None,
    start: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """A notebook request with data resources by name: a URL (SimpleDataResource) or a dict
    (``{"ivoid": ...}`` for IVOA data, ``{"endpoint", "bucket", "object"}`` for S3, or a whole
    resource with ``kind``). ``mounts`` maps names to ``(path, mode)`` volume mounts."""
    resources: list[dict[str, Any]] = []
    for resource_name, value in data.items():
        meta = {"meta": {"name": resource_name}}
        if isinstance(value, str):
            resources.append({"kind": SimpleDataResource.KIND, **meta, "location": value})
        elif "ivoid" in value:
            resources.append(
                {"kind": IvoaDataResource.KIND, **meta, "ivoa": {"ivoid": value["ivoid"]}}
            )
        elif "bucket" in value:
            resources.append({"kind": S3DataResource.KIND, **meta, **value})
        else:
            resources.append({**meta, **value})
    compute: dict[str, Any] = {"kind": SimpleComputeResource.KIND, "cores": {"min": 1}}
    if mounts:
        compute["volumes"] = [
            {"kind": SimpleVolumeMount.KIND, "path": path, "mode": mode, "resource": resource}
            for resource, (path, mode) in mounts.items()
        ]
    requested: dict[str, Any] = {}
    if duration:
        requested["duration"] = duration
    if start:
        requested["start"] = start
    body: dict[str, Any] = {
        "executable": {"kind": JupyterNotebook.KIND, "location": notebook},
        "compute": compute,
    }
    if resources:
        body["data"] = resources
    if requested:
        body["schedule"] = {"requested": requested}
    if name:
        body["jeb:name"] = name
    return body


FINAL = ("COMPLETED", "FAILED", "CANCELLED")


def wait_final(client: httpx.Client, url: str, timeout: float = 120.0) -> dict[str, Any]:
    """The session at ``url`` once it reached a final phase (bounded)."""
    deadline = time.monotonic() + timeout
    session: dict[str, Any] = {}
    while time.monotonic() < deadline:
        session = client.get(url).json()
        if session["phase"] in FINAL:
            return session
        time.sleep(0.2)
    raise AssertionError(f"{url} did not finish: {session}")
