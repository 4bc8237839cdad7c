"""The report's charts read: full party names, inject and control labels that do not collide,
letter labels on the arrows, a legend and interval on the bar chart, nothing clipped. Headless
Chromium lays the text out and measures it (getBBox), so the checks use real glyph widths."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from channel.exercise.eventlog import EventLog, read_log
from channel.exercise.report.analysis import AfterAction, analyse
from channel.exercise.report.html import CSS
from channel.exercise.report.svg import letters_chart, open_chart, swimlanes, wrap
from channel.protocol.lifecycle import State
from tests.test_exercise_figures import ENDED, news, table_evidence
from tests.test_exercise_report import (
    A,
    B,
    C,
    Elements,
    Tabletop,
    as_is,
    chromium,
    inject,
    run_started_data,
)

LABELS = {
    A: "Director of the Central Intelligence Agency",
    B: "Commander, IRGC Quds Force (Major General)",
    C: "Embassy of Switzerland, Foreign Interests Section",
}
CROWDED = [f"INJ-{n:02d}" for n in range(1, 8)]  # seven injects four seconds apart


def play(path: Path) -> None:
    """Long names, a cluster of injects, letters close together, control actions at the end."""
    plan = [inject(i, 1, None, [], 20_000 + n * 4_000) for n, i in enumerate(CROWDED)]
    plan += [inject("INJ-LATE", 2, None, [], 890_000), inject("INJ-C", 2, None, [], None)]
    with EventLog(path) as log:
        table = Tabletop(log)
        data = run_started_data() | {"injects": plan, "speed": "60"}
        for party in data["parties"]:
            party["label"] = LABELS[party["name"]]
        table.write("run_started", 0, data, table_evidence(table))
        for n, inject_id in enumerate(CROWDED):
            news(table, inject_id, 20_000 + n * 4_000, "scheduled")
        for label, sender, recipient, t in (
            ("L1", A, C, 30_000),
            ("L2", C, B, 31_000),
            ("L3", A, B, 32_000),
            ("L4", A, C, 33_000),
        ):
            table.send(label, sender, recipient, t, subject="S" if sender != A else None)
            table.receipt(label, State.DELIVERED, t + 1_000)
        table.receipt("L1", State.OPENED, 40_000)
        table.write("control", 240_000, {"command": "speed", "argument": "120"})
        table.write("control", 250_000, {"command": "pause"})
        table.write("control", 250_000, {"command": "resume"})
        table.write("control", 252_000, {"command": "fire", "argument": "INJ-C"})
        news(table, "INJ-C", 252_000, "control")
        table.write("inject_held", 930_000, {"inject": "INJ-LATE", "by": "control"})
        table.write("inject_released", 940_000, {"inject": "INJ-LATE", "by": "control"})
        news(table, "INJ-LATE", 940_000, "control")
        table.finish(950_000, as_is, ENDED)


@pytest.fixture(scope="module")
def aar(tmp_path_factory: pytest.TempPathFactory) -> AfterAction:
    path = tmp_path_factory.mktemp("charts") / "events.jsonl"
    play(path)
    return analyse(read_log(path))


def test_full_party_names_are_wrapped_not_cut(aar: AfterAction) -> None:
    """Every lane and the time-to-open chart carry each party's whole name, over lines."""
    lanes = Elements(swimlanes(aar))
    assert len(lanes.with_class("lane-label")) == 3
    page = swimlanes(aar) + open_chart(aar) + letters_chart(aar)
    for label in LABELS.values():
        lines = wrap(label, 21)
        assert len(lines) > 1
        assert all(f">{line}</tspan>" in page for line in lines)
    assert "…" not in page
    assert wrap("Commander, IRGC Quds Force (Major General)", 25) == [
        "Commander, IRGC Quds",
        "Force (Major General)",
    ]


def test_injects_controls_and_letters_are_labelled(aar: AfterAction) -> None:
    """Inject labels each in their own slot, every control action drawn, every arrow labelled."""
    page = Elements(swimlanes(aar))
    assert [m["data-inject"] for m in page.with_class("inject-mark")] == [
        *CROWDED,
        "INJ-C",
        "INJ-LATE",
    ]
    assert [m["data-command"] for m in page.with_class("control-mark")] == [
        "speed", "pause", "resume", "fire", "hold", "release"
    ]  # fmt: skip
    assert [m["data-letter"] for m in page.with_class("letter-label")] == ["L1", "L2", "L3", "L4"]
    legend = Elements(letters_chart(aar))
    assert legend.with_class("chart-interval")[0]["data-interval"] == "2m"
    chart = letters_chart(aar)
    assert "letters sent per 2m of exercise time" in chart
    assert all(name in chart for name in LABELS.values())


MEASURE = """
<script>
// Screen boxes (getBoundingClientRect): transforms and the viewBox scale included.
const problems = [];
const box = element => element.getBoundingClientRect();
const overlap = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 &&
  a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
for (const svg of document.querySelectorAll("svg")) {
  const frame = box(svg);
  for (const text of svg.querySelectorAll("text")) {
    const b = box(text);
    if (b.left < frame.left - 0.5 || b.top < frame.top - 0.5 || b.right > frame.right + 0.5 ||
        b.bottom > frame.bottom + 0.5) problems.push("clipped: " + text.textContent);
  }
  for (const cls of ["inject-label", "control-label", "letter-label"]) {
    const boxes = [...svg.querySelectorAll("." + cls)].map(t => [t.textContent, box(t)]);
    boxes.forEach(([a, p], i) => boxes.slice(i + 1).forEach(([b, q]) => {
      if (overlap(p, q)) problems.push("overlap: " + a + " / " + b);
    }));
  }
  const lane = svg.querySelector(".lane-line");
  if (lane) {
    for (const label of svg.querySelectorAll(".lane-label, .lane-sub")) {
      if (box(label).right > box(lane).left) problems.push("into the lanes: " + label.textContent);
    }
  }
}
document.body.setAttribute("data-problems", JSON.stringify(problems));
</script>
"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_chromium_measures_nothing_clipped_or_overlapping(aar: AfterAction, tmp_path: Path) -> None:
    """Laid out by Chromium: no text outside its chart, no two labels of a kind overlapping."""
    figures = (
        f"<div style='width:1240px'>{swimlanes(aar)}</div>{letters_chart(aar)}{open_chart(aar)}"
    )
    page = tmp_path / "charts.html"
    page.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{CSS}</style></head>"
        f"<body>{figures}{MEASURE}</body></html>",
        encoding="utf-8",
    )
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile").stdout
    found = re.search(r'data-problems="([^"]*)"', dom)
    assert found is not None
    assert json.loads(found.group(1).replace("&quot;", '"')) == []
    shot = tmp_path / "charts.png"
    chromium(
        f"--screenshot={shot}", "--window-size=1280,1000", page.as_uri(), profile=tmp_path / "p2"
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
