"""The AAR/IP: page one an executive summary, the evaluators' notes and the participants'
feedback merged from the run folder (through the CLI), the MSEL as planned and as played, and
the PDF Chromium prints from the page."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from channel.exercise.eventlog import read_log
from channel.exercise.report.analysis import analyse
from channel.exercise.report.html import render_html
from channel.exercise.report.render import render_markdown, write_reports
from tests.test_exercise_cli import CHANNEL
from tests.test_exercise_figures import play as play_figures
from tests.test_exercise_report import A, C, Elements, play


def channel(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*CHANNEL, *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder holding the known exercise's event log."""
    folder = tmp_path / "run"
    folder.mkdir()
    play(folder / "events.jsonl")
    return folder


def fill(notes: dict[str, Any]) -> None:
    """What an evaluator writes into the template."""
    notes["evaluators"] = ["R. Evaluator"]
    notes["summary"] = "The channel held; the intermediary carried the exchange."
    one = notes["objectives"]["OBJ-1"]
    one["core_capability"] = "Operational Coordination"
    one["strengths"] = ["The warning went out within the hour."]
    two = notes["objectives"]["OBJ-2"]
    two["rating"] = "M"
    two["core_capability"] = "Intelligence and Information Sharing"
    two["strengths"] = ["", "The Swiss answered within an hour."]
    two["areas_for_improvement"] = [
        {
            "observation": "The Quds Force never saw the second letter.",
            "analysis": "Nobody tracked delivery.",
            "recommendation": "Track every letter to a receipt.",
            "corrective_action": "Add a delivery check to the desk procedure.",
            "organisation": "Blue cell",
            "point_of_contact": "Duty officer",
            "start": "2018-01-08",
            "end": "2018-02-28",
        },
        {"observation": "", "analysis": ""},  # left blank: ignored
    ]


def test_notes_template_then_report_merges_what_evaluators_wrote(run_dir: Path) -> None:
    """`exercise notes` writes a template per objective; filled in, the report re-reads it."""
    done = channel("exercise", "notes", str(run_dir))
    assert done.returncode == 0, done.stderr
    path = run_dir / "notes.yaml"
    text = path.read_text(encoding="utf-8")
    assert "# Objective 2 (suggested rating: S)" in text
    assert "# Objective 5 (suggested rating: not assessed)" in text
    # An untouched template changes nothing.
    untouched = write_reports(run_dir / "events.jsonl", run_dir, ["json"])["json"]
    assert '"strengths": []' in untouched.read_text(encoding="utf-8")
    again = channel("exercise", "notes", str(run_dir))
    assert again.returncode == 2
    assert again.stderr.strip().endswith("already exists: edit it (remove it to start again)")

    notes = yaml.safe_load(text)
    fill(notes)
    path.write_text(yaml.safe_dump(notes), encoding="utf-8")
    done = channel("exercise", "report", str(run_dir), "--format", "md", "--format", "html")
    assert done.returncode == 0, done.stderr
    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "### OBJ-2: Objective 2 (rating: M (suggested S))" in markdown
    assert "- **Observation:** The Quds Force never saw the second letter." in markdown
    assert "  **Analysis:** Nobody tracked delivery." in markdown
    assert "Core capability: Intelligence and Information Sharing" in markdown
    assert (
        "| Intelligence and Information Sharing | OBJ-2: Objective 2 (M) | The Quds Force never "
        "saw the second letter. | Add a delivery check to the desk procedure. | Blue cell | "
        "Duty officer | 2018-01-08 | 2018-02-28 |"
    ) in markdown
    # OBJ-3 and OBJ-4 have no areas yet: an empty row each to complete; OBJ-1 (P) none.
    assert "|  | OBJ-3: Objective 3 (M) |  |  |  |  |  |  |" in markdown
    assert "OBJ-1: Objective 1 (P)" not in markdown.split("Appendix A")[1].split("Appendix B")[0]
    summary = markdown.split("## Analysis of objectives")[0]
    assert "The channel held; the intermediary carried the exchange." in summary
    assert "- OBJ-1: The warning went out within the hour." in summary
    assert "- OBJ-2: The Swiss answered within an hour." in summary
    assert "- OBJ-2: The Quds Force never saw the second letter." in summary
    assert "| Evaluators | R. Evaluator |" in summary
    page = Elements((run_dir / "report.html").read_text(encoding="utf-8"))
    ratings = {a["data-objective"]: a["data-rating"] for a in page.with_class("objective")}
    assert ratings["OBJ-2"] == "M"
    assert len(page.with_class("area")) == 1


def test_a_bad_notes_file_is_one_clear_line(run_dir: Path) -> None:
    """A date that is not a date, or an objective the run lacks, is one line; no report."""
    (run_dir / "notes.yaml").write_text(
        "objectives:\n  OBJ-1:\n    areas_for_improvement:\n      - start: next week\n",
        encoding="utf-8",
    )
    done = channel("exercise", "report", str(run_dir), "--format", "md")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: {run_dir / 'notes.yaml'}: objectives.OBJ-1.areas_for_improvement.0.start: "
        "'next week' is not a date: write YYYY-MM-DD"
    )
    assert not (run_dir / "report.md").exists()
    (run_dir / "notes.yaml").write_text("objectives:\n  OBJ-9:\n    rating: P\n", encoding="utf-8")
    done = channel("exercise", "report", str(run_dir), "--format", "md")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: notes.yaml has notes on objective 'OBJ-9', which this exercise does not have "
        "(objectives: OBJ-1, OBJ-2, OBJ-3, OBJ-4, OBJ-5)"
    )


def test_feedback_per_seat_by_flags_or_prompts_is_summarised(run_dir: Path) -> None:
    """Each seat's hot-wash answers land in feedback/, by flags or by answering the prompts."""
    done = channel(
        "exercise", "feedback", str(run_dir), "--seat", A, "--name", "Blue lead",
        "--rating", "4", "--went-well", "Fast first letter", "--improve", "Track receipts",
        "--do-differently", "Brief the desk", "--comments", "Good pace", "--no-input",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (run_dir / "feedback" / f"{A}.json").is_file()
    answers = "Swiss desk\n3\nThe relay worked\nSlow openings\nOpen sooner\n\n"
    done = channel("exercise", "feedback", str(run_dir), "--seat", C, stdin=answers)
    assert done.returncode == 0, done.stderr
    refused = channel("exercise", "feedback", str(run_dir), "--seat", "nobody.here", "--no-input")
    assert refused.returncode == 2
    assert "'nobody.here' is not a seat of this run" in refused.stderr

    written = write_reports(run_dir / "events.jsonl", run_dir, ["md", "html"])
    markdown = written["md"].read_text(encoding="utf-8")
    assert "2 of 3 seats answered; mean rating 3.5 of 5." in markdown
    assert (
        "| CIA Director | Blue lead | 4/5 | Fast first letter | Track receipts | Brief the desk "
        "| Good pace |"
    ) in markdown
    assert (
        "| Swiss Embassy | Swiss desk | 3/5 | The relay worked | Slow openings | Open sooner | — |"
    ) in markdown
    assert 'id="feedback-table"' in written["html"].read_text(encoding="utf-8")


def test_page_one_is_the_executive_summary_then_analysis_then_appendices(run_dir: Path) -> None:
    """The sections come in HSEEP order, each appendix a part of its own (a new printed page)."""
    aar = analyse(read_log(run_dir / "events.jsonl"))
    page = Elements(render_html(aar))
    sections = [(a["id"], a.get("class", "")) for tag, a in page.tags if tag == "section"]
    assert sections == [
        ("summary", ""),
        ("objectives", "part"),
        ("feedback", ""),
        ("improvement-plan", "part"),
        ("overview", "part"),
        ("msel", "part"),
        ("timeline", "part"),
        ("comms", "part"),
        ("integrity", "part"),
    ]
    markdown = render_markdown(aar)
    headings = re.findall(r"^## (.+)$", markdown, re.MULTILINE)
    assert headings[:3] == ["Executive summary", "Analysis of objectives", "Participant feedback"]
    assert [h.split(":")[0] for h in headings[3:]] == [f"Appendix {x}" for x in "ABCDEF"]
    summary = markdown.split("## Analysis of objectives")[0]
    assert "| OBJ-2 | Objective 2 | — | S (suggested) | 2/3 (67%) |" in summary
    assert "| Injects | 4 injects fired: 4 of 4 scheduled |" in summary
    assert "| Expectations | 3 met, 3 missed, 1 pending at the end |" in summary
    assert "| Letters verified | 8 of 8 |" in summary
    assert "1 played by people, 2 by bots (Blue cell)" in summary


def test_msel_as_planned_against_as_played(tmp_path: Path) -> None:
    """Each inject's planned and played time, early or late, and why: control, contingency."""
    path = tmp_path / "events.jsonl"
    play_figures(path)
    aar = analyse(read_log(path))
    rows = {row.id: (row.planned_t, row.played_t, row.status, row.cause) for row in aar.msel}
    assert rows == {
        "INJ-01": (10_000, 10_000, "tasked", "scheduled"),
        "INJ-02": (400_000, 330_000, "fired", "control"),
        "INJ-03": (650_000, None, "skipped", ""),
        "INJ-04": (700_000, 720_000, "fired", "control"),
        "INJ-05": (None, 800_000, "fired", "contingency:E9"),
    }
    markdown = render_markdown(aar)
    assert (
        "| INJ-02 | 1 | news | the wires → everyone | Inject INJ-02 | T+00:06:40 | T+00:05:30 "
        "| −1m10s | fired (control) |"
    ) in markdown
    assert "| T+00:13:20 | — | fired (contingency:E9) |" in markdown
    assert (
        "| INJ-03 | 2 | news | the wires → everyone | Inject INJ-03 | T+00:10:50 | — | — "
        "| skipped |"
    ) in markdown


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_pdf_prints_with_a_page_per_part(run_dir: Path) -> None:
    """`report --format pdf` prints the page with headless Chromium: a PDF, parts on new pages."""
    done = channel("exercise", "report", str(run_dir), "--format", "pdf")
    assert done.returncode == 0, done.stderr
    pdf = (run_dir / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page\b", pdf))
    assert pages >= 8  # page one, then each part from a new page
    assert (run_dir / "report.html").is_file()  # what was printed


def test_a_marking_cannot_break_out_of_the_print_stylesheet(run_dir: Path) -> None:
    """The marking goes into the page margins as a CSS string, escaped: no markup gets out."""
    aar = analyse(read_log(run_dir / "events.jsonl"))
    evil = aar.overview.model_copy(update={"marking": 'SECRET"; } </style><script>x</script>'})
    text = render_html(aar.model_copy(update={"overview": evil}))
    assert "<script" not in text
    assert text.count("</style>") == 1
    assert '@top-center { content: "SECRET\\22 ; \\7d  \\3c /style\\3e ' in text


def test_pdf_without_chromium_is_one_clear_line(run_dir: Path) -> None:
    """With no Chromium on PATH, `--format pdf` says what to install and exits non-zero."""
    python = Path(CHANNEL[0]).parent
    done = subprocess.run(
        [*CHANNEL, "exercise", "report", str(run_dir), "--format", "pdf"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": str(python), "HOME": str(run_dir)},
    )
    assert "Traceback" not in done.stderr
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: --format pdf prints with Chromium, and none is installed (apt-get install "
        "chromium); the HTML report prints from any browser too"
    )
    assert not (run_dir / "report.pdf").exists()
