"""The REST API as a table: each route names its models, and its handler is parse → call → reply.

The same table registers the aiohttp routes and generates the OpenAPI document, so the two can
never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from channel import __version__
from channel.courier.service import Courier
from channel.protocol.errors import (
    BadRequest,
    ChannelError,
    Forbidden,
    InvalidLetter,
    InvalidName,
    InvalidTransition,
    LetterExpired,
    LetterIdConflict,
    NameTaken,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    RegistrationClosed,
    Replayed,
    StoreUnavailable,
    Unauthenticated,
    UnknownLetter,
    UnknownParty,
)
from channel.protocol.httpsig import RequestView, SignedBy, UnresolvedKey, verify_request
from channel.protocol.models import (
    CourierKey,
    Health,
    LetterList,
    LetterStatus,
    OpenedLetter,
    OpenRequest,
    PartyRecord,
    Receipt,
    ReceiptList,
    RegisterRequest,
    ReturnedLetter,
    ReturnRequest,
    SealedLetter,
    Wire,
)
from channel.protocol.names import (
    LETTER_ID_PATTERN,
    PARTY_NAME_PATTERN,
    check_letter_id,
    check_party_name,
)

MAX_LIST = 500
DEFAULT_LIST = 100
_DIGITS = re.compile(r"[0-9]{1,12}")  # bounded: int() of a huge string is slow, then refused


@dataclass(frozen=True)
class Param:
    """A query parameter a route accepts: its name and JSON schema (published as is)."""

    name: str
    schema: Mapping[str, Any]
    description: str


# Path parameters: the same rules the handlers check (`check_party_name`, `check_letter_id`).
PATH_PATTERNS = {"name": PARTY_NAME_PATTERN, "letter_id": LETTER_ID_PATTERN}
LIMIT = Param(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIST, "default": DEFAULT_LIST},
    "How many letters to list at most",
)
BEFORE = Param(
    "before",
    {"type": "string", "pattern": LETTER_ID_PATTERN},
    "Page on: list only the letters after this one (the id of the last letter of the previous "
    "page) in the listing's order; `404 unknown_letter` if it is not in the listing",
)


AFTER = Param(
    "after",
    {"type": "string", "pattern": r"^[0-9]{1,20}-[0-9]{1,20}$"},
    "Resume after this event id (as Last-Event-ID does; the header wins when both are given)",
)


def check_query(query: MultiMapping[str], accepted: tuple[Param, ...]) -> None:
    """Refuse a query parameter the route does not take, or one given twice (400)."""
    names = {param.name for param in accepted}
    for key in query:
        if key not in names:
            raise BadRequest(f"unknown query parameter {key!r}")
        if len(query.getall(key)) > 1:
            raise BadRequest(f"the query parameter {key!r} is given more than once")


@dataclass(frozen=True)
class Call:
    """Everything a handler may use: the courier, the authenticated party and the parsed body."""

    courier: Courier
    signed: SignedBy | None  # None on unsigned routes
    body: Any
    path: Mapping[str, str]
    query: Mapping[str, str]
    view: RequestView
    raw: bytes
    request: web.Request  # for a handler that streams its answer (server/events.py)

    @property
    def party(self) -> str:
        if self.signed is None:
            raise AssertionError("an unsigned route asked for its party")
        return self.signed.party

    def letter_id(self) -> str:
        return check_letter_id(self.path["letter_id"])

    def limit(self) -> int:
        given = self.query.get(LIMIT.name)
        if given is None:
            return DEFAULT_LIST
        # ASCII digits only: Python's int() would also take " 7", "+7", "1_0" and fullwidth digits.
        if not _DIGITS.fullmatch(given) or not 1 <= int(given) <= MAX_LIST:
            raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIST}")
        return int(given)

    def before(self) -> str | None:
        given = self.query.get(BEFORE.name)
        return None if given is None else check_letter_id(given)


Reply = Wire | tuple[Wire, int] | web.StreamResponse
Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    response: type[Wire]
    request: type[Wire] | None = None
    signed: bool = True  # signed by a registered party, checked before the handler runs
    # Signed by the key in the body (registration: proof of possession), checked by the handler.
    self_signed: bool = False
    query: tuple[Param, ...] = ()
    # The handler claims the request's nonce and takes its rate-limit token in its own script.
    claims_nonce: bool = False
    status: int = 200
    errors: tuple[type[ChannelError], ...] = field(default=())


async def health(call: Call) -> Reply:

    return Health(status="ok", version=__version__)


async def courier_key(call: Call) -> Reply:
    return call.courier.courier_key()


async def register(call: Call) -> Reply:
    request: RegisterRequest = call.body
    check_party_name(request.name)
    # Proof of possession: the request must be signed by the signing key being registered.
    try:
        signed = verify_request(call.view, call.raw, {request.name: request.signing_key}.get)
    except UnresolvedKey:
        raise Unauthenticated("a registration must be signed by the key it registers") from None
    await call.courier.claim(signed)
    record, created = await call.courier.register(request)
    return record, 201 if created else 200


async def party(call: Call) -> Reply:
    return await call.courier.party_record(check_party_name(call.path["name"]))


async def send(call: Call) -> Reply:
    assert call.signed is not None
    receipt, created = await call.courier.send(call.signed, call.body)
    return receipt, 201 if created else 200


async def inbox(call: Call) -> Reply:
    letters = await call.courier.inbox(call.party, call.limit(), call.before())
    return LetterList(letters=letters)


async def outbox(call: Call) -> Reply:
    letters = await call.courier.outbox(call.party, call.limit(), call.before())
    return LetterList(letters=letters)


async def status(call: Call) -> Reply:
    return await call.courier.status(call.party, call.letter_id())


async def open_letter(call: Call) -> Reply:
    request: OpenRequest = call.body
    return await call.courier.open(call.party, call.letter_id(), request.signature)


async def return_letter(call: Call) -> Reply:
    request: ReturnRequest = call.body
    receipts = await call.courier.return_unopened(
        call.party, call.letter_id(), request.reason, request.signature
    )
    return ReceiptList(receipts=receipts)


async def withdraw(call: Call) -> Reply:
    return ReceiptList(receipts=await call.courier.withdraw(call.party, call.letter_id()))


async def returned(call: Call) -> Reply:
    return await call.courier.returned(call.party, call.letter_id())


_LETTER = "/v1/letters/{letter_id}"
_MOVE = (UnknownLetter, Forbidden, InvalidTransition, LetterExpired, InvalidName)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", health, "Liveness", Health, signed=False),
    Route(
        "GET",
        "/v1/courier",
        courier_key,
        "The courier's receipt-signing key",
        CourierKey,
        signed=False,
    ),
    Route(
        "POST",
        "/v1/parties",
        register,
        "Register a party's public keys (signed with the key being registered)",
        PartyRecord,
        RegisterRequest,
        signed=False,
        self_signed=True,
        status=201,
        errors=(
            InvalidName,
            RegistrationClosed,
            NameTaken,
            Unauthenticated,
            Replayed,
            StoreUnavailable,
        ),
    ),
    Route(
        "GET",
        "/v1/parties/{name}",
        party,
        "A party's public keys and fingerprint",
        PartyRecord,
        signed=False,
        errors=(UnknownParty, InvalidName, StoreUnavailable),
    ),
    Route(
        "POST",
        "/v1/letters",
        send,
        "Send a sealed letter (idempotent on the letter id: a re-send returns the same receipt)",
        Receipt,
        SealedLetter,
        status=201,
        claims_nonce=True,
        errors=(InvalidLetter, UnknownParty, Forbidden, LetterIdConflict, PayloadTooLarge),
    ),
    Route(
        "GET",
        "/v1/inbox",
        inbox,
        "Envelopes addressed to you, newest first; listing records `delivered`",
        LetterList,
        query=(LIMIT, BEFORE),
        errors=(InvalidName, UnknownLetter),
    ),
    Route(
        "GET",
        "/v1/outbox",
        outbox,
        "Envelopes you sent, newest first",
        LetterList,
        query=(LIMIT, BEFORE),
        errors=(InvalidName, UnknownLetter),
    ),
    Route(
        "GET",
        _LETTER,
        status,
        "A letter's envelope, state and whole receipt chain (sender or recipient)",
        LetterStatus,
        errors=(UnknownLetter, InvalidName),
    ),
    Route(
        "POST",
        f"{_LETTER}/open",
        open_letter,
        "Open a letter: releases the ciphertext to its recipient, once",
        OpenedLetter,
        OpenRequest,
        errors=_MOVE,
    ),
    Route(
        "POST",
        f"{_LETTER}/return",
        return_letter,
        "Return a letter unopened: the ciphertext is never released, the sealed letter goes back",
        ReceiptList,
        ReturnRequest,
        errors=_MOVE,
    ),
    Route(
        "POST",
        f"{_LETTER}/withdraw",
        withdraw,
        "Withdraw a letter you sent, while unopened",
        ReceiptList,
        errors=_MOVE,
    ),
    Route(
        "GET",
        f"{_LETTER}/returned",
        returned,
        "The sealed letter back in its sender's hands, byte for byte, with its receipts",
        ReturnedLetter,
        errors=(UnknownLetter, InvalidTransition, InvalidName),
    ),
)

# Errors every route may answer with (503 `overloaded`: more requests in flight than the worker
# takes), and those every signed route may answer with.
ALWAYS: tuple[type[ChannelError], ...] = (BadRequest, PayloadTooLarge, Overloaded)
SIGNED: tuple[type[ChannelError], ...] = (
    Unauthenticated,
    Replayed,
    UnknownParty,
    RateLimited,
    StoreUnavailable,
)
