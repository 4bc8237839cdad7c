"""`channel demo`: the 2017 letter played as a tabletop exercise (the bundled scenario, bots in
every seat); with --story, the story end to end, in one process, in a few seconds. Either way it
hosts a courier in this process, which is why it lives here and not with a party's commands.

The story: a courier with its embedded Redis starts in a temporary directory; the CIA director
and the commander of the IRGC's Quds Force create keys in a temporary keyring and register; the
director sends a warning; the commander sees the envelope only and returns the letter unopened;
the director gets it back byte for byte and verifies every receipt offline. Nothing is mocked: the
same courier, client, keyring and verification as `channel serve` and the other commands.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import textwrap
from datetime import timedelta
from pathlib import Path

import click
from rich.console import Console
from rich.rule import Rule

from channel.courier.embedded import EmbeddedRedis
from channel.courier.server.run import courier_in_process, load_courier_key
from channel.exercise.commands import load, play_and_report
from channel.logs import configure_logging
from channel.party.client import Client
from channel.party.keyring import Keyring, sent_bytes
from channel.party.session import party_client
from channel.party.timeline import (
    audit,
    digest_line,
    failure,
    make_console,
    render_checks,
    render_envelope,
    render_timeline,
)
from channel.protocol.errors import IntegrityError
from channel.protocol.models import LetterStatus, Precedence
from channel.protocol.seal import fingerprint, raw_public, verify_seal

DIRECTOR = "us.cia.director"
COMMANDER = "ir.irgc.quds"
SUBJECT = "Attacks on American interests in Iraq"
LETTER = """\
General,

I am writing to you directly so that there is no misunderstanding.

The United States will hold you, and Iran, accountable for any attack on American interests
in Iraq carried out by forces under your control. Do not mistake restraint for indifference,
or silence for consent.

This letter is the channel. Use it.

Director, Central Intelligence Agency"""
REASON = "Returned unopened. There is nothing to read and nothing to answer."


@click.command()
@click.option("--story", is_flag=True, help="The protocol walk-through instead of the exercise.")
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --story: keep the courier data and keyring in DIR (must be empty or absent).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder.")
@click.option("--no-live", is_flag=True, help="One line per event instead of the live view.")
def demo(story: bool, keep: Path | None, out: Path | None, no_live: bool) -> None:
    """Play the 2017 letter as a tabletop exercise and write its after-action report.

    The bundled `letter-to-soleimani` scenario runs at full speed on an embedded courier, bots
    in every seat; the HTML report's path is printed at the end. With --story: the letter sent,
    returned unopened, taken back byte for byte and verified offline, step by step.
    """
    if story:
        if keep is not None and keep.exists() and any(keep.iterdir()):
            raise click.BadParameter(f"{keep} is not empty", param_hint="--keep")
        run_demo(keep)
        return
    source = load("letter-to-soleimani")
    play_and_report(
        source, out=out, rehearse=True, live=not no_live, formats=("html", "md", "json")
    )


def run_demo(keep: Path | None = None) -> None:
    """Run the story; leaves the courier data and keyring in `keep` if given, else deletes them."""
    base = keep or Path(tempfile.mkdtemp(prefix="backchannel-demo-"))
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    console = make_console()
    # The courier shares this process; its logs would drown the story.
    configure_logging("console", "warning")
    # The demo's data is thrown away: no need to fsync every write.
    redis = EmbeddedRedis(base / "courier", fsync="everysec")
    try:
        redis.start()
        asyncio.run(_story(console, base, redis.url))
    finally:
        redis.stop()
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)
    if keep is not None:
        console.print(f"kept the courier data and keyring in {keep}")


async def _story(console: Console, base: Path, redis_url: str) -> None:
    console.print(Rule("Backchannel demo: a letter returned unopened (December 2017)"))
    async with courier_in_process(base / "courier", redis_url) as url:
        courier_key = raw_public(load_courier_key(base / "courier"))
        _step(console, 1, "A courier that can prove who sent a letter but never read it")
        console.print(f"  listening at {url}, receipt key {fingerprint(courier_key)}")
        ring = Keyring(base / "keyring")

        _step(console, 2, "Both parties create keys and register")
        director_keys, commander_keys = ring.new(DIRECTOR), ring.new(COMMANDER)
        async with (
            party_client(url, ring, director_keys, refresh_courier=True) as director,
            party_client(url, ring, commander_keys, refresh_courier=True) as commander,
        ):
            for party in (director, commander):
                record = await party.register()
                console.print(f"  {record.name:<16} fingerprint {record.fingerprint}")
            letter_id = await _send(console, ring, director)
            await _refuse(console, ring, commander, letter_id)
            await _take_back(console, ring, director, letter_id)
            status = await director.verified_status(letter_id)
        _verify_offline(console, ring, url, status, base)
        _step(console, 8, "The story, as the evidence tells it")
        render_timeline(console, status, back_intact=True)
    console.print(
        f"\n[bold]Done:[/] returned unopened, back byte for byte, {len(status.receipts)} receipts "
        "verified offline.",
        soft_wrap=True,
    )


async def _send(console: Console, ring: Keyring, director: Client) -> str:
    _step(console, 3, "The director seals a warning to the commander")
    await ring.vouch(director, COMMANDER)
    sealed, receipt = await director.send_letter(
        COMMANDER,
        LETTER,
        subject=SUBJECT,
        precedence=Precedence.IMMEDIATE,
        expires_in=timedelta(hours=72),
    )
    ring.save_sent(DIRECTOR, sealed)
    env = sealed.envelope
    console.print(f"  [dim]Subject: {SUBJECT}[/]")
    console.print(textwrap.indent(LETTER, "  "), style="dim")
    console.print(f"  letter {env.id}: {env.ciphertext_size} bytes only {COMMANDER} can open")
    console.print(f"  [green]✓[/] the courier accepted it at {receipt.at} (receipt 0, signed)")
    return env.id


async def _refuse(console: Console, ring: Keyring, commander: Client, letter_id: str) -> None:
    _step(console, 4, "The commander's inbox shows the envelope, not the letter")
    (letter,) = [summary for summary in await commander.inbox() if summary.id == letter_id]
    sender = await ring.vouch(commander, letter.sender)
    sealed = verify_seal(letter.envelope, letter.seal, sender.signing_key)
    render_envelope(console, letter, sealed=sealed)
    console.print(
        "  [bold]The content was not released.[/] The commander has seen who wrote, when and how"
        "\n  urgently, and nothing else; the courier holds"
        f" {letter.envelope.ciphertext_size} bytes of ciphertext it cannot read."
    )
    _step(console, 5, "The commander returns it unopened")
    receipts = await commander.return_letter(letter_id, REASON)
    console.print(f'  reason: "{REASON}"')
    console.print(
        f"  [green]✓[/] receipt {receipts[-1].seq} ({receipts[-1].event.value}) is signed by the "
        f"courier and by {COMMANDER}"
    )


async def _take_back(console: Console, ring: Keyring, director: Client, letter_id: str) -> None:
    _step(console, 6, "The director gets its letter back")
    back = await director.returned(letter_id)
    sent, came_back = ring.load_sent(DIRECTOR, letter_id), sent_bytes(back.letter)
    console.print("  the sealed letter, as kept in the director's keyring and as it came back:")
    console.print("  " + digest_line("sent", sent), soft_wrap=True)
    console.print("  " + digest_line("returned", came_back), soft_wrap=True)
    if came_back != sent:
        raise IntegrityError("the returned letter differs from the one sent")
    console.print("  [green]✓[/] byte for byte the letter it sent: the seal was never broken")


def _verify_offline(
    console: Console, ring: Keyring, url: str, status: LetterStatus, base: Path
) -> None:
    _step(console, 7, "The director verifies the receipts offline")
    evidence = base / "status.json"
    evidence.write_text(status.model_dump_json(indent=2, exclude_none=True), encoding="utf-8")
    console.print(f"  (the same check as `channel verify {evidence.name}`)")
    keys, warnings = ring.chain_keys(status.keys, status.envelope, url)
    for warning in warnings:
        console.print(f"  [yellow]warning:[/] {warning}")
    checks = audit(status, keys)
    render_checks(console, checks, indent="  ")
    bad = failure(checks)
    if bad is not None:
        raise IntegrityError(f"{bad.subject}: {bad.detail}")


def _step(console: Console, number: int, title: str) -> None:
    console.print(f"\n[bold]{number}. {title}[/]")
