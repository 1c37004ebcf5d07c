"""The durable booking ledger (SQLAlchemy 2; SQLite by default, PostgreSQL by URL)."""

from .db import current_revision, make_engine, migrate
from .repository import (
    Booked,
    CapacityError,
    InvalidTransitionError,
    Ledger,
    LedgerError,
    NotFoundError,
    OfferDraft,
    OfferExpiredError,
    row_resources,
)
from .tables import EventRow, OfferSetRow, SessionRow

__all__ = [
    "Booked",
    "CapacityError",
    "EventRow",
    "InvalidTransitionError",
    "Ledger",
    "LedgerError",
    "NotFoundError",
    "OfferDraft",
    "OfferExpiredError",
    "OfferSetRow",
    "SessionRow",
    "current_revision",
    "make_engine",
    "migrate",
    "row_resources",
]
