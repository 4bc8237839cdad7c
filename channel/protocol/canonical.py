"""Canonical bytes and timestamps: what every signature and digest in the protocol is computed over.

Canonical JSON here is a strict subset of RFC 8785 (JCS): object keys sorted by their UTF-16 code
units (as JCS says; code point order differs above U+FFFF), no insignificant white space, UTF-8,
and only strings, integers, booleans, lists and objects. Floats are refused (JCS number
formatting is then never needed), so are integers a double cannot hold exactly (beyond
±(2^53 - 1), the I-JSON range JCS assumes) and strings with lone surrogates; absent optional
fields are omitted, never written as null. The same value always gives the same bytes, so the
same digest. tests/test_canonical_props.py checks it against the `rfc8785` package.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
ZERO_HASH = "0" * 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


MAX_SAFE_INTEGER = 2**53 - 1


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """The canonical encoding of a JSON object (see module docstring); ValueError if it has none."""
    ordered = _canonical(value)
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("canonical JSON strings cannot hold lone surrogates") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with exactly three fractional digits: 2017-12-02T18:30:00.000Z."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    """A protocol timestamp (TIMESTAMP_PATTERN, checked by the models) as an aware datetime.

    `fromisoformat` is C and about ten times faster than `strptime`, which matters on the hot
    path; the pattern admits only what both read the same way."""
    return datetime.fromisoformat(text)


def to_millis(text: str) -> int:
    return millis(parse_time(text))


def millis(moment: datetime) -> int:
    """Milliseconds since the epoch, in integer arithmetic (float timestamps round wrongly)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_millis(ms: int) -> datetime:
    """The moment `ms` milliseconds after the epoch (the inverse of `millis`)."""
    return _EPOCH + timedelta(milliseconds=ms)


def now_utc() -> datetime:
    """The current time, truncated to the millisecond precision timestamps carry."""
    moment = datetime.now(UTC)
    return moment - timedelta(microseconds=moment.microsecond % 1000)


def _canonical(value: Any) -> Any:
    """`value` checked, with every object's keys put in JCS order (json.dumps keeps dict order)."""
    if isinstance(value, float):
        raise ValueError("canonical JSON carries no floats")
    if isinstance(value, int) and not isinstance(value, bool):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise ValueError(f"canonical JSON integers stay within ±(2^53 - 1); got {value}")
        return value
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError("canonical JSON object keys must be strings")
            if item is None:
                raise ValueError(f"canonical JSON omits absent fields; {key!r} is None")
        return {key: _canonical(value[key]) for key in sorted(value, key=_utf16)}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value


def _utf16(key: str) -> bytes:
    # Big-endian UTF-16 bytes compare as the code units do; surrogatepass keeps a lone
    # surrogate sortable, so the encoder, not the sort, reports it.
    return key.encode("utf-16-be", "surrogatepass")
