"""The Execution Broker service: offers from capacity, a durable ledger, platform plugins."""

from eb_sdk._version import __version__

__all__ = ["__version__"]
