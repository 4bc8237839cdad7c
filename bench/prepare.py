"""Requests prepared before a run, as the exact bytes the load generator writes.

Courier sends are sealed through the public client (party.client) and signed per RFC 9421, each
with its own letter id and nonce; relay sends carry one Ed25519 signature over the body. Both are
built in worker processes (`prepare`), so a run only replays bytes. Signatures are made at
preparation time: a run must start within the courier's signature window (60 s).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
import os
import time
from collections.abc import Sequence
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from channel.party.client import Client
from channel.protocol.httpsig import sign_request
from channel.protocol.seal import PartyKeys, raw_private

BODY_1K = "x" * 1024
LETTERS_PATH = "/v1/letters"
EVENTS_PATH = "/v1/events"

# A party as plain bytes, so it can cross to a worker process: (name, signing, encryption).
RawParty = tuple[str, bytes, bytes]


def raw_party(keys: PartyKeys) -> RawParty:
    return keys.name, raw_private(keys.signing), raw_private(keys.encryption)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def fast_sign(
    party: str, key: Ed25519PrivateKey, method: str, path: str, body: bytes, *, created: int
) -> dict[str, str]:
    """The headers `protocol.httpsig.sign_request` makes, built directly (it costs ~10x more in
    the library); `signer()` checks the two agree byte for byte before this is used."""
    digest = f"sha-256=:{_b64(hashlib.sha256(body).digest())}:"
    params = (
        '("@method" "@path" "@query" "content-digest")'
        f';created={created};keyid="{party}";alg="ed25519";nonce="{os.urandom(16).hex()}"'
        ';tag="backchannel"'
    )
    base = (
        f'"@method": {method}\n"@path": {path}\n"@query": ?\n"content-digest": {digest}\n'
        f'"@signature-params": {params}'
    )
    signature = _b64(key.sign(base.encode()))
    return {
        "Content-Digest": digest,
        "Signature-Input": f"party={params}",
        "Signature": f"party=:{signature}:",
    }


def signer_agrees() -> bool:
    """Whether `fast_sign` makes exactly the library's headers (same created time and nonce)."""
    key = Ed25519PrivateKey.generate()
    created = int(time.time())
    fast = fast_sign("bench.check.party", key, "POST", LETTERS_PATH, b'{"a":1}', created=created)
    nonce = fast["Signature-Input"].split('nonce="')[1].split('"')[0]
    library = sign_request(
        "bench.check.party",
        key,
        "POST",
        f"http://127.0.0.1{LETTERS_PATH}",
        b'{"a":1}',
        created=datetime.datetime.fromtimestamp(created, datetime.UTC),
        nonce=nonce,
    )
    return library == fast


def sign(
    party: str, key: Ed25519PrivateKey, method: str, path: str, body: bytes, fast: bool
) -> dict[str, str]:
    if fast:
        return fast_sign(party, key, method, path, body, created=int(time.time()))
    return sign_request(party, key, method, f"http://127.0.0.1{path}", body)


def http_request(method: str, path: str, port: int, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def courier_sends(
    port: int, routes: Sequence[tuple[RawParty, str]], count: int, offset: int, fast: bool
) -> tuple[list[bytes], list[str]]:
    """`count` sealed, signed `POST /v1/letters`, round robin over (sender, recipient) routes
    starting at `offset`; with their letter ids."""

    async def build() -> tuple[list[bytes], list[str]]:
        requests, ids = [], []
        async with Client(f"http://127.0.0.1:{port}") as anonymous:
            senders = [anonymous.as_party(PartyKeys.from_raw(*sender)) for sender, _ in routes]
            for i in range(offset, offset + count):
                sender, recipient = senders[i % len(routes)], routes[i % len(routes)][1]
                sealed = await sender.seal(recipient, BODY_1K, expires_in=timedelta(days=1))
                body = sealed.model_dump_json(exclude_none=True).encode()
                keys = sender.me
                headers = sign(keys.name, keys.signing, "POST", LETTERS_PATH, body, fast)
                headers["Content-Type"] = "application/json"
                requests.append(http_request("POST", LETTERS_PATH, port, headers, body))
                ids.append(sealed.envelope.id)
        return requests, ids

    return asyncio.run(build())


def relay_sends(
    port: int, routes: Sequence[tuple[RawParty, str]], count: int, offset: int, fast: bool
) -> tuple[list[bytes], list[str]]:
    """`count` relay sends: a ~1.5 KB JSON letter (random 1 KB "ciphertext") and its signature."""
    keys = [Ed25519PrivateKey.from_private_bytes(sender[1]) for sender, _ in routes]
    requests, ids = [], []
    for i in range(offset, offset + count):
        (name, _, _), recipient = routes[i % len(routes)]
        letter_id = os.urandom(13).hex()
        body = json.dumps(
            {"id": letter_id, "from": name, "to": recipient, "ciphertext": _b64(os.urandom(1050))}
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Party": name,
            "X-Signature": _b64(keys[i % len(routes)].sign(body)),
        }
        requests.append(http_request("POST", LETTERS_PATH, port, headers, body))
        ids.append(letter_id)
    return requests, ids


def stream_request(port: int, party: RawParty, fast: bool) -> bytes:
    """A signed `GET /v1/events`, from now (no Last-Event-ID)."""
    key = Ed25519PrivateKey.from_private_bytes(party[1])
    headers = sign(party[0], key, "GET", EVENTS_PATH, b"", fast)
    headers["Accept"] = "text/event-stream"
    headers["Connection"] = "close"  # a stream the server ends closes its socket: seen as dropped
    return http_request("GET", EVENTS_PATH, port, headers, b"")
