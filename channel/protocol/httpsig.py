"""RFC 9421 HTTP Message Signatures for party requests.

Every party request is signed with the party's Ed25519 key over the method, path, query and an
RFC 9530 Content-Digest of the body, with `created`, `keyid` (the party name), `alg`, a random
`nonce` and the tag `backchannel`. The courier accepts a signature up to `WINDOW` after it was
created (plus `CLOCK_SKEW` either way for clocks that disagree) and remembers each nonce for longer
than that, so a request can never be replayed.

Parties sign with the http-message-signatures library. The courier verifies with `verify_request`:
a request in the protocol's own shape (one `party` signature over the four components, structured
fields in their canonical spelling, a SHA-256 digest) is checked directly, building the signature
base from the headers' bytes; anything else (other spellings of the same fields, extra signatures,
SHA-512 digests) goes to the library. So the courier's answer is the library's wherever the two
could differ, and the library's general parser costs nothing on the common path (tests hold the
direct path to the library's answers, tests/test_httpsig_lean.py).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException
from nacl.bindings import crypto_sign_open
from nacl.exceptions import CryptoError

from channel.protocol.errors import Unauthenticated

TAG = "backchannel"
LABEL = "party"
ALG = "ed25519"
COVERED = ("@method", "@path", "@query", "content-digest")
_COVERED_IDS = frozenset(f'"{component}"' for component in COVERED)
WINDOW = datetime.timedelta(seconds=60)
CLOCK_SKEW = datetime.timedelta(seconds=30)
# A nonce must be remembered for as long as its signature could still be accepted.
NONCE_TTL_MS = int((WINDOW + 2 * CLOCK_SKEW).total_seconds() * 1000)


@dataclass
class RequestView:
    """The parts of an HTTP request that signatures cover (the library's message interface).

    `headers` may hold a name more than once (aiohttp's multidict): the library joins repeated
    field lines, the direct path hands such a request to the library."""

    method: str
    url: str
    headers: Mapping[str, str]


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
    headers: dict[str, str] = {}
    view = RequestView(method.upper(), url, headers)
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
    return headers


def verify_request(view: RequestView, body: bytes, lookup: KeyLookup) -> SignedBy:
    """Check a request's signature; the signer's key comes from `lookup(keyid)`.

    Raises Unauthenticated with the reason, or UnresolvedKey when `lookup` lacks the signer's key
    (load it and call again).
    """
    signed = verify_direct(view, body, lookup)
    return signed if signed is not None else verify_with_library(view, body, lookup)


def verify_with_library(view: RequestView, body: bytes, lookup: KeyLookup) -> SignedBy:
    """`verify_request` by the http-message-signatures library alone: any shape of request."""
    if not any(name.lower() == "signature-input" for name in view.headers):
        raise Unauthenticated(_UNSIGNED)
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
    return SignedBy(str(result.parameters["keyid"]), _usable_nonce(result.parameters.get("nonce")))


# --- the direct path ---------------------------------------------------------------------------
# Only the canonical spelling of each structured field (RFC 9651) matches these patterns, so the
# `Signature-Input` member is byte for byte what the library would serialize into the signature
# base: strings without escapes, integers without leading zeros, no parameters on components.
_SF_STRING = r'"[ !#-\[\]-~]*"'
_SF_INTEGER = r"0|-?[1-9][0-9]{0,14}"
_SIGNATURE_INPUT = re.compile(
    rf'{LABEL}=(\(("[a-z@-]+"(?: "[a-z@-]+")*)\)((?:;[a-z]+=(?:{_SF_INTEGER}|{_SF_STRING}))*))'
)
_PARAMETER = re.compile(rf';([a-z]+)=(?:({_SF_INTEGER})|"([^"]*)")')
_SIGNATURE = re.compile(rf"{LABEL}=:([A-Za-z0-9+/]{{86}}==):")
_DIGEST = re.compile(r"sha-256=:([A-Za-z0-9+/]{43}=):")
# What the library's URL parser accepts (RFC 3986), narrowed to a plain host.
_PCHAR = r"[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2}"
_URL = re.compile(rf"https?://[A-Za-z0-9.-]+(?::[0-9]+)?(/(?:{_PCHAR})*)(?:\?((?:{_PCHAR}|\?)*))?")
_METHOD = re.compile(r"[A-Z]+")
_FIELDS = ("signature-input", "signature", "content-digest")
_COMPONENTS = frozenset(f'"{component}"' for component in COVERED)
_PARAMETERS = frozenset({"alg", "created", "expires", "keyid", "nonce", "tag"})
_UNSIGNED = "the request is not signed (no Signature-Input header)"
_NOT_VALID = "the request signature is not valid"
# The clock the direct path reads (tests of old vectors move it).
_now: Callable[[], float] = time.time


def verify_direct(view: RequestView, body: bytes, lookup: KeyLookup) -> SignedBy | None:
    """`verify_request` for a request in the protocol's own shape; None for any other shape.

    The checks run in the library's order, so each request gets the library's answer:
    accepted with the same signer and nonce, UnresolvedKey, or Unauthenticated.
    """
    fields: dict[str, str] = {}
    for name, value in view.headers.items():
        lowered = name.lower()
        if lowered in _FIELDS:
            if lowered in fields:
                return None
            fields[lowered] = value.strip(" \t")
    if "signature-input" not in fields:
        raise Unauthenticated(_UNSIGNED)
    signature_input = _SIGNATURE_INPUT.fullmatch(fields["signature-input"])
    signature = _SIGNATURE.fullmatch(fields.get("signature", ""))
    digest = _DIGEST.fullmatch(fields.get("content-digest", ""))
    url = _URL.fullmatch(view.url)
    if not (signature_input and signature and digest and url and _METHOD.fullmatch(view.method)):
        return None
    components = signature_input[2].split(" ")
    if len(components) != len(COVERED) or set(components) != _COMPONENTS:
        return None
    matches = list(_PARAMETER.finditer(signature_input[3]))
    params: dict[str, int | str] = {
        match[1]: int(match[2]) if match[2] is not None else match[3] for match in matches
    }
    if len(params) != len(matches) or not params.keys() <= _PARAMETERS:
        return None  # a repeated parameter (the last one counts) or one the protocol lacks
    for name in ("created", "expires"):
        if not isinstance(params.get(name, 0), int):
            raise Unauthenticated(f"{_NOT_VALID}: {name} must be an integer")
    for name in ("alg", "keyid", "nonce", "tag"):
        if not isinstance(params.get(name, ""), str):
            raise Unauthenticated(f"{_NOT_VALID}: {name} must be a string")
    if params.get("tag") != TAG:
        raise Unauthenticated(f"{_NOT_VALID}: no signature is tagged {TAG!r}")
    _check_times(params)
    if params.get("alg", ALG) != ALG:
        raise Unauthenticated(f"{_NOT_VALID}: the algorithm must be {ALG}")
    keyid = params.get("keyid")
    if not isinstance(keyid, str):
        raise Unauthenticated(f"{_NOT_VALID}: it names no keyid")
    key = lookup(keyid)
    if key is None:
        raise UnresolvedKey(keyid)
    values = {
        '"@method"': view.method,
        '"@path"': url[1],
        '"@query"': f"?{url[2] or ''}",
        '"content-digest"': fields["content-digest"],
    }
    lines = [f"{component}: {values[component]}" for component in components]
    lines.append(f'"@signature-params": {signature_input[1]}')
    base = "\n".join(lines).encode()
    try:
        crypto_sign_open(base64.b64decode(signature[1]) + base, key)
    except (CryptoError, ValueError):
        raise Unauthenticated(f"{_NOT_VALID}: it does not verify with the party's key") from None
    expected = hashlib.sha256(body).digest()
    if not hmac.compare_digest(base64.b64decode(digest[1]), expected):
        raise Unauthenticated(f"{_NOT_VALID}: Content-Digest does not match the message body")
    return SignedBy(keyid, _usable_nonce(params.get("nonce")))


def _check_times(params: Mapping[str, int | str]) -> None:
    """The library's window: created ≤ now + skew, created + WINDOW ≥ now - skew, and expires
    (if any) ≥ now - skew; a time no datetime can hold is refused as the library refuses it."""
    now, skew = _now(), CLOCK_SKEW.total_seconds()
    created, expires = params.get("created"), params.get("expires")
    if not isinstance(created, int):
        raise Unauthenticated(f"{_NOT_VALID}: it has no created time")
    if created > now + skew:
        raise Unauthenticated(f"{_NOT_VALID}: it was created in the future")
    if isinstance(expires, int):
        try:
            datetime.datetime.fromtimestamp(expires, datetime.UTC)
        except (OverflowError, ValueError, OSError):
            raise Unauthenticated(f"{_NOT_VALID}: its expires time is out of range") from None
        if expires < now - skew:
            raise Unauthenticated(f"{_NOT_VALID}: it has expired")
    if created + WINDOW.total_seconds() < now - skew:
        raise Unauthenticated(f"{_NOT_VALID}: it is older than {WINDOW.seconds} s")


def _usable_nonce(nonce: object) -> str:
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
        raise Unauthenticated("the request signature carries no usable nonce")
    return nonce
