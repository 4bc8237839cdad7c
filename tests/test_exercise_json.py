"""`--json` on the `channel exercise` commands that print data: stdout is exactly one JSON
document (progress and problems go to stderr), as a script reading it needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.test_exercise_run import SMALL

CHANNEL = [sys.executable, "-m", "channel", "exercise"]


def exercise_json(*args: str, code: int = 0) -> Any:
    done = subprocess.run(
        [*CHANNEL, *args, "--json"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The small scenario played once, with `run --json`."""
    base = tmp_path_factory.mktemp("json")
    scenario = base / "small.yaml"
    scenario.write_text(SMALL, encoding="utf-8")
    out = base / "run"
    return out, exercise_json("run", str(scenario), "--rehearse", "--no-live", "--out", str(out))


def test_list_json_names_every_bundled_scenario() -> None:
    """`list --json`: one object per bundled scenario with its counts."""
    listed = exercise_json("list")
    names = [row["name"] for row in listed]
    assert "letter-to-soleimani" in names
    assert names == sorted(names)
    assert all(row["parties"] >= 2 and row["injects"] >= 1 for row in listed)


def test_lint_json_reports_problems_and_the_verdict(tmp_path: Path) -> None:
    """`lint --json`: ok with the counts, or each problem with its line and the exit code 2."""
    good = exercise_json("lint", "letter-to-soleimani")
    assert good["ok"] is True
    assert good["injects"] > 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.replace("title:", "titel:", 1), encoding="utf-8")
    refused = subprocess.run(
        [*CHANNEL, "lint", str(bad), "--json"], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2
    assert refused.stdout == ""  # the file does not load: problems on stderr, as without --json
    assert refused.stderr.strip().splitlines()[-1].startswith("error: ")
    unplayable = tmp_path / "unplayable.yaml"
    unplayable.write_text(SMALL.replace('"bot:refuser"', '"bot:nosuch"'), encoding="utf-8")
    found = exercise_json("lint", str(unplayable), code=2)
    assert found["ok"] is False
    errors = [p for p in found["problems"] if p["severity"] == "error"]
    assert [(p["line"], p["path"]) for p in errors] == [(6, "parties.1.play")]


def test_run_json_is_the_only_thing_on_stdout(played: tuple[Path, dict[str, Any]]) -> None:
    """`run --json` prints the run folder and its reports; the live view went to stderr."""
    out, result = played
    assert result["run"] == str(out)
    assert set(result["reports"]) == {"html", "md", "json"}
    assert all(Path(path).exists() for path in result["reports"].values())


def test_report_replay_release_and_transcript_json(played: tuple[Path, dict[str, Any]]) -> None:
    """`report`, `replay`, `release` and `transcript` with --json print what they did."""
    out, _ = played
    remade = exercise_json("report", str(out), "--format", "md")
    assert remade == {"md": str(out / "report.md")}
    replayed = exercise_json("replay", str(out), "--out", str(out.parent / "again"))
    assert replayed["identical"] is True
    assert replayed["diverged_at"] is None
    released = exercise_json("release", "--run", str(out), "--as", "ir.irgc.quds")
    assert released["party"] == "ir.irgc.quds"
    assert all(Path(path).exists() for path in released["released"])
    transcript = exercise_json("transcript", str(out))
    assert set(transcript) == {"title", "entries", "rejected"}
    assert transcript["entries"]  # the bots' seats released theirs when the run ended
    assert all(entry["body"] and entry["letter_id"] for entry in transcript["entries"])
