"""Schemathesis fuzzes a real courier from its own live OpenAPI document, signed and unsigned.

The courier serves on 127.0.0.1 from a thread of its own (schemathesis calls it with blocking
`requests`). Each operation gets schema-valid and schema-invalid requests twice over: signed as a
registered party by a requests auth hook (`httpsig.sign_request` over the exact bytes sent), and
unsigned. Every schemathesis check must pass: no server error; status, content type, headers and
body as documented; schema-invalid requests refused; schema-valid requests not refused.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import requests
import schemathesis
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from requests.auth import AuthBase
from schemathesis import Case, GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance
from structlog.testing import capture_logs

from channel.courier.embedded import EmbeddedRedis
from channel.courier.server.app import create_app
from channel.courier.settings import Settings
from channel.protocol.httpsig import sign_request
from channel.protocol.models import b64
from channel.protocol.seal import PartyKeys

EXAMPLES = 15  # per operation, generation mode and run: about 640 requests, 15-30 s
SIGNER = "fuzz.signer"
HEADER = ParameterLocation.HEADER
# Signed, a valid request opens a stream that never ends (tests/test_events.py covers it); the
# unsigned run still fuzzes it.
STREAMS = {"GET /v1/events"}
OPEN = {"GET /healthz", "GET /v1/courier", "GET /v1/parties/{name}"}
# Whether a sealed letter is accepted rests on its seal and digests, which no schema can say:
# a generated one is refused with `400 invalid_letter`, as the document lists.
NOT_ACCEPTABLE_BY_SCHEMA = {"POST /v1/letters"}


@contextmanager
def courier_in_thread(redis_url: str, data_dir: Path) -> Iterator[str]:
    """A courier on 127.0.0.1 served by an event loop in its own thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    options: dict[str, Any] = {"open_registration": True, "data_dir": data_dir, "port": 0}
    settings_ = Settings(**options, rate_limit_per_second=0)  # thousands of requests in seconds
    app = create_app(settings_, redis_url, Ed25519PrivateKey.generate(), sweeper=False)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> str:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


class Signer(AuthBase):
    """Signs the request as prepared (exact URL and body bytes) as `party`.

    A schema-valid registration is re-keyed instead: its `signing_key` becomes a fresh key's and
    it is signed with that key under its own name, as registration requires.
    """

    def __init__(self, party: PartyKeys, *, rekey_registration: bool) -> None:
        self.party = party
        self.rekey_registration = rekey_registration

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        sent = request.body or b""
        assert isinstance(sent, str | bytes)  # schemathesis sends JSON bodies whole, never streams
        body = sent.encode() if isinstance(sent, str) else sent
        signer = self.party
        if self.rekey_registration and urlsplit(request.url).path == "/v1/parties":
            payload = json.loads(body)
            signer = PartyKeys.generate(payload["name"])
            payload["signing_key"] = b64(signer.public().signing_key)
            body = json.dumps(payload).encode()
            request.prepare_body(body, None)
        assert request.method is not None
        assert request.url is not None
        request.headers.update(
            sign_request(signer.name, signer.signing, request.method, request.url, body)
        )
        return request


@dataclass
class Fuzzer:
    """Sends generated cases to the courier at `base`, signed as `signer` (None: unsigned)."""

    base: str
    signer: PartyKeys | None
    session: requests.Session = field(default_factory=requests.Session)
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    statuses: set[str] = field(default_factory=set)

    def run(self, schema: Any) -> None:
        """Every documented operation, schema-valid and schema-invalid, EXAMPLES cases each."""
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.label in STREAMS and self.signer is not None:
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    self.operation(operation, mode)
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE  # nothing to get wrong: no inputs

    def operation(self, operation: Any, mode: GenerationMode) -> None:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Case[Any]) -> None:
            self.case(case, operation.label, mode)

        run()

    def case(self, case: Case[Any], label: str, mode: GenerationMode) -> None:
        auth = None
        # A schema-invalid header is the `Signature` security header left out: send it unsigned.
        unsigned = case.meta is not None and case.meta.is_negative_at(HEADER)
        if self.signer is not None and not unsigned:
            auth = Signer(self.signer, rekey_registration=mode is GenerationMode.POSITIVE)
        response = case.call(base_url=self.base, session=self.session, auth=auth, timeout=10)
        self.requests += 1
        self.statuses.add(f"{label} {mode.value} {'S' if auth else 'U'} {response.status_code}")
        # Unsigned, a signed operation answers 401, or 400 to what it refuses before looking.
        if auth is None and label not in OPEN and response.status_code not in (400, 401):
            self.failures.append(f"{label} unsigned: {response.status_code}")
        excluded = []
        if self.signer is not None:
            # Its probes would go through the signing hook too; the unsigned run shows that
            # every signed operation refuses unsigned requests.
            excluded.append(ignored_auth)
        if label in NOT_ACCEPTABLE_BY_SCHEMA:
            excluded.append(positive_data_acceptance)
        try:
            case.validate_response(
                response,
                excluded_checks=excluded,
                transport_kwargs={"base_url": self.base, "session": self.session, "auth": auth},
            )
        except (AssertionError, FailureGroup) as failure:
            self.failures.append(
                f"{label} {mode.value} {'signed' if auth else 'unsigned'}: "
                f"{response.status_code} {response.text[:200]!r}: {str(failure)[:600]}"
            )


def register(base: str, keys: PartyKeys) -> None:
    body = keys.public().model_dump_json().encode()
    url = f"{base}/v1/parties"
    headers = sign_request(keys.name, keys.signing, "POST", url, body)
    reply = requests.post(
        url, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=10
    )
    assert reply.status_code == 201, reply.text


@pytest.mark.timeout(300)
def test_fuzzed_requests_find_no_gap_between_document_and_server(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """Generated requests, signed and unsigned: no 5xx, no undocumented reply, no wrong refusal."""
    redis.Redis.from_url(redis_server.url).flushdb()
    with capture_logs() as logs, courier_in_thread(redis_server.url, tmp_path) as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        signer = PartyKeys.generate(SIGNER)
        register(base, signer)
        signed, unsigned = Fuzzer(base, signer), Fuzzer(base, None)
        signed.run(schema)
        unsigned.run(schema)
    failures = signed.failures + unsigned.failures
    print(f"fuzzer: {signed.requests + unsigned.requests} requests, {len(failures)} findings")
    assert not failures, "\n".join(failures[:10])
    # Each kind of answer was reached: accepted, registered, refused, unsigned, unknown.
    reached = signed.statuses | unsigned.statuses
    assert {"GET /v1/inbox positive S 200", "POST /v1/parties positive S 201"} <= reached
    assert {"GET /v1/inbox negative S 400", "GET /v1/inbox positive U 401"} <= reached
    assert {
        "GET /v1/letters/{letter_id} positive S 404",
        "GET /v1/events positive U 401",
    } <= reached
    assert signed.requests + unsigned.requests >= 2 * 2 * EXAMPLES * 9
    assert not [entry for entry in logs if entry["log_level"] in ("error", "critical")]
