"""Micro-benchmark of the courier's request verification: prints µs per call, asserts nothing.

    .venv/bin/python bench/verify_micro.py

Compares, for one signed POST with a 1.5 KB body: the http-message-signatures library's verifier,
the direct verifier (`httpsig.verify_direct`) with libsodium's Ed25519 (what the courier runs) and
with OpenSSL's (cryptography's), and the Ed25519 verify alone in each library.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_sign_open

from channel.protocol import httpsig
from channel.protocol.seal import PartyKeys, raw_public

URL = "http://courier/v1/letters"


def per_call(function: Callable[[], object], number: int = 2000, repeat: int = 5) -> float:
    """The median of `repeat` runs, in µs per call."""
    runs = timeit.repeat(function, number=number, repeat=repeat)
    return statistics.median(runs) / number * 1e6


def _openssl_open(signed: bytes, pk: bytes) -> bytes:
    Ed25519PublicKey.from_public_bytes(pk).verify(signed[:64], signed[64:])
    return signed[64:]


def main() -> None:
    keys = PartyKeys.generate("bench.signer")
    public = raw_public(keys.signing)
    lookup = {keys.name: public}.get
    body = b"x" * 1500
    view = httpsig.RequestView(
        "POST", URL, httpsig.sign_request(keys.name, keys.signing, "POST", URL, body)
    )
    message = b"m" * 300
    signature = keys.signing.sign(message)
    openssl_key = Ed25519PublicKey.from_public_bytes(public)
    figures = {
        "library verify_with_library": per_call(
            lambda: httpsig.verify_with_library(view, body, lookup)
        ),
        "direct, libsodium (the courier's)": per_call(
            lambda: httpsig.verify_direct(view, body, lookup)
        ),
    }
    # The same direct path on OpenSSL's Ed25519.
    httpsig.crypto_sign_open = _openssl_open  # type: ignore[attr-defined]
    try:
        figures["direct, OpenSSL"] = per_call(lambda: httpsig.verify_direct(view, body, lookup))
    finally:
        httpsig.crypto_sign_open = crypto_sign_open  # type: ignore[attr-defined]
    figures["Ed25519 alone, libsodium"] = per_call(
        lambda: crypto_sign_open(signature + message, public)
    )
    figures["Ed25519 alone, OpenSSL"] = per_call(lambda: openssl_key.verify(signature, message))
    width = max(map(len, figures))
    for name, micros in figures.items():
        print(f"{name:<{width}}  {micros:7.1f} µs")


if __name__ == "__main__":
    main()
