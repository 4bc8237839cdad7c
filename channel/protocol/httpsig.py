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
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from channel.protocol.errors import Unauthenticated

TAG = "backchannel"
LABEL = "party"
COVERED = ("@method", "@path", "@query", "content-digest")
_COVERED_IDS = frozenset(f'"{component}"' for component in COVERED)
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


class UnresolvedKey(Unauthenticated):
    """The request names a party whose key the verifier does not have (yet)."""

    def __init__(self, party: str) -> None:
        super().__init__(f"no key is known for the request's signer {party!r}")
        self.party = party


KeyLookup = Callable[[str], bytes | None]


class _OneKey(HTTPSignatureKeyResolver):
    """Signing: the one private key of the party that signs."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        return self.key


class _Lookup(HTTPSignatureKeyResolver):
    """Verifying: keys from the caller's (in-memory) lookup, noting a keyid it lacks."""

    def __init__(self, lookup: KeyLookup) -> None:
        self.lookup = lookup
        self.missing: str | None = None

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
        raw = self.lookup(key_id)
        if raw is None:
            self.missing = key_id
            return None
        return Ed25519PublicKey.from_public_bytes(raw)


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
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_OneKey(key))
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


def verify_request(view: RequestView, body: bytes, lookup: KeyLookup) -> SignedBy:
    """Check a request's signature; the signer's key comes from `lookup(keyid)`.

    Raises Unauthenticated with the reason, or UnresolvedKey when `lookup` lacks the signer's key
    (load it and call again).
    """
    if not any(name.lower() == "signature-input" for name in view.headers):
        raise Unauthenticated("the request is not signed (no Signature-Input header)")
    resolver = _Lookup(lookup)
    verifier = _Verifier(signature_algorithm=algorithms.ED25519, key_resolver=resolver)
    try:
        (result,) = verifier.verify(
            view, max_age=WINDOW, expect_tag=TAG, expect_label=LABEL, body=body
        )
    except (HTTPMessageSignaturesException, ValueError) as exc:
        if resolver.missing is not None:
            raise UnresolvedKey(resolver.missing) from None
        reason = str(exc) or "it does not verify with the party's key"
        raise Unauthenticated(f"the request signature is not valid: {reason}") from None
    if not result.covered_components.keys() >= _COVERED_IDS:
        raise Unauthenticated(f"the request signature must cover {', '.join(COVERED)}")
    nonce = result.parameters.get("nonce")
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
        raise Unauthenticated("the request signature carries no usable nonce")
    return SignedBy(str(result.parameters["keyid"]), nonce)
