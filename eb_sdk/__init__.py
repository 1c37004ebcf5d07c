"""jupyter-execution-broker's client side: the wire model today; the notebook client next.

``import eb_sdk as eb`` — the request/offer/session API arrives with the SDK issue; the
IVOA ExecutionBroker v1.0 wire model is in :mod:`eb_sdk.model`.
"""

from ._version import __version__

__all__ = ["__version__"]
