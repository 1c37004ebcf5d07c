"""The JupyterLab extension: a sidebar for brokers, offers, sessions and batches.

Two halves ship in one wheel. The browser half (TypeScript in ``src/``, built into
``eb_labextension/labextension`` and installed to ``share/jupyter/labextensions``) draws the
sidebar and the notifications. This Python half is a jupyter_server extension, enabled by the
``jupyter_server_config.d`` file the wheel installs: its REST handlers under ``/eb/`` talk to
the brokers through :mod:`eb_sdk.aio` with the credentials of the server's environment, so
broker tokens never reach the browser. See docs/labextension.md.
"""

from __future__ import annotations

from typing import Any

#: The labextension's name (``package.json``), also its directory under share/jupyter.
LABEXTENSION = "jupyter-execution-broker"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": LABEXTENSION}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "eb_labextension"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Add the ``/eb/`` handlers; nothing talks to a broker until the browser asks."""
    from .handlers import setup_handlers

    setup_handlers(serverapp)
