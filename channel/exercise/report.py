"""The after-action report, rendered: JSON, Markdown, and (via `channel.exercise.report_html`)
one self-contained HTML page; `write_reports` writes them from an event log.

The tables (`channel.exercise.tables`) are drawn by both the Markdown and the HTML renderer, so
the two always say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from channel.exercise.analysis import AfterAction, analyse
from channel.exercise.eventlog import read_log
from channel.exercise.report_html import render_html
from channel.exercise.tables import (
    NO_EXPECTATIONS,
    Table,
    expectations_table,
    first_contact_table,
    integrity_facts,
    integrity_summary,
    integrity_table,
    letters_table,
    matrix_table,
    moves_comms_table,
    moves_table,
    objectives_table,
    overview_table,
    parties_comms_table,
    parties_table,
    plan_table,
    timeline_table,
)

FORMATS = ("html", "md", "json")
FILENAMES = {"html": "report.html", "md": "report.md", "json": "report.json"}


def write_reports(
    log_path: Path, out_dir: Path, formats: Iterable[str] = FORMATS
) -> dict[str, Path]:
    """Read and analyse a log, write report.<format> for each format; returns the paths."""
    chosen = tuple(dict.fromkeys(formats))
    unknown = [name for name in chosen if name not in FILENAMES]
    if unknown:
        raise ValueError(f"unknown report format {unknown[0]!r} (choose from {', '.join(FORMATS)})")
    aar = analyse(read_log(log_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in chosen:
        path = out_dir / FILENAMES[name]
        path.write_text(_RENDERERS[name](aar), encoding="utf-8")
        written[name] = path
    return written


def render_json(aar: AfterAction) -> str:
    return aar.model_dump_json(indent=2) + "\n"


# --- Markdown ------------------------------------------------------------------------------------


def _md(text: str) -> str:
    """A table cell or inline text: pipes and line breaks would split the table, < makes HTML."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def md_table(table: Table, empty: str = "(none)") -> str:
    headers, rows = table
    lines = [
        "| " + " | ".join(_md(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
        *("| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows),
    ]
    return "\n".join(lines) if rows else f"_{_md(empty)}_"


def _md_list(items: Iterable[str], empty: str) -> str:
    lines = [f"- {_md(item)}" for item in items]
    return "\n".join(lines) if lines else f"- _{_md(empty)}_"


def render_markdown(aar: AfterAction) -> str:
    """The report as Markdown with pipe tables (GitHub-flavoured)."""
    marking = f"**{_md(aar.overview.marking)}**" if aar.overview.marking else ""
    parts = [
        marking,
        f"# After-action report: {_md(aar.overview.title)}",
        *_md_overview(aar),
        *_md_objectives(aar),
        *_md_comms(aar),
        "## Timeline",
        md_table(timeline_table(aar)),
        "## Integrity",
        _md(integrity_summary(aar)),
        md_table(integrity_facts(aar)),
        md_table(integrity_table(aar)),
        "## Improvement plan",
        md_table(plan_table(aar)),
        marking,
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def _md_overview(aar: AfterAction) -> list[str]:
    return [
        "## Overview",
        _md(aar.overview.summary),
        md_table(overview_table(aar)),
        "### Parties",
        md_table(parties_table(aar)),
        "### Moves",
        md_table(moves_table(aar)),
        "### Objectives",
        _md_list((f"{o.id}: {o.text}" for o in aar.overview.objectives), "none"),
        "### Artificialities",
        _md_list(aar.overview.artificialities, "none noted"),
    ]


def _md_objectives(aar: AfterAction) -> list[str]:
    parts = ["## Objectives and ratings", _md(aar.rating_rule), md_table(objectives_table(aar))]
    for objective in aar.objectives:
        parts += [
            f"### {_md(objective.id)}: {_md(objective.text)} (suggested rating: "
            f"{objective.rating})",
            md_table(expectations_table(aar, objective), NO_EXPECTATIONS),
            "**Strengths**",
            _md_list(objective.strengths, objective.strengths_hint),
            "**Areas for improvement**",
            _md_list(objective.areas_for_improvement, objective.areas_hint),
        ]
    return parts


def _md_comms(aar: AfterAction) -> list[str]:
    parts = [
        "## Communications",
        _md_list(aar.comms.rules, ""),
        "### Who wrote to whom (letters, sender × recipient)",
        md_table(matrix_table(aar, aar.comms.matrix)),
        "### First contact",
        md_table(first_contact_table(aar)),
        "### Per party (times are world time)",
        md_table(parties_comms_table(aar)),
        "### Per move",
        md_table(moves_comms_table(aar)),
    ]
    for move in aar.comms.per_move:
        parts += [
            f"#### Move {move.move}: {_md(move.title)}: who wrote to whom",
            md_table(matrix_table(aar, move.matrix)),
        ]
    return [*parts, "### Letters", md_table(letters_table(aar))]


_RENDERERS: dict[str, Callable[[AfterAction], str]] = {
    "html": render_html,
    "md": render_markdown,
    "json": render_json,
}
