"""The after-action report's pictures, as inline SVG: the swim lanes and two charts.

`swimlanes` draws one lane per party, each letter as an arrow from its sender's lane at sending to
its recipient's at delivery, and each receipt as a mark; `letters_chart` stacks letters sent per
interval by sender; `open_chart` shows each party's median and longest time to open.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from channel.exercise.report.analysis import AfterAction, ControlAction
from channel.exercise.report.comms import LetterTrack, Mark, PartyComms
from channel.exercise.report.markup import Html, el, join
from channel.exercise.report.tables import duration, offset, pair, world

PALETTE = ("#2563eb", "#dc2626", "#059669", "#9333ea", "#d97706", "#0891b2", "#db2777", "#4b5563")
# The receipt events the swim lanes mark (accepted is implied by the arrow itself).
RECEIPT_EVENTS = ("delivered", "opened", "returned_unopened", "withdrawn", "expired")
_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)


def _f(value: float) -> str:
    return f"{value:.1f}"


# --- the swim lanes ------------------------------------------------------------------------------

_W, _LEFT, _RIGHT, _AXIS, _LEGEND = 1200, 215, 44, 30, 58
_ROW = 13  # the height of a row of inject or control labels
_LABEL_CHARS, _SUB_CHARS = 21, 30  # what fits beside a lane at 13 px bold and 10 px


def _rows(spans: list[tuple[float, float]]) -> list[int]:
    """A row for each label (start and end x, left to right) so that none overlaps another."""
    ends: list[float] = []
    rows = []
    for start, end in spans:
        row = next((r for r, last in enumerate(ends) if start >= last + 4), len(ends))
        if row == len(ends):
            ends.append(end)
        else:
            ends[row] = end
        rows.append(row)
    return rows


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` characters, broken at spaces or after dots (party names)."""
    pieces = re.findall(r"[^ .-]+[.-]?|[.-]| +", text)
    lines = [""]
    for piece in pieces:
        if lines[-1].strip() and len(lines[-1]) + len(piece.rstrip()) > width:
            lines.append(piece.lstrip())
        else:
            lines[-1] += piece
    out = []
    for line in (line.strip() for line in lines):  # a piece longer than a line is cut up
        out += [line[i : i + width] for i in range(0, len(line), width)] or [""]
    return [line for line in out if line] or [""]


class _Lanes:
    """The swim-lane geometry: x from exercise time, y from a party's lane; label rows above
    the lanes for injects and below them for control actions, as many as keep labels apart."""

    def __init__(self, aar: AfterAction) -> None:
        self.aar = aar
        self.parties = aar.comms.parties
        self.span = _span(aar)
        self.labels = {p: self._label_lines(p) for p in self.parties}
        tallest = max([14 * len(a) + 12 * len(b) for a, b in self.labels.values()] + [44])
        self.lane = max(72, tallest + 20)
        self.titles = [self._title_lines(index) for index in range(len(aar.overview.moves))]
        self.header = 10 + 14 * max([len(lines) for lines in self.titles] + [1])
        self.inject_rows = _rows([self._label_span(m.t, m.id) for m in aar.injects])
        self.top = self.header + _ROW * (max(self.inject_rows, default=-1) + 1) + 8
        self.lanes_bottom = self.top + self.lane * len(self.parties)
        self.control_rows = _rows(
            [self._label_span(a.t, _control_label(a)) for a in aar.control_actions]
        )
        strip = _ROW * (max(self.control_rows, default=-1) + 1)
        self.bottom = self.lanes_bottom + (strip + 8 if strip else 0)
        self.height = self.bottom + _AXIS + _LEGEND

    def _label_lines(self, party: str) -> tuple[list[str], list[str]]:
        seat = next((p for p in self.aar.overview.parties if p.name == party), None)
        play = ("person" if seat.person else seat.play) if seat else None
        sub = [*wrap(party, _SUB_CHARS), *([play] if play else [])]
        return wrap(self.aar.who(party), _LABEL_CHARS), sub

    def _title_lines(self, index: int) -> list[str]:
        """A move's title, wrapped to its band (~7.5 px a character); cut only past 3 lines."""
        moves = self.aar.overview.moves
        end = moves[index + 1].t if index + 1 < len(moves) else self.span
        room = max(int((self.x(end) - self.x(moves[index].t) - 8) / 7.5), 4)
        lines = wrap(f"Move {moves[index].id}: {moves[index].title}", room)
        return lines if len(lines) <= 3 else [*lines[:2], lines[2][: room - 1] + "…"]

    def _label_span(self, t: int, text: str) -> tuple[float, float]:
        x, width = self.x(t), _text_width(text) * 0.9
        return (x - 3 - width, x) if x + 3 + width > _W - 2 else (x, x + 3 + width)

    def x(self, t: int) -> float:
        return _LEFT + (_W - _LEFT - _RIGHT) * t / self.span

    def y(self, party: str) -> float:
        return self.top + self.lane * self.parties.index(party) + self.lane / 2

    def colour(self, party: str) -> str:
        return PALETTE[self.parties.index(party) % len(PALETTE)]


def swimlanes(aar: AfterAction) -> Html:
    lanes = _Lanes(aar)
    placed: list[tuple[float, float]] = []
    return el(
        "svg",
        _markers(lanes),
        join(_move_band(lanes, index) for index in range(len(aar.overview.moves))),
        join(_lane(lanes, party) for party in lanes.parties),
        _axis(lanes),
        _injects(lanes),
        _controls(lanes),
        join(_letter(lanes, letter) for letter in aar.comms.letters),
        join(
            _receipt(lanes, letter, mark)
            for letter in aar.comms.letters
            for mark in letter.marks
            if mark.event in RECEIPT_EVENTS
        ),
        join(_letter_label(lanes, letter, placed) for letter in aar.comms.letters),
        _legend(lanes),
        id="swimlanes",
        viewBox=f"0 0 {_W} {lanes.height}",
        width="100%",
        role="img",
        aria_label="Swim lanes: one lane per party; letters as arrows from sender to recipient",
    )


def _markers(lanes: _Lanes) -> Html:
    markers = (
        el(
            "marker",
            el("path", d="M0,0 L10,5 L0,10 z", fill=lanes.colour(party)),
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
    return el("defs", join(markers))


def _move_band(lanes: _Lanes, index: int) -> Html:
    moves = lanes.aar.overview.moves
    move = moves[index]
    end = moves[index + 1].t if index + 1 < len(moves) else lanes.span
    x0, x1 = lanes.x(move.t), lanes.x(end)
    title = f"Move {move.id}: {move.title}"
    return el(
        "g",
        el("title", f"{title} (from {offset(move.t)}, world {world(move.world)})"),
        el("rect", x=_f(x0), y="0", width=_f(x1 - x0), height=_f(lanes.lanes_bottom)),
        el("text", _lines(lanes.titles[index], x0 + 5, 16, 14), class_="band-title"),
        class_=f"move-band {'odd' if index % 2 else 'even'}",
        data_move=str(move.id),
    )


def _lines(lines: list[str], x: float, y: float, step: float) -> Html:
    return join(
        el("tspan", line, x=_f(x), y=_f(y + step * index)) for index, line in enumerate(lines)
    )


def _lane(lanes: _Lanes, party: str) -> Html:
    y = lanes.y(party)
    label, sub = lanes.labels[party]
    height = 14 * len(label) + 12 * len(sub)
    first = y - height / 2 + 11
    return el(
        "g",
        el("line", x1=_f(_LEFT), x2=_f(_W - _RIGHT), y1=_f(y), y2=_f(y), class_="lane-line"),
        el(
            "rect",
            x="0",
            y=_f(y - height / 2),
            width="6",
            height=_f(height),
            fill=lanes.colour(party),
        ),
        el("title", f"{lanes.aar.who(party)} ({' · '.join([party, *sub[-1:]])})"),
        el("text", _lines(label, 14, first, 14), class_="lane-label"),
        el("text", _lines(sub, 14, first + 14 * len(label), 12), class_="lane-sub"),
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
    baseline = el(
        "line", x1=_f(_LEFT), x2=_f(_W - _RIGHT), y1=_f(lanes.bottom), y2=_f(lanes.bottom)
    )
    return el("g", baseline, join(ticks), class_="axis")


def _tick(x: float, y: float, label: str) -> Html:
    return el(
        "g",
        el("line", x1=_f(x), x2=_f(x), y1=_f(y), y2=_f(y + 5)),
        el("text", label, x=_f(x), y=_f(y + 18), text_anchor="middle"),
    )


def _injects(lanes: _Lanes) -> Html:
    """Inject marks, their labels in as many rows as keep them apart."""
    return join(
        _inject(lanes, mark.id, mark.t, mark.subject, row)
        for mark, row in zip(lanes.aar.injects, lanes.inject_rows, strict=True)
    )


def _inject(lanes: _Lanes, inject_id: str, t: int, subject: str, row: int) -> Html:
    x = lanes.x(t)
    label_y = lanes.header + _ROW * row + 10
    start, _ = lanes._label_span(t, inject_id)
    right = start < x
    return el(
        "g",
        el("title", f"Inject {inject_id} at {offset(t)}: {subject}"),
        el("line", x1=_f(x), x2=_f(x), y1=_f(label_y - 10), y2=_f(lanes.lanes_bottom)),
        el(
            "text",
            inject_id,
            x=_f(x - 3 if right else x + 3),
            y=_f(label_y),
            text_anchor="end" if right else None,
            class_="inject-label",
        ),
        class_="inject-mark",
        data_inject=inject_id,
    )


def _control_label(action: ControlAction) -> str:
    return f"{action.command} {action.argument}" if action.argument else action.command


def _controls(lanes: _Lanes) -> Html:
    """Each control action: a mark across the lanes and its label in the strip below them."""
    marks = []
    for action, row in zip(lanes.aar.control_actions, lanes.control_rows, strict=True):
        x = lanes.x(action.t)
        label = _control_label(action)
        label_y = lanes.lanes_bottom + _ROW * row + 11
        start, _ = lanes._label_span(action.t, label)
        right = start < x
        marks.append(
            el(
                "g",
                el("title", f"{offset(action.t)}: {action.text}"),
                el("line", x1=_f(x), x2=_f(x), y1=_f(lanes.top), y2=_f(label_y - 9)),
                el(
                    "text",
                    label,
                    x=_f(x - 3 if right else x + 3),
                    y=_f(label_y),
                    text_anchor="end" if right else None,
                    class_="control-label",
                ),
                class_="control-mark",
                data_command=action.command,
            )
        )
    return join(marks)


def _letter(lanes: _Lanes, letter: LetterTrack) -> Html:
    y0, y1 = lanes.y(letter.sender), lanes.y(letter.recipient)
    end = letter.delivered_t if letter.delivered_t is not None else letter.t
    # Stop short of the lane line so the arrow head is not hidden under the delivered mark.
    y1 -= math.copysign(6, y1 - y0)
    subject = f": {letter.subject}" if letter.subject else ""
    title = (
        f"{letter.label} {pair(lanes.aar, letter.sender, letter.recipient)}{subject}, "
        f"sent {offset(letter.t)}, delivered {offset(letter.delivered_t)}"
    )
    return el(
        "line",
        el("title", title),
        x1=_f(lanes.x(letter.t)),
        y1=_f(y0),
        x2=_f(lanes.x(end)),
        y2=_f(y1),
        stroke=lanes.colour(letter.sender),
        marker_end=f"url(#arrow-{lanes.parties.index(letter.sender)})",
        class_="letter" if letter.delivered_t is not None else "letter undelivered",
        data_letter=letter.label,
    )


def _letter_label(lanes: _Lanes, letter: LetterTrack, placed: list[tuple[float, float]]) -> Html:
    """The letter's label beside its arrow, slid along it until it clears the labels before."""
    x0, y0 = lanes.x(letter.t), lanes.y(letter.sender)
    end = letter.delivered_t if letter.delivered_t is not None else letter.t
    x1, y1 = lanes.x(end), lanes.y(letter.recipient)
    width = _text_width(letter.label) * 0.85
    for along in (0.5, 0.35, 0.65, 0.2, 0.8, 0.5):
        x, y = x0 + (x1 - x0) * along + 4, y0 + (y1 - y0) * along + 4
        if all(abs(x - px) > width + 2 or abs(y - py) > 11 for px, py in placed):
            break
    placed.append((x, y))
    return el(
        "text", letter.label, x=_f(x), y=_f(y), class_="letter-label", data_letter=letter.label
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
    return el(
        "path",
        el("title", title),
        d=_shape(mark.event, lanes.x(mark.t), y),
        class_=f"receipt receipt-{mark.event}",
        data_letter=letter.label,
    )


def _rough(seconds: float) -> str:
    """A duration to the minute once it is past an hour: a chart label, not a measurement."""
    return duration(round(seconds / 60) * 60 if seconds >= 3600 else seconds)


def _text_width(text: str) -> float:
    return len(text) * 6.2  # about 6 px a character at the 11 px the SVG text uses


def _legend(lanes: _Lanes) -> Html:
    arrow = "letter (arrow from the sender, head at delivery)"
    items = [
        el("line", x1="0", y1="0", x2="28", y2="0", stroke="#374151", marker_end="url(#arrow-0)"),
        el("text", arrow, x="36", y="4"),
    ]
    x = 36 + _text_width(arrow) + 30
    for event in RECEIPT_EVENTS:
        label = event.replace("_", " ")
        items += [
            el("path", d=_shape(event, x, 0), class_=f"receipt-{event}"),
            el("text", label, x=_f(x + 10), y="4"),
        ]
        x += 10 + _text_width(label) + 24
    items += [
        el("rect", x=_f(x), y="-7", width="22", height="14", class_="legend-band"),
        el("text", "move", x=_f(x + 28), y="4"),
        el("line", x1=_f(x + 76), x2=_f(x + 76), y1="-8", y2="8", class_="legend-inject"),
        el("text", "inject", x=_f(x + 82), y="4"),
        el("line", x1=_f(x + 130), x2=_f(x + 130), y1="-8", y2="8", class_="legend-control"),
        el("text", "control action", x=_f(x + 136), y="4"),
    ]
    y = lanes.bottom + _AXIS + 20
    return el("g", join(items), class_="legend", transform=f"translate(14,{y})")


# --- charts --------------------------------------------------------------------------------------


class _LettersChart:
    """Exercise time cut into equal slices; a column per slice, stacked by sender."""

    W, H, LEFT, BOTTOM, TOP = 560, 230, 36, 40, 14

    def __init__(self, aar: AfterAction) -> None:
        self.aar = aar
        self.legend_rows = _legend_rows([aar.who(p) for p in aar.comms.parties], self.W - 20)
        self.height = self.H + 18 * len({row for row, _ in self.legend_rows}) + 8
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
            parts.append(el("text", label, x=_f(x + 2), y=_f(self.H - self.BOTTOM + 14)))
        return join(parts)

    def _bar(self, index: int, party: str, count: int, x: float, y: float) -> Html:
        when = f"{offset(index * self.step)}–{offset((index + 1) * self.step)}"
        return el(
            "rect",
            el("title", f"{when}: {count} from {self.aar.who(party)}"),
            x=_f(x + 2),
            y=_f(y),
            width=_f(self.bar_w - 4),
            height=_f(count * self.scale),
            fill=PALETTE[self.aar.comms.parties.index(party) % len(PALETTE)],
            class_="bar",
        )

    def axis(self) -> Html:
        base, left = self.H - self.BOTTOM, self.LEFT
        interval = duration(self.step / 1000)
        return join(
            [
                el("line", x1=_f(left), x2=_f(self.W - 10), y1=_f(base), y2=_f(base)),
                el("text", str(self.peak), x=_f(left - 6), y=_f(self.TOP + 4), text_anchor="end"),
                el("text", "0", x=_f(left - 6), y=_f(base), text_anchor="end"),
                el(
                    "text",
                    f"letters sent per {interval} of exercise time, by sender "
                    "(label: the interval's start)",
                    x=_f(left),
                    y=_f(self.H - 6),
                    class_="chart-interval",
                    data_interval=interval,
                ),
            ]
        )

    def legend(self) -> Html:
        items = []
        for (row, x), party in zip(self.legend_rows, self.aar.comms.parties, strict=True):
            y = self.H + 8 + 18 * row
            colour = PALETTE[self.aar.comms.parties.index(party) % len(PALETTE)]
            items += [
                el("rect", x=_f(10 + x), y=_f(y), width="12", height="12", fill=colour),
                el("text", self.aar.who(party), x=_f(10 + x + 16), y=_f(y + 10)),
            ]
        return el("g", join(items), class_="chart-legend")


def _legend_rows(names: list[str], width: float) -> list[tuple[int, float]]:
    """(row, x) for each legend entry: a swatch and a name, wrapping onto new rows."""
    placed, row, x = [], 0, 0.0
    for name in names:
        size = 16 + _text_width(name) + 18
        if x and x + size > width:
            row, x = row + 1, 0.0
        placed.append((row, x))
        x += size
    return placed


def _span(aar: AfterAction) -> int:
    """The exercise time the pictures cover: to the scheduled end, or later if the run went on."""
    return max(aar.overview.end_ms, max((entry.t for entry in aar.timeline), default=0), 1)


def letters_chart(aar: AfterAction) -> Html:
    chart = _LettersChart(aar)
    return el(
        "svg",
        join(chart.column(index) for index in range(chart.slices)),
        chart.axis(),
        chart.legend(),
        id="chart-letters",
        viewBox=f"0 0 {chart.W} {chart.height}",
        width="100%",
        role="img",
        aria_label="Letters sent over exercise time, stacked by sender",
    )


def open_chart(aar: AfterAction) -> Html:
    """Per party, the median (dark) and longest (light) time to open a letter, world time."""
    rows = aar.comms.totals
    width, left, top = 560, 170, 10
    names = {p.party: wrap(aar.who(p.party), 25) for p in rows}
    row_h = max([30] + [13 * len(lines) + 8 for lines in names.values()])
    height = top + row_h * len(rows) + 24
    longest = max([p.time_to_open.max or 0 for p in rows] + [1.0])
    scale = (width - left - 230) / longest  # room after the bar for its label
    bars = [
        _open_row(aar, p, names[p.party], top + i * row_h, left, scale) for i, p in enumerate(rows)
    ]
    caption = el("text", "time to open, world time", x=_f(left), y=_f(height - 6))
    return el(
        "svg",
        join(bars),
        caption,
        id="chart-open",
        viewBox=f"0 0 {width} {height}",
        width="100%",
        role="img",
        aria_label="Time to open per party: median and longest",
    )


def _open_row(
    aar: AfterAction, party: PartyComms, name: list[str], y: float, left: float, scale: float
) -> Html:
    times = party.time_to_open
    label = el("text", _lines(name, left - 8, y + 16, 13), text_anchor="end", class_="open-name")
    if times.median is None or times.max is None:
        return join([label, el("text", "no letters opened", x=_f(left), y=_f(y + 16))])
    summary = f"median {_rough(times.median)}, longest {_rough(times.max)} (n={len(times.seconds)})"
    return join(
        [
            label,
            el(
                "rect",
                x=_f(left),
                y=_f(y + 4),
                width=_f(times.max * scale),
                height="16",
                class_="bar-max",
            ),
            el(
                "rect",
                el("title", summary),
                x=_f(left),
                y=_f(y + 4),
                width=_f(times.median * scale),
                height="16",
                class_="bar-median",
            ),
            el("text", summary, x=_f(left + times.max * scale + 6), y=_f(y + 16)),
        ]
    )
