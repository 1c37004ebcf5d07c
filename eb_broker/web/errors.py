"""HTTP errors with an IVOA MessageItem body."""

from __future__ import annotations

from typing import Any

from eb_sdk.model import MessageItem
from eb_sdk.model import messages as msg


class ApiError(Exception):
    """An error to answer with ``status`` and a MessageItem body."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        details: list[MessageItem] | None = None,
        **values: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.item = msg.error(kind, message, **values)
        if details:
            self.item = MessageItem.model_validate(
                {**self.item.dump(), "jeb:details": [d.dump() for d in details]}
            )


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
