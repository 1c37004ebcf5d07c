"""Pure offer math for the broker: resources, usage timelines and ``find_slots``.

No I/O, no database, no HTTP and no wire-model imports: frozen dataclasses in, plain
dataclasses out, so the scheduling rules can be tested exhaustively and benchmarked alone.
"""

from .offers import NoFit, NoFitKind, Reason, Slot, find_slots
from .resources import (
    CORE_DIMENSIONS,
    AcceleratorCounts,
    Capacity,
    CapacityPeriod,
    Demand,
    Resources,
    TimeSpan,
    Window,
    describe_dimension,
    format_duration,
)
from .timeline import Booking, Timeline

__all__ = [
    "CORE_DIMENSIONS",
    "AcceleratorCounts",
    "Booking",
    "Capacity",
    "CapacityPeriod",
    "Demand",
    "NoFit",
    "NoFitKind",
    "Reason",
    "Resources",
    "Slot",
    "TimeSpan",
    "Timeline",
    "Window",
    "describe_dimension",
    "find_slots",
    "format_duration",
]
