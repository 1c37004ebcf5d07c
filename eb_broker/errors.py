"""The broker's one error root: every refusal that can reach a client is a :class:`BrokerError`.

A ``BrokerError`` carries what the client is told: the MessageItem ``kind`` and the HTTP
``status``. The web layer maps any of them to that status and a MessageItem body in one place
(``eb_broker.web.base``), so a new error is answered correctly by being raised, not by being
listed somewhere else. The classes deriving from it live with what raises them (the ledger's
refusals, policy denials, a downstream broker's failure, a platform that cannot be reached);
this module imports nothing of the broker, so every layer can derive from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eb_sdk.model import MessageItem
from eb_sdk.model import messages as msg


class BrokerError(Exception):
    """A refusal the client is told about: ``status`` and a MessageItem of ``kind``.

    Subclasses set the class defaults; one instance may override them (a downstream broker's
    own status, say). ``details`` become the item's ``jeb:details`` (one MessageItem per
    problem, e.g. per invalid field); ``values`` its template values.
    """

    #: The MessageItem kind and HTTP status of this class (an instance may have its own).
    kind: str = msg.CONFLICT
    status: int = 409

    def __init__(
        self,
        message: str = "",
        *,
        kind: str | None = None,
        status: int | None = None,
        details: Sequence[MessageItem] = (),
        **values: Any,
    ) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        if status is not None:
            self.status = status
        self.details = list(details)
        self.values = values

    def item(self) -> MessageItem:
        """The MessageItem a client gets for this error."""
        item = msg.error(self.kind, str(self) or self.kind, **self.values)
        if not self.details:
            return item
        return MessageItem.model_validate(
            {**item.dump(), "jeb:details": [d.dump() for d in self.details]}
        )


class NothingOffered(BrokerError):
    """``/direct`` found no offer to book: HTTP 409 with the offer set's reasons as details."""

    kind = msg.NO_CAPACITY
    status = 409

    def __init__(self, reasons: Sequence[MessageItem]) -> None:
        summary = "; ".join(str(m) for m in reasons[:3]) or "no offer"
        super().__init__(f"cannot run this: {summary}", details=reasons)


__all__ = ["BrokerError", "NothingOffered"]
