"""The OpenAPI 3.1 document of our broker API, generated from the wire model.

Polymorphic slots are expanded into ``anyOf`` over every registered kind (plugins included,
since this runs when the document is asked for) plus an "other kind" schema, because a broker
must accept unknown kinds and answer NO rather than reject the request.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .._version import __version__
from .components import AbstractUpdate
from .kinds import GROUPS, registered_kinds
from .messages import MessageItem
from .sessions import AbstractExecutionSession, Capabilities, ExecutionRequest, OfferSetResponse

REF = "#/components/schemas/{model}"
_POLY_GROUPS = (*GROUPS, "option", "update")
_MEDIA = ("application/json", "application/yaml")


def _schema_name(cls: type[BaseModel]) -> str:
    return cls.__name__


def _other_kind(group: str, known: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "title": f"Other{group.capitalize()}Kind",
        "description": f"A {group} kind this broker does not know; it is answered with NO.",
        "required": ["kind"],
        "properties": {"kind": {"type": "string", "not": {"enum": known}}},
        "additionalProperties": True,
    }


def _expand(node: Any, group_refs: dict[str, dict[str, Any]]) -> Any:
    if isinstance(node, dict):
        group = node.get("x-jeb-polymorphic")
        if group is not None:
            return copy.deepcopy(group_refs[group])
        return {key: _expand(value, group_refs) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand(item, group_refs) for item in node]
    return node


def component_schemas() -> dict[str, Any]:
    """JSON schemas of every model and registered kind, keyed by schema name."""
    classes: list[type[BaseModel]] = [
        ExecutionRequest,
        OfferSetResponse,
        MessageItem,
        Capabilities,
        AbstractUpdate,
        AbstractExecutionSession,
    ]
    kinds_by_group = {group: registered_kinds(group) for group in _POLY_GROUPS}
    for registered in kinds_by_group.values():
        classes.extend(cls for cls in registered.values() if cls not in classes)
    _, top = models_json_schema([(cls, "validation") for cls in classes], ref_template=REF)
    schemas: dict[str, Any] = top.get("$defs", {})

    group_refs: dict[str, dict[str, Any]] = {}
    for group, registered in kinds_by_group.items():
        known = sorted(registered)
        choices = [{"$ref": REF.format(model=_schema_name(cls))} for cls in registered.values()]
        other_name = f"Other{group.capitalize()}Kind"
        schemas[other_name] = _other_kind(group, known)
        choices.append({"$ref": REF.format(model=other_name)})
        group_refs[group] = {"anyOf": choices}
        for kind_uri, cls in registered.items():
            schema = schemas.get(_schema_name(cls))
            if schema is not None:
                schema.setdefault("properties", {})["kind"] = {"type": "string", "const": kind_uri}
                required = schema.setdefault("required", [])
                if "kind" not in required:
                    required.append("kind")
    expanded: dict[str, Any] = _expand(schemas, group_refs)
    return expanded


def _content(ref: str) -> dict[str, Any]:
    return {media: {"schema": {"$ref": REF.format(model=ref)}} for media in _MEDIA}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _content("MessageItem")}


_ERRORS = {
    "400": _error("Malformed or invalid input; the MessageItem says what is wrong."),
    "401": _error("No or invalid credentials."),
    "413": _error("The body is too large."),
    "415": _error("The body's media type is neither JSON nor YAML."),
}

_UUID_PARAM = {
    "name": "uuid",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_ARCHIVE_PARAMS = [
    _query("user", {"type": "string"}, "Admins: one user's records (others see only their own)."),
    _query("phase", {"type": "string"}, "Comma-separated phases, e.g. COMPLETED,FAILED."),
    _query("executable", {"type": "string"}, "An executable key (executable_hash of a record)."),
    _query("since", {"type": "string", "format": "date-time"}, "Booked start at or after."),
    _query("until", {"type": "string", "format": "date-time"}, "Booked start before."),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100000}, "Records per page."),
    _query("offset", {"type": "integer", "minimum": 0, "maximum": 1000000000}, "Records skipped."),
    _query("format", {"type": "string", "enum": ["json", "csv", "parquet"]}, "Answer format."),
]

_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_NULLABLE_NUMBER = {"type": ["number", "null"]}

#: One archive record as JSON (docs/archive.md lists the fields).
ARCHIVE_RECORD: dict[str, Any] = {
    "type": "object",
    "required": ["uuid", "owner", "phase", "created", "start", "end"],
    "properties": {
        "uuid": {"type": "string"},
        "name": {"type": ["string", "null"]},
        "owner": {"type": "string"},
        "phase": {"type": "string"},
        "exit_message": {"type": ["string", "null"]},
        **{
            name: _NULLABLE_TIME
            for name in ("created", "accepted", "launched", "running", "ended", "finished")
        },
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"},
        "preparation_s": {"type": "integer"},
        "waiting_s": _NULLABLE_NUMBER,
        "preparing_s": _NULLABLE_NUMBER,
        "running_s": _NULLABLE_NUMBER,
        "cores": {"type": "integer"},
        "memory_gib": {"type": "integer"},
        "storage_gib": {"type": "integer"},
        "accelerators": {"type": "object", "additionalProperties": {"type": "integer"}},
        "executable_kind": {"type": ["string", "null"]},
        "executable_hash": {"type": ["string", "null"]},
        "data_objects": {"type": "integer"},
        "data_bytes": {"type": "integer"},
        "data_cached_bytes": {"type": "integer"},
        "data_seconds": {"type": "number"},
        "data_sources": {"type": "string"},
        "request": {"type": "object"},
        "offer": {"type": "object"},
        "data": {"type": "array", "items": {"type": "object"}},
        "messages": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": True,
}

ARCHIVE_PAGE: dict[str, Any] = {
    "type": "object",
    "required": ["total", "offset", "limit", "items"],
    "properties": {
        "total": {"type": "integer"},
        "offset": {"type": "integer"},
        "limit": {"type": "integer"},
        "items": {"type": "array", "items": ARCHIVE_RECORD},
        "next": {"type": "string", "description": "The next page, when there is one."},
    },
}


def build_openapi(server_url: str = "/", title: str = "Execution Broker") -> dict[str, Any]:
    """The OpenAPI 3.1 document a broker serves at ``/openapi.json``."""
    session_list = {
        "type": "array",
        "items": {"$ref": REF.format(model="AbstractExecutionSession")},
    }
    health = {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
        "additionalProperties": True,
    }
    request_body = {"required": True, "content": _content("ExecutionRequest")}
    paths: dict[str, Any] = {
        "/requests": {
            "post": {
                "operationId": "ExecutionRequest",
                "summary": "Ask for offers: when, and where, can I run this?",
                "requestBody": request_body,
                "responses": {
                    "303": {
                        "description": "See the offer set; the body is the OfferSetResponse.",
                        "headers": {"Location": {"required": True, "schema": {"type": "string"}}},
                        "content": _content("OfferSetResponse"),
                    },
                    "200": {
                        "description": "The offer set.",
                        "content": _content("OfferSetResponse"),
                    },
                    **_ERRORS,
                },
            }
        },
        "/offersets/{uuid}": {
            "get": {
                "operationId": "OfferSetSelect",
                "parameters": [_UUID_PARAM],
                "responses": {
                    "200": {
                        "description": "The offer set.",
                        "content": _content("OfferSetResponse"),
                    },
                    "401": _ERRORS["401"],
                    "404": _error("No such offer set (or not yours)."),
                },
            }
        },
        "/direct": {
            "post": {
                "operationId": "DirectExecution",
                "summary": "Run now without the offer step: book and start the best offer.",
                "requestBody": request_body,
                "responses": {
                    "303": {
                        "description": "The session was created; the body is the session.",
                        "headers": {"Location": {"required": True, "schema": {"type": "string"}}},
                        "content": _content("AbstractExecutionSession"),
                    },
                    "200": {
                        "description": "The session.",
                        "content": _content("AbstractExecutionSession"),
                    },
                    "409": _error("No offer could be made or booked; the messages say why."),
                    **_ERRORS,
                },
            }
        },
        "/sessions": {
            "get": {
                "operationId": "SessionList",
                "summary": "The caller's sessions, optionally filtered by phase.",
                "parameters": [
                    {
                        "name": "phase",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Comma-separated phases, e.g. RUNNING,WAITING.",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "Sessions, newest first.",
                        "content": {m: {"schema": session_list} for m in _MEDIA},
                    },
                    "400": _ERRORS["400"],
                    "401": _ERRORS["401"],
                },
            }
        },
        "/sessions/{uuid}": {
            "get": {
                "operationId": "SessionSelect",
                "parameters": [_UUID_PARAM],
                "responses": {
                    "200": {
                        "description": "The session.",
                        "content": _content("AbstractExecutionSession"),
                    },
                    "401": _ERRORS["401"],
                    "404": _error("No such session (or not yours)."),
                },
            },
            "post": {
                "operationId": "SessionUpdate",
                "parameters": [_UUID_PARAM],
                "requestBody": {"required": True, "content": _content("AbstractUpdate")},
                "responses": {
                    "200": {
                        "description": "The updated session.",
                        "content": _content("AbstractExecutionSession"),
                    },
                    **_ERRORS,
                    "404": _error("No such session (or not yours)."),
                    "409": _error("The update is not allowed in the session's phase."),
                },
            },
        },
        "/archive": {
            "get": {
                "operationId": "Archive",
                "summary": "The job archive: the caller's sessions (an admin's: everyone's), with "
                "phase times, resources, the data moved; JSON pages or CSV/Parquet exports.",
                "parameters": _ARCHIVE_PARAMS,
                "responses": {
                    "200": {
                        "description": "A page of archive records (format=json), or the records "
                        "as CSV or Parquet (X-Total-Count: how many match in all).",
                        "content": {
                            **{m: {"schema": ARCHIVE_PAGE} for m in _MEDIA},
                            "text/csv": {"schema": {"type": "string"}},
                            "application/vnd.apache.parquet": {
                                "schema": {"type": "string", "format": "binary"}
                            },
                        },
                    },
                    "400": _ERRORS["400"],
                    "401": _ERRORS["401"],
                    "404": _error("This service keeps no archive (an aggregator)."),
                    "501": _error("Parquet was asked for and pyarrow is not installed."),
                },
            }
        },
        "/capabilities": {
            "get": {
                "operationId": "Capabilities",
                "summary": "What this broker can run: what a form needs to know.",
                "security": [],
                "responses": {
                    "200": {"description": "Capabilities.", "content": _content("Capabilities")}
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "Health",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The broker is up.",
                        "content": {"application/json": {"schema": health}},
                    }
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "Metrics",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": __version__,
            "summary": "IVOA ExecutionBroker v1.0 API with the jupyter-execution-broker extensions",
            "license": {"name": "BSD-3-Clause"},
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "security": [{"bearer": []}, {"basic": []}],
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
    }
