"""The OpenAPI 3.1 document, generated from the route table and the pydantic wire models.

`python -m channel.courier.server.openapi` prints it; `--markdown` prints the API reference in
docs/api.md.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic.json_schema import models_json_schema

from channel import __version__
from channel.courier.server.routes import AFTER, ALWAYS, PATH_PATTERNS, ROUTES, SIGNED, Param, Route
from channel.protocol import httpsig
from channel.protocol.errors import ChannelError, TooManyStreams
from channel.protocol.models import LiveEvent, Wire

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
        "retry_after_ms": {"type": "integer", "description": "`rate_limited`: when to retry"},
        "max_bytes": {"type": "integer", "description": "`payload_too_large`: the limit"},
    },
}
# Statuses whose answers always say when to try again.
_RETRY_AFTER = {
    "Retry-After": {
        "required": True,
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    }
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
                "Content-Digest (see the `httpMessageSignature` security scheme and "
                "docs/protocol.md, section 8). Unknown query parameters are refused (400)."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"httpMessageSignature": _signature_scheme()},
        },
    }


# The worked example's signer: the test-vector recipient (docs/make_vectors.py), a public key.
EXAMPLE_PARTY = "quds-force"
EXAMPLE_SEED = hashlib.sha256(b"backchannel test vector: recipient signing").digest()
EXAMPLE_URL = "https://courier.example/v1/inbox?limit=10"
EXAMPLE_CREATED = datetime(2017, 11, 23, 16, 2, 7, tzinfo=UTC)
EXAMPLE_NONCE = "5e0d2b8c41f7a9d36c0b4e82f15a7d90"


def signature_example() -> dict[str, Any]:
    """A worked example: `GET /v1/inbox?limit=10` (empty body) signed by the vector recipient."""
    key = Ed25519PrivateKey.from_private_bytes(EXAMPLE_SEED)
    headers = httpsig.sign_request(
        EXAMPLE_PARTY, key, "GET", EXAMPLE_URL, b"", created=EXAMPLE_CREATED, nonce=EXAMPLE_NONCE
    )
    return {
        "request": f"GET {EXAMPLE_URL}",
        "body": "",
        "signing_key_seed_hex": EXAMPLE_SEED.hex(),
        "signature_base": signature_base("GET", EXAMPLE_URL, headers),
        "headers": headers,
    }


def signature_base(method: str, url: str, headers: dict[str, str]) -> str:
    """The RFC 9421 signature base of a request signed by `httpsig.sign_request`."""
    parts = urlsplit(url)
    params = headers["Signature-Input"].removeprefix(f"{httpsig.LABEL}=")
    return "\n".join(
        [
            f'"@method": {method}',
            f'"@path": {parts.path}',
            f'"@query": ?{parts.query}',
            f'"content-digest": {headers["Content-Digest"]}',
            f'"@signature-params": {params}',
        ]
    )


def _signature_scheme() -> dict[str, Any]:
    """RFC 9421 has no OpenAPI scheme type: an apiKey on `Signature`, described in full, with the
    parameters machine-readable under `x-rfc9421` (a generated client needs a signing hook)."""
    example = signature_example()
    covered = " ".join(f'"{c}"' for c in httpsig.COVERED)
    window, skew = int(httpsig.WINDOW.total_seconds()), int(httpsig.CLOCK_SKEW.total_seconds())
    headers = "\n".join(f"{name}: {value}" for name, value in example["headers"].items())
    description = f"""RFC 9421 HTTP Message Signature with the party's Ed25519 key. A signed \
request carries three headers: `Content-Digest` (RFC 9530, `sha-256` of the body as sent, \
present even for an empty body), `Signature-Input` and `Signature`, each with one member \
labelled `{httpsig.LABEL}`.

- covered components, in this order: `{covered}`; `@path` as sent (still percent-encoded), \
`@query` is `?` and the raw query string (just `?` when there is none); `@authority` and \
`@scheme` are not covered
- parameters, in this order: `created` (Unix seconds; accepted from {window + skew} s before \
to {skew} s after the courier's clock), `keyid` (the party name), `alg="ed25519"`, `nonce` \
(16 to 64 characters, fresh for every request: a nonce seen before gives `401 replayed`), \
`tag="{httpsig.TAG}"`
- the signature is Ed25519 over the signature base (lines joined by `\\n`, no trailing \
newline), without any other prefix
- the signer must be registered (`404 unknown_party` otherwise), except for `POST /v1/parties`, \
which is signed with the key being registered: `keyid` is the `name` in the body and the \
signature verifies with its `signing_key` (proof of possession)

Worked example: `{example["request"]}`, empty body, signed by `{EXAMPLE_PARTY}` (Ed25519 seed \
`{example["signing_key_seed_hex"]}`, a public test key) with `created` \
{int(EXAMPLE_CREATED.timestamp())} and nonce `{EXAMPLE_NONCE}`. Signature base:

```
{example["signature_base"]}
```

Headers sent:

```
{headers}
```
"""
    return {
        "type": "apiKey",
        "in": "header",
        "name": "Signature",
        "description": description,
        "x-rfc9421": {
            "label": httpsig.LABEL,
            "tag": httpsig.TAG,
            "alg": "ed25519",
            "keyid": "party name",
            "covered_components": list(httpsig.COVERED),
            "parameters": ["created", "keyid", "alg", "nonce", "tag"],
            "nonce": {"minLength": 16, "maxLength": 64},
            "created_window_seconds": {"past": window + skew, "future": skew},
            "content_digest": ["sha-256", "sha-512"],
            "headers": ["Content-Digest", "Signature-Input", "Signature"],
            "example": example,
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
        "security": [{"httpMessageSignature": []}] if route.signed or route.self_signed else [],
    }
    if route.self_signed:
        operation["description"] = (
            "Signed (RFC 9421, as every party request) with the signing key being registered: "
            "`keyid` is the `name` in the body and the signature must verify with the body's "
            "`signing_key` (`401 unauthenticated` otherwise). A courier without open "
            "registration also needs the one-time `invite` (`403 registration_closed`)."
        )
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
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": PATH_PATTERNS[name]},
        }
        for name in _path_params(route.path)
    ]
    params += [_query(param) for param in route.query]
    if params:
        operation["parameters"] = params
    return operation


def _query(param: Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": "query",
        "required": False,
        "description": param.description,
        "schema": dict(param.schema),
    }


def _events_operation() -> dict[str, Any]:
    """The live event stream: Server-Sent Events, so it is described here, not in the table."""
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
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "description": "Resume after this event id",
                "schema": dict(AFTER.schema),
            },
            _query(AFTER),
        ],
        "responses": {
            "200": {
                "description": "An event stream",
                "content": {
                    "text/event-stream": {"schema": {"$ref": _REF.format(model="LiveEvent")}}
                },
            },
            **_problems([*ALWAYS, *SIGNED, TooManyStreams]),
        },
    }


def _error_responses(route: Route) -> dict[str, Any]:
    return _problems([*ALWAYS, *(SIGNED if route.signed else ()), *route.errors])


def _problems(errors: list[type[ChannelError]]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error.code)
    responses: dict[str, Any] = {}
    for status, codes in sorted(by_status.items()):
        responses[str(status)] = {
            "description": "Problem: " + ", ".join(f"`{c}`" for c in sorted(set(codes))),
            "content": {
                "application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}
            },
        }
        if status in (429, 503):
            responses[str(status)]["headers"] = _RETRY_AFTER
    return responses


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
        "<!-- Generated by `python -m channel.courier.server.openapi --markdown`; "
        "do not edit by hand. -->",
        "",
        doc["info"]["description"],
        "",
        "Errors are `application/problem+json` (RFC 9457) with a stable `code`.",
        "",
        "## Request signatures",
        "",
        doc["components"]["securitySchemes"]["httpMessageSignature"]["description"],
    ]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            lines += [f"## `{method.upper()} {path}`", "", op["summary"], ""]
            if not op["security"]:
                lines.append("Signed: no")
            elif "description" in op:
                lines += ["Signed: yes, with the key being registered.", "", op["description"], ""]
            else:
                lines.append("Signed: yes (RFC 9421)")
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                lines.append(f"Request body: `{ref.rsplit('/', 1)[-1]}`")
            if op.get("parameters"):
                lines += ["", "| parameter | in | rule | meaning |", "|---|---|---|---|"]
                lines += [_param_row(param) for param in op["parameters"]]
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


def _param_row(param: dict[str, Any]) -> str:
    schema = param["schema"]
    if "pattern" in schema:
        rule = f"`{schema['pattern']}`"
    elif schema.get("type") == "integer":
        rule = f"integer {schema['minimum']} to {schema['maximum']}, default {schema['default']}"
    else:
        rule = schema.get("type", "any")
    meaning = param.get("description", "") or ("required" if param.get("required") else "")
    return f"| `{param['name']}` | {param['in']} | {rule.replace('|', '&#124;')} | {meaning} |"


def _type_of(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        return f"`{spec['$ref'].rsplit('/', 1)[-1]}`"
    if "anyOf" in spec:
        return " or ".join(_type_of(s) for s in spec["anyOf"])
    if spec.get("type") == "array":
        return f"list of {_type_of(spec.get('items', {}))}"
    if "const" in spec:
        return f"`{spec['const']}`"
    if spec.get("contentEncoding") == "base64":
        return f"base64: {spec['description'].removesuffix(', standard padded base64')}"
    return str(spec.get("type", "any"))


if __name__ == "__main__":
    if "--markdown" in sys.argv:
        print(api_markdown())
    else:
        print(json.dumps(openapi_document(), indent=2))
