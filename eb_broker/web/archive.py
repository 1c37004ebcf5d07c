"""``GET /archive``: the caller's archive records (an admin's: everyone's), JSON/CSV/Parquet."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from eb_sdk.model import messages as msg
from eb_sdk.model.times import parse_instant

from ..ledger.archive import ArchiveFilter
from ..service import ARCHIVE_FORMATS, ArchiveQuery
from .base import BaseHandler, phases_argument
from .errors import ApiError

#: Most records per page as JSON, and per export (CSV, Parquet).
MAX_PAGE = 1000
MAX_EXPORT = 100_000
_MEDIA = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


class ArchiveHandler(BaseHandler):
    async def get(self) -> None:
        identity = self.require_identity()
        fmt = self._choice("format", ARCHIVE_FORMATS, "json")
        limit = self._integer("limit", 100 if fmt == "json" else MAX_EXPORT, 1, MAX_EXPORT)
        if fmt == "json" and limit > MAX_PAGE:
            raise ApiError(400, msg.INVALID_REQUEST, f"limit: at most {MAX_PAGE} as JSON")
        where = ArchiveFilter(
            phases=tuple(phases_argument(self) or ()),
            executable=self.get_argument("executable", None) or None,
            since=self._instant("since"),
            until=self._instant("until"),
            limit=limit,
            offset=self._integer("offset", 0, 0, 10**9),
        )
        user = self.get_argument("user", None) or None
        page = await self.service.archive(identity, ArchiveQuery(where, user, fmt))
        if fmt != "json":
            self.set_header("Content-Type", _MEDIA[fmt])
            self.set_header("Content-Disposition", f'attachment; filename="eb-archive.{fmt}"')
            self.set_header("X-Total-Count", str(page.total))
            self.finish(page.data)
            return
        body: dict[str, Any] = {
            "total": page.total,
            "offset": where.offset,
            "limit": where.limit,
            "items": page.items,
        }
        if where.offset + len(page.items) < page.total:
            query = {k: self.get_argument(k) for k in self.request.arguments if k != "offset"}
            query["offset"] = str(where.offset + len(page.items))
            body["next"] = self.url_for("/archive") + "?" + urlencode(query)
        self.respond(body)

    # -- query parameters ---------------------------------------------------------------------

    def _choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = (self.get_argument(name, None) or default).lower()
        if value not in choices:
            raise ApiError(400, msg.INVALID_REQUEST, f"{name}: one of {', '.join(choices)}")
        return value

    def _integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.get_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, msg.INVALID_REQUEST, f"{name}: {raw!r} is not a number") from None
        if not low <= value <= high:
            raise ApiError(400, msg.INVALID_REQUEST, f"{name}: from {low} to {high}")
        return value

    def _instant(self, name: str) -> datetime | None:
        raw = self.get_argument(name, None)
        if not raw:
            return None
        try:
            return parse_instant(raw).astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            raise ApiError(400, msg.INVALID_REQUEST, f"{name}: {exc}") from None
