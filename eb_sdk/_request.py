"""Turn what a person typed (a notebook, "within 10 min", "2h") into an ExecutionRequest.

Everything here runs before any HTTP, so a phrase we cannot read, a size we cannot parse or
an executable we do not know fails at once with :class:`InvalidRequest`, whose message says
what would work — and no broker is bothered with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

from ._errors import InvalidRequest
from .builders import Data, Notebook
from .model import (
    AbstractComputeResource,
    AbstractDataResource,
    AbstractExecutable,
    AbstractStorageResource,
    ExecutionRequest,
    Interactivity,
    Interval,
    RequestedScheduleBlock,
    RequestedScheduleItem,
    SimpleComputeResource,
)
from .model.phrases import PhraseError, parse_duration_phrase, parse_when

__all__ = ["Executable", "Start", "build_request", "windows"]

Executable = AbstractExecutable | ExecutionRequest | Mapping[str, Any] | str | os.PathLike[str]
"""A builder's result, a whole request (object or dict), or a notebook path."""

Start = str | datetime | Interval | Sequence[Interval]
"""A "when" phrase, an instant, an interval or several windows."""


def windows(
    start: Start, *, tz: str | tzinfo | None = None, now: datetime | None = None
) -> list[Interval]:
    """The start windows ``start`` means (phrases read in the user's zone)."""
    if isinstance(start, str):
        try:
            return parse_when(start, now=now, tz=tz or os.environ.get("EB_TIMEZONE") or None)
        except PhraseError as exc:
            raise InvalidRequest(f"start: {exc}") from None
    if isinstance(start, Interval):
        return [start]
    if isinstance(start, datetime):
        if start.utcoffset() is None:
            raise InvalidRequest("start: a datetime needs a time zone (tzinfo)")
        return [Interval(start, start)]
    found = list(start)
    if not found or not all(isinstance(iv, Interval) for iv in found):
        raise InvalidRequest("start: expected a phrase, a datetime, an Interval or Intervals")
    return sorted(found, key=lambda iv: iv.start)


def duration_of(duration: str | timedelta) -> timedelta:
    """``"2h"``, ``"90 min"``, ``"PT2H"`` or a timedelta, checked to be positive."""
    if isinstance(duration, timedelta):
        value = duration
    elif isinstance(duration, str):
        try:
            value = parse_duration_phrase(duration)
        except PhraseError as exc:
            raise InvalidRequest(f"duration: {exc}") from None
    else:
        raise InvalidRequest(f"duration: expected text like '2h' or a timedelta, not {duration!r}")
    if value <= timedelta(0):
        raise InvalidRequest(f"duration: must be positive, not {duration!r}")
    return value


def _executable(executable: Executable) -> AbstractExecutable | ExecutionRequest:
    if isinstance(executable, AbstractExecutable | ExecutionRequest):
        return executable
    if isinstance(executable, Mapping):
        try:
            if "kind" in executable:
                return AbstractExecutable.dispatch(dict(executable))
            return ExecutionRequest.model_validate(dict(executable))
        except ValueError as exc:
            raise InvalidRequest(f"invalid request: {exc}") from None
    text = os.fspath(executable)
    if text.endswith(".ipynb"):
        return Notebook(text)
    raise InvalidRequest(
        f"do not know how to run {text!r}: use eb.Notebook(...), eb.Container(...), "
        "eb.Singularity(...), eb.JupyterServer(...) or eb.VirtualMachine(...)"
    )


def _compute(compute: AbstractComputeResource | Mapping[str, Any]) -> AbstractComputeResource:
    if isinstance(compute, AbstractComputeResource):
        return compute
    try:
        if "kind" in compute:
            return AbstractComputeResource.dispatch(dict(compute))
        return SimpleComputeResource.model_validate(dict(compute))
    except ValueError as exc:
        raise InvalidRequest(f"compute: {exc}") from None


def _interactivity(value: Interactivity | Mapping[str, Any]) -> Interactivity:
    if isinstance(value, Interactivity):
        return value
    try:
        return Interactivity.model_validate(dict(value))
    except ValueError as exc:
        raise InvalidRequest(f"interactivity: {exc}") from None


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def build_request(
    executable: Executable,
    *,
    compute: AbstractComputeResource | Mapping[str, Any] | None = None,
    storage: AbstractStorageResource | Sequence[AbstractStorageResource] | None = None,
    data: AbstractDataResource | str | Sequence[AbstractDataResource | str] | None = None,
    duration: str | timedelta | None = None,
    start: Start | None = None,
    name: str | None = None,
    interactivity: Interactivity | Mapping[str, Any] | None = None,
    tz: str | tzinfo | None = None,
    now: datetime | None = None,
) -> ExecutionRequest:
    """The ExecutionRequest for these words; keyword arguments override a given request.

    Several start windows ("Mon-Wed 09:00-12:00") go to the ``jeb:starts`` extension with
    ``start`` set to the first, so a v1.0 broker still sees a sensible request.
    """
    base = _executable(executable)
    request = (
        base.model_copy(deep=True)
        if isinstance(base, ExecutionRequest)
        else ExecutionRequest(executable=base)
    )
    if compute is not None:
        request.compute = _compute(compute)
    if storage is not None:
        request.storage = _listed(storage)
    if data is not None:
        request.data = [Data(d) if isinstance(d, str) else d for d in _listed(data)]
    if name is not None:
        request.name = name
    if interactivity is not None:
        request.interactivity = _interactivity(interactivity)
    if duration is not None or start is not None:
        block = request.schedule or RequestedScheduleBlock()
        item = block.requested or RequestedScheduleItem()
        if duration is not None:
            item.duration = duration_of(duration)
        if start is not None:
            found = windows(start, tz=tz, now=now)
            item.start = found[0]
            item.starts = found if len(found) > 1 else None
        block.requested = item
        request.schedule = block
    return _revalidate(request)


def _revalidate(request: ExecutionRequest) -> ExecutionRequest:
    """Validate the assembled request as the broker will (dispatching dicts by kind)."""
    try:
        return ExecutionRequest.model_validate(request.dump())
    except ValueError as exc:
        raise InvalidRequest(f"invalid request: {exc}") from None
