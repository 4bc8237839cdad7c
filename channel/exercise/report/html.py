"""The after-action report / improvement plan as one self-contained HTML page.

The page fetches nothing (inline CSS and SVG, no scripts, fonts or images from elsewhere), so it
can be mailed, archived or opened on an air-gapped machine; its print stylesheet lays it out on
A4 with each part on a new page and the marking on every page, which is what `--format pdf`
prints. Every piece of text from the log is escaped (see `report.markup`: elements built
in code rather than a template engine, so nothing can be left unescaped by a forgotten filter);
the tables are the ones the Markdown report draws (`report.tables`), the pictures come
from `report.svg`.
"""

from __future__ import annotations

from channel.exercise.report.analysis import AfterAction, ObjectiveResult
from channel.exercise.report.markup import Html, el, join
from channel.exercise.report.notes import Area
from channel.exercise.report.svg import letters_chart, open_chart, swimlanes
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

TITLE = "After-Action Report / Improvement Plan"
APPENDICES = {
    "improvement-plan": "Appendix A: Improvement plan",
    "overview": "Appendix B: Exercise overview",
    "msel": "Appendix C: MSEL as planned and as played",
    "timeline": "Appendix D: Timeline",
    "comms": "Appendix E: Letters and communications",
    "integrity": "Appendix F: Integrity",
    "notices": "Appendix G: What control told the seats",
}
DWELL_HEADING = "Dwell in people's inboxes (apart from courier latency)"

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


def _section(section_id: str, title: str, *children: str, part: bool = True) -> Html:
    """A part of the report; in print, each part starts on a new page."""
    return el("section", el("h2", title), *children, id=section_id, class_="part" if part else None)


def _list(items: list[str], empty: str) -> Html:
    if items:
        return el("ul", join(el("li", item) for item in items))
    return el("p", empty, class_="placeholder")


# --- HTML sections -------------------------------------------------------------------------------


def _cover(aar: AfterAction) -> Html:
    o = aar.overview
    return el(
        "header",
        el("p", TITLE, class_="kind"),
        el("h1", o.title),
        el("p", o.summary, class_="lede") if o.summary else "",
        class_="cover",
    )


def _summary_html(aar: AfterAction) -> Html:
    return _section(
        "summary",
        "Executive summary",
        el("p", aar.assessment, class_="assessment") if aar.assessment else "",
        html_table(summary_table(aar), class_="facts"),
        el("h3", "Objectives and ratings"),
        html_table(ratings_table(aar), id="ratings"),
        el(
            "div",
            el(
                "div",
                el("h3", "Main strengths"),
                _list(main_strengths(aar), NO_NOTES),
                id="main-strengths",
            ),
            el(
                "div",
                el("h3", "Main areas for improvement"),
                _list(main_areas(aar), NO_NOTES),
                id="main-areas",
            ),
            class_="columns",
        ),
        el("h3", "Key figures"),
        html_table(key_figures_table(aar), class_="facts", id="key-figures"),
        part=False,
    )


def _objective_html(aar: AfterAction, objective: ObjectiveResult) -> Html:
    rating = objective.rating.replace(" ", "-")
    capability = objective.core_capability
    return el(
        "article",
        el(
            "h3",
            f"{objective.id}: {objective.text} ",
            el("span", rating_text(objective), class_=f"rating rating-{rating}"),
        ),
        el("p", "Core capability: ", el("strong", capability), class_="capability")
        if capability
        else "",
        html_table(expectations_table(aar, objective), empty=NO_EXPECTATIONS),
        el("h4", "Strengths"),
        _list(objective.strengths, objective.strengths_hint),
        el("h4", "Areas for improvement"),
        join(_area_html(area) for area in objective.areas_for_improvement)
        if objective.areas_for_improvement
        else el("p", objective.areas_hint, class_="placeholder"),
        class_="objective",
        data_objective=objective.id,
        data_rating=objective.rating,
    )


def _area_html(area: Area) -> Html:
    rows = [
        ("Observation", area.observation),
        ("Analysis", area.analysis),
        ("Recommendation", area.recommendation),
    ]
    return el(
        "dl",
        join(el("dt", name) + el("dd", text) for name, text in rows if text),
        class_="area",
    )


def _objectives_html(aar: AfterAction) -> Html:
    return _section(
        "objectives",
        "Analysis of objectives",
        el("p", aar.rating_rule, class_="rule"),
        join(_objective_html(aar, objective) for objective in aar.objectives),
    )


def _feedback_html(aar: AfterAction) -> Html:
    return _section(
        "feedback",
        "Participant feedback",
        el("p", feedback_summary(aar), class_="rule"),
        html_table(feedback_table(aar), id="feedback-table", empty="") if aar.feedback else "",
        part=False,
    )


def _plan_html(aar: AfterAction) -> Html:
    return _section(
        "improvement-plan",
        APPENDICES["improvement-plan"],
        el(
            "p",
            "One row per area for improvement in the evaluators' notes; an objective rated S, M "
            "or U with none yet gets an empty row to complete.",
            class_="rule",
        ),
        html_table(plan_table(aar), class_="plan"),
    )


def _overview_html(aar: AfterAction) -> Html:
    return _section(
        "overview",
        APPENDICES["overview"],
        html_table(overview_table(aar), class_="facts"),
        el("h3", "Parties"),
        html_table(parties_table(aar)),
        el("h3", "Moves"),
        html_table(moves_table(aar)),
        el("h3", "Artificialities"),
        el(
            "ul",
            join(el("li", text) for text in aar.overview.artificialities),
            id="artificialities",
        ),
        el("h3", "Control actions"),
        html_table(
            control_table(aar), empty="The control cell did not intervene.", id="control-actions"
        ),
    )


def _msel_html(aar: AfterAction) -> Html:
    return _section(
        "msel",
        APPENDICES["msel"],
        el(
            "p",
            "Planned: the scheduled exercise time (contingencies have none); played: when the "
            "inject fired or was tasked; the status says why when it was not on schedule.",
            class_="rule",
        ),
        html_table(msel_table(aar), id="msel-table"),
    )


def _timeline_html(aar: AfterAction) -> Html:
    return _section(
        "timeline",
        APPENDICES["timeline"],
        el("figure", swimlanes(aar), el("figcaption", "Swim lanes (exercise time)")),
        html_table(timeline_table(aar), id="timeline-table"),
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
        APPENDICES["comms"],
        el(
            "div",
            el("figure", letters_chart(aar), el("figcaption", "Letters over time")),
            el("figure", open_chart(aar), el("figcaption", "Time to open, per party")),
            class_="charts",
        ),
        el("ul", join(el("li", rule) for rule in aar.comms.rules), class_="rule"),
        el("h3", "Letters"),
        html_table(letters_table(aar), id="letters"),
        el("h3", "Who wrote to whom (letters, sender × recipient)"),
        html_table(matrix_table(aar, aar.comms.matrix), id="comms-matrix", class_="matrix"),
        el("h3", "First contact"),
        html_table(first_contact_table(aar), id="first-contact"),
        el("h3", "Per party (world time)"),
        html_table(parties_comms_table(aar), id="comms-parties"),
        el("h3", DWELL_HEADING) if aar.comms.people else "",
        html_table(dwell_table(aar), id="dwell") if aar.comms.people else "",
        el("h3", "Per move"),
        html_table(moves_comms_table(aar), id="comms-moves"),
        el("div", join(per_move), class_="move-matrices"),
    )


def _integrity_html(aar: AfterAction) -> Html:
    checks = aar.integrity.letters
    return _section(
        "integrity",
        APPENDICES["integrity"],
        el("p", integrity_summary(aar), class_="ok" if aar.integrity.ok else "failed"),
        html_table(integrity_facts(aar), class_="facts"),
        html_table(integrity_table(aar), row_classes=["ok" if c.ok else "failed" for c in checks]),
    )


def _notices_html(aar: AfterAction) -> Html:
    if not aar.notices:
        return Html("")
    return _section(
        "notices",
        APPENDICES["notices"],
        el("p", notices_summary(aar), class_="rule"),
        html_table(notices_table(aar), id="notices-table"),
    )


def _css_string(text: str) -> str:
    """A CSS string literal: escaped so no text can end the string or the style element."""
    return (
        '"'
        + "".join(c if c.isalnum() or c in " -_.,:;/()" else f"\\{ord(c):x} " for c in text)
        + '"'
    )


def _page_css(marking: str) -> str:
    """Printed pages: the marking at the top and bottom of every page, and page numbers."""
    label = _css_string(marking)
    boxes = (
        f"@top-center {{ content: {label}; }} @bottom-center {{ content: {label}; }}"
        if marking
        else ""
    )
    return (
        "@page { " + boxes + ' @bottom-right { content: counter(page) " / " counter(pages); '
        "font: 9px system-ui, sans-serif; color: #4b5563; } }\n"
    )


def render_html(aar: AfterAction) -> str:
    """One self-contained page: inline CSS and SVG, no scripts, nothing fetched."""
    marking = aar.overview.marking
    body = el(
        "body",
        el("div", marking, class_="marking top") if marking else "",
        el(
            "main",
            _cover(aar),
            _summary_html(aar),
            _objectives_html(aar),
            _feedback_html(aar),
            _plan_html(aar),
            _overview_html(aar),
            _msel_html(aar),
            _timeline_html(aar),
            _comms_html(aar),
            _integrity_html(aar),
            _notices_html(aar),
        ),
        el("div", marking, class_="marking bottom") if marking else "",
    )
    head = el(
        "head",
        Html('<meta charset="utf-8">'),
        Html('<meta name="viewport" content="width=device-width, initial-scale=1">'),
        el("title", f"{TITLE}: {aar.overview.title}"),
        el("style", Html(CSS + _page_css(marking))),
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
.control-mark line, .legend-control { stroke: #ea580c; stroke-width: 1.2; stroke-dasharray: 1 3; }
.control-label { font-size: 10px; fill: #c2410c; }
.letter-label { font-size: 10px; font-weight: 600; fill: #111827; paint-order: stroke;
  stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
.cover { margin: 18px 0 8px; }
.cover .kind { text-transform: uppercase; letter-spacing: .08em; color: #4b5563; margin: 0;
  font-size: 12px; font-weight: 600; }
.cover h1 { font-size: 26px; margin: 4px 0; }
.lede, .assessment { font-size: 15px; max-width: 75ch; }
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }
.columns ul { margin: 0; padding-left: 20px; }
dl.area { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px;
  border-left: 3px solid #d97706; padding: 4px 10px; margin: 8px 0; }
dl.area dt { font-weight: 600; } dl.area dd { margin: 0; }
.capability { color: #374151; }
svg { max-width: 100%; height: auto; }
@page { size: A4; margin: 16mm 12mm;
  @top-center { font: 700 10px system-ui, sans-serif; color: #b91c1c; letter-spacing: .12em; }
  @bottom-center { font: 700 10px system-ui, sans-serif; color: #b91c1c; letter-spacing: .12em; } }
@media print {
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  body { font-size: 12px; }
  main { max-width: none; padding: 0; }
  .marking { display: none; }  /* the page margins carry it (@page, below) */
  section.part { break-before: page; }
  h2, h3, h4 { break-after: avoid; }
  tr, figure, article.objective > h3, dl.area { break-inside: avoid; }
  table { font-size: 10.5px; width: 100%; }
  th, td { padding: 2px 4px; }
  table.facts td { word-break: break-word; }
  .charts { grid-template-columns: 1fr; }
}
"""
