"""Property tests: canonical JSON equals RFC 8785 (the `rfc8785` package), and the wire parsers
(models.py) take back exactly what they write and refuse everything else with a ValueError."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from channel.protocol.canonical import MAX_SAFE_INTEGER, canonical_json, format_time
from channel.protocol.models import Envelope, OpenRequest, Precedence, PublicKeys, SealedLetter
from channel.protocol.names import LETTER_ID_PATTERN, PARTY_NAME_PATTERN

PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Every code point but the lone surrogates (which UTF-8 cannot carry): astral keys are where
# UTF-16 order and code point order part ways.
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
SAFE_INT = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
JSON = st.recursive(
    st.booleans() | SAFE_INT | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)
OBJECTS = st.dictionaries(TEXT, JSON, max_size=6)


@PROPS
@given(OBJECTS)
def test_canonical_json_is_rfc8785(value: dict[str, Any]) -> None:
    """Any object of strings, safe integers, booleans, lists and objects encodes as JCS does."""
    assert canonical_json(value) == rfc8785.dumps(value)


@PROPS
@given(OBJECTS)
def test_canonical_json_round_trips(value: dict[str, Any]) -> None:
    """Canonical bytes parse back to the same value, and re-encode to the same bytes."""
    encoded = canonical_json(value)
    assert json.loads(encoded) == value
    assert canonical_json(json.loads(encoded)) == encoded


@PROPS
@given(st.dictionaries(TEXT, SAFE_INT, min_size=2, max_size=8))
def test_keys_are_ordered_by_utf16_code_units(value: dict[str, int]) -> None:
    """Object keys come out in UTF-16 code unit order, not code point order."""
    keys = list(json.loads(canonical_json(value)))
    assert keys == sorted(value, key=lambda key: key.encode("utf-16-be"))


def test_astral_keys_sort_before_the_top_of_the_bmp() -> None:
    """U+1F600 (UTF-16 D83D DE00) sorts before U+FFFF, though its code point is larger."""
    assert canonical_json({"\uffff": 1, "\U0001f600": 2}) == '{"😀":2,"\uffff":1}'.encode()


@PROPS
@given(st.integers(MAX_SAFE_INTEGER + 1) | st.integers(max_value=-MAX_SAFE_INTEGER - 1))
def test_integers_a_double_cannot_hold_are_refused(number: int) -> None:
    """Integers beyond ±(2^53 - 1) are refused, as RFC 8785 refuses them, anywhere in the value."""
    with pytest.raises(ValueError, match="2\\^53"):
        canonical_json({"n": [{"deep": number}]})
    with pytest.raises(rfc8785.IntegerDomainError):
        rfc8785.dumps({"n": number})


def test_the_safe_integer_bounds_are_accepted() -> None:
    """±(2^53 - 1) itself is fine, as in RFC 8785."""
    for number in (MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER):
        assert canonical_json({"n": number}) == rfc8785.dumps({"n": number})


@pytest.mark.parametrize("bad", [1.5, None, "\ud800", {1: "x"}])
def test_what_canonical_json_cannot_carry_is_a_value_error(bad: Any) -> None:
    """Floats, nulls, lone surrogates and non-string keys are refused with ValueError."""
    with pytest.raises(ValueError, match="canonical JSON"):
        canonical_json({"v": bad} if not isinstance(bad, dict) else bad)


# --- the wire parsers ------------------------------------------------------------------------

NAMES = st.from_regex(PARTY_NAME_PATTERN, fullmatch=True)
IDS = st.from_regex(LETTER_ID_PATTERN, fullmatch=True)
HEX64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
TIMES = st.datetimes(datetime(1970, 1, 1), datetime(9999, 1, 1), timezones=st.just(UTC)).map(
    format_time
)
ENVELOPES = st.builds(
    Envelope,
    id=IDS,
    sender=NAMES,
    recipient=NAMES,
    sent_at=TIMES,
    expires_at=TIMES,
    precedence=st.sampled_from(Precedence),
    in_reply_to=st.none() | IDS,
    recipient_key=HEX64,
    ciphertext_sha256=HEX64,
    ciphertext_size=st.integers(1, 1024 * 1024 + 256),
)
LETTERS = st.builds(
    SealedLetter,
    envelope=ENVELOPES,
    seal=st.binary(min_size=64, max_size=64),
    ciphertext=st.binary(min_size=1, max_size=64),
)


@PROPS
@given(LETTERS)
def test_a_sealed_letter_parses_back_to_itself(letter: SealedLetter) -> None:
    """What a SealedLetter writes, it reads back equal, and its envelope digest is stable."""
    again = SealedLetter.model_validate_json(letter.model_dump_json(exclude_none=True))
    assert again == letter
    assert again.envelope.digest() == letter.envelope.digest()
    assert again.envelope.signable() == rfc8785.dumps(
        letter.envelope.model_dump(mode="json", exclude_none=True)
    )


@PROPS
@given(LETTERS, st.sampled_from(["envelope", "seal", "ciphertext"]), JSON)
def test_a_sealed_letter_with_any_field_replaced_parses_or_is_refused(
    letter: SealedLetter, field: str, junk: Any
) -> None:
    """Any JSON in place of a field is either a valid letter or a ValidationError, nothing else."""
    data = json.loads(letter.model_dump_json(exclude_none=True))
    data[field] = junk
    try:
        parsed = SealedLetter.model_validate_json(json.dumps(data))
    except ValidationError:
        return
    assert SealedLetter.model_validate_json(parsed.model_dump_json(exclude_none=True)) == parsed


@PROPS
@given(LETTERS, st.sampled_from(sorted(Envelope.model_fields)), JSON)
def test_an_envelope_with_any_field_replaced_parses_or_is_refused(
    letter: SealedLetter, field: str, junk: Any
) -> None:
    """Replacing any envelope field gives a valid envelope or a ValidationError, nothing else."""
    data = json.loads(letter.envelope.model_dump_json(exclude_none=True))
    data[field] = junk
    try:
        parsed = Envelope.model_validate_json(json.dumps(data))
    except ValidationError:
        return
    assert parsed.signable() == canonical_json(parsed.model_dump(mode="json", exclude_none=True))


KEY_PATTERN = PublicKeys.model_json_schema()["properties"]["signing_key"]["pattern"]
SIGNATURE_PATTERN = SealedLetter.model_json_schema()["properties"]["seal"]["pattern"]
B64_TEXT = (
    st.text(max_size=100)
    | st.binary(max_size=70).map(lambda raw: base64.b64encode(raw).decode())
    | st.from_regex(KEY_PATTERN, fullmatch=True)
    | st.from_regex(SIGNATURE_PATTERN, fullmatch=True)
    # The last character before the padding with its unused bits set: non-canonical.
    | st.binary(min_size=32, max_size=32).map(
        lambda raw: base64.b64encode(raw)[:-2].decode() + "B="
    )
)


@PROPS
@given(B64_TEXT)
def test_a_key_is_exactly_what_the_published_pattern_admits(text: str) -> None:
    """A key field takes a string iff it is the one base64 spelling of 32 bytes, which is iff it
    matches the pattern the OpenAPI document publishes (a 44-character string is not enough)."""
    fields = {"name": "ir.irgc.quds", "encryption_key": base64.b64encode(bytes(32)).decode()}
    published = re.fullmatch(KEY_PATTERN.strip("^$"), text) is not None
    try:
        parsed = PublicKeys.model_validate({**fields, "signing_key": text})
    except ValidationError:
        assert not published
        return
    assert published
    assert base64.b64encode(parsed.signing_key).decode() == text


@PROPS
@given(B64_TEXT)
def test_a_signature_is_exactly_what_the_published_pattern_admits(text: str) -> None:
    """A signature field takes a string iff it matches the published 64-byte base64 pattern."""
    published = re.fullmatch(SIGNATURE_PATTERN.strip("^$"), text) is not None
    accepted = True
    try:
        OpenRequest.model_validate({"signature": text})
    except ValidationError:
        accepted = False
    assert accepted is published
