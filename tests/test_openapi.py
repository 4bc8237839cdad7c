"""The OpenAPI document: valid 3.1, complete, in step with docs/api.md and with the live server."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from structlog.testing import capture_logs

from channel.courier.server.openapi import api_markdown, openapi_document
from channel.courier.server.routes import ROUTES
from channel.party.client import Client
from channel.protocol.httpsig import COVERED
from channel.protocol.lifecycle import State
from channel.protocol.models import MAX_CIPHERTEXT_WIRE, OpenRequest
from channel.protocol.names import LETTER_ID_PATTERN, PARTY_NAME_PATTERN
from channel.protocol.seal import PartyKeys, decision_for, sign_decision
from tests.conftest import (
    CourierFactory,
    PartyFactory,
    Reply,
    couriers,
    free_port,
    identity,
    raw_call,
    signed_call,
    signed_headers,
)

API_MD = Path(__file__).resolve().parent.parent / "docs" / "api.md"
QUDS = "ir.irgc.quds"
EMPTY_SHA256 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


@pytest.fixture
async def served(client: Client, http: aiohttp.ClientSession) -> dict[str, Any]:
    reply = await raw_call(http, "GET", f"{client.base_url}/openapi.json")
    assert reply.status == 200
    assert reply.content_type == "application/json"
    document: dict[str, Any] = reply.json()
    return document


async def test_served_document_is_valid_openapi_31(served: dict[str, Any]) -> None:
    """GET /openapi.json is a valid OpenAPI 3.1 document, the same one the module builds."""
    assert served["openapi"].startswith("3.1")
    validate(served)  # raises on any violation of the 3.1 schema
    assert served == openapi_document()


async def test_every_route_is_documented(served: dict[str, Any]) -> None:
    """Each route in the table, and the SSE event stream beside it, is documented; nothing more."""
    documented = {(method.upper(), path) for path, ops in served["paths"].items() for method in ops}
    table = {(route.method, route.path) for route in ROUTES}
    assert documented == table | {("GET", "/v1/events")}
    assert (
        "text/event-stream" in served["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]
    )
    for route in ROUTES:
        operation = served["paths"][route.path][route.method.lower()]
        assert str(route.status) in operation["responses"]
        assert bool(operation["security"]) is (route.signed or route.self_signed)
        assert ("requestBody" in operation) is (route.request is not None)
        params = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert params == set(re.findall(r"\{(\w+)\}", route.path))
        query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert query == {param.name for param in route.query}


def test_api_markdown_is_up_to_date() -> None:
    """docs/api.md is exactly what `python -m channel.courier.server.openapi --markdown` prints."""
    assert API_MD.read_text(encoding="utf-8") == api_markdown() + "\n"


def _validator(document: dict[str, Any], schema: str) -> OAS31Validator:
    return OAS31Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
    )


async def test_problem_responses_match_the_documented_schema(
    served: dict[str, Any], client: Client, http: aiohttp.ClientSession
) -> None:
    """A problem the server sends validates against the document's Problem schema."""
    reply = await raw_call(http, "GET", f"{client.base_url}/v1/parties/nobody.here")
    assert reply.status == 404
    _validator(served, "Problem").validate(reply.json())


async def test_responses_without_binary_fields_match_their_schemas(
    served: dict[str, Any], client: Client, http: aiohttp.ClientSession
) -> None:
    """Health answers validate against the schema the document publishes for them."""
    reply = await raw_call(http, "GET", f"{client.base_url}/healthz")
    _validator(served, "Health").validate(reply.json())


async def test_responses_with_keys_and_signatures_match_their_schemas(
    served: dict[str, Any], client: Client, quds: Client, http: aiohttp.ClientSession
) -> None:
    """Responses holding base64 keys and signatures validate against their published schemas."""
    for path, schema in ((f"/v1/parties/{QUDS}", "PartyRecord"), ("/v1/courier", "CourierKey")):
        reply = await raw_call(http, "GET", f"{client.base_url}{path}")
        assert reply.status == 200
        _validator(served, schema).validate(reply.json())


def _documents(document: dict[str, Any], method: str, path: str, reply: Reply) -> bool:
    """Is `reply` (a problem) among the responses documented for this operation?"""
    responses = document["paths"][path][method.lower()]["responses"]
    listed = responses.get(str(reply.status))
    return listed is not None and f"`{reply.json()['code']}`" in listed["description"]


async def test_problems_the_server_sends_are_documented_for_their_route(
    served: dict[str, Any],
    director: Client,
    quds: Client,
    party: PartyFactory,
    start_courier: CourierFactory,
    http: aiohttp.ClientSession,
) -> None:
    """Each problem seen in a tour of refusals is listed, by status and code, on its operation."""
    svr = await party("ru.svr.director")
    sealed, _ = await director.send_letter(QUDS, "tour")
    letter = f"/v1/letters/{sealed.envelope.id}"
    base = director.base_url
    me = identity(quds)
    signature = sign_decision(me, decision_for(State.OPENED, sealed.envelope))
    open_body = OpenRequest(signature=signature).model_dump_json().encode()
    closed = await start_courier(open_registration=False)
    stranger = PartyKeys.generate("gb.fco.desk")
    register_body = stranger.public().model_dump_json().encode()
    seen: list[tuple[str, str, Reply]] = [
        ("GET", letter, await signed_call(http, identity(svr), "GET", f"{base}{letter}")),
        ("GET", "/v1/inbox", await signed_call(http, me, "GET", f"{base}/v1/inbox?limit=0")),
        (
            "POST",
            f"{letter}/withdraw",
            await signed_call(http, me, "POST", f"{base}{letter}/withdraw"),
        ),
        (
            "GET",
            f"{letter}/returned",
            await signed_call(http, identity(director), "GET", f"{base}{letter}/returned"),
        ),
        (
            "POST",
            f"{letter}/open",
            await signed_call(http, me, "POST", f"{base}{letter}/open", open_body),
        ),
        (
            "POST",
            f"{letter}/open",
            await signed_call(http, me, "POST", f"{base}{letter}/open", open_body),
        ),
        (
            "POST",
            "/v1/letters",
            await signed_call(http, identity(director), "POST", f"{base}/v1/letters", b"{"),
        ),
        ("GET", "/v1/parties/{name}", await raw_call(http, "GET", f"{base}/v1/parties/X")),
        (
            "GET",
            "/v1/parties/{name}",
            await raw_call(http, "GET", f"{base}/v1/parties/nobody.here"),
        ),
        (
            "POST",
            "/v1/parties",
            await raw_call(
                http,
                "POST",
                f"{closed}/v1/parties",
                register_body,
                signed_headers(stranger, "POST", f"{closed}/v1/parties", register_body),
            ),
        ),
        ("GET", "/v1/outbox", await raw_call(http, "GET", f"{base}/v1/outbox")),
    ]
    expected = [404, 400, 403, 409, 200, 409, 400, 400, 404, 403, 401]
    assert [reply.status for _, _, reply in seen] == expected
    templated = {r.path: r.path for r in ROUTES}
    for method, path, reply in seen:
        if reply.status == 200:
            continue
        template = templated.get(path) or next(
            r.path for r in ROUTES if re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", r.path), path)
        )
        assert _documents(served, method, template, reply), (method, template, reply.json())


def test_the_worked_signature_example_verifies() -> None:
    """The security scheme's worked example: its signature base is what was signed, and the
    headers carry that signature and the empty body's digest."""
    scheme = openapi_document()["components"]["securitySchemes"]["httpMessageSignature"]
    example = scheme["x-rfc9421"]["example"]
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(example["signing_key_seed_hex"]))
    signature = base64.b64decode(example["headers"]["Signature"].split(":")[1])
    key.public_key().verify(signature, example["signature_base"].encode("ascii"))
    assert example["signature_base"].split("\n")[:3] == [
        '"@method": GET',
        '"@path": /v1/inbox',
        '"@query": ?limit=10',
    ]
    assert example["headers"]["Content-Digest"] == f"sha-256=:{EMPTY_SHA256}:"
    assert example["signature_base"] in scheme["description"]
    assert scheme["x-rfc9421"]["covered_components"] == list(COVERED)


def test_registration_is_documented_as_signed_by_the_key_it_registers() -> None:
    """The document marks registration as signed, by the key in its body, as the handler checks."""
    operation = openapi_document()["paths"]["/v1/parties"]["post"]
    assert operation["security"] == [{"httpMessageSignature": []}]
    assert "key being registered" in operation["description"]
    assert "`unauthenticated`" in operation["responses"]["401"]["description"]


async def test_an_unsigned_registration_is_refused_as_documented(
    served: dict[str, Any], client: Client, http: aiohttp.ClientSession
) -> None:
    """An unsigned registration gets 401 unauthenticated, a response the document lists."""
    body = PartyKeys.generate("gb.fco.desk").public().model_dump_json().encode()
    reply = await raw_call(
        http, "POST", f"{client.base_url}/v1/parties", body, {"Content-Type": "application/json"}
    )
    assert (reply.status, reply.json()["code"]) == (401, "unauthenticated")
    assert _documents(served, "POST", "/v1/parties", reply)


def test_path_and_query_parameters_carry_the_rules_the_server_checks() -> None:
    """Path parameters have the name and letter id patterns; paging parameters their bounds."""
    paths = openapi_document()["paths"]
    name = paths["/v1/parties/{name}"]["get"]["parameters"][0]["schema"]
    assert name["pattern"] == PARTY_NAME_PATTERN
    (letter,) = paths["/v1/letters/{letter_id}/open"]["post"]["parameters"]
    assert letter["schema"]["pattern"] == LETTER_ID_PATTERN
    query = {p["name"]: p["schema"] for p in paths["/v1/inbox"]["get"]["parameters"]}
    assert query == {
        "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
        "before": {"type": "string", "pattern": LETTER_ID_PATTERN},
    }


def test_base64_fields_publish_their_decoded_size() -> None:
    """Keys and signatures are patterns of exactly 32 and 64 bytes; the ciphertext states its
    decoded bounds. No base64 field is published as a bare character length any more."""
    schemas = openapi_document()["components"]["schemas"]
    key = schemas["RegisterRequest"]["properties"]["signing_key"]
    assert re.fullmatch(key["pattern"].strip("^$"), base64.b64encode(bytes(32)).decode())
    assert not re.fullmatch(key["pattern"].strip("^$"), base64.b64encode(bytes(33)).decode())
    seal = schemas["SealedLetter"]["properties"]["seal"]
    assert re.fullmatch(seal["pattern"].strip("^$"), base64.b64encode(bytes(64)).decode())
    assert not re.fullmatch(seal["pattern"].strip("^$"), base64.b64encode(bytes(65)).decode())
    ciphertext = schemas["SealedLetter"]["properties"]["ciphertext"]
    assert ciphertext["x-decoded-bytes"] == {"minimum": 1, "maximum": MAX_CIPHERTEXT_WIRE}
    text = json.dumps(schemas)
    assert text.count('"contentEncoding": "base64"') == text.count('"pattern": "^(?:[A-Za-z0-9+/]')


async def test_a_store_outage_is_a_documented_503_with_retry_after(
    courier_key: Ed25519PrivateKey, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """With Redis unreachable, a party lookup and a signed call answer 503 store_unavailable with
    Retry-After, as the document lists for them (the Problem schema included)."""
    document = openapi_document()
    dead = f"redis://127.0.0.1:{free_port()}"
    keys = PartyKeys.generate("gb.fco.desk")
    with capture_logs():
        async with couriers(dead, courier_key, tmp_path) as start:
            base = await start()
            lookup = await raw_call(http, "GET", f"{base}/v1/parties/gb.fco.desk")
            inbox = await signed_call(http, keys, "GET", f"{base}/v1/inbox")
    for path, reply in (("/v1/parties/{name}", lookup), ("/v1/inbox", inbox)):
        assert (reply.status, reply.json()["code"]) == (503, "store_unavailable")
        assert _documents(document, "GET", path, reply)
        documented = document["paths"][path]["get"]["responses"]["503"]["headers"]
        assert "Retry-After" in documented
        assert int(reply.headers["Retry-After"]) >= 1
        _validator(document, "Problem").validate(reply.json())
