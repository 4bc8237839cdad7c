"""A letter's story for people: envelopes, receipts checked one by one, and the timeline.

`audit` checks a LetterStatus offline, one line per receipt, so a reader sees which step of the
story holds and where it breaks; the `render_*` functions print with rich.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from channel.protocol.canonical import sha256_hex
from channel.protocol.lifecycle import State
from channel.protocol.models import ChainKeys, Envelope, LetterStatus, LetterSummary, Receipt
from channel.protocol.seal import Finding, check_status

OK, FAIL = "[green]✓[/]", "[red]✗[/]"


@dataclass(frozen=True)
class Check:
    """One verified (or failed) piece of evidence."""

    subject: str
    ok: bool
    detail: str


def audit(status: LetterStatus, keys: ChainKeys) -> list[Check]:
    """Check the seal, each receipt in chain order, and that the status agrees with its chain
    (`seal.check_status`), with what each verified piece of evidence says."""
    findings = check_status(
        status, sender_key=keys.sender, courier_key=keys.courier, recipient_key=keys.recipient
    )
    return [_check(finding, status.envelope) for finding in findings]


def _check(finding: Finding, envelope: Envelope) -> Check:
    if not finding.ok:
        return Check(finding.subject, False, finding.problem)
    if finding.receipt is not None:
        return Check(finding.subject, True, evidence(finding.receipt, envelope))
    return Check(finding.subject, True, f"envelope sealed by {envelope.sender}")


def failure(checks: list[Check]) -> Check | None:
    return next((check for check in checks if not check.ok), None)


# --- text ----------------------------------------------------------------------------------------


def short_time(timestamp: str) -> str:
    """`2017-12-02T18:30:00.000Z` -> `2017-12-02 18:30:00Z`."""
    return f"{timestamp[:10]} {timestamp[11:19]}Z"


def signers(receipt: Receipt, envelope: Envelope) -> str:
    return "courier + " + envelope.recipient if receipt.recipient_signature else "courier"


def evidence(receipt: Receipt, envelope: Envelope) -> str:
    """When a receipt was issued, who signed it, and the reason it carries."""
    reason = f'  "{receipt.reason}"' if receipt.reason else ""
    return f"{short_time(receipt.at)}  signed by {signers(receipt, envelope)}{reason}"


def describe_receipt(receipt: Receipt, envelope: Envelope) -> str:
    return f"{receipt.event.value:<17} {evidence(receipt, envelope)}"


_STORY = {
    State.ACCEPTED: "accepted the sealed letter",
    State.DELIVERED: "was handed the envelope; the content was not released",
    State.OPENED: "opened the letter: the ciphertext was released to it",
    State.RETURNED_UNOPENED: "returned the letter unopened",
    State.WITHDRAWN: "withdrew the letter",
    State.EXPIRED: "sent the letter back to {sender}: its deadline passed",
}

_ACTOR = {
    State.ACCEPTED: "courier",
    State.DELIVERED: "{recipient}",
    State.OPENED: "{recipient}",
    State.RETURNED_UNOPENED: "{recipient}",
    State.WITHDRAWN: "{sender}",
    State.EXPIRED: "courier",
}


# --- rich ----------------------------------------------------------------------------------------


def make_console() -> Console:
    """Rich's console, but 120 columns wide for pipes and CI logs instead of its 80."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def render_checks(console: Console, checks: list[Check], *, indent: str = "") -> None:
    for check in checks:
        mark = OK if check.ok else FAIL
        # soft_wrap: one line per check, however long, so the output stays greppable.
        console.print(f"{indent}{mark} {check.subject:<29} {check.detail}", soft_wrap=True)


@dataclass(frozen=True)
class LetterRow:
    """A listing's row: the envelope, and what the party's own archive and run add to it."""

    letter: LetterSummary
    subject: str | None = None  # from the party's own archive: a letter it opened or sent
    label: str | None = None  # in an exercise, the run's label (`L3`)
    world: datetime | None = None  # in an exercise, the world time it was sent


def render_letters(
    console: Console, rows: list[LetterRow], *, box: str, exercise: bool = False
) -> None:
    """An inbox or outbox, newest first: envelopes, and subjects the party may read.

    In an exercise a letter goes by its label where it has one (`L3`, as the report numbers it;
    the id otherwise), with the world time beside the wall-clock time of day, and no deadline
    column: the row must fit a terminal with the subject in it.
    """
    if not rows:
        console.print(f"(the {box} is empty)")
        return
    party = "from" if box == "inbox" else "to"
    if exercise:
        columns = ["letter", "precedence", party, "subject", "sent", "world", "state"]
    else:
        columns = ["id", "precedence", party, "subject", "sent", "deadline", "state"]
    table = Table(box=None, pad_edge=False)
    for column in columns:
        if column == "subject":
            table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=40)
        else:
            table.add_column(column, no_wrap=True)
    for row in rows:
        letter = row.letter
        cells = [
            _precedence(letter.precedence.value),
            letter.sender if box == "inbox" else letter.recipient,
            escape(row.subject or ""),
        ]
        if exercise:
            world = row.world.strftime("%Y-%m-%d %H:%M") if row.world else ""
            sent = f"{letter.sent_at[11:19]}Z"
            table.add_row(row.label or letter.id, *cells, sent, world, letter.state.value)
        else:
            sent, deadline = short_time(letter.sent_at)[:16], short_time(letter.expires_at)[:16]
            table.add_row(letter.id, *cells, sent, deadline, letter.state.value)
    console.print(table)


def render_envelope(console: Console, letter: LetterSummary, *, sealed: bool) -> None:
    """What a recipient sees before deciding: who, when, how urgent, how big; never what."""
    env = letter.envelope
    rows = [
        ("letter", env.id),
        ("from", env.sender),
        ("to", env.recipient),
        ("precedence", _precedence(env.precedence.value)),
        ("sent", short_time(env.sent_at)),
        ("deadline", short_time(env.expires_at)),
        ("ciphertext", f"{env.ciphertext_size} bytes"),
        ("sha256", env.ciphertext_sha256),
        ("seal", f"{OK} by {env.sender}" if sealed else f"{FAIL} does not verify"),
        ("state", letter.state.value),
    ]
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for label, value in rows:
        table.add_row(label, value)
    console.print(Padding.indent(table, 2))


def render_status(console: Console, status: LetterStatus) -> None:
    """A letter's envelope and receipts, as the client verified them."""
    env = status.envelope
    console.print(
        f"letter {env.id}: {env.sender} → {env.recipient}, {env.precedence.value}, "
        f"now [bold]{status.state.value}[/]",
        soft_wrap=True,
    )
    console.print(f"  sent {short_time(env.sent_at)}, deadline {short_time(env.expires_at)}")
    for seq, receipt in enumerate(status.receipts):
        console.print(f"{OK} receipt {seq:<2} {describe_receipt(receipt, env)}", soft_wrap=True)


def render_timeline(console: Console, status: LetterStatus, *, back_intact: bool) -> None:
    """The letter's story in order: who did what, when, and the evidence for it."""
    env = status.envelope
    names = {"sender": env.sender, "recipient": env.recipient}
    table = Table(title=f"The story of letter {env.id} (UTC)", title_justify="left")
    for column in ("time", "who", "what", "evidence"):
        table.add_column(column, no_wrap=column != "what")
    table.add_row(
        _clock(env.sent_at),
        env.sender,
        f"sealed a letter to {env.recipient}, precedence {env.precedence.value}",
        f"seal {OK}",
    )
    for seq, receipt in enumerate(status.receipts):
        what = _STORY[receipt.event].format(**names)
        if receipt.reason:
            what += f': "{receipt.reason}"'
        table.add_row(
            _clock(receipt.at),
            _ACTOR[receipt.event].format(**names),
            what,
            f"receipt {seq} {OK} {signers(receipt, env)}",
        )
    if back_intact:
        table.add_row(
            "", env.sender, "holds its letter again, byte for byte as sent", f"sha256 {OK}"
        )
    console.print(table)


def digest_line(label: str, data: bytes) -> str:
    return f"{label:<9} sha256 {sha256_hex(data)}  {len(data)} bytes"


def _clock(timestamp: str) -> str:
    """Time of day to the millisecond: a letter's story usually fits in one day."""
    return f"{timestamp[5:10]} {timestamp[11:23]}"


def _precedence(value: str) -> str:
    return f"[bold red]{value}[/]" if value in {"immediate", "flash"} else value
