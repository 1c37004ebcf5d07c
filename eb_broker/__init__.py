"""The Execution Broker service: offers from capacity, a durable ledger, platform plugins."""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # Lazily: importing eb_sdk runs its package (the client, the wire model), which a session's
    # runner process (``python -m eb_broker.platforms.local_runner``) does not need.
    if name == "__version__":
        from eb_sdk._version import __version__

        return __version__
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
