"""Party names and letter ids: the two identifiers every layer passes around."""

from __future__ import annotations

import os
import re
import time

from channel.protocol.errors import InvalidName

PARTY_NAME_RULE = (
    "3-64 characters of lowercase ASCII letters, digits, '.' and '-', starting with a letter"
)
PARTY_NAME_PATTERN = r"^[a-z][a-z0-9.-]{2,63}$"
_PARTY_NAME = re.compile(PARTY_NAME_PATTERN[1:-1])
LETTER_ID_PATTERN = r"^[0-9a-z]{26}$"
_LETTER_ID = re.compile(LETTER_ID_PATTERN[1:-1])


def check_party_name(name: str) -> str:
    """Return `name` if it is a valid party name; raise InvalidName saying why otherwise."""
    if not _PARTY_NAME.fullmatch(name):
        raise InvalidName(f"{name!r} is not a valid party name: use {PARTY_NAME_RULE}")
    return name


def check_letter_id(letter_id: str) -> str:
    if not _LETTER_ID.fullmatch(letter_id):
        raise InvalidName(f"{letter_id!r} is not a letter id (26 lowercase base32 characters)")
    return letter_id


# Crockford's base32 alphabet is in ASCII order, so ids sort as their numbers do.
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_letter_id() -> str:
    """A 26-character id that sorts by creation time: 48 bits of milliseconds, 80 random bits."""
    return letter_id_from(time.time_ns() // 1_000_000, os.urandom(10))


def letter_id_from(millis: int, random: bytes) -> str:
    number = int.from_bytes(millis.to_bytes(6, "big") + random[:10], "big")
    digits = []
    for _ in range(26):
        number, digit = divmod(number, 32)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits))
