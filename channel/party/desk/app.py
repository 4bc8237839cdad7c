"""The desk's pages: a thin layer over the party's one typed client and its keyring.

Every page is rendered on the server; htmx only refreshes the letter lists when the courier's
event stream says something changed. Deliberate actions (open, return, withdraw, pinning a new
correspondent) go through a confirmation page, then a POST guarded by the web layer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import jinja2
import structlog
from aiohttp import web

from channel.cli_options import DURATION
from channel.party.client import Client
from channel.party.desk.notices import ControlDesk
from channel.party.keyring import Keyring, sent_bytes
from channel.party.notice_text import span
from channel.party.seat import Seat, clock_of, deadlines_of
from channel.party.web import Broadcast, Guard, Handler, page, web_app
from channel.protocol.canonical import now_utc, parse_time, sha256_hex
from channel.protocol.errors import ChannelError, IntegrityError
from channel.protocol.lifecycle import State, is_terminal
from channel.protocol.models import LetterSummary, Precedence, Receipt
from channel.protocol.names import check_letter_id, check_party_name
from channel.protocol.seal import PartyKeys, fingerprint, party_fingerprint

log = structlog.get_logger("channel.party.desk")
PAGE = 20
_SCAN = 500  # letters fetched from the courier per listing: filters apply to the newest 500
_THREAD = 20  # ancestors shown at most


@dataclass
class Desk:
    client: Client
    ring: Keyring
    keys: PartyKeys
    broadcast: Broadcast
    guard: Guard
    seat: ControlDesk | None = None  # in an exercise: what control told this seat

    @property
    def name(self) -> str:
        return self.keys.name

    def subject(self, letter_id: str) -> str | None:
        content = self.ring.read_letter(self.keys, letter_id)
        return content.subject if content is not None else None


KEY = web.AppKey("desk", Desk)


def desk_app(client: Client, ring: Keyring, keys: PartyKeys) -> tuple[web.Application, Guard]:
    """The desk of `keys`, acting through `client` (trusting the keys pinned in `ring`)."""
    guard = Guard()
    app = web_app(guard, jinja2.PackageLoader("channel.party.desk"))
    app.middlewares.append(_errors)
    exercise = Seat.of(ring, keys)
    seat = ControlDesk(exercise) if exercise is not None else None
    desk = Desk(client, ring, keys, Broadcast(), guard, seat)
    app[KEY] = desk
    app.cleanup_ctx.append(_follow)
    app.on_shutdown.append(desk.broadcast.close)
    routes = [
        web.get("/", home),
        web.get("/inbox", inbox),
        web.get("/inbox/rows", inbox),
        web.get("/sent", sent),
        web.get("/sent/rows", sent),
        web.get("/events", desk.broadcast.stream),
        web.get("/compose", compose_form),
        web.post("/compose", compose),
        web.get("/letter/{id}", letter),
        web.get("/letter/{id}/certified", letter),
        web.get("/letter/{id}/{action:open|return|withdraw}", confirm),
        web.post("/letter/{id}/{action:open|return|withdraw}", act),
        web.post("/letter/{id}/fetch", fetch_back),
    ]
    if seat is not None:
        routes += [
            web.get("/notices", notices),
            web.get("/notices/list", notices),
            web.get("/exercise/bar", exercise_bar),
        ]
    app.add_routes(routes)
    return app, guard


async def _follow(app: web.Application) -> AsyncIterator[None]:
    """Follow the courier's event stream for the desk's life; each event refreshes the pages."""
    desk = app[KEY]
    seat = desk.seat
    resync = False

    def gap() -> None:  # events were trimmed before we read them: look at the inbox again
        nonlocal resync
        resync = True

    async def follow() -> None:
        nonlocal resync
        position = None
        if seat is not None:  # nothing control sends from here on is missed, nor before
            with contextlib.suppress(ChannelError):
                position = await desk.client.event_position()
            resync = not await _sweep(desk, seat)  # the courier away: sweep at the next event
        try:
            async for event in desk.client.watch(position, on_gap=gap):  # reconnects by itself
                if seat is not None and (
                    resync
                    or (
                        event.sender == seat.control
                        and event.state in (State.ACCEPTED, State.DELIVERED)
                    )
                ):
                    resync = not await _sweep(desk, seat)
                desk.broadcast.publish(event.letter_id)
        except ChannelError as exc:  # e.g. a receipt that does not verify: say so, keep serving
            log.warning("desk_stream_stopped", error=exc.detail)

    task = asyncio.create_task(follow())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _sweep(desk: Desk, seat: ControlDesk) -> bool:
    """Open and file what control sent (the pages refresh when something new was filed);
    whether the courier could be asked."""
    try:
        if await seat.sweep(desk.client):
            desk.broadcast.publish("notices")
    except ChannelError as exc:  # the courier is away: a later event sweeps again
        log.warning("notices_not_swept", error=exc.detail)
        return False
    return True


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A ChannelError becomes a page saying what went wrong, with its status; never a trace."""
    try:
        return await handler(request)
    except ChannelError as exc:
        status = exc.status if 400 <= exc.status < 600 else 502
        return _page(
            "problem.html",
            request,
            {"problem": exc.detail, "me": request.app[KEY].name},
            status=status,
        )


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/inbox")


def _page(
    template: str, request: web.Request, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    desk = request.app[KEY]
    return page(request, desk.guard, template, _exercise(desk) | context, status=status)


def _exercise(desk: Desk) -> dict[str, Any]:
    """What every page shows in an exercise: the marking, the clocks, the letters' labels."""
    seat = desk.seat
    if seat is None:
        return {}
    clock = clock_of(seat.heard)
    now = now_utc()
    return {
        "exercise": seat.seat.exercise,
        "clock": clock,
        "world_now": clock.world_at(now) if clock is not None else None,
        "wall_now": now,
        "labels": seat.seat.labels(),
        "when": _when,
        "iso": lambda moment: moment.isoformat().replace("+00:00", "Z"),
    }


def _when(moment: datetime) -> str:
    """`2017-12-22 09:00:00Z`: a time for people, world or wall."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# --- lists ---------------------------------------------------------------------------------


@dataclass
class Row:
    letter: LetterSummary
    correspondent: str
    subject: str | None
    countdown: str


async def inbox(request: web.Request) -> web.StreamResponse:
    desk = request.app[KEY]
    return await _listing(request, "inbox", await _all(desk.client.inbox))


async def sent(request: web.Request) -> web.StreamResponse:
    desk = request.app[KEY]
    return await _listing(request, "sent", await _all(desk.client.outbox))


async def _all(listing: Any) -> list[LetterSummary]:
    letters: list[LetterSummary] = await listing(_SCAN)
    return letters


async def _listing(
    request: web.Request, box: str, letters: list[LetterSummary]
) -> web.StreamResponse:
    desk = request.app[KEY]
    q = request.query
    who, state, prec = q.get("who", "").strip(), q.get("state", ""), q.get("precedence", "")
    since, until, text = q.get("since", ""), q.get("until", ""), q.get("q", "").strip().lower()
    now = now_utc()
    rows = []
    for letter in letters:
        if (
            box == "inbox"
            and desk.seat is not None
            and desk.seat.files_apart(letter.sender, letter.id)
        ):
            continue  # control's notices are filed apart ("From control")
        other = letter.sender if box == "inbox" else letter.recipient
        subject = desk.subject(letter.id)
        day = letter.sent_at[:10]
        if (
            (who and who.lower() not in other.lower())
            or (state and letter.state.value != state)
            or (prec and letter.precedence.value != prec)
            or (since and day < since)
            or (until and day > until)
            or (text and text not in f"{letter.id} {other} {subject or ''}".lower())
        ):
            continue
        rows.append(Row(letter, other, subject, _countdown(letter, now)))
    try:
        page = max(1, int(q.get("page", "1")))
    except ValueError:
        page = 1
    shown = rows[(page - 1) * PAGE : page * PAGE]
    query = "&".join(f"{k}={v}" for k, v in q.items() if k != "page" and v)
    context = {
        "box": box,
        "rows": shown,
        "page": page,
        "more": len(rows) > page * PAGE,
        "total": len(rows),
        "query": query,
        "filters": q,
        "states": [s.value for s in State],
        "precedences": [p.value for p in Precedence],
        "me": desk.name,
    }
    template = "rows.html" if request.path.endswith("/rows") else "letters.html"
    return _page(template, request, context)


def _countdown(letter: LetterSummary, now: datetime) -> str:
    if is_terminal(letter.state) or letter.state is State.OPENED:
        return ""
    left = parse_time(letter.expires_at) - now
    if left <= timedelta(0):
        return "past deadline"
    days, rest = divmod(int(left.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h left"
    if hours:
        return f"{hours}h {minutes}m left"
    return f"{minutes}m left"


# --- a letter ------------------------------------------------------------------------------


async def letter(request: web.Request) -> web.StreamResponse:
    desk = request.app[KEY]
    letter_id = check_letter_id(request.match_info["id"])
    context = await _letter_context(desk, letter_id)
    template = "certified.html" if request.path.endswith("/certified") else "letter.html"
    return _page(template, request, context)


async def _letter_context(desk: Desk, letter_id: str) -> dict[str, Any]:
    client, ring = desk.client, desk.ring
    status = await client.status(letter_id)
    env = status.envelope
    sender = await ring.vouch(client, env.sender)
    recipient = await ring.vouch(client, env.recipient)
    client.trust(sender)
    client.trust(recipient)
    checked = await client.verified_status(letter_id)  # seal and receipt chain, or IntegrityError
    courier = fingerprint(checked.keys.courier)
    thread: list[tuple[str, str | None]] = []
    parent = env.in_reply_to
    while parent and len(thread) < _THREAD:
        content = ring.read_letter(desk.keys, parent)
        thread.append((parent, content.subject if content else None))
        try:
            parent = (await client.status(parent)).envelope.in_reply_to
        except ChannelError:  # a letter this party cannot see ends the thread shown
            break
    mine = env.sender == desk.name
    undecided = checked.state in (State.ACCEPTED, State.DELIVERED)
    return {
        "me": desk.name,
        "status": checked,
        "env": env,
        "content": ring.read_letter(desk.keys, letter_id),
        "receipts": [
            _receipt_row(r, courier, recipient.name, party_fingerprint(recipient))
            for r in checked.receipts
        ],
        "fingerprints": {
            "courier": courier,
            env.sender: party_fingerprint(sender),
            env.recipient: party_fingerprint(recipient),
        },
        "thread": list(reversed(thread)),
        "mine": mine,
        "can_decide": not mine and undecided,
        "can_withdraw": mine and undecided,
        "can_fetch": mine
        and checked.state in (State.RETURNED_UNOPENED, State.WITHDRAWN, State.EXPIRED),
        "seal_digest": sha256_hex(status.seal),
        "checked_at": now_utc().isoformat(timespec="seconds"),
    }


def _receipt_row(
    receipt: Receipt, courier: str, recipient: str, recipient_print: str
) -> dict[str, Any]:
    signers = [f"courier {courier}"]
    if receipt.recipient_signature is not None:
        signers.append(f"{recipient} {recipient_print}")
    return {"r": receipt, "signers": signers}


ACTIONS = {
    "open": ("Open this letter", "Opening is irreversible: the sender gets your signed receipt."),
    "return": (
        "Return this letter unopened",
        "You sign the refusal; the sender gets it back sealed, with your reason.",
    ),
    "withdraw": ("Withdraw this letter", "The recipient can no longer open it."),
}


async def confirm(request: web.Request) -> web.StreamResponse:
    desk = request.app[KEY]
    letter_id = check_letter_id(request.match_info["id"])
    action = request.match_info["action"]
    status = await desk.client.status(letter_id)
    title, warning = ACTIONS[action]
    context = {"me": desk.name, "env": status.envelope, "action": action, "title": title}
    return _page("confirm.html", request, context | {"warning": warning})


async def act(request: web.Request) -> web.StreamResponse:
    desk = request.app[KEY]
    client, ring = desk.client, desk.ring
    letter_id = check_letter_id(request.match_info["id"])
    action = request.match_info["action"]
    form = await request.post()
    if form.get("confirmed") != "yes":
        raise web.HTTPSeeOther(f"/letter/{letter_id}/{action}")
    if action == "open":
        status = await client.status(letter_id)
        await ring.vouch(client, status.envelope.sender)
        signed, _ = await client.open_letter(letter_id)
        ring.save_received(desk.name, signed)
    elif action == "return":
        reason = str(form.get("reason", "")).strip() or None
        await client.return_letter(letter_id, reason)
    else:
        await client.withdraw_letter(letter_id)
    desk.broadcast.publish(letter_id)
    raise web.HTTPSeeOther(f"/letter/{letter_id}")


async def fetch_back(request: web.Request) -> web.StreamResponse:
    """Fetch a letter that came back and prove it identical, byte for byte, to the copy sent."""
    desk = request.app[KEY]
    letter_id = check_letter_id(request.match_info["id"])
    kept = desk.ring.load_sent(desk.name, letter_id)
    back = await desk.client.returned_letter(letter_id)
    if sent_bytes(back.letter) != kept:
        raise IntegrityError(
            f"the letter the courier returned differs from the copy sent ({letter_id})"
        )
    context = {
        "me": desk.name,
        "env": back.letter.envelope,
        "state": back.state.value,
        "sha256": sha256_hex(kept),
        "size": len(kept),
        "receipts": len(back.receipts),
    }
    return _page("fetched.html", request, context)


# --- compose -------------------------------------------------------------------------------


async def compose_form(request: web.Request) -> web.StreamResponse:
    desk = request.app[KEY]
    q = request.query
    form = {"to": q.get("to", ""), "reply_to": q.get("reply_to", ""), "deadline": "7d"}
    if form["reply_to"]:
        original = desk.ring.read_letter(desk.keys, check_letter_id(form["reply_to"]))
        if original is not None:
            form["subject"] = f"Re: {original.subject}" if original.subject else ""
    return _compose_page(request, desk, form)


def _compose_page(
    request: web.Request, desk: Desk, form: dict[str, Any], problem: str | None = None
) -> web.StreamResponse:
    contacts = sorted({c.name for c in desk.ring.contacts()} | set(desk.ring.names()) - {desk.name})
    context = {
        "me": desk.name,
        "form": form,
        "contacts": contacts,
        "precedences": [p.value for p in Precedence],
        "problem": problem,
    }
    return _page("compose.html", request, context, status=400 if problem else 200)


async def compose(request: web.Request) -> web.StreamResponse:
    desk = request.app[KEY]
    client, ring = desk.client, desk.ring
    posted = await request.post()
    form = {k: str(v) for k, v in posted.items() if k != "csrf"}
    to = form.get("to", "").strip()
    body = form.get("body", "")
    try:
        check_party_name(to)
        reply_to = form.get("reply_to", "").strip() or None
        if reply_to:
            check_letter_id(reply_to)
        expires_in = _deadline(form)
        precedence = Precedence(form.get("precedence", "routine"))
    except (ChannelError, ValueError) as exc:
        return _compose_page(request, desk, form, getattr(exc, "detail", None) or str(exc))
    if not body.strip():
        return _compose_page(request, desk, form, "the letter is empty")
    if ring.known(to) is None:
        offered = await client.public_keys(to)
        shown = party_fingerprint(offered)
        if form.get("fingerprint") != shown:  # first contact: the person confirms, then we pin
            context = {"me": desk.name, "form": form, "name": to, "fingerprint": shown}
            return _page("first_contact.html", request, context)
        ring.pin_contact(offered)
    await ring.vouch(client, to)
    sealed = await client.seal(
        to,
        body,
        subject=form.get("subject", ""),
        precedence=precedence,
        expires_in=expires_in,
        in_reply_to=reply_to,
    )
    ring.save_sent(desk.name, sealed)  # kept before it leaves, as the CLI does
    ring.keep_copy(desk.keys, sealed, form.get("subject", ""), body)
    await client.send_sealed(sealed)
    raise web.HTTPSeeOther(f"/letter/{sealed.envelope.id}")


def _deadline(form: dict[str, str]) -> timedelta:
    """A duration (`72h`) or, if given, an absolute UTC date and time (`2026-12-06T18:00`)."""
    at = form.get("deadline_at", "").strip()
    if at:
        try:
            moment = datetime.fromisoformat(at).replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(f"{at!r} is not a date and time") from None
        left = moment - now_utc()
        if left <= timedelta(0):
            raise ValueError("the deadline is in the past")
        return left
    try:
        return DURATION.convert(form.get("deadline", "7d"), None, None)
    except click.BadParameter as exc:
        raise ValueError(exc.message) from None


# --- in an exercise: what control told this seat ------------------------------------------


async def notices(request: web.Request) -> web.StreamResponse:
    """The notices, newest first, with the seat's deadlines (the page or its live part)."""
    desk = request.app[KEY]
    seat = desk.seat
    assert seat is not None  # the route exists in an exercise only
    now = now_utc()
    clock = clock_of(seat.heard)
    context = {
        "me": desk.name,
        "heard": list(reversed(seat.heard)),
        "dues": deadlines_of(seat.heard, clock, now),
        "failed": seat.failed,
        "span": span,
    }
    template = "notice_list.html" if request.path.endswith("/list") else "notices.html"
    return _page(template, request, context)


async def exercise_bar(request: web.Request) -> web.StreamResponse:
    """The clock bar alone, for the live refresh after a notice."""
    return _page("exercise_bar.html", request, {"me": request.app[KEY].name})
