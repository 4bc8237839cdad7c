"""The after-action report: numbers from a known event log, real seals and receipts, and the
HTML page as a headless browser renders it."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from channel.exercise.eventlog import EventLog, LogError, Stamp, read_log
from channel.exercise.report.analysis import AfterAction, analyse
from channel.exercise.report.html import render_html
from channel.exercise.report.render import render_json, render_markdown, write_reports
from channel.protocol.canonical import format_time
from channel.protocol.lifecycle import SIGNED_BY_RECIPIENT, State
from channel.protocol.models import ChainKeys, LetterStatus, Receipt, SealedLetter, b64
from channel.protocol.names import new_letter_id
from channel.protocol.seal import (
    PartyKeys,
    decision_for,
    raw_public,
    seal_letter,
    sign_decision,
    sign_receipt,
)

A, B, C = "us.cia.director", "ir.irgc.quds", "ch.fdfa.protect"
START = datetime(2017, 11, 20, 9, tzinfo=UTC)
JUMP = datetime(2017, 11, 23, 9, tzinfo=UTC)  # move 2 starts here: a jump of days
MOVE2 = 600_000
RATE = 60  # world seconds per exercise second
END = 960_000
EVIL_SUBJECT = "<script>alert('x')</script> & co"
EVIL_SUMMARY = 'A warning by letter. <img src=x onerror="alert(1)">'

Final = Callable[[str, dict[str, Any]], dict[str, Any] | None]


def world_at(t: int) -> datetime:
    base, since = (START, t) if t < MOVE2 else (JUMP, t - MOVE2)
    return base + timedelta(milliseconds=since * RATE)


def stamp(t: int) -> Stamp:
    return Stamp(t, format_time(world_at(t)), 1 if t < MOVE2 else 2)


def expect(
    exp_id: str,
    check: str,
    sender: str,
    recipient: str,
    score: int,
    objectives: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "id": exp_id,
        "check": check,
        "from": sender,
        "to": recipient,
        "within": 3600,
        "score": score,
        "contingency": False,
        "objectives": list(objectives),
        "text": f"{check}: {sender} → {recipient}",
    }


def inject(
    inject_id: str, move: int, sender: str | None, to: list[str], t: int | None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": inject_id,
        "move": move,
        "channel": "letter" if sender else "news",
        "from": sender,
        "to": to,
        "subject": f"Inject {inject_id}",
        "contingency": t is None,
        "t": t,
        "objectives": [],
        "expect": [],
    } | extra


# OBJ-1: E1 met (E5 belongs to a contingency that never fired) → P
# OBJ-2: E2a met (2) + E2b missed (1) → 2/3 → S, both inherited from INJ-02's objectives
# OBJ-3: E3a met (1) + E3b missed (2) → 1/3 → M, tagged on the expectations themselves
# OBJ-4: E4a missed (1) + E4b pending (3) → 0 → U
# OBJ-5: no expectations → not assessed
INJECTS = [
    inject(
        "INJ-01", 1, A, [B], 30_000, objectives=["OBJ-1"], expect=[expect("E1", "sent", A, B, 1)]
    ),
    inject(
        "INJ-02",
        1,
        A,
        [C],
        150_000,
        objectives=["OBJ-2"],
        expect=[expect("E2a", "opened", A, C, 2), expect("E2b", "opened", A, B, 1)],
    ),
    inject(
        "INJ-03",
        2,
        None,
        [],
        630_000,
        expect=[
            expect("E3a", "sent", B, A, 1, ("OBJ-3",)),
            expect("E3b", "replied", B, A, 2, ("OBJ-3",)),
        ],
    ),
    inject(
        "INJ-04",
        2,
        A,
        [B],
        700_000,
        objectives=["OBJ-4"],
        expect=[expect("E4a", "opened", A, B, 1), expect("E4b", "opened", B, A, 3)],
    ),
    inject(
        "INJ-05", 1, C, [A], None, objectives=["OBJ-1"], expect=[expect("E5", "opened", C, A, 5)]
    ),
]


def run_started_data() -> dict[str, Any]:
    return {
        "scenario": {
            "title": "Letter to the general",
            "revision": "3",
            "digest": "ab" * 32,
            "file": "letter.yaml",
            "marking": "EXERCISE EXERCISE EXERCISE",
            "summary": EVIL_SUMMARY,
            "transcript": "metadata_only",
        },
        "seed": 7,
        "speed": "max",
        "rehearse": False,
        "parties": [
            {"name": A, "label": "CIA Director", "play": "human", "player": "Blue cell"},
            {"name": B, "label": "Quds Force", "play": "bot:hardliner", "player": ""},
            {"name": C, "label": "Swiss Embassy", "play": "bot:intermediary", "player": ""},
        ],
        "objectives": [{"id": f"OBJ-{n}", "text": f"Objective {n}"} for n in range(1, 6)],
        "moves": [
            {"id": 1, "title": "Warning", "t": 0, "world": format_time(START)},
            {"id": 2, "title": "Aftermath", "t": MOVE2, "world": format_time(JUMP)},
        ],
        "injects": INJECTS,
        "end": END,
        "world_speed": str(RATE),
    }


@dataclass
class Letter:
    label: str
    sealed: SealedLetter
    sender: PartyKeys
    recipient: PartyKeys
    receipts: list[Receipt] = field(default_factory=list)


class Tabletop:
    """Writes an event log the way the runner does, with real seals and courier receipts."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.courier = Ed25519PrivateKey.generate()
        self.parties = {name: PartyKeys.generate(name) for name in (A, B, C)}
        self.letters: dict[str, Letter] = {}

    def write(
        self, kind: str, t: int, data: dict[str, Any], evidence: dict[str, Any] | None = None
    ) -> None:
        self.log.write(kind, stamp(t), data, evidence)

    def start(self) -> None:
        keys = {
            name: {
                "signing_key": b64(party.public().signing_key),
                "encryption_key": b64(party.public().encryption_key),
            }
            for name, party in self.parties.items()
        }
        evidence = {
            "courier_url": "http://127.0.0.1:8421",
            "courier_key": b64(raw_public(self.courier)),
            "party_keys": keys,
        }
        self.write("run_started", 0, run_started_data(), evidence)

    def send(
        self,
        label: str,
        sender: str,
        recipient: str,
        t: int,
        *,
        subject: str | None = None,
        in_reply_to: str | None = None,
        forwards: str | None = None,
    ) -> None:
        original = self.letters[in_reply_to].sealed.envelope.id if in_reply_to else None
        sealed = seal_letter(
            self.parties[sender],
            self.parties[recipient].public(),
            letter_id=new_letter_id(),
            subject=subject or "",
            body="A letter.",
            sent_at=world_at(t),
            expires_at=world_at(t) + timedelta(days=30),
            in_reply_to=original,
        )
        letter = Letter(label, sealed, self.parties[sender], self.parties[recipient])
        self.letters[label] = letter
        accepted = self._sign(letter, State.ACCEPTED, t)
        data = {
            "letter": label,
            "from": sender,
            "to": recipient,
            "precedence": "routine",
            "in_reply_to": in_reply_to,
            "subject": subject,
            "by": "human" if subject is None else "bot",
            "size": sealed.envelope.ciphertext_size,
        } | ({"forwards": forwards} if forwards else {})
        evidence = {
            "letter_id": sealed.envelope.id,
            "envelope": sealed.envelope.model_dump(mode="json", exclude_none=True),
            "seal": b64(sealed.seal),
            "receipt": accepted.model_dump(mode="json", exclude_none=True),
        }
        self.write("letter_sent", t, data, evidence)

    def receipt(self, label: str, event: State, t: int, reason: str | None = None) -> None:
        letter = self.letters[label]
        receipt = self._sign(letter, event, t, reason)
        by = {State.WITHDRAWN: letter.sender.name, State.EXPIRED: "courier"}.get(
            event, letter.recipient.name
        )
        data = {"letter": label, "event": event.value, "by": by, "seq": receipt.seq}
        evidence = {
            "letter_id": letter.sealed.envelope.id,
            "receipt": receipt.model_dump(mode="json", exclude_none=True),
        }
        self.write("receipt", t, data | {"reason": reason}, evidence)

    def _sign(self, letter: Letter, event: State, t: int, reason: str | None = None) -> Receipt:
        envelope = letter.sealed.envelope
        recipient_signature = None
        if event in SIGNED_BY_RECIPIENT:
            decision = decision_for(event, envelope, reason)
            recipient_signature = sign_decision(letter.recipient, decision)
        receipt = sign_receipt(
            self.courier,
            letter_id=envelope.id,
            seq=len(letter.receipts),
            event=event,
            at=world_at(t),
            envelope_sha256=envelope.digest(),
            prev=letter.receipts[-1].chain_hash() if letter.receipts else "0" * 64,
            reason=reason,
            recipient_signature=recipient_signature,
        )
        letter.receipts.append(receipt)
        return receipt

    def status(self, label: str) -> dict[str, Any]:
        letter = self.letters[label]
        status = LetterStatus(
            id=letter.sealed.envelope.id,
            state=letter.receipts[-1].event,
            envelope=letter.sealed.envelope,
            seal=letter.sealed.seal,
            receipts=letter.receipts,
            keys=ChainKeys(
                courier=raw_public(self.courier),
                sender=letter.sender.public().signing_key,
                recipient=letter.recipient.public().signing_key,
            ),
        )
        return status.model_dump(mode="json", exclude_none=True)

    def finish(self, t: int, final: Final, ended: dict[str, Any] | None = None) -> None:
        for label in self.letters:
            status = final(label, self.status(label))
            if status is not None:
                data = {
                    "letter": label,
                    "state": status["state"],
                    "receipts": len(status["receipts"]),
                }
                self.write("letter_final", t, data, {"status": status})
        data = ended or {"reason": "end", "injects_fired": 4, "injects_total": 4, "letters": 8}
        self.write("run_ended", t, data, {"head": self.log.head})


def as_is(label: str, status: dict[str, Any]) -> dict[str, Any]:
    return status


def play(path: Path, final: Final = as_is) -> Tabletop:
    """The known exercise: eight letters over two moves; every number below follows from it."""
    with EventLog(path) as log:
        table = Tabletop(log)
        table.start()
        table.write("move_started", 0, {"id": 1, "title": "Warning"})
        _move_one(table)
        table.write("move_started", MOVE2, {"id": 2, "title": "Aftermath"})
        _move_two(table)
        table.finish(END, final)
    return table


def tasked(table: Tabletop, inject_id: str, t: int, party: str, to: list[str]) -> None:
    data = {"inject": inject_id, "party": party, "to": to, "subject": f"Inject {inject_id}"}
    table.write("inject_tasked", t, data | {"action": "Write the letter"})


def met(
    table: Tabletop, exp_id: str, t: int, check: str, letter: str, pair: tuple[str, str]
) -> None:
    data = {"expectation": exp_id, "check": check, "from": pair[0], "to": pair[1], "score": 1}
    evidence = {"letter_id": table.letters[letter].sealed.envelope.id}
    table.write("expectation_met", t, data | {"letter": letter}, evidence)


def missed(table: Tabletop, exp_id: str, t: int, check: str, pair: tuple[str, str]) -> None:
    data = {"expectation": exp_id, "check": check, "from": pair[0], "to": pair[1], "score": 1}
    table.write("expectation_missed", t, data)


def _move_one(table: Tabletop) -> None:
    tasked(table, "INJ-01", 30_000, A, [B])
    table.send("L1", A, B, 60_000)
    met(table, "E1", 60_000, "sent", "L1", (A, B))
    table.receipt("L1", State.DELIVERED, 90_000)  # 30 s exercise = 30 min of courier latency
    table.receipt("L1", State.RETURNED_UNOPENED, 120_000, "not accepted")
    tasked(table, "INJ-02", 150_000, A, [C])
    table.send("L2", A, C, 180_000)
    table.receipt("L2", State.DELIVERED, 180_000)
    table.receipt("L2", State.OPENED, 240_000)  # C opens after 1 h of world time
    met(table, "E2a", 240_000, "opened", "L2", (A, C))
    table.send("L3", C, A, 300_000, subject="Re: channel", in_reply_to="L2")  # replies 1 h later
    table.receipt("L3", State.DELIVERED, 300_000)
    table.receipt("L3", State.OPENED, 330_000)  # A opens after 30 min
    table.send("L4", C, B, 360_000, subject=EVIL_SUBJECT)
    table.receipt("L4", State.DELIVERED, 360_000)
    table.receipt("L4", State.OPENED, 480_000)  # B opens after 2 h, never answers
    table.write("control", 500_000, {"command": "pause"})
    table.write("control", 500_000, {"command": "resume"})
    missed(table, "E2b", 540_000, "opened", (A, B))


def _move_two(table: Tabletop) -> None:
    news = {"inject": "INJ-03", "channel": "news", "to": [], "subject": "Strikes reported"}
    table.write("inject_fired", 630_000, news | {"cause": "scheduled", "text": "Wire item"})
    table.send("L5", B, A, 660_000, subject="Warning received")
    met(table, "E3a", 660_000, "sent", "L5", (B, A))
    table.receipt("L5", State.DELIVERED, 660_000)  # A never decides on it
    tasked(table, "INJ-04", 700_000, A, [B])
    table.send("L6", A, B, 720_000)
    table.receipt("L6", State.DELIVERED, 720_000)
    table.receipt("L6", State.RETURNED_UNOPENED, 750_000)
    table.send("L7", C, B, 780_000, subject="Second thoughts")
    table.receipt("L7", State.WITHDRAWN, 800_000)
    table.send("L8", C, A, 840_000, subject="Proposal")
    table.receipt("L8", State.DELIVERED, 840_000)
    table.receipt("L8", State.OPENED, 900_000)  # A opens after 1 h
    missed(table, "E3b", 950_000, "replied", (B, A))
    missed(table, "E4a", 950_000, "opened", (A, B))


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AfterAction]:
    path = tmp_path_factory.mktemp("run") / "events.jsonl"
    play(path)
    return path, analyse(read_log(path))


@pytest.fixture(scope="module")
def aar(known: tuple[Path, AfterAction]) -> AfterAction:
    return known[1]


def tampered(tmp_path: Path, final: Final) -> AfterAction:
    path = tmp_path / "events.jsonl"
    play(path, final)
    return analyse(read_log(path))


# --- overview and timeline -------------------------------------------------------------------


def test_overview_reads_the_run_started_record(aar: AfterAction) -> None:
    """Title, marking, seed, speed, parties and the clocks come from run_started and the ends."""
    o = aar.overview
    assert (o.title, o.revision) == ("Letter to the general", "3")
    assert o.marking == "EXERCISE EXERCISE EXERCISE"
    assert (o.seed, o.speed, o.rehearse, o.transcript) == ("7", "max", False, "metadata_only")
    assert [(p.name, p.label, p.play) for p in o.parties] == [
        (A, "CIA Director", "human"),
        (B, "Quds Force", "bot:hardliner"),
        (C, "Swiss Embassy", "bot:intermediary"),
    ]
    assert (o.world_start, o.world_end) == ("2017-11-20T09:00:00.000Z", "2017-11-23T15:00:00.000Z")
    assert (o.duration_ms, o.end_ms, o.end_reason) == (END, END, "end")
    assert [m.title for m in o.moves] == ["Warning", "Aftermath"]


def test_artificialities_say_how_the_exercise_differs_from_the_world(aar: AfterAction) -> None:
    """Bots, speed, the world clock's rate, courier latency, move jumps and control are named."""
    assert aar.overview.artificialities == [
        "2 of 3 seats played by bots (policies: hardliner, intermediary)",
        "run at speed max: exercise time compressed (waits skipped)",
        "world clock runs 60× exercise time",
        "courier latency simulated: letters took up to 30m (world time) to be delivered",
        "moves jump world time (move 2 starts at 2017-11-23T09:00:00.000Z)",
        "T+00:08:20: the control cell paused the exercise",
        "T+00:08:20: the control cell resumed the exercise after 0s of wall time",
    ]


def test_timeline_lists_what_happened_in_order(aar: AfterAction) -> None:
    """Moves, injects, letters, receipts, expectations and control commands, one line each."""
    kinds = Counter(entry.kind for entry in aar.timeline)
    assert kinds["letter_sent"] == 8
    assert kinds["receipt"] == 14
    assert kinds["control"] == 2
    assert kinds["letter_final"] == 0  # integrity evidence, not a story step
    ts = [entry.t for entry in aar.timeline]
    assert ts == sorted(ts)
    texts = [entry.text for entry in aar.timeline]
    assert 'L1 returned unopened by Quds Force (receipt 2): "not accepted"' in texts
    assert "L3 Swiss Embassy → CIA Director (routine, by bot): Re: channel, in reply to L2" in texts
    assert "Expectation E2b missed: opened CIA Director → Quds Force" in texts
    assert [e.id for e in aar.injects] == ["INJ-01", "INJ-02", "INJ-03", "INJ-04"]


# --- objectives ------------------------------------------------------------------------------


def test_ratings_follow_the_score_weighted_share_met(aar: AfterAction) -> None:
    """P, S, M, U and not assessed, each from a known mix of met, missed and pending."""
    ratings = {o.id: (o.rating, o.met_weight, o.total_weight) for o in aar.objectives}
    assert ratings == {
        "OBJ-1": ("P", 1, 1),
        "OBJ-2": ("S", 2, 3),
        "OBJ-3": ("M", 1, 3),
        "OBJ-4": ("U", 0, 4),
        "OBJ-5": ("not assessed", 0, 0),
    }
    assert "2/3 → S" in aar.rating_rule


def test_expectations_inherit_their_injects_objectives_and_carry_evidence(aar: AfterAction) -> None:
    """An expectation counts for its inject's objectives too; met ones name letter and receipt."""
    by_id = {e.id: e for o in aar.objectives for e in o.expectations}
    assert by_id["E2a"].objectives == ["OBJ-2"]  # from INJ-02, none of its own
    assert by_id["E3a"].objectives == ["OBJ-3"]  # its own, INJ-03 has none
    outcomes = {e: x.outcome for e, x in by_id.items()}
    assert outcomes == {
        "E1": "met",
        "E5": "not fired",
        "E2a": "met",
        "E2b": "missed",
        "E3a": "met",
        "E3b": "missed",
        "E4a": "missed",
        "E4b": "pending",
    }
    evidence = by_id["E2a"].evidence[0]
    assert (evidence.letter, evidence.event, evidence.seq) == ("L2", "opened", 2)
    assert evidence.letter_id == next(
        c.letter_id for c in aar.integrity.letters if c.letter == "L2"
    )
    first = by_id["E1"].evidence[0]
    assert (first.letter, first.event, first.seq) == ("L1", "accepted", 0)
    assert by_id["E2b"].evidence == []


def test_improvement_plan_has_a_row_per_objective_not_performed(aar: AfterAction) -> None:
    """One row per S, M or U objective, the evaluator's columns left blank; placeholders hint."""
    plan = aar.improvement_plan
    assert [(row.objective, row.rating) for row in plan] == [
        ("OBJ-2: Objective 2", "S"),
        ("OBJ-3: Objective 3", "M"),
        ("OBJ-4: Objective 4", "U"),
    ]
    assert all(row.point_of_contact == row.corrective_action == row.end == "" for row in plan)
    assert all(o.strengths == [] and o.strengths_hint for o in aar.objectives)


# --- communications --------------------------------------------------------------------------


def test_matrix_counts_letters_by_sender_and_recipient(aar: AfterAction) -> None:
    """Who wrote to whom: two letters A→B, one A→C, one B→A, two C→A, two C→B."""
    assert aar.comms.matrix == {
        A: {A: 0, B: 2, C: 1},
        B: {A: 1, B: 0, C: 0},
        C: {A: 2, B: 2, C: 0},
    }


def test_first_contact_per_ordered_pair(aar: AfterAction) -> None:
    """The first letter of each pair, with its exercise and world time, in contact order."""
    firsts = [(f.sender, f.recipient, f.letter, f.t, f.world) for f in aar.comms.first_contact]
    assert firsts == [
        (A, B, "L1", 60_000, "2017-11-20T10:00:00.000Z"),
        (A, C, "L2", 180_000, "2017-11-20T12:00:00.000Z"),
        (C, A, "L3", 300_000, "2017-11-20T14:00:00.000Z"),
        (C, B, "L4", 360_000, "2017-11-20T15:00:00.000Z"),
        (B, A, "L5", 660_000, "2017-11-23T10:00:00.000Z"),
    ]


def test_per_party_totals(aar: AfterAction) -> None:
    """Sent, received, opened, returned, times to open and reply, unanswered and undecided."""
    a, b, c = aar.comms.totals
    assert (a.sent, a.received, a.opened, a.returned_unopened) == (3, 3, 2, 0)
    assert a.time_to_open.seconds == [1800.0, 3600.0]
    assert (a.time_to_open.median, a.time_to_open.max) == (2700.0, 3600.0)
    assert (a.relayed, a.unanswered, a.undecided) == ([], ["L3", "L8"], ["L5"])
    assert (b.sent, b.received, b.opened, b.returned_unopened) == (1, 4, 1, 2)
    assert b.time_to_open.seconds == [7200.0]
    assert (b.unanswered, b.undecided) == (["L4"], [])  # L7 was withdrawn, not left undecided
    assert (c.sent, c.received, c.opened, c.time_to_open.seconds) == (4, 1, 1, [3600.0])
    assert c.time_to_reply.seconds == [3600.0]  # L2 opened 13:00, reply L3 sent 14:00
    assert a.time_to_reply.median is None
    assert c.unanswered == []


def test_per_move_split(aar: AfterAction) -> None:
    """Each letter counts in the move it was sent in; the moves add up to the totals."""
    one, two = aar.comms.per_move
    assert (one.move, one.title, two.move) == (1, "Warning", 2)
    assert one.matrix[A] == {A: 0, B: 1, C: 1}
    assert two.matrix[C] == {A: 1, B: 1, C: 0}
    a1, b1, c1 = one.parties
    a2, b2, c2 = two.parties
    assert (a1.sent, a1.received, a1.time_to_open.seconds, a1.unanswered) == (
        2,
        1,
        [1800.0],
        ["L3"],
    )
    assert (a2.sent, a2.received, a2.time_to_open.seconds, a2.undecided) == (1, 2, [3600.0], ["L5"])
    assert (b1.returned_unopened, b2.returned_unopened) == (1, 1)
    assert (c1.time_to_reply.seconds, c2.time_to_reply.seconds) == ([3600.0], [])
    for total, first, second in zip(aar.comms.totals, one.parties, two.parties, strict=True):
        assert total.sent == first.sent + second.sent
        assert total.received == first.received + second.received


# --- integrity -------------------------------------------------------------------------------


def test_every_good_letter_verifies(known: tuple[Path, AfterAction]) -> None:
    """Seals and receipt chains verify with run_started's keys; the chain head is the log's."""
    path, aar = known
    records = read_log(path)
    integrity = aar.integrity
    assert (integrity.verified, integrity.failed, integrity.missing_final) == (8, 0, [])
    assert integrity.ok
    assert integrity.chain_head == records[-1]["hash"]
    assert integrity.records == len(records)
    assert integrity.scenario_digest == "ab" * 32
    assert all(check.ok for check in integrity.letters)
    assert integrity.letters[0].reason == "seal and 3 receipts verify"


def test_a_tampered_receipt_fails(tmp_path: Path) -> None:
    """Changing a signed receipt in a final status breaks the courier's signature."""

    def final(label: str, status: dict[str, Any]) -> dict[str, Any]:
        if label == "L2":
            status["receipts"][2]["at"] = "2017-11-20T13:30:00.000Z"
        return status

    aar = tampered(tmp_path, final)
    failed = [check for check in aar.integrity.letters if not check.ok]
    assert [check.letter for check in failed] == ["L2"]
    assert "courier's signature does not verify" in failed[0].reason
    assert (aar.integrity.verified, aar.integrity.failed) == (7, 1)
    page = Elements(render_html(aar))
    failures = [tag for tag, attrs in page.tags if attrs.get("class") == "failed"]
    assert failures == ["p", "tr"]  # the summary line and L2's row


def resign(status: dict[str, Any], courier: Ed25519PrivateKey) -> dict[str, Any]:
    """The same chain, signed by another courier key that the status itself then names."""
    chain: list[Receipt] = []
    for raw in status["receipts"]:
        old = Receipt.model_validate(raw)
        chain.append(
            sign_receipt(
                courier,
                letter_id=old.letter_id,
                seq=old.seq,
                event=old.event,
                at=datetime.strptime(old.at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
                envelope_sha256=old.envelope_sha256,
                prev=chain[-1].chain_hash() if chain else "0" * 64,
                reason=old.reason,
                recipient_signature=old.recipient_signature,
            )
        )
    status["receipts"] = [r.model_dump(mode="json", exclude_none=True) for r in chain]
    status["keys"]["courier"] = b64(raw_public(courier))
    return status


def test_a_status_signed_by_another_courier_fails(tmp_path: Path) -> None:
    """A self-consistent chain under a key run_started never announced does not verify."""
    rogue = Ed25519PrivateKey.generate()
    aar = tampered(tmp_path, lambda label, s: resign(s, rogue) if label == "L3" else s)
    check = next(check for check in aar.integrity.letters if check.letter == "L3")
    assert not check.ok
    assert "courier's signature does not verify" in check.reason
    assert aar.integrity.failed == 1


def test_a_shortened_chain_contradicts_the_logged_receipts(tmp_path: Path) -> None:
    """A final chain missing a receipt the run logged fails, although the prefix verifies."""

    def final(label: str, status: dict[str, Any]) -> dict[str, Any]:
        if label == "L6":
            status["receipts"] = status["receipts"][:2]
            status["state"] = "delivered"
        return status

    check = next(c for c in tampered(tmp_path, final).integrity.letters if c.letter == "L6")
    assert not check.ok
    assert check.reason == "receipt 2 logged during the run is not in the final chain"


def test_a_letter_without_a_final_status_is_flagged(tmp_path: Path) -> None:
    """A letter the log sent but never finalised is listed, and integrity is not ok."""
    aar = tampered(tmp_path, lambda label, s: None if label == "L7" else s)
    assert aar.integrity.missing_final == ["L7"]
    assert aar.integrity.failed == 0
    assert not aar.integrity.ok


def test_an_unfinished_run_still_gets_a_report(tmp_path: Path) -> None:
    """A run that stopped mid-way: no run_ended, no final statuses, yet every part renders."""
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        table = Tabletop(log)
        table.start()
        table.send("L1", A, B, 60_000)
        table.receipt("L1", State.DELIVERED, 90_000)
    aar = analyse(read_log(path))
    assert aar.overview.end_reason is None
    assert aar.integrity.missing_final == ["L1"]
    assert {e.outcome for o in aar.objectives for e in o.expectations} == {"not fired"}
    assert "no run_ended record" in render_markdown(aar)
    assert len(Elements(render_html(aar)).with_class("letter")) == 1


def test_a_log_must_start_with_run_started() -> None:
    """Records that do not open with run_started are not an exercise log."""
    with pytest.raises(LogError):
        analyse([{"kind": "move_started", "data": {}}])


# --- rendering -------------------------------------------------------------------------------


class Elements(HTMLParser):
    """Every start tag's attributes, for counting elements by class and id."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {key: value or "" for key, value in attrs}))

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [attrs for _, attrs in self.tags if name in attrs.get("class", "").split()]

    def ids(self) -> set[str]:
        return {attrs["id"] for _, attrs in self.tags if "id" in attrs}


def assert_report_structure(page: Elements) -> None:
    assert [lane["data-party"] for lane in page.with_class("lane")] == [A, B, C]
    assert [a["data-letter"] for a in page.with_class("letter")] == [f"L{n}" for n in range(1, 9)]
    marks = Counter(m["data-letter"] + " " + m["class"] for m in page.with_class("receipt"))
    assert marks["L1 receipt receipt-returned_unopened"] == 1
    kinds = Counter(m["class"] for m in page.with_class("receipt"))
    assert kinds == {
        "receipt receipt-delivered": 7,
        "receipt receipt-opened": 4,
        "receipt receipt-returned_unopened": 2,
        "receipt receipt-withdrawn": 1,
    }
    legend = {a["class"] for _, a in page.tags if a.get("class", "").startswith("receipt-")}
    assert legend == {f"receipt-{e}" for e in ("delivered", "opened", "returned_unopened")} | {
        "receipt-withdrawn",
        "receipt-expired",
    }
    assert len(page.with_class("move-band")) == 2
    assert [m["data-inject"] for m in page.with_class("inject-mark")] == [
        "INJ-01",
        "INJ-02",
        "INJ-03",
        "INJ-04",
    ]
    assert len(page.with_class("bar")) == 8  # 2-minute slices; L6 and L7 share one, stacked
    assert len(page.with_class("bar-median")) == 3  # every party opened something
    wanted = {"swimlanes", "chart-letters", "chart-open", "integrity", "objectives"}
    assert wanted | {"comms-matrix", "improvement-plan"} <= page.ids()


def test_html_has_the_swim_lanes_charts_and_sections(aar: AfterAction) -> None:
    """One lane per party, an arrow per letter, a mark per receipt, moves, injects, charts."""
    page = Elements(render_html(aar))
    assert_report_structure(page)
    ratings = [a["data-rating"] for a in page.with_class("objective")]
    assert ratings == ["P", "S", "M", "U", "not assessed"]


def test_html_escapes_text_from_the_log(aar: AfterAction) -> None:
    """A subject or summary carrying markup is shown as text, never run."""
    text = render_html(aar)
    assert "<script" not in text
    assert "<img" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text


def test_html_fetches_nothing(aar: AfterAction) -> None:
    """No src or href points anywhere outside the page, and no @import or url() to a server."""
    text = render_html(aar)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.IGNORECASE)
    assert "@import" not in text
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", text)
    assert text.count("EXERCISE EXERCISE EXERCISE</div>") == 2  # marking banner, top and bottom


def test_markdown_has_the_tables(aar: AfterAction) -> None:
    """Pipe tables for the matrix, per-party figures, integrity and the improvement plan."""
    text = render_markdown(aar)
    assert "| from \\\\ to | CIA Director | Quds Force | Swiss Embassy |" in text
    assert "| Swiss Embassy | 2 | 2 | 0 |" in text
    assert "| CIA Director | 3 | 3 | 2 | 0 | 45m | 1h | — | — | — | L3, L8 | L5 |" in text
    assert (
        "| core capability | objective (rating) | issue / area for improvement | corrective action "
        "| organisation | point of contact | start | end |"
    ) in text
    assert "|  | OBJ-3: Objective 3 (M) |  |  |  |  |  |  |" in text
    assert "&lt;script>alert('x')&lt;/script> & co" in text
    assert text.startswith("**EXERCISE EXERCISE EXERCISE**")


def test_json_round_trips(aar: AfterAction) -> None:
    """The JSON report reads back into the same AfterAction."""
    assert AfterAction.model_validate_json(render_json(aar)) == aar


def test_write_reports_writes_each_format(known: tuple[Path, AfterAction], tmp_path: Path) -> None:
    """report.html, report.md and report.json from the log file (PDF only when asked); an unknown
    format is refused."""
    path, _ = known
    written = write_reports(path, tmp_path / "out")
    assert {name: p.name for name, p in written.items()} == {
        "html": "report.html",
        "md": "report.md",
        "json": "report.json",
    }
    assert all(p.stat().st_size > 1000 for p in written.values())
    with pytest.raises(ValueError, match="docx"):
        write_reports(path, tmp_path / "out", ["docx"])


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary is not None
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_a_browser_renders_the_page(known: tuple[Path, AfterAction], tmp_path: Path) -> None:
    """Headless Chromium builds the same swim lanes, charts and sections, and draws a screenshot."""
    page = write_reports(known[0], tmp_path / "out", ["html"])["html"]
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
    assert_report_structure(Elements(dom))
    shot = tmp_path / "shot.png"
    chromium(
        f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri(), profile=tmp_path / "p2"
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000
