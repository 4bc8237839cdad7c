"""The letters of a live run as swim lanes: one lane per party, an arrow per letter from its
sender's lane to its recipient's at the time it was sent (labelled L1, L2, ...), and a mark on
the recipient's lane for each receipt. Server-side SVG, redrawn on every event."""

from __future__ import annotations

from markupsafe import Markup, escape

from channel.exercise.board.follow import Letter

WIDTH, LANE, LEFT, TOP = 960, 56, 190, 24
MARKS = {
    "delivered": "●",
    "opened": "✔",
    "returned_unopened": "↩",
    "withdrawn": "✖",
    "expired": "⌛",
}


def swimlanes(parties: list[str], letters: list[Letter], now_ms: int) -> Markup:
    latest = max([now_ms, *(t for letter in letters for _, t in letter.receipts)])
    span = max(latest, 60_000) * 1.05
    height = TOP + LANE * len(parties) + 10
    lane = {name: TOP + LANE * index + LANE // 2 for index, name in enumerate(parties)}

    def x(t: int) -> float:
        return LEFT + (WIDTH - LEFT - 20) * t / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lanes" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-labelledby="lanes-title">',
        f'<title id="lanes-title">Letters between the parties: {len(letters)} so far</title>',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
        "</defs>",
    ]
    for name, y in lane.items():
        parts.append(
            f'<line class="lane" x1="{LEFT}" y1="{y}" x2="{WIDTH - 10}" y2="{y}"/>'
            f'<text class="party" x="8" y="{y + 5}">{escape(name)}</text>'
        )
    parts.append(
        f'<line class="now" x1="{x(now_ms):.1f}" y1="{TOP - 14}" x2="{x(now_ms):.1f}" '
        f'y2="{height - 6}"><title>now</title></line>'
    )
    for letter in letters:
        if letter.sender not in lane or letter.recipient not in lane:
            continue
        x1, y1, y2 = x(letter.t), lane[letter.sender], lane[letter.recipient]
        delivered = next((t for event, t in letter.receipts if event == "delivered"), letter.t)
        x2 = max(x(delivered), x1 + 6)
        what = f"{letter.label} {letter.sender} to {letter.recipient}: {letter.subject}"
        parts.append(
            f'<g class="letter"><title>{escape(what)}</title>'
            f'<line x1="{x1:.1f}" y1="{y1}" x2="{x2:.1f}" y2="{y2}" marker-end="url(#arrow)"/>'
            f'<text class="label" x="{(x1 + x2) / 2 + 4:.1f}" y="{(y1 + y2) / 2:.1f}">'
            f"{escape(letter.label)}</text></g>"
        )
        for index, (event, t) in enumerate(letter.receipts):
            mark = MARKS.get(event, "•")
            at = max(x(t), x2) + 12 * index  # receipts close together stay apart
            parts.append(
                f'<text class="receipt r-{escape(event)}" x="{at:.1f}" y="{y2 + 18}">'
                f"<title>{escape(letter.label)} {escape(event)}</title>{mark}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
