"""The after-action report, rendered: JSON, Markdown, and one self-contained HTML page.

The HTML page fetches nothing (inline CSS and SVG, no scripts, fonts or images from elsewhere),
so it can be mailed, archived or opened on an air-gapped machine. Every piece of text from the
log is scenario or player input and is escaped: `_el` escapes every plain `str` it is given and
only inserts `Html` (markup this module built) as is.

The tables are defined once (`Table`: headers and rows of plain text) and drawn by both the
Markdown and the HTML renderer, so the two always say the same thing.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from channel.exercise.analysis import (
    AfterAction,
    LetterTrack,
    Mark,
    ObjectiveResult,
    PartyComms,
    analyse,
)
from channel.exercise.eventlog import read_log
from channel.exercise.scenario import format_duration, format_offset
from channel.timeline import short_time

FORMATS = ("html", "md", "json")
FILENAMES = {"html": "report.html", "md": "report.md", "json": "report.json"}
NO_VALUE = "—"
NO_EXPECTATIONS = "No expectation is tagged to this objective: it is not assessed."
PALETTE = ("#2563eb", "#dc2626", "#059669", "#9333ea", "#d97706", "#0891b2", "#db2777", "#4b5563")
# The receipt events the swim lanes mark (accepted is implied by the arrow itself).
RECEIPT_EVENTS = ("delivered", "opened", "returned_unopened", "withdrawn", "expired")
_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)


class Html(str):
    """Markup this module built: inserted as is, where a plain `str` is escaped."""


Table = tuple[list[str], list[list[str]]]


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


# --- text shared by both renderers ---------------------------------------------------------------


def offset(t_ms: int | None) -> str:
    return format_offset(t_ms / 1000) if t_ms is not None else NO_VALUE


def world(timestamp: str) -> str:
    return short_time(timestamp)


def duration(seconds: float | None) -> str:
    return format_duration(seconds) if seconds is not None else NO_VALUE


def _pair(aar: AfterAction, sender: str, recipient: str) -> str:
    return f"{aar.who(sender)} → {aar.who(recipient)}"


def _labels(labels: list[str]) -> str:
    return ", ".join(labels) or NO_VALUE


def overview_table(aar: AfterAction) -> Table:
    o = aar.overview
    rows = [
        ["Scenario", f"{o.title} (revision {o.revision})"],
        ["Scenario file", o.file],
        ["Scenario digest (sha256)", o.digest],
        ["Marking", o.marking],
        ["Transcript policy", o.transcript],
        ["Seed", o.seed],
        ["Speed", o.speed],
        ["Rehearsal", "yes" if o.rehearse else "no"],
        ["Wall clock", f"{world(o.wall_start)} to {world(o.wall_end)}"],
        ["World time", f"{world(o.world_start)} to {world(o.world_end)}"],
        ["Exercise time", f"{duration(o.duration_ms / 1000)} (scheduled end {offset(o.end_ms)})"],
        ["Ended", o.end_reason or "no run_ended record (the run did not finish)"],
    ]
    return ["", ""], rows


def parties_table(aar: AfterAction) -> Table:
    rows = [[p.label or p.name, p.name, p.play, p.player] for p in aar.overview.parties]
    return ["party", "name", "seat", "player"], rows


def moves_table(aar: AfterAction) -> Table:
    rows = [[str(m.id), m.title, offset(m.t), world(m.world)] for m in aar.overview.moves]
    return ["move", "title", "starts", "world time"], rows


def objectives_table(aar: AfterAction) -> Table:
    rows = [[o.id, o.text, o.rating, _share(o), str(len(o.expectations))] for o in aar.objectives]
    return ["objective", "text", "suggested rating", "met (weighted)", "expectations"], rows


def _share(objective: ObjectiveResult) -> str:
    if objective.fraction is None:
        return NO_VALUE
    return f"{objective.met_weight}/{objective.total_weight} ({objective.fraction:.0%})"


def expectations_table(aar: AfterAction, objective: ObjectiveResult) -> Table:
    rows = [
        [
            e.id,
            e.inject,
            e.check,
            _pair(aar, e.sender, e.recipient),
            str(e.score),
            e.outcome,
            offset(e.t),
            "; ".join(
                f"{ev.letter} ({ev.letter_id or 'no id'}) {ev.event} receipt {ev.seq}"
                for ev in e.evidence
            )
            or NO_VALUE,
            e.text,
        ]
        for e in objective.expectations
    ]
    headers = ["expectation", "inject", "check", "from → to", "score", "outcome", "when"]
    return [*headers, "evidence", "expected action"], rows


def matrix_table(aar: AfterAction, matrix: Mapping[str, Mapping[str, int]]) -> Table:
    parties = aar.comms.parties
    rows = [[aar.who(s), *(str(matrix[s][r]) for r in parties)] for s in parties]
    return ["from \\ to", *(aar.who(p) for p in parties)], rows


def first_contact_table(aar: AfterAction) -> Table:
    rows = [
        [aar.who(c.sender), aar.who(c.recipient), c.letter, offset(c.t), world(c.world)]
        for c in aar.comms.first_contact
    ]
    return ["from", "to", "first letter", "exercise time", "world time"], rows


_PARTY_HEADERS = [
    "party",
    "sent",
    "received",
    "opened",
    "returned unopened",
    "open: median",
    "open: max",
    "reply: median",
    "reply: max",
    "unanswered",
    "undecided",
]


def _party_row(aar: AfterAction, p: PartyComms) -> list[str]:
    return [
        aar.who(p.party),
        str(p.sent),
        str(p.received),
        str(p.opened),
        str(p.returned_unopened),
        duration(p.time_to_open.median),
        duration(p.time_to_open.max),
        duration(p.time_to_reply.median),
        duration(p.time_to_reply.max),
        _labels(p.unanswered),
        _labels(p.undecided),
    ]


def parties_comms_table(aar: AfterAction) -> Table:
    return _PARTY_HEADERS, [_party_row(aar, p) for p in aar.comms.totals]


def moves_comms_table(aar: AfterAction) -> Table:
    rows = [
        [f"{m.move}: {m.title}", *_party_row(aar, p)]
        for m in aar.comms.per_move
        for p in m.parties
        if p.sent or p.received
    ]
    return ["move", *_PARTY_HEADERS], rows


def letters_table(aar: AfterAction) -> Table:
    rows = [
        [
            letter.label,
            _pair(aar, letter.sender, letter.recipient),
            offset(letter.t),
            world(letter.world),
            str(letter.move),
            letter.subject or "(sealed)",
            letter.in_reply_to or NO_VALUE,
            ", ".join(mark.event for mark in letter.marks) or NO_VALUE,
            letter.final_state or NO_VALUE,
        ]
        for letter in aar.comms.letters
    ]
    headers = ["letter", "from → to", "sent", "world time", "move", "subject", "in reply to"]
    return [*headers, "receipts", "final state"], rows


def timeline_table(aar: AfterAction) -> Table:
    rows = [[offset(e.t), world(e.world), str(e.move), e.kind, e.text] for e in aar.timeline]
    return ["exercise time", "world time", "move", "kind", "what happened"], rows


def integrity_facts(aar: AfterAction) -> Table:
    i = aar.integrity
    rows = [
        ["Scenario digest (sha256)", i.scenario_digest],
        ["Event log chain head", i.chain_head],
        ["Event log records", str(i.records)],
        ["Courier key (from run_started)", i.courier_key or "none announced"],
        ["Courier", i.courier_url or NO_VALUE],
        ["Letters verified", f"{i.verified} ok, {i.failed} FAILED"],
        ["Letters with no final status", _labels(i.missing_final)],
    ]
    return ["", ""], rows


def integrity_table(aar: AfterAction) -> Table:
    rows = [
        [
            c.letter,
            c.letter_id or NO_VALUE,
            _pair(aar, c.sender or "?", c.recipient or "?"),
            "ok" if c.ok else "FAILED",
            c.reason,
        ]
        for c in aar.integrity.letters
    ]
    return ["letter", "courier letter id", "from → to", "result", "detail"], rows


def plan_table(aar: AfterAction) -> Table:
    rows = [
        [
            f"{row.objective} ({row.rating})",
            row.area_for_improvement,
            row.corrective_action,
            row.capability_element,
            row.owner,
            row.start,
            row.completion,
        ]
        for row in aar.improvement_plan
    ]
    headers = ["objective", "area for improvement", "corrective action", "capability element"]
    return [*headers, "owner", "start", "completion"], rows


def integrity_summary(aar: AfterAction) -> str:
    i = aar.integrity
    total = i.verified + i.failed
    text = f"{i.verified} of {total} letters verify with the keys run_started announced"
    if i.failed:
        text += f"; {i.failed} FAILED"
    if i.missing_final:
        text += f"; no final status for {_labels(i.missing_final)}"
    return text + "."


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


# --- HTML building blocks ------------------------------------------------------------------------


def _attr_name(key: str) -> str:
    """Python keyword arguments to attribute names: class_ → class, data_party → data-party."""
    return key.rstrip("_").replace("_", "-")


def _el(tag: str, *children: str, **attrs: object) -> Html:
    """An element; plain-text children and every attribute value are escaped."""
    rendered = "".join(
        f' {_attr_name(key)}="{html.escape(str(value))}"'
        for key, value in attrs.items()
        if value is not None
    )
    body = "".join(child if isinstance(child, Html) else html.escape(child) for child in children)
    return Html(f"<{tag}{rendered}>{body}</{tag}>")


def _join(parts: Iterable[str]) -> Html:
    return Html("".join(part if isinstance(part, Html) else html.escape(part) for part in parts))


def html_table(
    table: Table, *, empty: str = "(none)", row_classes: list[str] | None = None, **attrs: object
) -> Html:
    headers, rows = table
    if not rows:
        return _el("p", empty, class_="empty", id=attrs.get("id"))
    classes = row_classes or [""] * len(rows)
    head = _el("thead", _el("tr", _join(_el("th", h) for h in headers))) if any(headers) else ""
    body = _el(
        "tbody",
        _join(
            _el("tr", _join(_el("td", cell) for cell in row), class_=cls or None)
            for row, cls in zip(rows, classes, strict=True)
        ),
    )
    return _el("table", head, body, **attrs)


def _f(value: float) -> str:
    return f"{value:.1f}"


def _section(section_id: str, title: str, *children: str) -> Html:
    return _el("section", _el("h2", title), *children, id=section_id)


# --- the swim lanes ------------------------------------------------------------------------------

_W, _LEFT, _RIGHT, _TOP, _LANE, _AXIS, _LEGEND = 1200, 190, 44, 48, 72, 30, 58


class _Lanes:
    """The swim-lane geometry: x from exercise time, y from a party's lane."""

    def __init__(self, aar: AfterAction) -> None:
        self.aar = aar
        self.parties = aar.comms.parties
        self.span = _span(aar)
        self.bottom = _TOP + _LANE * len(self.parties)
        self.height = self.bottom + _AXIS + _LEGEND

    def x(self, t: int) -> float:
        return _LEFT + (_W - _LEFT - _RIGHT) * t / self.span

    def y(self, party: str) -> float:
        return _TOP + _LANE * self.parties.index(party) + _LANE / 2

    def colour(self, party: str) -> str:
        return PALETTE[self.parties.index(party) % len(PALETTE)]


def swimlanes(aar: AfterAction) -> Html:
    lanes = _Lanes(aar)
    return _el(
        "svg",
        _markers(lanes),
        _join(_move_band(lanes, index) for index in range(len(aar.overview.moves))),
        _join(_lane(lanes, party) for party in lanes.parties),
        _axis(lanes),
        _injects(lanes),
        _join(_letter(lanes, letter) for letter in aar.comms.letters),
        _join(
            _receipt(lanes, letter, mark)
            for letter in aar.comms.letters
            for mark in letter.marks
            if mark.event in RECEIPT_EVENTS
        ),
        _legend(lanes),
        id="swimlanes",
        viewBox=f"0 0 {_W} {lanes.height}",
        width="100%",
        role="img",
        aria_label="Swim lanes: one lane per party; letters as arrows from sender to recipient",
    )


def _markers(lanes: _Lanes) -> Html:
    markers = (
        _el(
            "marker",
            _el("path", d="M0,0 L10,5 L0,10 z", fill=lanes.colour(party)),
            id=f"arrow-{index}",
            viewBox="0 0 10 10",
            refX="10",
            refY="5",
            markerWidth="9",
            markerHeight="9",
            markerUnits="userSpaceOnUse",
            orient="auto",
        )
        for index, party in enumerate(lanes.parties)
    )
    return _el("defs", _join(markers))


def _move_band(lanes: _Lanes, index: int) -> Html:
    moves = lanes.aar.overview.moves
    move = moves[index]
    end = moves[index + 1].t if index + 1 < len(moves) else lanes.span
    x0, x1 = lanes.x(move.t), lanes.x(end)
    title = f"Move {move.id}: {move.title}"
    room = max(int((x1 - x0 - 8) / 7.5), 4)  # ~7.5 px a character at this size: cut, not overlap
    shown = title if len(title) <= room else title[: room - 1] + "…"
    return _el(
        "g",
        _el("title", f"{title} (from {offset(move.t)}, world {world(move.world)})"),
        _el("rect", x=_f(x0), y="0", width=_f(x1 - x0), height=_f(lanes.bottom)),
        _el("text", shown, x=_f(x0 + 5), y="16", class_="band-title"),
        class_=f"move-band {'odd' if index % 2 else 'even'}",
        data_move=str(move.id),
    )


def _lane(lanes: _Lanes, party: str) -> Html:
    y = lanes.y(party)
    seat = next((p for p in lanes.aar.overview.parties if p.name == party), None)
    sub = f"{party} · {seat.play}" if seat else party
    return _el(
        "g",
        _el("line", x1=_f(_LEFT), x2=_f(_W - _RIGHT), y1=_f(y), y2=_f(y), class_="lane-line"),
        _el("rect", x="0", y=_f(y - 14), width="6", height="28", fill=lanes.colour(party)),
        _el("title", f"{lanes.aar.who(party)} ({sub})"),
        _el("text", _fit(lanes.aar.who(party), 22), x="14", y=_f(y - 2), class_="lane-label"),
        _el("text", _fit(sub, 30), x="14", y=_f(y + 14), class_="lane-sub"),
        class_="lane",
        data_party=party,
    )


def _tick_step(span_ms: int, most: int) -> int:
    """A round step (in ms) that cuts `span_ms` into at most `most` pieces."""
    for step in _STEPS_S:
        if span_ms / (step * 1000) <= most:
            return step * 1000
    return math.ceil(span_ms / most / 86_400_000) * 86_400_000


def _axis(lanes: _Lanes) -> Html:
    step = _tick_step(lanes.span, 10)
    ticks = (_tick(lanes.x(t), lanes.bottom, offset(t)) for t in range(0, lanes.span + 1, step))
    baseline = _el(
        "line", x1=_f(_LEFT), x2=_f(_W - _RIGHT), y1=_f(lanes.bottom), y2=_f(lanes.bottom)
    )
    return _el("g", baseline, _join(ticks), class_="axis")


def _tick(x: float, y: float, label: str) -> Html:
    return _el(
        "g",
        _el("line", x1=_f(x), x2=_f(x), y1=_f(y), y2=_f(y + 5)),
        _el("text", label, x=_f(x), y=_f(y + 18), text_anchor="middle"),
    )


def _injects(lanes: _Lanes) -> Html:
    """Inject marks, their labels on two rows so that close injects do not overprint."""
    ends = [0.0, 0.0]  # where the last label on each row ends
    marks = []
    for mark in lanes.aar.injects:
        x = lanes.x(mark.t)
        row = next((r for r, end in enumerate(ends) if x >= end), 0)
        ends[row] = x + 6 + _text_width(mark.id) * 0.9
        marks.append(_inject(lanes, mark.id, mark.t, mark.subject, _TOP - 4 - 12 * row))
    return _join(marks)


def _inject(lanes: _Lanes, inject_id: str, t: int, subject: str, label_y: float) -> Html:
    x = lanes.x(t)
    return _el(
        "g",
        _el("title", f"Inject {inject_id} at {offset(t)}: {subject}"),
        _el("line", x1=_f(x), x2=_f(x), y1=_f(label_y - 10), y2=_f(lanes.bottom)),
        _el("text", inject_id, x=_f(x + 3), y=_f(label_y), class_="inject-label"),
        class_="inject-mark",
        data_inject=inject_id,
    )


def _letter(lanes: _Lanes, letter: LetterTrack) -> Html:
    y0, y1 = lanes.y(letter.sender), lanes.y(letter.recipient)
    end = letter.delivered_t if letter.delivered_t is not None else letter.t
    # Stop short of the lane line so the arrow head is not hidden under the delivered mark.
    y1 -= math.copysign(6, y1 - y0)
    subject = f": {letter.subject}" if letter.subject else ""
    title = (
        f"{letter.label} {_pair(lanes.aar, letter.sender, letter.recipient)}{subject}, "
        f"sent {offset(letter.t)}, delivered {offset(letter.delivered_t)}"
    )
    return _el(
        "line",
        _el("title", title),
        x1=_f(lanes.x(letter.t)),
        y1=_f(y0),
        x2=_f(lanes.x(end)),
        y2=_f(y1),
        stroke=lanes.colour(letter.sender),
        marker_end=f"url(#arrow-{lanes.parties.index(letter.sender)})",
        class_="letter" if letter.delivered_t is not None else "letter undelivered",
        data_letter=letter.label,
    )


def _shape(event: str, x: float, y: float) -> str:
    """A path for each receipt event, so the kinds differ in shape as well as colour."""
    if event == "opened":
        return f"M{_f(x - 6)},{_f(y)} a6,6 0 1,0 12,0 a6,6 0 1,0 -12,0 z"
    if event == "returned_unopened":
        return f"M{_f(x - 5.5)},{_f(y - 5.5)} h11 v11 h-11 z"
    if event == "expired":
        return f"M{_f(x)},{_f(y - 6)} l6,11 h-12 z"
    if event == "withdrawn":
        return f"M{_f(x - 6)},{_f(y - 5)} h12 l-6,11 z"
    return f"M{_f(x)},{_f(y - 5)} l5,5 l-5,5 l-5,-5 z"  # delivered: a diamond


def _receipt(lanes: _Lanes, letter: LetterTrack, mark: Mark) -> Html:
    # Deliveries sit on the lane line at the arrow's head; decisions sit just above it.
    y = lanes.y(letter.recipient) - (0 if mark.event == "delivered" else 14)
    reason = f': "{mark.reason}"' if mark.reason else ""
    title = (
        f"{letter.label} {mark.event.replace('_', ' ')} at {offset(mark.t)} "
        f"(world {world(mark.world)}){reason}"
    )
    return _el(
        "path",
        _el("title", title),
        d=_shape(mark.event, lanes.x(mark.t), y),
        class_=f"receipt receipt-{mark.event}",
        data_letter=letter.label,
    )


def _fit(text: str, most: int) -> str:
    """Cut a label to `most` characters: SVG text does not wrap, it overprints."""
    return text if len(text) <= most else text[: most - 1] + "…"


def _rough(seconds: float) -> str:
    """A duration to the minute once it is past an hour: a chart label, not a measurement."""
    return duration(round(seconds / 60) * 60 if seconds >= 3600 else seconds)


def _text_width(text: str) -> float:
    return len(text) * 6.2  # about 6 px a character at the 11 px the SVG text uses


def _legend(lanes: _Lanes) -> Html:
    arrow = "letter (arrow from the sender, head at delivery)"
    items = [
        _el("line", x1="0", y1="0", x2="28", y2="0", stroke="#374151", marker_end="url(#arrow-0)"),
        _el("text", arrow, x="36", y="4"),
    ]
    x = 36 + _text_width(arrow) + 30
    for event in RECEIPT_EVENTS:
        label = event.replace("_", " ")
        items += [
            _el("path", d=_shape(event, x, 0), class_=f"receipt-{event}"),
            _el("text", label, x=_f(x + 10), y="4"),
        ]
        x += 10 + _text_width(label) + 24
    items += [
        _el("rect", x=_f(x), y="-7", width="22", height="14", class_="legend-band"),
        _el("text", "move", x=_f(x + 28), y="4"),
        _el("line", x1=_f(x + 76), x2=_f(x + 76), y1="-8", y2="8", class_="legend-inject"),
        _el("text", "inject", x=_f(x + 82), y="4"),
    ]
    y = lanes.bottom + _AXIS + 20
    return _el("g", _join(items), class_="legend", transform=f"translate(14,{y})")


# --- charts --------------------------------------------------------------------------------------


class _LettersChart:
    """Exercise time cut into equal slices; a column per slice, stacked by sender."""

    W, H, LEFT, BOTTOM, TOP = 560, 230, 36, 40, 14

    def __init__(self, aar: AfterAction) -> None:
        self.aar = aar
        self.step = _tick_step(_span(aar), 12)
        self.slices = math.ceil(_span(aar) / self.step)
        self.counts = Counter(
            (min(letter.t // self.step, self.slices - 1), letter.sender)
            for letter in aar.comms.letters
        )
        per_slice = Counter(index for index, _ in self.counts.elements())
        self.peak = max([*per_slice.values(), 1])
        self.bar_w = (self.W - self.LEFT - 10) / self.slices
        self.scale = (self.H - self.BOTTOM - self.TOP) / self.peak

    def column(self, index: int) -> Html:
        x, y = self.LEFT + index * self.bar_w, float(self.H - self.BOTTOM)
        parts: list[str] = []
        for party in self.aar.comms.parties:
            count = self.counts[(index, party)]
            if count:
                y -= count * self.scale
                parts.append(self._bar(index, party, count, x, y))
        if index % 2 == 0:
            label = offset(index * self.step).removeprefix("T+")
            parts.append(_el("text", label, x=_f(x + 2), y=_f(self.H - self.BOTTOM + 14)))
        return _join(parts)

    def _bar(self, index: int, party: str, count: int, x: float, y: float) -> Html:
        when = f"{offset(index * self.step)}–{offset((index + 1) * self.step)}"
        return _el(
            "rect",
            _el("title", f"{when}: {count} from {self.aar.who(party)}"),
            x=_f(x + 2),
            y=_f(y),
            width=_f(self.bar_w - 4),
            height=_f(count * self.scale),
            fill=PALETTE[self.aar.comms.parties.index(party) % len(PALETTE)],
            class_="bar",
        )

    def axis(self) -> Html:
        base, left = self.H - self.BOTTOM, self.LEFT
        return _join(
            [
                _el("line", x1=_f(left), x2=_f(self.W - 10), y1=_f(base), y2=_f(base)),
                _el("text", str(self.peak), x=_f(left - 6), y=_f(self.TOP + 4), text_anchor="end"),
                _el("text", "0", x=_f(left - 6), y=_f(base), text_anchor="end"),
                _el(
                    "text",
                    "letters sent per interval (exercise time)",
                    x=_f(left),
                    y=_f(self.H - 6),
                ),
            ]
        )


def _span(aar: AfterAction) -> int:
    """The exercise time the pictures cover: to the scheduled end, or later if the run went on."""
    return max(aar.overview.end_ms, max((entry.t for entry in aar.timeline), default=0), 1)


def letters_chart(aar: AfterAction) -> Html:
    chart = _LettersChart(aar)
    return _el(
        "svg",
        _join(chart.column(index) for index in range(chart.slices)),
        chart.axis(),
        id="chart-letters",
        viewBox=f"0 0 {chart.W} {chart.H}",
        width="100%",
        role="img",
        aria_label="Letters sent over exercise time, stacked by sender",
    )


def open_chart(aar: AfterAction) -> Html:
    """Per party, the median (dark) and longest (light) time to open a letter, world time."""
    rows = aar.comms.totals
    width, left, row_h, top = 560, 170, 30, 10
    height = top + row_h * len(rows) + 24
    longest = max([p.time_to_open.max or 0 for p in rows] + [1.0])
    scale = (width - left - 230) / longest  # room after the bar for its label
    bars = [_open_row(aar, p, top + i * row_h, left, scale) for i, p in enumerate(rows)]
    caption = _el("text", "time to open, world time", x=_f(left), y=_f(height - 6))
    return _el(
        "svg",
        _join(bars),
        caption,
        id="chart-open",
        viewBox=f"0 0 {width} {height}",
        width="100%",
        role="img",
        aria_label="Time to open per party: median and longest",
    )


def _open_row(aar: AfterAction, party: PartyComms, y: float, left: float, scale: float) -> Html:
    times = party.time_to_open
    name = _fit(aar.who(party.party), 26)
    label = _el("text", name, x=_f(left - 8), y=_f(y + 16), text_anchor="end")
    if times.median is None or times.max is None:
        return _join([label, _el("text", "no letters opened", x=_f(left), y=_f(y + 16))])
    summary = f"median {_rough(times.median)}, longest {_rough(times.max)} (n={len(times.seconds)})"
    return _join(
        [
            label,
            _el(
                "rect",
                x=_f(left),
                y=_f(y + 4),
                width=_f(times.max * scale),
                height="16",
                class_="bar-max",
            ),
            _el(
                "rect",
                _el("title", summary),
                x=_f(left),
                y=_f(y + 4),
                width=_f(times.median * scale),
                height="16",
                class_="bar-median",
            ),
            _el("text", summary, x=_f(left + times.max * scale + 6), y=_f(y + 16)),
        ]
    )


# --- HTML sections -------------------------------------------------------------------------------


def _overview_html(aar: AfterAction) -> Html:
    o = aar.overview
    return _section(
        "overview",
        "Overview",
        _el("p", o.summary) if o.summary else "",
        html_table(overview_table(aar), class_="facts"),
        _el("h3", "Parties"),
        html_table(parties_table(aar)),
        _el("h3", "Moves"),
        html_table(moves_table(aar)),
        _el("h3", "Objectives"),
        _el("ul", _join(_el("li", f"{x.id}: {x.text}") for x in o.objectives)),
        _el("h3", "Artificialities"),
        _el("ul", _join(_el("li", text) for text in o.artificialities), id="artificialities"),
    )


def _picture_html(aar: AfterAction) -> Html:
    return _section(
        "picture",
        "The exercise at a glance",
        _el("figure", swimlanes(aar), _el("figcaption", "Swim lanes (exercise time)")),
        _el(
            "div",
            _el("figure", letters_chart(aar), _el("figcaption", "Letters over time")),
            _el("figure", open_chart(aar), _el("figcaption", "Time to open, per party")),
            class_="charts",
        ),
    )


def _objective_html(aar: AfterAction, objective: ObjectiveResult) -> Html:
    rating = objective.rating.replace(" ", "-")
    return _el(
        "article",
        _el(
            "h3",
            f"{objective.id}: {objective.text} ",
            _el("span", objective.rating, class_=f"rating rating-{rating}"),
        ),
        html_table(expectations_table(aar, objective), empty=NO_EXPECTATIONS),
        _el("h4", "Strengths"),
        _evaluator_list(objective.strengths, objective.strengths_hint),
        _el("h4", "Areas for improvement"),
        _evaluator_list(objective.areas_for_improvement, objective.areas_hint),
        class_="objective",
        data_objective=objective.id,
        data_rating=objective.rating,
    )


def _evaluator_list(items: list[str], hint: str) -> Html:
    if items:
        return _el("ul", _join(_el("li", item) for item in items))
    return _el("p", hint, class_="placeholder")


def _objectives_html(aar: AfterAction) -> Html:
    return _section(
        "objectives",
        "Objectives and suggested ratings",
        _el("p", aar.rating_rule, class_="rule"),
        html_table(objectives_table(aar)),
        _join(_objective_html(aar, objective) for objective in aar.objectives),
    )


def _comms_html(aar: AfterAction) -> Html:
    per_move = (
        _el(
            "div",
            _el("h4", f"Move {m.move}: {m.title}"),
            html_table(matrix_table(aar, m.matrix), class_="matrix"),
            class_="move-matrix",
        )
        for m in aar.comms.per_move
    )
    return _section(
        "comms",
        "Communications",
        _el("ul", _join(_el("li", rule) for rule in aar.comms.rules), class_="rule"),
        _el("h3", "Who wrote to whom (letters, sender × recipient)"),
        html_table(matrix_table(aar, aar.comms.matrix), id="comms-matrix", class_="matrix"),
        _el("h3", "First contact"),
        html_table(first_contact_table(aar), id="first-contact"),
        _el("h3", "Per party (world time)"),
        html_table(parties_comms_table(aar), id="comms-parties"),
        _el("h3", "Per move"),
        html_table(moves_comms_table(aar), id="comms-moves"),
        _el("div", _join(per_move), class_="move-matrices"),
        _el("h3", "Letters"),
        html_table(letters_table(aar), id="letters"),
    )


def _integrity_html(aar: AfterAction) -> Html:
    checks = aar.integrity.letters
    return _section(
        "integrity",
        "Integrity",
        _el("p", integrity_summary(aar), class_="ok" if aar.integrity.ok else "failed"),
        html_table(integrity_facts(aar), class_="facts"),
        html_table(integrity_table(aar), row_classes=["ok" if c.ok else "failed" for c in checks]),
    )


def _plan_html(aar: AfterAction) -> Html:
    return _section(
        "improvement-plan",
        "Improvement plan",
        _el(
            "p",
            "One row per objective rated S, M or U; the evaluator completes the rest.",
            class_="rule",
        ),
        html_table(plan_table(aar), class_="plan"),
    )


def render_html(aar: AfterAction) -> str:
    """One self-contained page: inline CSS and SVG, no scripts, nothing fetched."""
    marking = aar.overview.marking
    body = _el(
        "body",
        _el("div", marking, class_="marking") if marking else "",
        _el(
            "main",
            _el("h1", "After-action report: ", aar.overview.title),
            _overview_html(aar),
            _picture_html(aar),
            _objectives_html(aar),
            _comms_html(aar),
            _section("timeline", "Timeline", html_table(timeline_table(aar))),
            _integrity_html(aar),
            _plan_html(aar),
        ),
        _el("div", marking, class_="marking") if marking else "",
    )
    head = _el(
        "head",
        Html('<meta charset="utf-8">'),
        Html('<meta name="viewport" content="width=device-width, initial-scale=1">'),
        _el("title", f"After-action report: {aar.overview.title}"),
        _el("style", Html(CSS)),
    )
    return "<!DOCTYPE html>\n" + _el("html", head, body, lang="en") + "\n"


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

_RENDERERS: dict[str, Callable[[AfterAction], str]] = {
    "html": render_html,
    "md": render_markdown,
    "json": render_json,
}
