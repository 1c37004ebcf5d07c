"""Base classes and field types shared by the whole wire model.

Design notes:

* ``EBModel`` allows extra fields: a v1.0 peer may send fields we do not know (newer spec
  versions, other implementations' extensions) and we keep and re-emit them instead of failing.
* Polymorphic slots (``executable``, ``compute``, ...) are typed as ``Poly[...]``: a plain dict is
  dispatched by its ``kind`` through the registry in :mod:`eb_sdk.model.kinds`; unknown kinds
  become an ``Unknown*`` object that keeps the raw fields and dumps them back unchanged.
* Output is canonical: ``dump()`` drops ``None`` and uses the wire aliases.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from .kinds import canonical_kind, is_kind_like, lookup_kind, register_kind
from .times import (
    Interval,
    format_duration,
    format_instant,
    format_interval,
    parse_duration,
    parse_instant,
    parse_interval,
)

M = TypeVar("M", bound="EBModel")

#: Largest integer the schema's int64 fields can carry.
INT64_MAX = 2**63 - 1


class EBModel(BaseModel):
    """Base of every wire object: tolerant input, canonical output."""

    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        validate_assignment=False,
        ser_json_inf_nan="null",
    )

    def dump(self) -> dict[str, Any]:
        """The canonical wire form as plain JSON-compatible data."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def load(cls: type[M], data: Any) -> M:
        """Validate wire data (a dict) into this class."""
        return cls.model_validate(data)


class KindModel(EBModel):
    """A component identified by a ``kind`` URI.

    Subclasses set ``KIND`` (their canonical URI) and ``GROUP`` (their polymorphic slot) and
    are registered with :func:`kind`.
    """

    KIND: ClassVar[str] = ""
    GROUP: ClassVar[str] = ""

    kind: str = Field(default="", description="The kind URI that says what this component is.")

    def __init__(self, **data: Any) -> None:
        if "kind" not in data and self.KIND:
            data["kind"] = self.KIND
        super().__init__(**data)

    @field_validator("kind", mode="before")
    @classmethod
    def _canonical(cls, value: Any) -> Any:
        return canonical_kind(value) if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _legacy_type(cls, data: Any) -> Any:
        # Older documents used ``type`` as the discriminator. Costs and metrics have a real
        # ``type`` field of their own, so only move it when it looks like a kind URI and there is
        # no ``kind`` yet and the class does not declare ``type``.
        if (
            isinstance(data, dict)
            and "kind" not in data
            and "type" not in cls.model_fields
            and is_kind_like(data.get("type"))
        ):
            data = dict(data)
            data["kind"] = data.pop("type")
        if isinstance(data, dict) and "kind" not in data and cls.KIND:
            data = dict(data)
            data["kind"] = cls.KIND
        return data

    @classmethod
    def dispatch(cls: type[KM], data: Any) -> KM:
        """Validate ``data`` as the registered subclass its ``kind`` names (polymorphic read).

        ``AbstractUpdate.dispatch({"kind": "uri:enum-value-update", ...})`` gives an
        ``EnumValueUpdate``; an unknown kind gives the group's ``Unknown*`` class.
        """
        unknown = next((sub for sub in _subclasses(cls) if getattr(sub, "is_unknown", False)), cls)
        result: KM = _dispatcher(cls.GROUP, cls, unknown)(data)
        return result


KM = TypeVar("KM", bound=KindModel)
K = TypeVar("K", bound=type[KindModel])


def _subclasses(cls: type[KindModel]) -> list[type[KindModel]]:
    out: list[type[KindModel]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


def kind(cls: K) -> K:
    """Class decorator: register ``cls`` under its ``GROUP`` and ``KIND``."""
    register_kind(cls.GROUP, cls.KIND, cls)
    return cls


class UnknownMixin:
    """Marks a class that holds a kind nobody registered.

    Its raw fields live in ``model_extra`` and are dumped back unchanged, so a broker can pass
    an unknown kind on (an aggregator) or answer ``NO`` with ``urn:not-supported``.
    """

    is_unknown: ClassVar[bool] = True


def _dispatcher(group: str, base: type[KindModel], unknown: type[KindModel]) -> Callable[..., Any]:
    def dispatch(value: Any) -> Any:
        if isinstance(value, base):
            return value
        if not isinstance(value, dict):
            raise PydanticCustomError(
                "eb_component", f"expected an object with a 'kind' for {group}"
            )
        data = dict(value)
        if (
            "kind" not in data
            and is_kind_like(data.get("type"))
            and group not in {"costs", "metrics"}
        ):
            data["kind"] = data.pop("type")
        raw_kind = data.get("kind")
        if not isinstance(raw_kind, str) or not raw_kind.strip():
            raise PydanticCustomError("eb_missing_kind", f"the {group} needs a 'kind' URI")
        cls = lookup_kind(group, raw_kind) or unknown
        try:
            return cls.model_validate(data)
        except Exception as exc:  # pydantic.ValidationError: re-raise as one readable message
            errors = getattr(exc, "errors", None)
            if callable(errors):
                parts = []
                for err in errors():
                    loc = ".".join(str(p) for p in err.get("loc", ()))
                    parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
                detail = "; ".join(parts)
            else:
                detail = str(exc)
            raise PydanticCustomError(
                "eb_component",
                "{group} ({kind}): {detail}",
                {"group": group, "kind": raw_kind, "detail": detail},
            ) from None

    return dispatch


class Dispatch:
    """``Annotated`` marker of a polymorphic slot: validate by ``kind``, expand in OpenAPI.

    Use as ``Annotated[SerializeAsAny[Base], Dispatch("group", Base, UnknownBase)]``:
    ``SerializeAsAny`` makes the runtime subclass's fields serialise, this marker dispatches
    input by its ``kind`` and tags the JSON schema so the OpenAPI builder can list every kind.
    """

    def __init__(self, group: str, base: type[KindModel], unknown: type[KindModel]) -> None:
        self.group = group
        self.validate = _dispatcher(group, base, unknown)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self.validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "x-jeb-polymorphic": self.group}


# ---------------------------------------------------------------------------------------------
# Time fields: parsed into Python values, written back in the canonical ISO-8601 form.


def _instant(value: Any) -> Any:
    return parse_instant(value) if isinstance(value, str) else value


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


def _interval(value: Any) -> Any:
    return parse_interval(value) if isinstance(value, str) else value


def _check_aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("instants need a time zone (use Z or an offset)")
    return value


Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    PlainSerializer(format_instant, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""An ISO-8601 instant; naive input is taken as UTC, output is ``...Z``."""

Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "duration", "examples": ["PT2H"]}),
]
"""An ISO-8601 duration such as ``PT2H``."""

IntervalField = Annotated[
    Interval,
    BeforeValidator(_interval),
    PlainSerializer(format_interval, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "description": "ISO-8601 interval: start/end, start/duration or duration/end",
            "examples": ["2026-11-21T13:00:00Z/PT2H"],
        }
    ),
]
"""An ISO-8601 interval; always written as ``start/duration``."""


# ---------------------------------------------------------------------------------------------
# Min/max pairs.


class MinMax(EBModel):
    """An integer range: the minimum a task needs and the maximum it can use."""

    min: int | None = Field(default=None, ge=0, le=INT64_MAX)
    max: int | None = Field(default=None, ge=0, le=INT64_MAX)

    @model_validator(mode="before")
    @classmethod
    def _from_scalar(cls, data: Any) -> Any:
        # ``cores: 2`` is shorthand for ``{min: 2, max: 2}``.
        if isinstance(data, int) and not isinstance(data, bool):
            return {"min": data, "max": data}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> MinMax:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self


class MinMaxFloat(EBModel):
    """A float range (costs, metrics)."""

    min: float | None = Field(default=None, allow_inf_nan=False)
    max: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> MinMaxFloat:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is larger than max ({self.max})")
        return self


NameValueMap = dict[str, str]
