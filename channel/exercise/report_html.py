"""The after-action report as one self-contained HTML page.

The page fetches nothing (inline CSS and SVG, no scripts, fonts or images from elsewhere), so it
can be mailed, archived or opened on an air-gapped machine. Every piece of text from the log is
escaped (see `channel.exercise.markup`); the tables are the ones the Markdown report draws
(`channel.exercise.tables`), the pictures come from `channel.exercise.svg`.
"""

from __future__ import annotations

from channel.exercise.analysis import AfterAction, ObjectiveResult
from channel.exercise.markup import Html, el, join
from channel.exercise.svg import letters_chart, open_chart, swimlanes
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

# --- HTML building blocks ------------------------------------------------------------------------


def html_table(
    table: Table, *, empty: str = "(none)", row_classes: list[str] | None = None, **attrs: object
) -> Html:
    headers, rows = table
    if not rows:
        return el("p", empty, class_="empty", id=attrs.get("id"))
    classes = row_classes or [""] * len(rows)
    head = el("thead", el("tr", join(el("th", h) for h in headers))) if any(headers) else ""
    body = el(
        "tbody",
        join(
            el("tr", join(el("td", cell) for cell in row), class_=cls or None)
            for row, cls in zip(rows, classes, strict=True)
        ),
    )
    return el("table", head, body, **attrs)


def _section(section_id: str, title: str, *children: str) -> Html:
    return el("section", el("h2", title), *children, id=section_id)


# --- HTML sections -------------------------------------------------------------------------------


def _overview_html(aar: AfterAction) -> Html:
    o = aar.overview
    return _section(
        "overview",
        "Overview",
        el("p", o.summary) if o.summary else "",
        html_table(overview_table(aar), class_="facts"),
        el("h3", "Parties"),
        html_table(parties_table(aar)),
        el("h3", "Moves"),
        html_table(moves_table(aar)),
        el("h3", "Objectives"),
        el("ul", join(el("li", f"{x.id}: {x.text}") for x in o.objectives)),
        el("h3", "Artificialities"),
        el("ul", join(el("li", text) for text in o.artificialities), id="artificialities"),
    )


def _picture_html(aar: AfterAction) -> Html:
    return _section(
        "picture",
        "The exercise at a glance",
        el("figure", swimlanes(aar), el("figcaption", "Swim lanes (exercise time)")),
        el(
            "div",
            el("figure", letters_chart(aar), el("figcaption", "Letters over time")),
            el("figure", open_chart(aar), el("figcaption", "Time to open, per party")),
            class_="charts",
        ),
    )


def _objective_html(aar: AfterAction, objective: ObjectiveResult) -> Html:
    rating = objective.rating.replace(" ", "-")
    return el(
        "article",
        el(
            "h3",
            f"{objective.id}: {objective.text} ",
            el("span", objective.rating, class_=f"rating rating-{rating}"),
        ),
        html_table(expectations_table(aar, objective), empty=NO_EXPECTATIONS),
        el("h4", "Strengths"),
        _evaluator_list(objective.strengths, objective.strengths_hint),
        el("h4", "Areas for improvement"),
        _evaluator_list(objective.areas_for_improvement, objective.areas_hint),
        class_="objective",
        data_objective=objective.id,
        data_rating=objective.rating,
    )


def _evaluator_list(items: list[str], hint: str) -> Html:
    if items:
        return el("ul", join(el("li", item) for item in items))
    return el("p", hint, class_="placeholder")


def _objectives_html(aar: AfterAction) -> Html:
    return _section(
        "objectives",
        "Objectives and suggested ratings",
        el("p", aar.rating_rule, class_="rule"),
        html_table(objectives_table(aar)),
        join(_objective_html(aar, objective) for objective in aar.objectives),
    )


def _comms_html(aar: AfterAction) -> Html:
    per_move = (
        el(
            "div",
            el("h4", f"Move {m.move}: {m.title}"),
            html_table(matrix_table(aar, m.matrix), class_="matrix"),
            class_="move-matrix",
        )
        for m in aar.comms.per_move
    )
    return _section(
        "comms",
        "Communications",
        el("ul", join(el("li", rule) for rule in aar.comms.rules), class_="rule"),
        el("h3", "Who wrote to whom (letters, sender × recipient)"),
        html_table(matrix_table(aar, aar.comms.matrix), id="comms-matrix", class_="matrix"),
        el("h3", "First contact"),
        html_table(first_contact_table(aar), id="first-contact"),
        el("h3", "Per party (world time)"),
        html_table(parties_comms_table(aar), id="comms-parties"),
        el("h3", "Per move"),
        html_table(moves_comms_table(aar), id="comms-moves"),
        el("div", join(per_move), class_="move-matrices"),
        el("h3", "Letters"),
        html_table(letters_table(aar), id="letters"),
    )


def _integrity_html(aar: AfterAction) -> Html:
    checks = aar.integrity.letters
    return _section(
        "integrity",
        "Integrity",
        el("p", integrity_summary(aar), class_="ok" if aar.integrity.ok else "failed"),
        html_table(integrity_facts(aar), class_="facts"),
        html_table(integrity_table(aar), row_classes=["ok" if c.ok else "failed" for c in checks]),
    )


def _plan_html(aar: AfterAction) -> Html:
    return _section(
        "improvement-plan",
        "Improvement plan",
        el(
            "p",
            "One row per objective rated S, M or U; the evaluator completes the rest.",
            class_="rule",
        ),
        html_table(plan_table(aar), class_="plan"),
    )


def render_html(aar: AfterAction) -> str:
    """One self-contained page: inline CSS and SVG, no scripts, nothing fetched."""
    marking = aar.overview.marking
    body = el(
        "body",
        el("div", marking, class_="marking") if marking else "",
        el(
            "main",
            el("h1", "After-action report: ", aar.overview.title),
            _overview_html(aar),
            _picture_html(aar),
            _objectives_html(aar),
            _comms_html(aar),
            _section("timeline", "Timeline", html_table(timeline_table(aar))),
            _integrity_html(aar),
            _plan_html(aar),
        ),
        el("div", marking, class_="marking") if marking else "",
    )
    head = el(
        "head",
        Html('<meta charset="utf-8">'),
        Html('<meta name="viewport" content="width=device-width, initial-scale=1">'),
        el("title", f"After-action report: {aar.overview.title}"),
        el("style", Html(CSS)),
    )
    return "<!DOCTYPE html>\n" + el("html", head, body, lang="en") + "\n"


CSS = """
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: #111827; background: #fff; }
main { max-width: 1240px; margin: 0 auto; padding: 8px 24px 32px; }
.marking { background: #b91c1c; color: #fff; font-weight: 700; letter-spacing: .12em;
  text-align: center; padding: 6px; }
h1 { font-size: 24px; margin: 18px 0 6px; }
h2 { font-size: 19px; border-bottom: 2px solid #e5e7eb; padding-bottom: 4px; margin-top: 32px; }
h3 { font-size: 16px; margin: 20px 0 8px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border: 1px solid #e5e7eb; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
table.facts td:first-child { font-weight: 600; white-space: nowrap; }
table.facts td { font-family: ui-monospace, monospace; word-break: break-all; }
table.matrix td:not(:first-child) { text-align: right; min-width: 3em; }
tr.failed td { background: #fee2e2; }
table.plan td { min-width: 7em; height: 2em; }
tr.ok td:nth-child(4) { color: #15803d; font-weight: 600; }
tr.failed td:nth-child(4) { color: #b91c1c; font-weight: 700; }
p.failed { color: #b91c1c; font-weight: 700; }
p.ok { color: #15803d; font-weight: 600; }
.rule { color: #4b5563; font-size: 13px; }
.placeholder { color: #6b7280; font-style: italic; border: 1px dashed #d1d5db; padding: 8px; }
.rating { display: inline-block; min-width: 1.6em; text-align: center; border-radius: 4px;
  padding: 0 6px; color: #fff; font-weight: 700; }
.rating-P { background: #15803d; } .rating-S { background: #65a30d; }
.rating-M { background: #d97706; } .rating-U { background: #b91c1c; }
.rating-not-assessed { background: #9ca3af; }
figure { margin: 12px 0; }
figcaption { color: #4b5563; font-size: 12px; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }
.move-matrices { display: flex; flex-wrap: wrap; gap: 24px; }
svg text { font-size: 11px; fill: #374151; }
.move-band.even rect { fill: #f8fafc; } .move-band.odd rect { fill: #eef2f7; }
.band-title { font-weight: 600; font-size: 12px; }
.lane-line { stroke: #cbd5e1; stroke-width: 1; }
.lane-label { font-weight: 600; font-size: 13px; fill: #111827; }
.lane-sub { font-size: 10px; fill: #6b7280; }
.axis line { stroke: #9ca3af; }
.inject-mark line, .legend-inject { stroke: #a855f7; stroke-width: 1; stroke-dasharray: 3 3; }
.inject-label { font-size: 10px; fill: #7e22ce; }
.letter { stroke-width: 1.8; opacity: .9; }
.letter.undelivered { stroke-dasharray: 5 4; }
.receipt-delivered { fill: #6b7280; }
.receipt-opened { fill: #15803d; }
.receipt-returned_unopened { fill: #b91c1c; }
.receipt-withdrawn { fill: #7c3aed; }
.receipt-expired { fill: #d97706; }
.receipt { stroke: #fff; stroke-width: 1; }
.legend-band { fill: #eef2f7; stroke: #cbd5e1; }
.bar-max { fill: #bfdbfe; } .bar-median { fill: #2563eb; }
@media print { .marking { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
"""
