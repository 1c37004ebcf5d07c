"""Pure helpers the Kubernetes and OpenStack ``objects`` modules share.

Both platforms name the kinds of session they run the same way (labels, metadata, profile
names) and read the same kind of timestamps from their APIs; keeping that here keeps the two
in step.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from eb_sdk.model import DockerContainer, ExecutionRequest, JupyterNotebook, JupyterServer

#: Short names of the kinds of session (labels, metadata, profile names).
KIND_SERVER = "jupyter-server"
KIND_NOTEBOOK = "jupyter-notebook"
KIND_CONTAINER = "docker-container"


def jupyter_or_container_kind(request: ExecutionRequest) -> str:
    """The short name of a Jupyter server, notebook or Docker container request ('' for any
    other executable)."""
    executable = request.executable
    if isinstance(executable, JupyterServer):
        return KIND_SERVER
    if isinstance(executable, JupyterNotebook):
        return KIND_NOTEBOOK
    if isinstance(executable, DockerContainer):
        return KIND_CONTAINER
    return ""


def parse_api_time(value: Any) -> datetime | None:
    """An API timestamp (``2026-11-28T00:49:15Z``, with or without fractions, an offset, or
    none: then UTC) as an aware datetime; None for anything else."""
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
