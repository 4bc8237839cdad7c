"""The after-action report / improvement plan (AAR/IP), rendered: JSON, Markdown, one
self-contained HTML page (`channel.exercise.report.html`) and PDF (`channel.exercise.report.pdf`);
`write_reports` writes them from a run's event log, merging the evaluators' notes
(`notes.yaml`) and the participants' feedback (`feedback/`) found beside it.

The layout is HSEEP's: page one an executive summary, then the analysis of each objective and the
participants' feedback, then appendices: the improvement plan, the exercise overview, the MSEL as
planned and as played, the timeline, the letters, and integrity. The tables
(`channel.exercise.report.tables`) are drawn by both the Markdown and the HTML renderer, so the two
always say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from channel.exercise.eventlog import read_records
from channel.exercise.report.analysis import AfterAction, analyse
from channel.exercise.report.feedback import read_feedback
from channel.exercise.report.html import APPENDICES, DWELL_HEADING, TITLE, render_html
from channel.exercise.report.notes import Area, read_notes
from channel.exercise.report.tables import (
    NO_EXPECTATIONS,
    NO_NOTES,
    Table,
    control_table,
    dwell_table,
    expectations_table,
    feedback_summary,
    feedback_table,
    first_contact_table,
    integrity_facts,
    integrity_summary,
    integrity_table,
    key_figures_table,
    letters_table,
    main_areas,
    main_strengths,
    matrix_table,
    moves_comms_table,
    moves_table,
    msel_table,
    notices_summary,
    notices_table,
    overview_table,
    parties_comms_table,
    parties_table,
    plan_table,
    rating_text,
    ratings_table,
    summary_table,
    timeline_table,
)

FORMATS = ("html", "md", "json")  # what `report` writes unless told
ALL_FORMATS = (*FORMATS, "pdf")
FILENAMES = {"html": "report.html", "md": "report.md", "json": "report.json", "pdf": "report.pdf"}


def write_reports(
    log_path: Path, out_dir: Path, formats: Iterable[str] = FORMATS
) -> dict[str, Path]:
    """Read and analyse a log (with the notes and feedback in its folder), write
    report.<format> for each format; returns the paths."""
    chosen = tuple(dict.fromkeys(formats))
    unknown = [name for name in chosen if name not in FILENAMES]
    if unknown:
        raise ValueError(
            f"unknown report format {unknown[0]!r} (choose from {', '.join(ALL_FORMATS)})"
        )
    run_dir = log_path.parent
    aar = analyse(read_records(log_path), read_notes(run_dir), read_feedback(run_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name in chosen:
        path = out_dir / FILENAMES[name]
        if name == "pdf":
            from channel.exercise.report.pdf import print_pdf

            page = written.get("html") or out_dir / FILENAMES["html"]
            if "html" not in written:
                page.write_text(render_html(aar), encoding="utf-8")
            written[name] = print_pdf(page, path)
            continue
        path.write_text(_RENDERERS[name](aar), encoding="utf-8")
        written[name] = path
    return written


def start_notes(run_dir: Path) -> Path:
    """Write the evaluators' notes template for a run; NotesError if notes.yaml exists."""
    from channel.exercise.eventlog import LOG_FILE
    from channel.exercise.report.notes import NOTES_FILE, NotesError, template

    path = run_dir / NOTES_FILE
    if path.exists():
        raise NotesError(f"{path} already exists: edit it (remove it to start again)")
    aar = analyse(read_records(run_dir / LOG_FILE))
    objectives = [(o.id, o.text, o.suggested_rating) for o in aar.objectives]
    path.write_text(template(aar.overview.title, objectives), encoding="utf-8")
    return path


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
    """The AAR/IP as Markdown with pipe tables (GitHub-flavoured)."""
    marking = f"**{_md(aar.overview.marking)}**" if aar.overview.marking else ""
    parts = [
        marking,
        f"# {TITLE}: {_md(aar.overview.title)}",
        *_md_summary(aar),
        *_md_objectives(aar),
        "## Participant feedback",
        _md(feedback_summary(aar)),
        md_table(feedback_table(aar)),
        f"## {APPENDICES['improvement-plan']}",
        md_table(plan_table(aar)),
        *_md_overview(aar),
        f"## {APPENDICES['msel']}",
        md_table(msel_table(aar)),
        f"## {APPENDICES['timeline']}",
        md_table(timeline_table(aar)),
        *_md_comms(aar),
        f"## {APPENDICES['integrity']}",
        _md(integrity_summary(aar)),
        md_table(integrity_facts(aar)),
        md_table(integrity_table(aar)),
        *(
            [f"## {APPENDICES['notices']}", _md(notices_summary(aar)), md_table(notices_table(aar))]
            if aar.notices
            else []
        ),
        marking,
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def _md_summary(aar: AfterAction) -> list[str]:
    return [
        "## Executive summary",
        _md(aar.overview.summary),
        _md(aar.assessment),
        md_table(summary_table(aar)),
        "### Objectives and ratings",
        md_table(ratings_table(aar)),
        "### Main strengths",
        _md_list(main_strengths(aar), NO_NOTES),
        "### Main areas for improvement",
        _md_list(main_areas(aar), NO_NOTES),
        "### Key figures",
        md_table(key_figures_table(aar)),
    ]


def _md_objectives(aar: AfterAction) -> list[str]:
    parts = ["## Analysis of objectives", _md(aar.rating_rule)]
    for objective in aar.objectives:
        parts += [
            f"### {_md(objective.id)}: {_md(objective.text)} (rating: {rating_text(objective)})",
            f"Core capability: {_md(objective.core_capability)}"
            if objective.core_capability
            else "",
            md_table(expectations_table(aar, objective), NO_EXPECTATIONS),
            "**Strengths**",
            _md_list(objective.strengths, objective.strengths_hint),
            "**Areas for improvement**",
            *(_md_area(area) for area in objective.areas_for_improvement),
            "" if objective.areas_for_improvement else _md_list([], objective.areas_hint),
        ]
    return parts


def _md_area(area: Area) -> str:
    lines = [
        f"- **Observation:** {_md(area.observation)}",
        f"  **Analysis:** {_md(area.analysis)}" if area.analysis else "",
        f"  **Recommendation:** {_md(area.recommendation)}" if area.recommendation else "",
    ]
    return "\n".join(line for line in lines if line)


def _md_overview(aar: AfterAction) -> list[str]:
    return [
        f"## {APPENDICES['overview']}",
        md_table(overview_table(aar)),
        "### Parties",
        md_table(parties_table(aar)),
        "### Moves",
        md_table(moves_table(aar)),
        "### Artificialities",
        _md_list(aar.overview.artificialities, "none noted"),
        "### Control actions",
        md_table(control_table(aar), "The control cell did not intervene."),
    ]


def _md_comms(aar: AfterAction) -> list[str]:
    parts = [
        f"## {APPENDICES['comms']}",
        _md_list(aar.comms.rules, ""),
        "### Letters",
        md_table(letters_table(aar)),
        "### Who wrote to whom (letters, sender × recipient)",
        md_table(matrix_table(aar, aar.comms.matrix)),
        "### First contact",
        md_table(first_contact_table(aar)),
        "### Per party (times are world time)",
        md_table(parties_comms_table(aar)),
        *([f"### {DWELL_HEADING}", md_table(dwell_table(aar))] if aar.comms.people else []),
        "### Per move",
        md_table(moves_comms_table(aar)),
    ]
    for move in aar.comms.per_move:
        parts += [
            f"#### Move {move.move}: {_md(move.title)}: who wrote to whom",
            md_table(matrix_table(aar, move.matrix)),
        ]
    return parts


_RENDERERS: dict[str, Callable[[AfterAction], str]] = {
    "html": render_html,
    "md": render_markdown,
    "json": render_json,
}
