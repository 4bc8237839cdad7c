"""Exercise notices (control's letters to the seats) and the run's files in a keyring home."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from channel.party.exercise import ExerciseSeats, resolve_letter, save_labels
from channel.protocol.canonical import format_time
from channel.protocol.errors import UnknownLetter
from channel.protocol.models import LetterContent
from channel.protocol.notice import CONTROL_PARTY, Deadline, Notice, NoticeKind

WORLD = datetime(2017, 12, 22, 9, 0, tzinfo=UTC)
TASKING = Notice(
    kind=NoticeKind.TASKING,
    run="hotline-20261205-101500",
    world=WORLD,
    offset=300.0,
    rate=60.0,
    marking="EXERCISE EXERCISE EXERCISE",
    inject="INJ-02",
    deadlines=(Deadline(expectation="EXP-01", due=WORLD.replace(hour=12), text="Warn the Swiss."),),
    title="For transmission to the Ministry",
    text="Ask the Swiss to pass a warning.\n\nSecond paragraph: Deadline: not a header.",
)


def _letter(sender: str, body: str) -> LetterContent:
    return LetterContent(
        letter_id="01j00000000000000000000000",
        sender=sender,
        recipient="us.state.opscenter",
        sent_at=format_time(WORLD),
        subject="x",
        body=body,
    )


def test_a_notice_round_trips_through_its_body() -> None:
    """What `body()` writes, `parse` reads back field for field, text untouched."""
    assert Notice.parse(TASKING.body()) == TASKING
    assert TASKING.subject() == (
        "EXERCISE EXERCISE EXERCISE — Tasking INJ-02: For transmission to the Ministry"
    )


def test_only_the_control_party_sends_notices() -> None:
    """The same body from any other party is an ordinary letter."""
    assert Notice.from_letter(_letter(CONTROL_PARTY, TASKING.body())) == TASKING
    assert Notice.from_letter(_letter("ir.mfa.tehran", TASKING.body())) is None


@pytest.mark.parametrize(
    "body",
    [
        "plain letter text",
        TASKING.body().replace("Backchannel-Notice: 1", "Backchannel-Notice: 2"),
        TASKING.body().replace("Kind: tasking", "Kind: gossip"),
        TASKING.body().replace("Run: ", "Colour: red\nRun: "),
        TASKING.body().replace("World-Time: ", "World-Time: yesterday "),
    ],
)
def test_anything_else_is_not_a_notice(body: str) -> None:
    """Unknown versions, kinds, headers and bad values are not misread as notices."""
    assert Notice.parse(body) is None


def test_labels_resolve_in_a_run_keyring(tmp_path: Path) -> None:
    """`L3` (any case) is the letter the runner labelled; ids pass through; unknown labels 404."""
    save_labels(tmp_path, {"L1": "01AAAAAAAAAAAAAAAAAAAAAAAA", "L2": "01BBBBBBBBBBBBBBBBBBBBBBBB"})
    assert resolve_letter(tmp_path, "l2") == "01BBBBBBBBBBBBBBBBBBBBBBBB"
    assert resolve_letter(tmp_path, "01CCCCCCCCCCCCCCCCCCCCCCCC") == "01CCCCCCCCCCCCCCCCCCCCCCCC"
    with pytest.raises(UnknownLetter, match="L1–L2"):
        resolve_letter(tmp_path, "L9")


def test_a_run_keyring_says_which_run_it_is(tmp_path: Path) -> None:
    """The seats file round-trips; a home without one is not an exercise."""
    assert ExerciseSeats.load(tmp_path) is None
    seats = ExerciseSeats(run="r1", marking="EXERCISE", people=("us.state.opscenter",))
    seats.save(tmp_path)
    assert ExerciseSeats.load(tmp_path) == seats


def test_the_protocol_documents_a_notice_that_parses() -> None:
    """docs/protocol.md section 10's example body is a tasking this module reads."""
    doc = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = doc[doc.index("## 10. Exercise notices") :]
    example = section.split("Example body:\n\n```\n", 1)[1].split("```", 1)[0]
    notice = Notice.parse(example.rstrip("\n"))
    assert notice is not None
    assert (notice.kind, notice.inject, notice.rate) == (NoticeKind.TASKING, "INJ-02", 60.0)
    assert notice.deadlines[0].expectation == "EXP-01"
    assert Notice.parse(notice.body()) == notice
