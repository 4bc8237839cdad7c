"""RFC 9421 HTTP Message Signatures for party requests, on the http-message-signatures library.

Every party request is signed with the party's Ed25519 key over the method, path, query and an
RFC 9530 Content-Digest of the body, with `created`, `keyid` (the party name), `alg`, a random
`nonce` and the tag `backchannel`. The courier accepts a signature up to `WINDOW` after it was
created (plus `CLOCK_SKEW` either way for clocks that disagree) and remembers each nonce for longer
than that, so a request can never be replayed.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import http_sf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from channel.errors import Unauthenticated

TAG = "backchannel"
LABEL = "party"
COVERED = ("@method", "@path", "@query", "content-digest")
WINDOW = datetime.timedelta(seconds=60)
CLOCK_SKEW = datetime.timedelta(seconds=30)
# A nonce must be remembered for as long as its signature could still be accepted.
NONCE_TTL_MS = int((WINDOW + 2 * CLOCK_SKEW).total_seconds() * 1000)


@dataclass
class RequestView:
    """The parts of an HTTP request that signatures cover (the library's message interface)."""

    method: str
    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class SignedBy:
    party: str
    nonce: str


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, key_id: str, key: Ed25519PrivateKey | Ed25519PublicKey) -> None:
        self.key_id, self.key = key_id, key

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey | Ed25519PublicKey:
        return self.key

    def resolve_public_key(self, key_id: str) -> Ed25519PrivateKey | Ed25519PublicKey | None:
        return self.key if key_id == self.key_id else None


class _Verifier(HTTPMessageVerifier):
    max_clock_skew = CLOCK_SKEW


def sign_request(
    party: str,
    key: Ed25519PrivateKey,
    method: str,
    url: str,
    body: bytes,
    *,
    created: datetime.datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers (Content-Digest, Signature-Input, Signature) that authenticate a request."""
    view = RequestView(method.upper(), url, {})
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(party, key)
    )
    signer.sign(
        view,
        key_id=party,
        created=created or datetime.datetime.now(datetime.UTC),
        nonce=nonce or os.urandom(16).hex(),
        label=LABEL,
        tag=TAG,
        covered_component_ids=COVERED,
        body=body,
    )
    return view.headers


def signer_of(headers: Iterable[tuple[str, str]]) -> str:
    """The party a request claims to be signed by (its `keyid`), before anything is verified."""
    value = next((v for k, v in headers if k.lower() == "signature-input"), None)
    if value is None:
        raise Unauthenticated("the request is not signed (no Signature-Input header)")
    try:
        parsed: Any = http_sf.parse(value.encode("ascii"), tltype="dictionary")
        keyid = parsed[LABEL][1]["keyid"]
    except Exception:  # the parser raises several unrelated types; all mean "malformed"
        raise Unauthenticated(
            f"the Signature-Input header has no '{LABEL}' signature with a keyid"
        ) from None
    if not isinstance(keyid, str):
        raise Unauthenticated("the signature's keyid is not a string")
    return keyid


def verify_request(view: RequestView, body: bytes, party: str, signing_key: bytes) -> SignedBy:
    """Check a request's signature by `party`; raise Unauthenticated with the reason if it fails."""
    verifier = _Verifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=_OneKey(party, Ed25519PublicKey.from_public_bytes(signing_key)),
    )
    try:
        (result,) = verifier.verify(
            view,
            max_age=WINDOW,
            expect_tag=TAG,
            expect_label=LABEL,
            require_components=COVERED,
            body=body,
        )
    except (HTTPMessageSignaturesException, ValueError) as exc:
        reason = str(exc) or "it does not verify with the party's key"
        raise Unauthenticated(f"the request signature is not valid: {reason}") from None
    nonce = result.parameters.get("nonce")
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
        raise Unauthenticated("the request signature carries no usable nonce")
    return SignedBy(party, nonce)
