"""Ask "when, and where, can I run this?" from a notebook: ``import eb_sdk as eb``.

>>> offers = eb.request(eb.Notebook("analysis.ipynb", parameters={"n": 10}),
...                     compute=eb.Compute(cores=(1, 4), memory="2-8GiB"),
...                     duration="2h", start="within 10 min")
>>> session = offers.earliest().accept()
>>> session.wait().raise_if_failed().outputs
>>> batch = eb.map("analysis.ipynb", inputs, parameter="input_file")  # one run per input

Every broker configured (``EB_BROKERS``, ``~/.config/eb/brokers.yaml``, JupyterHub) is asked
at once. These functions block, and also work inside a notebook's running event loop; the
same API as coroutines is :mod:`eb_sdk.aio`. The IVOA wire model is :mod:`eb_sdk.model`.
See docs/sdk.md.
"""

from . import aio
from ._config import Broker, config_path, configured_brokers
from ._errors import (
    AuthenticationError,
    BrokerUnavailable,
    ConfigError,
    Conflict,
    EBError,
    InvalidRequest,
    NoCapacity,
    NotFound,
    OfferExpired,
    PermissionDenied,
    RequestRejected,
    SessionFailed,
    Timeout,
)
from ._fanout import BrokerWarning
from ._lists import BrokerList, BrokerStatus, SessionList
from ._request import build_request
from ._sync import (
    brokers,
    configure,
    direct,
    find_offer,
    request,
    reset,
    session,
    sessions,
)
from ._version import __version__
from .batch import Batch, BatchList, OutputNotebook, Run, batches, map
from .builders import (
    Compute,
    Container,
    Data,
    Interactivity,
    JupyterServer,
    Notebook,
    Singularity,
    Storage,
    VirtualMachine,
)
from .model import Phase
from .offers import Offer, Offers
from .sessions import Event, Session
from .widgets import panel  # lazy: ipywidgets is imported only when a panel is made

__all__ = [
    "AuthenticationError",
    "Batch",
    "BatchList",
    "Broker",
    "BrokerList",
    "BrokerStatus",
    "BrokerUnavailable",
    "BrokerWarning",
    "Compute",
    "ConfigError",
    "Conflict",
    "Container",
    "Data",
    "EBError",
    "Event",
    "Interactivity",
    "InvalidRequest",
    "JupyterServer",
    "NoCapacity",
    "NotFound",
    "Notebook",
    "Offer",
    "OfferExpired",
    "Offers",
    "OutputNotebook",
    "PermissionDenied",
    "Phase",
    "RequestRejected",
    "Run",
    "Session",
    "SessionFailed",
    "SessionList",
    "Singularity",
    "Storage",
    "Timeout",
    "VirtualMachine",
    "__version__",
    "aio",
    "batches",
    "brokers",
    "build_request",
    "config_path",
    "configure",
    "configured_brokers",
    "direct",
    "find_offer",
    "map",
    "panel",
    "request",
    "reset",
    "session",
    "sessions",
]
