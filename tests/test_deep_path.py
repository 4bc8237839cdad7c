"""First run from an ordinary folder: the project copied to a path over 150 characters (past the
AF_UNIX socket limit) runs `make demo`, `channel exercise run` and `channel exercise replay`.

The copy is of the working tree as a fresh clone would hold it (no venv, no caches), so what is
tested is the code in front of you, committed or not. The commands run with this test's venv:
`python -m channel` with the copy first on PYTHONPATH, and `make demo VENV=<this venv>` with the
install step marked done (`-o`), so nothing is installed and the copy's code is what runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
SKIPPED = (".git", ".venv", "*_cache", "__pycache__", "*.egg-info", "exercise-runs")


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project at a path over 150 characters long."""
    path = tmp_path_factory.mktemp("home")
    while len(str(path)) < 160:
        path /= "projects-with-a-long-and-ordinary-name"
    target = path / "backchannel"
    shutil.copytree(ROOT, target, ignore=shutil.ignore_patterns(*SKIPPED))
    return target


def run(clone: Path, *command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNEL_")}
    env |= {"PYTHONPATH": str(clone), "CHANNEL_HOME": str(clone / "keyring")}
    done = subprocess.run(
        command,
        cwd=clone,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def test_the_copy_is_what_runs(clone: Path) -> None:
    """The commands below import the copy's code, not the installed project's."""
    done = run(clone, sys.executable, "-c", "import channel; print(channel.__file__)")
    assert done.stdout.strip() == str(clone / "channel" / "__init__.py")
    assert len(str(clone)) > 150


def test_exercise_run_and_replay_from_a_deep_clone(clone: Path) -> None:
    """`exercise run` and `exercise replay` play with their embedded courier in run folders
    deep in the clone, and the replay is identical."""
    channel = (sys.executable, "-m", "channel", "exercise")
    played = run(clone, *channel, "run", "letter-to-soleimani", "--rehearse", "--no-live", "--json")
    first = json.loads(played.stdout)
    run_dir = Path(first["run"])
    assert run_dir.is_relative_to(clone)
    assert Path(first["reports"]["html"]).exists()
    replayed = json.loads(run(clone, *channel, "replay", str(run_dir), "--json").stdout)
    assert replayed["identical"] is True
    assert replayed["records"] > 0
    assert len(replayed["out"]) > 150


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_from_a_deep_clone(clone: Path) -> None:
    """`make demo` plays the demo exercise from the deep clone and names its report."""
    done = run(clone, "make", "demo", f"VENV={VENV}", "-o", f"{VENV}/.installed")
    html = next(line for line in done.stdout.splitlines() if line.strip().startswith("html:"))
    report = Path(html.split(":", 1)[1].strip())
    assert (clone / report if not report.is_absolute() else report).exists()
