"""Query parameters: routes take only those they declare; inbox and outbox page with `before`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result
from structlog.testing import capture_logs

from channel.cli import cli
from channel.party.client import Client
from channel.protocol.canonical import now_utc
from channel.protocol.errors import InvalidName, UnknownLetter
from channel.protocol.models import LetterSummary
from channel.protocol.names import new_letter_id
from channel.protocol.seal import seal_letter
from tests.conftest import PROBLEM_FIELDS, identity, raw_call, signed_call

QUDS = "ir.irgc.quds"
CLERK = "ir.mfa.clerk"


async def send_many(
    director: Client, count: int, *, same_millisecond: bool = False, to: str = QUDS
) -> list[str]:
    """Send `count` letters; returns the outbox's ids, newest first (by sent_at, then id)."""
    now = now_utc()
    keys = await director.public_keys(to)
    letters = []
    for age in range(count):
        sent_at = now if same_millisecond else now - timedelta(seconds=age + 1)
        letter = seal_letter(
            identity(director),
            keys,
            letter_id=new_letter_id(),
            subject="",
            body=f"letter {age}",
            sent_at=sent_at,
            expires_at=now + timedelta(days=1),
        )
        await director.send(letter)
        letters.append(letter)
    return [row.id for row in await director.outbox(limit=500)]


async def pages(
    list_page: Callable[..., Awaitable[list[LetterSummary]]], size: int
) -> list[list[str]]:
    """Every page of a listing, following `before` from the last id of each page."""
    found: list[list[str]] = []
    before = None
    while True:
        page = [row.id for row in await list_page(limit=size, before=before)]
        if not page:
            return found
        found.append(page)
        before = page[-1]


@pytest.mark.parametrize("same_millisecond", [False, True])
async def test_paging_with_before_lists_everything_once_in_order(
    director: Client, quds: Client, same_millisecond: bool
) -> None:
    """Pages of 3 joined are the whole listing in order, even when every letter shares a ms."""
    everything = await send_many(director, 8, same_millisecond=same_millisecond)
    assert len(everything) == 8
    for list_page in (director.outbox, quds.inbox):
        found = await pages(list_page, 3)
        assert [len(page) for page in found] == [3, 3, 2]
        assert [i for page in found for i in page] == everything


async def test_a_letter_filed_between_pages_does_not_shift_the_next_page(
    director: Client, quds: Client
) -> None:
    """A newer letter arriving between two pages neither repeats nor skips an older one."""
    everything = await send_many(director, 5)
    first = [row.id for row in await quds.inbox(limit=2)]
    await director.send_letter(QUDS, "a newer letter")
    rest = [row.id for row in await quds.inbox(limit=10, before=first[-1])]
    assert first + rest == everything


async def test_a_cursor_not_in_the_listing_is_404_and_a_malformed_one_400(
    director: Client, quds: Client, http: aiohttp.ClientSession
) -> None:
    """`before` naming a letter not in your listing is unknown_letter; a non-id is invalid_name."""
    (sent,) = await send_many(director, 1)
    with pytest.raises(UnknownLetter):
        await quds.outbox(before=sent)  # in the director's outbox, not quds's
    with pytest.raises(UnknownLetter):
        await quds.inbox(before=new_letter_id())
    reply = await signed_call(http, identity(quds), "GET", f"{quds.base_url}/v1/inbox?before=X")
    assert (reply.status, reply.json()["code"]) == (400, InvalidName.code)


@pytest.mark.parametrize(
    "query",
    [
        "?limit=10&colour=red",
        "?limit=1&limit=2",
        "?limit=+5",
        "?limit=1_0",
        "?limit=%205",
        "?limit=%EF%BC%95",  # a fullwidth digit five: Python's int() would take it
        "?limit=0",
        "?limit=501",
        "?limit=",
        "?before=",
    ],
)
async def test_bad_query_parameters_are_refused_with_a_problem(
    quds: Client, http: aiohttp.ClientSession, query: str
) -> None:
    """Unknown, repeated or malformed query parameters get 400 problem JSON, not silence."""
    url = f"{quds.base_url}/v1/inbox{query}"
    with capture_logs() as logs:
        reply = await signed_call(http, identity(quds), "GET", url)
    assert reply.status == 400, reply.body
    assert reply.content_type == "application/problem+json"
    assert set(reply.json()) >= PROBLEM_FIELDS
    assert not [entry for entry in logs if entry["log_level"] in ("error", "critical")]


@pytest.mark.parametrize("path", ["/healthz?x=1", "/v1/courier?x", "/v1/events?x=1"])
async def test_unknown_query_parameters_are_refused_on_every_route(
    quds: Client, http: aiohttp.ClientSession, path: str
) -> None:
    """Routes without parameters refuse any, signed or not, the event stream included."""
    reply = await raw_call(http, "GET", f"{quds.base_url}{path}")
    assert reply.status == 400
    assert "unknown query parameter" in reply.json()["detail"]


async def test_the_cli_pages_inbox_and_outbox(director: Client, tmp_path: Path) -> None:
    """`channel inbox/outbox --limit N --before ID` print one page; a bad --limit is one line."""
    env = {
        "CHANNEL_HOME": str(tmp_path / "keyring"),
        "CHANNEL_SERVER": director.base_url,
        "CHANNEL_PASSPHRASE": None,
    }
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(cli, list(args), env=env, catch_exceptions=False)

    def ids(*args: str) -> list[str]:
        result = run(*args, "--json")
        assert result.exit_code == 0, result.output
        return [row["id"] for row in json.loads(result.stdout)]

    with capture_logs():
        for step in (("keys", "new", CLERK), ("register", CLERK)):
            assert (await asyncio.to_thread(run, *step)).exit_code == 0
        everything = await send_many(director, 4, to=CLERK)
        first = await asyncio.to_thread(ids, "inbox", "--as", CLERK, "--limit", "3")
        rest = await asyncio.to_thread(
            ids, "inbox", "--as", CLERK, "--limit", "3", "--before", first[-1]
        )
        bad = await asyncio.to_thread(run, "outbox", "--as", CLERK, "--limit", "501")
    assert first + rest == everything
    assert len(first) == 3
    assert bad.exit_code == 2
    assert "501 is not in the range 1<=x<=500" in bad.stderr
    assert "Traceback" not in bad.output
