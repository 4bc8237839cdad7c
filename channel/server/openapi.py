"""The OpenAPI 3.1 document, generated from the route table and the pydantic wire models.

`python -m channel.server.openapi` prints it; `--markdown` prints the API reference in docs/api.md.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from channel import __version__
from channel.errors import ChannelError
from channel.models import LiveEvent, Wire
from channel.server.routes import ALWAYS, ROUTES, SIGNED, Route

_REF = "#/components/schemas/{model}"
_PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details; `code` is stable and machine-readable.",
    "required": ["type", "title", "status", "code", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
}


@cache
def openapi_document() -> dict[str, Any]:
    models: set[type[Wire]] = {LiveEvent}
    for route in ROUTES:
        models.add(route.response)
        if route.request is not None:
            models.add(route.request)
    _, schemas = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=_REF
    )
    components = {**schemas.get("$defs", {}), "Problem": _PROBLEM}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    paths["/v1/events"] = {"get": _events_operation()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Backchannel courier",
            "version": __version__,
            "description": (
                "Sealed letters between named parties, relayed by a courier that can prove who "
                "sent a letter but never read it. Party requests carry RFC 9421 HTTP Message "
                "Signatures (Ed25519, tag `backchannel`) over method, path, query and "
                "Content-Digest; see docs/protocol.md."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "httpMessageSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Signature",
                    "description": "RFC 9421 signature, party's Ed25519 key (keyid = party name)",
                }
            },
        },
    }


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "responses": {
            str(route.status): _body(route.response.__name__, "Success"),
            **_error_responses(route),
        },
        "security": [{"httpMessageSignature": []}] if route.signed else [],
    }
    if route.status == 201:
        operation["responses"]["200"] = _body(route.response.__name__, "Already done (idempotent)")
    if route.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=route.request.__name__)}}
            },
        }
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_params(route.path)
    ]
    if route.path in ("/v1/inbox", "/v1/outbox"):
        params.append(
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 500},
            }
        )
    if params:
        operation["parameters"] = params
    return operation


def _events_operation() -> dict[str, Any]:
    """The live event stream: Server-Sent Events, so it is described here, not in the table."""
    problem = {"application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}}
    return {
        "operationId": "events",
        "summary": (
            "Your live events as Server-Sent Events: first `ready` (id: the position the stream "
            "starts from), then `event` for each event (data LiveEvent JSON, id the stream id), "
            "`: ping` comments while idle; resume with Last-Event-ID; `reset` means missed events "
            "were trimmed; `shutdown` carries a retry hint. 429 `too_many_streams` (with "
            "Retry-After) past the per-party or courier-wide cap on open streams"
        ),
        "security": [{"httpMessageSignature": []}],
        "parameters": [
            {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
            {"name": "after", "in": "query", "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {
                "description": "An event stream",
                "content": {
                    "text/event-stream": {"schema": {"$ref": _REF.format(model="LiveEvent")}}
                },
            },
            "400": {"description": "Problem: `bad_request`", "content": problem},
            "401": {
                "description": "Problem: `unauthenticated`, `replayed`, `unknown_party`",
                "content": problem,
            },
            "429": {
                "description": "Problem: `rate_limited`, `too_many_streams`",
                "content": problem,
            },
        },
    }


def _error_responses(route: Route) -> dict[str, Any]:
    errors: list[type[ChannelError]] = [*ALWAYS, *(SIGNED if route.signed else ()), *route.errors]
    by_status: dict[int, list[str]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error.code)
    return {
        str(status): {
            "description": "Problem: " + ", ".join(f"`{c}`" for c in sorted(set(codes))),
            "content": {
                "application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}
            },
        }
        for status, codes in sorted(by_status.items())
    }


def _body(model: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=model)}}},
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def api_markdown() -> str:
    """The API reference (docs/api.md), rendered from the OpenAPI document."""
    doc = openapi_document()
    lines = [
        "# API reference",
        "",
        "<!-- Generated by `python -m channel.server.openapi --markdown`; do not edit by hand. -->",
        "",
        doc["info"]["description"],
        "",
        "Errors are `application/problem+json` (RFC 9457) with a stable `code`.",
        "",
    ]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            lines += [f"## `{method.upper()} {path}`", "", op["summary"], ""]
            lines.append("Signed: " + ("yes (RFC 9421)" if op["security"] else "no"))
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                lines.append(f"Request body: `{ref.rsplit('/', 1)[-1]}`")
            lines += ["", "| status | meaning |", "|---|---|"]
            for status, response in op["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                shown = f" (`{schema['$ref'].rsplit('/', 1)[-1]}`)" if schema else ""
                lines.append(f"| {status} | {response['description']}{shown} |")
            lines.append("")
    lines += ["## Schemas", ""]
    for name, schema in doc["components"]["schemas"].items():
        lines += [f"### {name}", ""]
        if schema.get("description"):
            lines += [" ".join(schema["description"].split()), ""]
        props = schema.get("properties", {})
        if props:
            required = set(schema.get("required", []))
            lines += ["| field | type | required |", "|---|---|---|"]
            for field, spec in props.items():
                lines.append(
                    f"| `{field}` | {_type_of(spec)} | {'yes' if field in required else 'no'} |"
                )
            lines.append("")
        if "enum" in schema:
            lines += ["One of: " + ", ".join(f"`{v}`" for v in schema["enum"]), ""]
    return "\n".join(lines)


def _type_of(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        return f"`{spec['$ref'].rsplit('/', 1)[-1]}`"
    if "anyOf" in spec:
        return " or ".join(_type_of(s) for s in spec["anyOf"])
    if spec.get("type") == "array":
        return f"list of {_type_of(spec.get('items', {}))}"
    if "const" in spec:
        return f"`{spec['const']}`"
    return str(spec.get("type", "any"))


if __name__ == "__main__":
    if "--markdown" in sys.argv:
        print(api_markdown())
    else:
        print(json.dumps(openapi_document(), indent=2))
