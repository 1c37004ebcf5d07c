"""JSON and YAML on the wire, both ways, chosen by media type.

YAML is read with a loader that does *not* turn timestamps into ``datetime`` objects: every
time value reaches our own ISO-8601 parsers as text, whatever the format.
XML (also listed by the spec) is not supported yet: the broker answers 415 for it.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

JSON = "application/json"
YAML = "application/yaml"
YAML_TYPES = frozenset({"application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml"})
SUPPORTED = (JSON, YAML, "text/yaml")

T = TypeVar("T", bound=BaseModel)


class UnsupportedMediaType(ValueError):
    """The body's media type is neither JSON nor YAML."""


class BodyParseError(ValueError):
    """The body is not well-formed JSON/YAML."""


class _TextLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver (times stay strings)."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def media_type_of(content_type: str | None) -> str:
    """The bare media type of a Content-Type header (JSON when absent)."""
    if not content_type:
        return JSON
    return content_type.split(";", 1)[0].strip().lower() or JSON


def is_yaml(media_type: str) -> bool:
    return media_type in YAML_TYPES


def is_json(media_type: str) -> bool:
    return media_type == JSON or media_type.endswith("+json") or media_type == "text/json"


def parse_body(body: bytes | str, content_type: str | None) -> Any:
    """Decode a request body to plain data according to its Content-Type."""
    media = media_type_of(content_type)
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    if is_json(media):
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise BodyParseError(f"malformed JSON: {exc}") from None
    if is_yaml(media):
        try:
            return yaml.load(text, Loader=_TextLoader)
        except (yaml.YAMLError, RecursionError) as exc:
            raise BodyParseError(f"malformed YAML: {exc}") from None
    raise UnsupportedMediaType(
        f"unsupported media type {media!r}: send application/json or application/yaml"
    )


def negotiate(accept: str | None) -> str:
    """Pick JSON or YAML for a response from an Accept header.

    The highest ``q`` wins and earlier entries win ties; anything that is not YAML (``*/*``,
    ``application/json``, unknown types) means JSON, so a client is never refused a body.
    """
    best, best_q = JSON, -1.0
    for part in (accept or "").split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if not media:
            continue
        q = 1.0
        for param in fields[1:]:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q > best_q:
            best, best_q = (media if media in YAML_TYPES else JSON), q
    return best


def to_data(obj: Any) -> Any:
    """Plain JSON-compatible data for a model, a list of models, or data."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(obj, list):
        return [to_data(item) for item in obj]
    if isinstance(obj, dict):
        return {key: to_data(value) for key, value in obj.items()}
    return obj


def render(obj: Any, media_type: str = JSON) -> bytes:
    """Encode a model or plain data as JSON or YAML."""
    data = to_data(obj)
    if is_yaml(media_type):
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode("utf-8")
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def loads(cls: type[T], body: bytes | str, content_type: str | None = JSON) -> T:
    """Parse and validate a body into ``cls``."""
    return cls.model_validate(parse_body(body, content_type))


def dumps(obj: Any, media_type: str = JSON) -> str:
    """``render`` as text."""
    return render(obj, media_type).decode("utf-8")
