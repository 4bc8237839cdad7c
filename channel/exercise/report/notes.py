"""The evaluators' notes: a YAML file in the run folder that the after-action report re-reads.

`channel exercise notes RUN` writes `notes.yaml` as a template: one block per objective, with its
text and suggested rating in a comment, to fill in with the HSEEP parts of an analysis: the core
capability the objective exercises, strengths, and areas for improvement (each an observation,
its analysis or root cause, a recommendation, and the improvement-plan columns: corrective action,
organisation, point of contact, start and end dates). Blank entries are ignored, so an untouched
template changes nothing. `channel exercise report` merges what is filled in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from channel.protocol.errors import ChannelError

NOTES_FILE = "notes.yaml"


class NotesError(ChannelError):
    """The notes file cannot be read: where, and what is wrong."""

    code = "invalid-notes"
    exit_code = 2


def _text(value: Any) -> Any:
    return "" if value is None else value


def _when(value: Any) -> Any:
    if value is None or value == "":
        return ""
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise ValueError(f"{value!r} is not a date: write YYYY-MM-DD") from None


Text = Annotated[str, BeforeValidator(_text)]
Day = Annotated[str, BeforeValidator(_when)]


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Area(Note):
    """An area for improvement, and the improvement-plan row it becomes."""

    observation: Text = ""
    analysis: Text = Field(default="", description="Why it happened: the root cause")
    recommendation: Text = ""
    corrective_action: Text = ""
    organisation: Text = ""
    point_of_contact: Text = ""
    start: Day = ""
    end: Day = ""

    @property
    def blank(self) -> bool:
        return not any(self.model_dump().values())


class ObjectiveNotes(Note):
    rating: Literal["", "P", "S", "M", "U"] = ""
    core_capability: Text = ""
    strengths: list[Text] = Field(default_factory=list)
    areas_for_improvement: list[Area] = Field(default_factory=list)

    def filled(self) -> ObjectiveNotes:
        """Without the template's blank entries."""
        return self.model_copy(
            update={
                "strengths": [s.strip() for s in self.strengths if s and s.strip()],
                "areas_for_improvement": [a for a in self.areas_for_improvement if not a.blank],
            }
        )


class Notes(Note):
    evaluators: list[Text] = Field(default_factory=list)
    summary: Text = Field(default="", description="The evaluators' overall assessment")
    objectives: dict[str, ObjectiveNotes] = Field(default_factory=dict)

    def filled(self) -> Notes:
        return self.model_copy(
            update={
                "evaluators": [e for e in self.evaluators if e.strip()],
                "objectives": {k: v.filled() for k, v in self.objectives.items()},
            }
        )


def read_notes(run_dir: Path) -> Notes | None:
    """The run's notes, blanks dropped; None when there is no notes file."""
    path = run_dir / NOTES_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Notes.model_validate(data).filled()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise NotesError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (misspelt?)"
        raise NotesError(f"{path}: {where}: {message}") from None


def template(title: str, objectives: Sequence[tuple[str, str, str]]) -> str:
    """A notes file to fill in: (objective id, text, suggested rating) for each objective."""
    lines = [
        f"# Evaluator notes for {title}.",
        "# Fill in what you observed, then make the report again: channel exercise report RUN.",
        "# Blank entries are ignored. Ratings (HSEEP): P performed without challenges, S some",
        "# challenges, M major challenges, U unable to be performed; leave rating empty to keep",
        "# the suggested one.",
        "evaluators: []  # your names",
        'summary: ""  # the overall assessment, for the executive summary',
        "objectives:",
    ]
    for objective_id, text, suggested in objectives:
        lines += [
            f"  {yaml.safe_dump(objective_id).splitlines()[0]}:",
            f"    # {' '.join(text.split())} (suggested rating: {suggested})",
            '    rating: ""',
            '    core_capability: ""  # e.g. Operational Coordination',
            "    strengths:",
            '      - ""',
            "    areas_for_improvement:",
            '      - observation: ""',
            '        analysis: ""  # the root cause',
            '        recommendation: ""',
            '        corrective_action: ""',
            '        organisation: ""',
            '        point_of_contact: ""',
            '        start: ""  # YYYY-MM-DD',
            '        end: ""',
        ]
    return "\n".join(lines) + "\n"
