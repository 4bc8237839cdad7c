"""One typed async client for the courier, used by the CLI, the exercise runner and the tests.

    async with Client("http://127.0.0.1:8700", party_keys) as director:
        sealed, receipt = await director.send_letter("ir.irgc.quds", "We will hold you to account.")

Requests are signed (RFC 9421) with the identity's key. Errors come back as the same typed
exceptions the server raised (channel.protocol.errors). Idempotent calls, including `send`, are
retried on connection failures, so a letter whose acknowledgement was lost is never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import structlog

from channel.protocol.canonical import now_utc
from channel.protocol.errors import (
    ChannelError,
    IntegrityError,
    InvalidLetter,
    KeyringError,
    RateLimited,
    ServerUnreachable,
    StoreUnavailable,
    error_from_problem,
)
from channel.protocol.httpsig import sign_request
from channel.protocol.lifecycle import State
from channel.protocol.models import (
    CourierKey,
    Health,
    LetterList,
    LetterStatus,
    LetterSummary,
    LiveEvent,
    OpenedLetter,
    OpenRequest,
    PartyRecord,
    Precedence,
    PublicKeys,
    Receipt,
    ReceiptList,
    RegisterRequest,
    ReturnedLetter,
    ReturnRequest,
    SealedLetter,
    SignedContent,
    Wire,
)
from channel.protocol.names import check_letter_id, check_party_name, new_letter_id
from channel.protocol.seal import (
    PartyKeys,
    check_sealed,
    decision_for,
    open_letter,
    party_fingerprint,
    seal_letter,
    sign_decision,
    verify_chain,
    verify_seal,
    verify_status,
)

M = TypeVar("M", bound=Wire)
DEFAULT_DEADLINE = timedelta(days=7)
_RETRIES = 3
_EVENTS_SILENCE = 45.0  # the courier pings every 15 s; this much silence means the link is dead
_RECONNECT = 0.5
log = structlog.get_logger("channel.party.client")


class Client:
    def __init__(
        self,
        base_url: str,
        identity: PartyKeys | None = None,
        *,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.identity = identity
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None
        self._party_cache: dict[str, PublicKeys] = {}
        self._courier_key: bytes | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def as_party(self, identity: PartyKeys) -> Client:
        """Another client acting as `identity` over the same connection pool."""
        other = Client(self.base_url, identity, session=self._ensure_session())
        other._timeout = self._timeout
        return other

    @property
    def me(self) -> PartyKeys:
        if self.identity is None:
            raise KeyringError("this call needs a party identity (use --as NAME)")
        return self.identity

    # --- the API, one method per route ---------------------------------------------------------

    async def health(self) -> Health:
        return await self._call("GET", "/healthz", Health, signed=False)

    async def courier_key(self) -> CourierKey:
        """What the courier says its key is (receipts are checked against `trust_courier`'s)."""
        return await self._call("GET", "/v1/courier", CourierKey, signed=False)

    async def register(self, invite: str | None = None) -> PartyRecord:
        keys = self.me.public()
        request = RegisterRequest(**keys.model_dump(), invite=invite)
        return await self._call("POST", "/v1/parties", PartyRecord, request)

    async def party(self, name: str) -> PartyRecord:
        check_party_name(name)
        return await self._call("GET", f"/v1/parties/{name}", PartyRecord, signed=False)

    async def send(self, letter: SealedLetter) -> Receipt:
        return await self._call("POST", "/v1/letters", Receipt, letter, retry=True)

    async def inbox(self, limit: int = 100, before: str | None = None) -> list[LetterSummary]:
        """Envelopes addressed to you, each seal checked: the courier cannot forge who or when.

        Newest first; `before` (the last letter id of a page) gives the next page."""
        reply = await self._call("GET", _listing("inbox", limit, before), LetterList, retry=True)
        return await self._checked(reply.letters)

    async def outbox(self, limit: int = 100, before: str | None = None) -> list[LetterSummary]:
        reply = await self._call("GET", _listing("outbox", limit, before), LetterList, retry=True)
        return await self._checked(reply.letters)

    async def status(self, letter_id: str) -> LetterStatus:
        path = f"/v1/letters/{check_letter_id(letter_id)}"
        return await self._call("GET", path, LetterStatus, retry=True)

    async def open(self, letter_id: str, signature: bytes) -> OpenedLetter:
        path = f"/v1/letters/{check_letter_id(letter_id)}/open"
        return await self._call("POST", path, OpenedLetter, OpenRequest(signature=signature))

    async def return_unopened(
        self, letter_id: str, signature: bytes, reason: str | None = None
    ) -> list[Receipt]:
        path = f"/v1/letters/{check_letter_id(letter_id)}/return"
        request = ReturnRequest(reason=reason, signature=signature)
        return (await self._call("POST", path, ReceiptList, request)).receipts

    async def withdraw(self, letter_id: str) -> list[Receipt]:
        path = f"/v1/letters/{check_letter_id(letter_id)}/withdraw"
        return (await self._call("POST", path, ReceiptList)).receipts

    async def returned(self, letter_id: str) -> ReturnedLetter:
        path = f"/v1/letters/{check_letter_id(letter_id)}/returned"
        return await self._call("GET", path, ReturnedLetter, retry=True)

    # --- what a party does: the API plus the cryptography --------------------------------------

    async def public_keys(self, name: str) -> PublicKeys:
        cached = self._party_cache.get(name)
        if cached is None:
            record = await self.party(name)
            cached = PublicKeys(
                name=record.name,
                signing_key=record.signing_key,
                encryption_key=record.encryption_key,
            )
            if party_fingerprint(cached) != record.fingerprint:
                raise IntegrityError(
                    f"the courier's fingerprint for {name} does not match its keys"
                )
            self._party_cache[name] = cached
        return cached

    def trust(self, keys: PublicKeys) -> None:
        """Use these keys for `keys.name` (pinned from a keyring) instead of asking the courier."""
        self._party_cache[keys.name] = keys

    def trust_courier(self, signing_key: bytes) -> None:
        self._courier_key = signing_key

    async def seal(
        self,
        to: str,
        body: str,
        *,
        subject: str = "",
        precedence: Precedence = Precedence.ROUTINE,
        expires_in: timedelta = DEFAULT_DEADLINE,
        in_reply_to: str | None = None,
        letter_id: str | None = None,
    ) -> SealedLetter:
        recipient = await self.public_keys(check_party_name(to))
        now = now_utc()
        return seal_letter(
            self.me,
            recipient,
            letter_id=letter_id or new_letter_id(),
            subject=subject,
            body=body,
            sent_at=now,
            expires_at=now + expires_in,
            precedence=precedence,
            in_reply_to=check_letter_id(in_reply_to) if in_reply_to else None,
        )

    async def send_letter(self, to: str, body: str, **options: Any) -> tuple[SealedLetter, Receipt]:
        sealed = await self.seal(to, body, **options)
        return sealed, await self.send_sealed(sealed)

    async def send_sealed(self, sealed: SealedLetter) -> Receipt:
        """Send a letter sealed beforehand (keep a copy first) and check its `accepted` receipt."""
        receipt = await self.send(sealed)
        await self._check_receipts(sealed, [receipt])
        return receipt

    async def open_letter(self, letter_id: str) -> tuple[SignedContent, OpenedLetter]:
        """Open a letter addressed to you: sign the decision, decrypt, verify sender and chain."""
        status = await self.status(letter_id)
        decision = decision_for(State.OPENED, status.envelope)
        opened = await self.open(letter_id, sign_decision(self.me, decision))
        sender = await self.public_keys(opened.letter.envelope.sender)
        content = open_letter(opened.letter, self.me, sender.signing_key)
        await self._check_receipts(opened.letter, opened.receipts)
        return content, opened

    async def return_letter(self, letter_id: str, reason: str | None = None) -> list[Receipt]:
        """Return a letter unopened, signing the refusal (and its reason) yourself."""
        status = await self.status(letter_id)
        decision = decision_for(State.RETURNED_UNOPENED, status.envelope, reason)
        receipts = await self.return_unopened(letter_id, sign_decision(self.me, decision), reason)
        await self._verify_chain(status.envelope.recipient, status, receipts)
        return receipts

    async def withdraw_letter(self, letter_id: str) -> list[Receipt]:
        """Withdraw a letter you sent, and check the receipt chain that comes back."""
        status = await self.status(letter_id)
        receipts = await self.withdraw(letter_id)
        await self._verify_chain(status.envelope.recipient, status, receipts)
        return receipts

    async def returned_letter(self, letter_id: str) -> ReturnedLetter:
        """A letter back from the courier, checked: your own seal intact, the chain verified."""
        back = await self.returned(letter_id)
        try:
            check_sealed(back.letter, self.me.public().signing_key)
        except InvalidLetter as exc:
            raise IntegrityError(
                f"the returned letter {letter_id} was altered: {exc.detail}"
            ) from None
        await self._check_receipts(back.letter, back.receipts)
        return back

    async def verified_status(self, letter_id: str) -> LetterStatus:
        """The status, with its seal and receipt chain checked against keys this client trusts."""
        status = await self.status(letter_id)
        sender = await self.public_keys(status.envelope.sender)
        recipient = await self.public_keys(status.envelope.recipient)
        verify_status(
            status,
            sender_key=sender.signing_key,
            courier_key=await self._courier_signing_key(),
            recipient_key=recipient.signing_key,
        )
        if status.id != letter_id:
            raise IntegrityError(f"asked for letter {letter_id}, the courier answered {status.id}")
        return status

    async def _checked(self, letters: list[LetterSummary]) -> list[LetterSummary]:
        for letter in letters:
            sender = await self.public_keys(letter.sender)
            if letter.envelope.id != letter.id or not verify_seal(
                letter.envelope, letter.seal, sender.signing_key
            ):
                raise IntegrityError(
                    f"letter {letter.id}: the envelope is not sealed by {letter.sender}"
                )
        return letters

    async def _check_receipts(self, letter: SealedLetter, receipts: list[Receipt]) -> None:
        recipient = await self.public_keys(letter.envelope.recipient)
        verify_chain(
            receipts,
            letter.envelope,
            courier_key=await self._courier_signing_key(),
            recipient_key=recipient.signing_key,
        )

    async def _verify_chain(
        self, recipient: str, status: LetterStatus, receipts: list[Receipt]
    ) -> None:
        keys = await self.public_keys(recipient)
        verify_chain(
            receipts,
            status.envelope,
            courier_key=await self._courier_signing_key(),
            recipient_key=keys.signing_key,
        )

    async def _courier_signing_key(self) -> bytes:
        if self._courier_key is None:
            self._courier_key = (await self.courier_key()).signing_key
        return self._courier_key

    # --- live events ---------------------------------------------------------------------------

    async def events(
        self,
        last_event_id: str | None = None,
        *,
        on_gap: Callable[[], None] | None = None,
        on_position: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[LiveEvent, None]:
        """Your live events over one connection, from after `last_event_id` (or from where the
        stream stands when it connects).

        Ends when the courier closes the stream (it asks clients to come back: see `watch`).
        Events are thin: read a letter's status for its signed receipts. `on_position` is told
        where the stream starts (the courier's first word, `ready`): resume from there and nothing
        sent after you connected is missed. `on_gap` is called if events you missed were already
        trimmed from the courier's capped stream: resync from inbox and outbox.
        """
        async with contextlib.aclosing(self._event_stream(last_event_id)) as stream:
            async for kind, event_id, data in stream:
                if kind == "ready" and on_position is not None:
                    on_position(event_id)
                if kind == "reset" and on_gap is not None:
                    on_gap()
                if kind != "event":
                    continue
                # Thin: the signed receipt it names is checked when its status is read.
                yield LiveEvent.model_validate_json(data).model_copy(update={"id": event_id})

    async def event_position(self) -> str:
        """Where your event stream stands now: `watch(position)` later misses nothing sent after
        this call (the exercise runner takes it as a run starts)."""
        async with contextlib.aclosing(self._event_stream(None)) as stream:
            async for kind, event_id, _ in stream:
                if kind == "ready":
                    return event_id
        raise ServerUnreachable(f"the event stream from {self.base_url} ended before it started")

    async def watch(
        self,
        last_event_id: str | None = None,
        *,
        on_gap: Callable[[], None] | None = None,
        max_backoff: float = 10.0,
    ) -> AsyncGenerator[LiveEvent, None]:
        """Your live events for as long as you iterate: reconnects by itself, with backoff,
        resuming after the last event it gave you (or, before the first, from where its first
        connection started), so nothing is missed or repeated."""
        position = last_event_id

        def started_at(event_id: str) -> None:
            nonlocal position
            position = event_id

        backoff = _RECONNECT
        while True:
            try:
                async for event in self.events(position, on_gap=on_gap, on_position=started_at):
                    position, backoff = event.id, _RECONNECT
                    yield event
            except (ServerUnreachable, StoreUnavailable, RateLimited) as exc:
                log.info("event_stream_lost", error=exc.detail, retry_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)

    async def _event_stream(
        self, last_event_id: str | None
    ) -> AsyncGenerator[tuple[str, str, str], None]:
        """(event type, id, data) for each event of one stream; connection failures become
        ServerUnreachable, refusals the typed error."""
        url = f"{self.base_url}/v1/events"
        headers = sign_request(self.me.name, self.me.signing, "GET", url, b"")
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=_EVENTS_SILENCE)
        try:
            async with self._ensure_session().get(url, headers=headers, timeout=timeout) as reply:
                if reply.status >= 400:
                    raise _problem(reply.status, await reply.read())
                async for item in _server_sent_events(reply.content):
                    yield item
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            broke = f"the event stream from {self.base_url} broke: {_why(exc)}"
            raise ServerUnreachable(broke) from None

    # --- transport -----------------------------------------------------------------------------

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._owns_session = True
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        response: type[M],
        body: Wire | None = None,
        *,
        signed: bool = True,
        retry: bool = False,
    ) -> M:
        raw = body.model_dump_json(exclude_none=True).encode() if body is not None else b""
        url = self.base_url + path
        attempts = _RETRIES if retry else 1
        for attempt in range(1, attempts + 1):
            headers = {"Content-Type": "application/json"} if body is not None else {}
            if signed:
                # A fresh signature (and nonce) each attempt: the courier refuses a replayed one.
                headers |= sign_request(self.me.name, self.me.signing, method, url, raw)
            try:
                async with self._ensure_session().request(
                    method, url, data=raw or None, headers=headers
                ) as reply:
                    payload = await reply.read()
                    if reply.status >= 400:
                        raise _problem(reply.status, payload)
                    return response.model_validate_json(payload)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                if attempt == attempts:
                    raise ServerUnreachable(
                        f"cannot reach the courier at {self.base_url}: {_why(exc)}"
                    ) from None
                await asyncio.sleep(0.2 * attempt)
        raise AssertionError("unreachable")


def _problem(status: int, payload: bytes) -> ChannelError:
    try:
        problem = json.loads(payload)
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    return error_from_problem(status, problem)


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return exc.os_error.strerror or str(exc.os_error)
    return str(exc) or type(exc).__name__


async def _server_sent_events(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, str, str]]:
    """(event type, id, data) for each event in an SSE stream (WHATWG event-stream format)."""
    kind, event_id, data = "message", "", list[str]()
    async for raw in content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield kind, event_id, "\n".join(data)
            kind, data = "message", []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            kind = value
        elif name == "id":
            event_id = value
        elif name == "data":
            data.append(value)


def _listing(box: str, limit: int, before: str | None) -> str:
    cursor = "" if before is None else f"&before={check_letter_id(before)}"
    return f"/v1/{box}?limit={limit}{cursor}"
