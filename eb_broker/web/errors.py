"""HTTP errors of the web layer itself (a body that cannot be read, an unknown endpoint).

:class:`ApiError` is a :class:`~eb_broker.errors.BrokerError` like every other refusal, so the
handlers answer all of them in one place (:meth:`eb_broker.web.base.BaseHandler.
_handle_request_exception`) with the status and a MessageItem body.
"""

from __future__ import annotations

from typing import Any

from eb_sdk.model import MessageItem
from eb_sdk.model import messages as msg

from ..errors import BrokerError


class ApiError(BrokerError):
    """An error to answer with ``status`` and a MessageItem of ``kind`` (``details`` become its
    ``jeb:details``)."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        details: list[MessageItem] | None = None,
        **values: Any,
    ) -> None:
        super().__init__(message, kind=kind, status=status, details=details or (), **values)


def validation_details(exc: Any) -> list[MessageItem]:
    """One MessageItem per pydantic validation error, with its location."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ()))
        out.append(
            msg.error(
                msg.INVALID_REQUEST,
                f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")),
                location=loc,
            )
        )
    return out
