"""The after-action report's tables: headers and rows of plain text, from an `AfterAction`.

The tables are defined once here and drawn by both the Markdown renderer
(`report.render`) and the HTML one (`report.html`), so the two always
say the same thing. The small text formatters (exercise offsets, world times, durations) are the
ones the SVG pictures use too.
"""

from __future__ import annotations

from collections.abc import Mapping

from channel.exercise.author.scenario import format_duration, format_offset
from channel.exercise.report.analysis import AfterAction, ObjectiveResult
from channel.exercise.report.comms import PartyComms, Span
from channel.party.timeline import short_time

NO_VALUE = "—"
NO_EXPECTATIONS = "No expectation is tagged to this objective: it is not assessed."

Table = tuple[list[str], list[list[str]]]


def offset(t_ms: int | None) -> str:
    return format_offset(t_ms / 1000) if t_ms is not None else NO_VALUE


def world(timestamp: str) -> str:
    return short_time(timestamp)


def duration(seconds: float | None) -> str:
    return format_duration(seconds) if seconds is not None else NO_VALUE


def pair(aar: AfterAction, sender: str, recipient: str) -> str:
    return f"{aar.tagged(sender)} → {aar.tagged(recipient)}"


def span(value: Span | None) -> str:
    """A stretch on both clocks: exercise time first, wall time after."""
    if value is None:
        return NO_VALUE
    return f"{duration(value.exercise_s)} exercise, {duration(value.wall_s)} wall"


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
    rows = [
        [aar.tagged(p.name), p.name, "person" if p.person else p.play, p.player]
        for p in aar.overview.parties
    ]
    return ["party", "name", "seat", "player"], rows


def moves_table(aar: AfterAction) -> Table:
    rows = [[str(m.id), m.title, offset(m.t), world(m.world)] for m in aar.overview.moves]
    return ["move", "title", "starts", "world time"], rows


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
            pair(aar, e.sender, e.recipient),
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
    "relayed",
    "unanswered",
    "undecided",
]


def _party_row(aar: AfterAction, p: PartyComms) -> list[str]:
    return [
        aar.who(p.party),  # the seat's person tag is in the parties and dwell tables
        str(p.sent),
        str(p.received),
        str(p.opened),
        str(p.returned_unopened),
        duration(p.time_to_open.median),
        duration(p.time_to_open.max),
        duration(p.time_to_reply.median),
        duration(p.time_to_reply.max),
        _labels(p.relayed),
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
            pair(aar, letter.sender, letter.recipient),
            offset(letter.t),
            world(letter.world),
            str(letter.move),
            letter.subject or "(sealed)",
            letter.in_reply_to or NO_VALUE,
            letter.forwards or NO_VALUE,
            ", ".join(mark.event for mark in letter.marks) or NO_VALUE,
            letter.final_state or NO_VALUE,
            span(letter.timing.latency) if letter.timing else NO_VALUE,
            _dwell(letter.timing.dwell, letter.timing.dwell_until) if letter.timing else NO_VALUE,
        ]
        for letter in aar.comms.letters
    ]
    headers = ["letter", "from → to", "sent", "world time", "move", "subject", "in reply to"]
    timing = ["courier latency (to a person)", "dwell in the person's inbox"]
    return [*headers, "relays", "receipts", "final state", *timing], rows


def _dwell(value: Span | None, until: str | None) -> str:
    if value is None:
        return NO_VALUE
    return f"{span(value)} (until {'the end' if until == 'end' else until})"


def dwell_table(aar: AfterAction) -> Table:
    """Per person: how long letters sat in their inbox, apart from the courier's latency."""
    rows = [
        [
            aar.tagged(p.party),
            str(len(p.dwell.wall.seconds)),
            duration(p.dwell.wall.median),
            duration(p.dwell.wall.max),
            duration(p.dwell.exercise.median),
            duration(p.dwell.exercise.max),
        ]
        for p in aar.comms.totals
        if p.dwell is not None
    ]
    headers = ["person's seat", "letters delivered", "dwell: median (wall)", "dwell: max (wall)"]
    return [*headers, "dwell: median (exercise)", "dwell: max (exercise)"], rows


def notices_summary(aar: AfterAction) -> str:
    return (
        f"{aar.key_figures.notices} notices from the control cell reached people's seats as "
        "sealed letters; they are not counted among the exercise's letters."
    )


def notices_table(aar: AfterAction) -> Table:
    rows = [
        [offset(n.t), world(n.world), n.kind, n.inject or NO_VALUE, aar.tagged(n.party)]
        for n in aar.notices
    ]
    return ["sent", "world time", "notice", "inject", "to"], rows


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
            pair(aar, c.sender or "?", c.recipient or "?"),
            "ok" if c.ok else "FAILED",
            c.reason,
        ]
        for c in aar.integrity.letters
    ]
    return ["letter", "courier letter id", "from → to", "result", "detail"], rows


def plan_table(aar: AfterAction) -> Table:
    rows = [
        [
            row.capability,
            f"{row.objective} ({row.rating})",
            row.issue,
            row.corrective_action,
            row.organisation,
            row.point_of_contact,
            row.start,
            row.end,
        ]
        for row in aar.improvement_plan
    ]
    headers = ["core capability", "objective (rating)", "issue / area for improvement"]
    return [*headers, "corrective action", "organisation", "point of contact", "start", "end"], rows


# --- page one ------------------------------------------------------------------------------------


def _people(aar: AfterAction) -> str:
    seats = aar.overview.parties
    players = sorted({p.player for p in seats if p.player})
    text = f"{len(seats)} seats: {aar.key_figures.people} played by people"
    text += f", {aar.key_figures.bots} by bots"
    control = sum(p.play == "control" for p in seats)
    text += f", {control} by the control cell" if control else ""
    return text + (f" ({', '.join(players)})" if players else "")


def summary_table(aar: AfterAction) -> Table:
    """Page one's facts: what, when, who."""
    o = aar.overview
    rows = [
        ["Exercise", f"{o.title} (scenario revision {o.revision})"],
        ["Played", f"{world(o.wall_start)} to {world(o.wall_end)} (wall clock)"],
        ["Story time", f"{world(o.world_start)} to {world(o.world_end)}"],
        ["Exercise time", f"{duration(o.duration_ms / 1000)} (scheduled end {offset(o.end_ms)})"],
        ["Participants", _people(aar)],
        ["Evaluators", ", ".join(aar.evaluators) or "none named (notes.yaml)"],
        ["Kind", "rehearsal (stand-in bots in the human seats)" if o.rehearse else "live play"],
    ]
    return ["", ""], rows


def rating_text(objective: ObjectiveResult) -> str:
    if objective.rated_by == "evaluator" and objective.rating != objective.suggested_rating:
        return f"{objective.rating} (suggested {objective.suggested_rating})"
    suffix = "" if objective.rated_by == "evaluator" else " (suggested)"
    return objective.rating + suffix


def ratings_table(aar: AfterAction) -> Table:
    rows = [
        [o.id, o.text, o.core_capability or NO_VALUE, rating_text(o), _share(o)]
        for o in aar.objectives
    ]
    return ["objective", "text", "core capability", "rating", "expectations met"], rows


def key_figures_table(aar: AfterAction) -> Table:
    k = aar.key_figures
    rows = [
        ["Injects", k.injects],
        ["Letters", str(k.letters)],
        *([["Notices to seats (not letters)", str(k.notices)]] if k.notices else []),
        [
            "Expectations",
            f"{k.expectations_met} met, {k.expectations_missed} missed, "
            f"{k.expectations_pending} pending at the end",
        ],
        ["Control actions", str(k.control_actions)],
        ["Letters verified", k.letters_verified],
    ]
    return ["", ""], rows


def main_strengths(aar: AfterAction, most: int = 5) -> list[str]:
    found = [f"{o.id}: {text}" for o in aar.objectives for text in o.strengths]
    return found[:most]


def main_areas(aar: AfterAction, most: int = 5) -> list[str]:
    found = [
        f"{o.id}: {area.observation or area.recommendation}"
        for o in aar.objectives
        for area in o.areas_for_improvement
    ]
    return found[:most]


NO_NOTES = (
    "No evaluator observations yet: run `channel exercise notes RUN`, fill in notes.yaml, and "
    "make the report again."
)


# --- appendices ----------------------------------------------------------------------------------


def msel_table(aar: AfterAction) -> Table:
    rows = []
    for row in aar.msel:
        late = (
            duration(abs(row.played_t - row.planned_t) / 1000)
            if row.played_t is not None and row.planned_t is not None
            else NO_VALUE
        )
        if late not in {NO_VALUE, "0s"} and row.played_t is not None and row.planned_t is not None:
            late = ("+" if row.played_t > row.planned_t else "−") + late
        planned = offset(row.planned_t) if row.planned_t is not None else "contingency"
        sender = aar.who(row.sender) if row.sender else "the wires"
        to = ", ".join(aar.who(name) for name in row.to) or "everyone"
        rows.append(
            [
                row.id,
                str(row.move) if row.move is not None else NO_VALUE,
                row.channel,
                f"{sender} → {to}",
                row.subject,
                planned,
                offset(row.played_t),
                late,
                row.status + (f" ({row.cause})" if row.cause and row.cause != "scheduled" else ""),
            ]
        )
    headers = ["inject", "move", "channel", "from → to", "subject", "planned", "played"]
    return [*headers, "difference", "status"], rows


def control_table(aar: AfterAction) -> Table:
    rows = [[offset(a.t), world(a.world), a.text] for a in aar.control_actions]
    return ["exercise time", "world time", "control action"], rows


def feedback_table(aar: AfterAction) -> Table:
    answers = aar.feedback.answers if aar.feedback else []
    rows = [
        [
            aar.who(f.seat),
            f.respondent or NO_VALUE,
            f"{f.rating}/5" if f.rating else NO_VALUE,
            f.strengths or NO_VALUE,
            f.improvements or NO_VALUE,
            f.actions or NO_VALUE,
            f.comments or NO_VALUE,
        ]
        for f in answers
    ]
    headers = ["seat", "respondent", "rating", "went well", "to improve", "will do differently"]
    return [*headers, "comments"], rows


def feedback_summary(aar: AfterAction) -> str:
    summary = aar.feedback
    if summary is None:
        return (
            "No participant feedback: each seat answers the hot-wash questions with "
            "`channel exercise feedback RUN --seat PARTY`."
        )
    mean = f"; mean rating {summary.mean_rating:.1f} of 5" if summary.mean_rating else ""
    return f"{len(summary.answers)} of {summary.seats} seats answered{mean}."


def integrity_summary(aar: AfterAction) -> str:
    i = aar.integrity
    total = i.verified + i.failed
    text = f"{i.verified} of {total} letters verify with the keys run_started announced"
    if i.failed:
        text += f"; {i.failed} FAILED"
    if i.missing_final:
        text += f"; no final status for {_labels(i.missing_final)}"
    return text + "."
