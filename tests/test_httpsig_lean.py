"""The courier's direct RFC 9421 verifier gives the http-message-signatures library's answer.

`verify_request` checks a request of the protocol's own shape directly and hands any other shape
to the library. These tests hold the direct path to the library (the reference) on valid requests
and on every kind of tampering, and check that the direct path really decides those cases.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import pytest
from http_message_signatures import signatures as hms_signatures
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from channel.protocol import httpsig
from channel.protocol.errors import Unauthenticated
from channel.protocol.httpsig import (
    COVERED,
    RequestView,
    UnresolvedKey,
    sign_request,
    verify_direct,
    verify_request,
    verify_with_library,
)
from channel.protocol.seal import PartyKeys, raw_public

NOW = 1_800_000_000
SIGNER = PartyKeys.generate("langley")
OTHER = PartyKeys.generate("quds-force")
KEYS = {key.name: raw_public(key.signing) for key in (SIGNER, OTHER)}
BASE = "http://courier"


@contextmanager
def frozen_clocks(now: int = NOW) -> Iterator[None]:
    """Both verifiers read the same fixed clock, so window edges can be compared exactly."""

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> Frozen:
            return cls.fromtimestamp(now, tz)

    clock = SimpleNamespace(
        datetime=Frozen, timezone=datetime.timezone, timedelta=datetime.timedelta
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hms_signatures, "datetime", clock)
        patch.setattr(httpsig, "_now", lambda: float(now))
        yield


Outcome = tuple[str, ...]


def outcome(verify: Callable[..., object], view: RequestView, body: bytes) -> Outcome:
    """What a verifier decided: accepted (signer, nonce), an unknown signer, or refused."""
    try:
        signed = verify(view, body, KEYS.get)
    except UnresolvedKey as unresolved:
        return ("unresolved", unresolved.party)
    except Unauthenticated:
        return ("refused",)
    assert isinstance(signed, httpsig.SignedBy)
    return ("accepted", signed.party, signed.nonce)


@dataclass(frozen=True)
class Request:
    """A signed request as it goes over the wire: method, target, headers (repeatable), body."""

    method: str
    target: str
    body: bytes
    headers: tuple[tuple[str, str], ...]

    def view(self) -> RequestView:
        return RequestView(self.method, f"{BASE}{self.target}", CIMultiDict(self.headers))

    def header(self, name: str) -> str:
        return dict(self.headers).get(name, "")

    def with_header(self, name: str, value: str) -> Request:
        kept = tuple((key, old) for key, old in self.headers if key != name)
        return replace(self, headers=(*kept, (name, value)))


@dataclass(frozen=True)
class Spec:
    """What a (possibly careless or hostile) signer chooses; `sign` makes the request from it."""

    method: str = "POST"
    target: str = "/v1/letters"
    body: bytes = b'{"letter": 1}'
    label: str = "party"
    components: tuple[str, ...] = COVERED
    # Parameters as they appear in Signature-Input; `signed_params` is what the key signs if the
    # header spells them differently (a non-canonical spelling of the same values).
    params: tuple[tuple[str, str], ...] = (
        ("created", str(NOW - 10)),
        ("keyid", '"langley"'),
        ("alg", '"ed25519"'),
        ("nonce", '"' + "ab" * 16 + '"'),
        ("tag", '"backchannel"'),
    )
    signed_params: str | None = None
    digest: str | None = None  # Content-Digest as sent; by default the body's SHA-256
    key: PartyKeys = SIGNER
    extra: tuple[tuple[str, str], ...] = field(default=())

    def sign(self) -> Request:
        digest = self.digest
        if digest is None:
            digest = f"sha-256=:{base64.b64encode(hashlib.sha256(self.body).digest()).decode()}:"
        path, _, query = self.target.partition("?")
        values = {
            "@method": self.method,
            "@path": path,
            "@query": f"?{query}",
            "@authority": "courier",
            "content-digest": digest,
        } | {name.lower(): value for name, value in self.extra}
        listed = " ".join(f'"{name}"' for name in self.components)
        params = "".join(f";{name}={value}" for name, value in self.params)
        # The spec's order of parameters need not be the last one set: keep it as written.
        signature_params = self.signed_params or f"({listed}){params}"
        lines = [f'"{name}": {values.get(name, "")}' for name in self.components]
        lines.append(f'"@signature-params": {signature_params}')
        signature = self.key.signing.sign("\n".join(lines).encode())
        headers = (
            ("Content-Digest", digest),
            ("Signature-Input", f"{self.label}=({listed}){params}"),
            ("Signature", f"{self.label}=:{base64.b64encode(signature).decode()}:"),
            *self.extra,
        )
        return Request(self.method, self.target, self.body, headers)


def _flip(header: str, at: int) -> str:
    """`header` with the base64 character at `at` changed (its last one if it is shorter: an
    earlier tampering may have emptied it)."""
    if not header:
        return "A"
    at = min(at, len(header) - 1)
    return header[:at] + ("A" if header[at] != "A" else "B") + header[at + 1 :]


def with_param(spec: Spec, name: str, value: str | None) -> Spec:
    """The spec with parameter `name` set to the serialized `value` (or removed: None)."""
    params = [(key, old) for key, old in spec.params if key != name]
    if value is not None:
        params.append((name, value))
    return replace(spec, params=tuple(params))


def assert_agree(request: Request) -> Outcome:
    """The courier's verifier and the library decide this request the same way."""
    view = request.view()
    mine = outcome(verify_request, view, request.body)
    assert mine == outcome(verify_with_library, view, request.body), request
    return mine


def direct_decides(request: Request) -> bool:
    """Whether the direct path decided the request itself (rather than handing it on)."""
    try:
        return verify_direct(request.view(), request.body, KEYS.get) is not None
    except Unauthenticated:
        return True


# --- valid requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("GET", "/v1/inbox", b""),
        ("GET", "/v1/inbox?limit=5", b""),
        ("GET", "/v1/outbox?limit=5&after=x%20y", b""),
        ("GET", "/v1/letters/01bzcbcendqw1en73s093f8nk8", b""),
        ("POST", "/v1/letters", b'{"envelope": {}, "seal": "", "ciphertext": ""}'),
        ("POST", "/v1/letters/01bzcbcendqw1en73s093f8nk8/withdraw", b""),
        ("POST", "/v1/letters", bytes(range(256)) * 8),
    ],
)
def test_requests_the_client_signs_are_accepted_directly(
    method: str, target: str, body: bytes
) -> None:
    """What the reference client signs is accepted by the direct path, as by the library."""
    headers = sign_request("langley", SIGNER.signing, method, f"http://any.host:8700{target}", body)
    view = RequestView(method, f"{BASE}{target}", headers)
    direct = verify_direct(view, body, KEYS.get)
    assert direct is not None
    assert direct == verify_with_library(view, body, KEYS.get)
    assert direct.party == "langley"


def test_the_test_signer_signs_what_the_library_signs() -> None:
    """This file's hand-made signer is right, so the requests it makes test something."""
    request = Spec().sign()
    created = datetime.datetime.fromtimestamp(NOW - 10, datetime.UTC)
    library = sign_request(
        "langley", SIGNER.signing, "POST", f"{BASE}/v1/letters", request.body,
        created=created, nonce="ab" * 16,
    )  # fmt: skip
    assert dict(request.headers) == library
    with frozen_clocks():
        assert assert_agree(request) == ("accepted", "langley", "ab" * 16)
        assert direct_decides(request)


# --- tampering, one kind at a time -------------------------------------------------------------

TAMPERED: dict[str, Callable[[Request], Request]] = {
    "method": lambda r: replace(r, method="PUT"),
    "method-lowercase": lambda r: replace(r, method="post"),
    "path": lambda r: replace(r, target=r.target + "x"),
    "path-encoded": lambda r: replace(r, target=r.target.replace("/v1", "/%76%31")),
    "query-added": lambda r: replace(r, target=r.target + "?limit=2"),
    "query-empty": lambda r: replace(r, target=r.target + "?"),
    "fragment": lambda r: replace(r, target=r.target + "#x"),
    "body": lambda r: replace(r, body=r.body + b" "),
    "body-emptied": lambda r: replace(r, body=b""),
    "digest-other": lambda r: r.with_header(
        "Content-Digest", f"sha-256=:{base64.b64encode(hashlib.sha256(b'x').digest()).decode()}:"
    ),
    "digest-sha512": lambda r: r.with_header(
        "Content-Digest", f"sha-512=:{base64.b64encode(hashlib.sha512(r.body).digest()).decode()}:"
    ),
    "digest-missing": lambda r: replace(
        r, headers=tuple(h for h in r.headers if h[0] != "Content-Digest")
    ),
    "digest-garbage": lambda r: r.with_header("Content-Digest", "sha-256=:nope:"),
    "created": lambda r: r.with_header(
        "Signature-Input",
        r.header("Signature-Input").replace(f"created={NOW - 10}", f"created={NOW}"),
    ),
    "keyid-known": lambda r: r.with_header(
        "Signature-Input", r.header("Signature-Input").replace('"langley"', '"quds-force"')
    ),
    "keyid-unknown": lambda r: r.with_header(
        "Signature-Input", r.header("Signature-Input").replace('"langley"', '"nobody"')
    ),
    "tag": lambda r: r.with_header(
        "Signature-Input", r.header("Signature-Input").replace("backchannel", "backchannex")
    ),
    "label": lambda r: replace(
        r,
        headers=tuple(
            (k, v.replace("party=", "other=", 1)) if k.startswith("Signature") else (k, v)
            for k, v in r.headers
        ),
    ),
    "signature-flipped": lambda r: r.with_header("Signature", _flip(r.header("Signature"), 10)),
    "signature-last-bits": lambda r: r.with_header("Signature", _flip(r.header("Signature"), 92)),
    "signature-short": lambda r: r.with_header("Signature", f"party=:{'A' * 84}==:"),
    "signature-missing": lambda r: replace(
        r, headers=tuple(h for h in r.headers if h[0] != "Signature")
    ),
    "signature-input-missing": lambda r: replace(
        r, headers=tuple(h for h in r.headers if h[0] != "Signature-Input")
    ),
    "signature-input-twice": lambda r: replace(
        r, headers=(*r.headers, ("Signature-Input", r.header("Signature-Input")))
    ),
    "signature-twice": lambda r: replace(
        r, headers=(*r.headers, ("Signature", r.header("Signature")))
    ),
    "digest-twice": lambda r: replace(
        r, headers=(*r.headers, ("Content-Digest", r.header("Content-Digest")))
    ),
    "spaces-around": lambda r: r.with_header("Signature", f"  {r.header('Signature')}\t"),
}

# Changes that may leave the signed request what it was: whitespace around a field, a fragment
# (not part of the request), an empty query (RFC 9421: "?" either way), emptying an empty body,
# and changing only the unused low bits of the signature's last base64 character.
UNCHANGED = {"spaces-around", "fragment", "query-empty", "body-emptied", "signature-last-bits"}
# Kinds the direct path must decide itself (the rest it may hand to the library).
DIRECT = {
    "method", "path", "path-encoded", "query-added", "query-empty", "body", "body-emptied",
    "digest-other", "created", "keyid-known", "keyid-unknown", "tag", "signature-flipped",
    "spaces-around",
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(TAMPERED))
@pytest.mark.parametrize(
    ("method", "target", "body"),
    [("GET", "/v1/inbox", b""), ("GET", "/v1/inbox?limit=1", b""), ("POST", "/v1/letters", b"{}")],
    ids=["get", "get-query", "post"],
)
def test_each_tampering_gets_the_librarys_answer(
    kind: str, method: str, target: str, body: bytes
) -> None:
    """A request changed after signing is answered as the library answers it (and refused)."""
    request = TAMPERED[kind](Spec(method=method, target=target, body=body).sign())
    with frozen_clocks():
        decided = assert_agree(request)
        assert decided[0] != "accepted" or kind in UNCHANGED
        if kind in DIRECT:
            assert direct_decides(request)


# --- what a signer may choose: parameters, components, spellings ------------------------------

SIGNER_CHOICES: dict[str, Callable[[Spec], Spec]] = {
    "params-reordered": lambda s: replace(s, params=tuple(reversed(s.params))),
    "no-alg": lambda s: with_param(s, "alg", None),
    "alg-other": lambda s: with_param(s, "alg", '"rsa-pss-sha512"'),
    "alg-integer": lambda s: with_param(s, "alg", "1"),
    "no-created": lambda s: with_param(s, "created", None),
    "created-string": lambda s: with_param(s, "created", '"1"'),
    "created-zero": lambda s: with_param(s, "created", "0"),
    "created-huge": lambda s: with_param(s, "created", "999999999999999"),
    "created-very-negative": lambda s: with_param(s, "created", "-999999999999999"),
    "expires-future": lambda s: with_param(s, "expires", str(NOW + 60)),
    "expires-edge": lambda s: with_param(s, "expires", str(NOW - 30)),
    "expires-past": lambda s: with_param(s, "expires", str(NOW - 31)),
    "expires-huge": lambda s: with_param(s, "expires", "999999999999999"),
    "expires-string": lambda s: with_param(s, "expires", '"soon"'),
    "no-keyid": lambda s: with_param(s, "keyid", None),
    "keyid-empty": lambda s: with_param(s, "keyid", '""'),
    "keyid-integer": lambda s: with_param(s, "keyid", "7"),
    "no-nonce": lambda s: with_param(s, "nonce", None),
    "nonce-short": lambda s: with_param(s, "nonce", '"' + "a" * 15 + '"'),
    "nonce-16": lambda s: with_param(s, "nonce", '"' + "a" * 16 + '"'),
    "nonce-64": lambda s: with_param(s, "nonce", '"' + "a" * 64 + '"'),
    "nonce-65": lambda s: with_param(s, "nonce", '"' + "a" * 65 + '"'),
    "nonce-integer": lambda s: with_param(s, "nonce", "12345678901234567"),
    "nonce-escaped": lambda s: with_param(s, "nonce", '"' + "a" * 16 + '\\"x"'),
    "no-tag": lambda s: with_param(s, "tag", None),
    "tag-other": lambda s: with_param(s, "tag", '"other"'),
    "unknown-param": lambda s: with_param(s, "foo", '"bar"'),
    "param-twice": lambda s: replace(s, params=(*s.params, ("created", str(NOW - 20)))),
    "created-leading-zero": lambda s: _respelled(s, "created", f"0{NOW - 10}"),
    "keyid-escaped": lambda s: _respelled(s, "keyid", '"lang\\ley"'),
    "components-reordered": lambda s: replace(s, components=tuple(reversed(s.components))),
    "component-missing": lambda s: replace(s, components=s.components[:3]),
    "component-repeated": lambda s: replace(s, components=(*s.components, "@path")),
    "component-extra": lambda s: replace(
        s, components=(*s.components, "content-type"), extra=(("Content-Type", "application/json"),)
    ),
    "component-authority": lambda s: replace(s, components=(*s.components, "@authority")),
    "other-key": lambda s: replace(s, key=OTHER),
    "label-other": lambda s: replace(s, label="other"),
    "digest-of-other-body": lambda s: replace(
        s, digest=f"sha-256=:{base64.b64encode(hashlib.sha256(b'y').digest()).decode()}:"
    ),
    "digest-both": lambda s: replace(
        s,
        digest=(
            f"sha-256=:{base64.b64encode(hashlib.sha256(s.body).digest()).decode()}:, "
            f"sha-512=:{base64.b64encode(hashlib.sha512(s.body).digest()).decode()}:"
        ),
    ),
}


def _respelled(spec: Spec, name: str, spelling: str) -> Spec:
    """The header spells `name` as `spelling`; the key signed the canonical spelling."""
    canonical = spec.sign().header("Signature-Input").removeprefix(f"{spec.label}=")
    return replace(with_param(spec, name, spelling), signed_params=canonical)


def _created(offset: int) -> Callable[[Spec], Spec]:
    return lambda s: with_param(s, "created", str(NOW + offset))


for _offset in (-200, -91, -90, -89, 0, 29, 30, 31, 200):
    SIGNER_CHOICES[f"created{_offset:+d}"] = _created(_offset)


@pytest.mark.parametrize("choice", sorted(SIGNER_CHOICES))
@pytest.mark.parametrize("target", ["/v1/letters", "/v1/inbox?limit=3"], ids=["plain", "query"])
def test_each_signer_choice_gets_the_librarys_answer(choice: str, target: str) -> None:
    """Whatever a signer puts in its signature, the courier decides as the library does."""
    request = SIGNER_CHOICES[choice](Spec(target=target)).sign()
    with frozen_clocks():
        assert_agree(request)


def test_the_window_edges_are_the_librarys() -> None:
    """Created 90 s ago or 30 s ahead is accepted, a second further is not: both verifiers."""
    with frozen_clocks():
        for offset, accepted in ((-90, True), (-91, False), (30, True), (31, False)):
            request = _created(offset)(Spec()).sign()
            assert (assert_agree(request)[0] == "accepted") is accepted, offset
            assert direct_decides(request)


# --- anything at all, with hypothesis ---------------------------------------------------------

_methods = st.sampled_from(["GET", "POST", "PUT", "DELETE"])
_targets = st.sampled_from(
    ["/v1/letters", "/v1/inbox", "/v1/inbox?limit=1", "/v1/letters/a%2Fb/open", "/v1/x?a=b&c=d"]
)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """A signed request, with some signer choices before signing and tampering after."""
    spec = Spec(method=draw(_methods), target=draw(_targets), body=draw(st.binary(max_size=64)))
    for choice in draw(st.lists(st.sampled_from(sorted(SIGNER_CHOICES)), max_size=2)):
        spec = SIGNER_CHOICES[choice](spec)
    request = spec.sign()
    for kind in draw(st.lists(st.sampled_from(sorted(TAMPERED)), max_size=2)):
        request = TAMPERED[kind](request)
    return request


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_any_request_gets_the_librarys_answer(request: Request) -> None:
    """Signer choices and tamperings in any combination: the same answer as the library."""
    with frozen_clocks():
        assert_agree(request)
