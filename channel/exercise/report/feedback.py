"""Participant feedback: each seat's hot-wash answers, kept in the run folder.

`channel exercise feedback RUN --seat PARTY` asks the hot-wash questions (or takes the answers as
flags) and writes `feedback/<seat>.json`; answering again replaces that seat's answers. The
after-action report summarises every seat's answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from channel.protocol.errors import ChannelError

FEEDBACK_DIR = "feedback"

# The hot-wash questions, in the order they are asked: (field, question).
QUESTIONS = (
    ("strengths", "What went well?"),
    ("improvements", "What should be improved, and how?"),
    ("actions", "What will you or your organisation do differently after this exercise?"),
    ("comments", "Anything else?"),
)
RATING_QUESTION = "How well did the exercise meet its objectives (1 not at all, 5 fully)?"


class FeedbackError(ChannelError):
    """Feedback that cannot be recorded or read."""

    code = "invalid-feedback"
    exit_code = 2


class Feedback(BaseModel):
    """One seat's hot-wash answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seat: str
    respondent: str = ""
    rating: Annotated[int, Field(ge=1, le=5)] | None = None
    strengths: str = ""
    improvements: str = ""
    actions: str = ""
    comments: str = ""
    at: str = ""  # wall time the answers were given


def save_feedback(run_dir: Path, feedback: Feedback) -> Path:
    folder = run_dir / FEEDBACK_DIR
    folder.mkdir(exist_ok=True)
    path = folder / f"{feedback.seat}.json"
    path.write_text(feedback.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def read_feedback(run_dir: Path) -> list[Feedback]:
    """Every seat's answers, by seat name."""
    found = []
    for path in sorted((run_dir / FEEDBACK_DIR).glob("*.json")):
        try:
            found.append(Feedback.model_validate(json.loads(path.read_text(encoding="utf-8"))))
        except (ValueError, ValidationError) as exc:
            raise FeedbackError(f"{path}: not a feedback file ({exc.__class__.__name__})") from None
    return found
