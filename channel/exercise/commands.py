"""`channel exercise ...`: the facilitator's commands, a thin shell over the exercise package.

Like the rest of the CLI, only click is imported at the top; everything else when a command
runs. Scenario problems are printed one per line (`file:line: message`) before the one-line
error, so a facilitator sees all of them at once. Every command that prints data takes --json
and with it prints nothing else on stdout (the scenario schema is JSON already; MSEL sheets are
CSV and YAML by nature).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from channel.cli_options import SERVER_URL, echo_json, json_option
from channel.exercise.run.command import COMMANDS
from channel.protocol.errors import ChannelError

if TYPE_CHECKING:
    from rich.console import Console

    from channel.exercise.author.scenario import Source
    from channel.exercise.run.live import LiveView
    from channel.exercise.run.play import Stage

FORMATS = ("html", "md", "json")
REPORT_FORMATS = (*FORMATS, "pdf")  # PDF only when asked: it needs Chromium
run_option = click.option(
    "--run",
    "run_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The run folder.",
)

live_run_option = click.option(
    "--run",
    "run_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The run folder [the one live run, found from any folder].",
)


class ScenarioProblems(ChannelError):
    """The scenario has problems (each already printed with its file and line)."""

    code = "invalid-scenario"
    exit_code = 2


class Speed(click.ParamType[float, Any]):
    """`max` (as fast as the machine allows: math.inf here) or a positive number (1 = real time)."""

    name = "speed"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if value == "max":
            return math.inf
        try:
            speed = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a speed: use max, or a number such as 1 or 10", param, ctx)
        if not 0 < speed <= 10_000:
            self.fail("the speed must be above 0 and at most 10000", param, ctx)
        return speed


def load(target: str) -> Source:
    """A scenario by path or bundled name; every problem printed, then one error."""
    from channel.exercise.author.scenario import ScenarioError, load_scenario, resolve_scenario

    try:
        return load_scenario(resolve_scenario(target))
    except ScenarioError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        raise ScenarioProblems(f"{target}: {_count(len(exc.problems), 'problem')}") from None


@click.group()
def exercise() -> None:
    """Tabletop exercises played through the real courier (docs/exercises.md).

    A scenario file names the parties and who plays them (people or seeded bots), the clock and
    moves, and the MSEL of injects with what control expects to see. `run` plays it and writes a
    hash-chained event log and an after-action report built from signed receipts.
    """


@exercise.command("list")
@json_option
def list_scenarios(as_json: bool) -> None:
    """The bundled scenarios (run one by name)."""
    from channel.exercise.author.scenario import bundled_dir, load_scenario

    found = [(path.stem, load_scenario(path).scenario) for path in bundled_dir().glob("*.yaml")]
    if as_json:
        echo_json(
            [
                {"name": name, "title": s.title, "parties": len(s.parties)}
                | {"injects": len(s.injects)}
                for name, s in sorted(found)
            ]
        )
        return
    for name, scenario in sorted(found):
        parties = _count(len(scenario.parties), "party", "parties")
        click.echo(f"{name:<22} {scenario.title}  ({parties}, {len(scenario.injects)} injects)")


@exercise.command()
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE.")
def schema(output: Path | None) -> None:
    """The JSON Schema of scenario files (generated from the models)."""
    from channel.exercise.author.scenario import json_schema

    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")


@exercise.command()
@click.argument("target", metavar="FILE|NAME")
@click.option(
    "--speed",
    type=Speed(),
    default="1",
    help="The speed the run will play at, for people's deadlines [1, as people play].",
)
@click.option(
    "--min-wall-minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=3.0,
    show_default=True,
    help="The least wall time a person's deadline may give.",
)
@json_option
def lint(target: str, speed: float, min_wall_minutes: float, as_json: bool) -> None:
    """Check a scenario: every problem as file:line: message."""
    from channel.exercise.author.lint import Pace
    from channel.exercise.author.lint import lint as lint_source

    source = load(target)
    pace = Pace(None if math.isinf(speed) else speed, min_wall_minutes)
    problems = lint_source(source, pace)
    errors = [p for p in problems if p.severity == "error"]
    scenario = source.scenario
    expectations = len(scenario.expectations())
    if as_json:
        echo_json(
            {"target": target, "ok": not errors, "title": scenario.title}
            | {"parties": len(scenario.parties), "injects": len(scenario.injects)}
            | {"expectations": expectations}
            | {"problems": [dataclasses.asdict(p) for p in problems]}
        )
    else:
        for problem in problems:
            click.echo(str(problem), err=True)
    if errors:
        raise ScenarioProblems(f"{target}: {_count(len(errors), 'problem')}")
    if as_json:
        return
    click.echo(
        f"ok: {scenario.title}: {_count(len(scenario.parties), 'party', 'parties')}, "
        f"{_count(len(scenario.injects), 'inject')}, {_count(expectations, 'expectation')}"
    )


@exercise.command()
@click.argument("target", metavar="FILE|NAME")
@click.option(
    "--server",
    "server",
    type=SERVER_URL,
    metavar="URL",
    help="Play on this courier (default: embedded).",
)
@click.option("--speed", type=Speed(), help="max, or N× real time [max with bots only, else 1].")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed for every bot draw.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder.")
@click.option("--rehearse", is_flag=True, help="Bots (stand-ins) play the human seats too.")
@click.option("--human", "humans", multiple=True, metavar="PARTY", help="A person plays PARTY.")
@click.option("--no-live", is_flag=True, help="One line per event instead of the live view.")
@click.option(
    "--format",
    "formats",
    type=click.Choice(FORMATS),
    multiple=True,
    help="Report formats to write [all].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run and its reports as JSON.")
def run(
    target: str,
    server: str | None,
    speed: float | None,
    seed: int,
    out: Path | None,
    rehearse: bool,
    humans: tuple[str, ...],
    no_live: bool,
    formats: tuple[str, ...],
    as_json: bool,
) -> None:
    """Play a scenario through the courier and write the after-action report.

    Without --server an embedded courier and Redis start in the run folder. People play their
    seats with the normal CLI (the commands are printed at the start); control uses
    `channel exercise control`. With --json, the progress goes to stderr and stdout carries
    only the JSON.
    """
    source = load(target)
    out, reports = play_and_report(
        source,
        server=server or _given_before(click.get_current_context()),
        speed=speed,
        seed=seed,
        out=out,
        rehearse=rehearse,
        humans=humans,
        live=not no_live,
        formats=formats or FORMATS,
        to_stderr=as_json,
    )
    if as_json:
        echo_json({"run": str(out), "reports": {name: str(p) for name, p in reports.items()}})
        return
    click.echo(f"report: {reports.get('html') or next(iter(reports.values()))}")


def _given_before(ctx: click.Context) -> str | None:
    """`channel --server URL exercise run ...` means this courier too; CHANNEL_SERVER alone
    does not (it names the courier people use, not where an exercise should play)."""
    root = ctx.find_root()
    if root.get_parameter_source("server") is ParameterSource.COMMANDLINE:
        given: str = root.params["server"]
        return given
    return None


def play_and_report(
    source: Source,
    *,
    server: str | None = None,
    speed: float | None = None,
    seed: int = 1,
    out: Path | None = None,
    rehearse: bool = False,
    humans: tuple[str, ...] = (),
    live: bool = True,
    formats: tuple[str, ...] = FORMATS,
    to_stderr: bool = False,
) -> tuple[Path, dict[str, Path]]:
    """Run with the live view (on stderr if `to_stderr`), write the reports; returns the run
    folder and the reports written, by format."""
    import asyncio

    from rich.console import Console as RichConsole

    from channel.exercise.report.render import write_reports
    from channel.exercise.run.live import LiveView
    from channel.exercise.run.play import RunOptions, default_out, play, seats_for
    from channel.logs import configure_logging
    from channel.party.timeline import make_console

    configure_logging("console", "error")  # the courier shares this process
    console = RichConsole(stderr=True, highlight=False) if to_stderr else make_console()
    if speed is None:
        # People play in real time unless the facilitator says otherwise; bots as fast as can be.
        seats = seats_for(source.scenario, rehearse=rehearse, humans=humans)
        speed = 1.0 if "human" in seats.values() else math.inf
    view = LiveView(source.scenario, console, live=live)
    options = RunOptions(
        source=source,
        out=out or default_out(source.path),
        server=server,
        speed=None if math.isinf(speed) else speed,
        seed=seed,
        rehearse=rehearse,
        humans=humans,
        on_record=view.show,
        on_stage=lambda stage: _announce(stage, console, view),
    )
    with view:
        played = asyncio.run(play(options))
    reports = write_reports(played.log, played.out, formats)
    for name, path in reports.items():
        console.print(f"{name:>5}: {path}", highlight=False, soft_wrap=True)
    return played.out, reports


def _announce(stage: Stage, console: Console, view: LiveView) -> None:
    """Tell the room where the courier is and how people play their seats."""
    if stage.clocks is not None:
        view.follow(stage.clocks)
    console.print(f"run folder {stage.out}   courier {stage.url}", highlight=False, soft_wrap=True)
    people = [name for name, seat in stage.seats.items() if seat == "human"]
    if people:
        base = f"channel --server {stage.url} --home {stage.keyring}"
        console.print("seats played by people (the same CLI as always):", highlight=False)
        for name in people:
            console.print(f"  {name}:  {base} inbox --as {name}", highlight=False, soft_wrap=True)
            console.print(
                f"  {name}:  {base} watch --as {name}   (taskings, news and the end come here)",
                highlight=False,
                soft_wrap=True,
            )
    console.print(
        f"control: channel exercise control --run {stage.out} pause|resume|fire INJ|...",
        highlight=False,
        soft_wrap=True,
    )


@exercise.command()
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The run folder [the one live run, found from any folder].",
)
@click.argument("command", type=click.Choice(COMMANDS))
@click.argument("argument", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the run's answer as JSON.")
def control(run_dir: Path | None, command: str, argument: str | None, as_json: bool) -> None:
    """Control a live run: status, pause, resume, speed N|max, fire|skip|hold|release INJ.

    Without --run it finds the live run from any folder (a registry of live runs under
    $XDG_STATE_HOME/backchannel/runs); with several live, pick one with --run."""
    import asyncio

    from channel.exercise.run.control import command as send
    from channel.exercise.run.registry import find_live_run

    needs = {"speed": "a speed (N or max)", "fire": "an inject id", "skip": "an inject id"}
    needs |= {"hold": "an inject id", "release": "an inject id"}
    if command in needs and not argument:
        raise click.UsageError(f"{command} needs {needs[command]}")
    status = asyncio.run(send(find_live_run(run_dir), command, argument))
    if as_json:
        echo_json(status.model_dump(mode="json", exclude_none=True))
        return
    state = "paused" if status.paused else f"running at speed {status.speed}"
    click.echo(f"{status.exercise}  world {status.world}  move {status.move}  {state}")
    waiting = ", ".join(f"{n.inject} {n.at}" for n in status.next) or "none"
    click.echo(f"fired {len(status.fired)}, held {status.held or 'none'}, next: {waiting}")


@exercise.command()
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The run folder [the one live run].",
)
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Default: a free port.")
@click.option("--no-browser", is_flag=True, help="Print the link only; do not open a browser.")
def board(run_dir: Path | None, port: int, no_browser: bool) -> None:
    """The control cell's board in the browser: clocks, controls, MSEL, expectations, letters.

    Serves on 127.0.0.1 only; the printed link holds a one-time token: whoever opens it first
    gets the board. /projector is the view for the room.
    """
    from channel.exercise.board.command import open_board
    from channel.exercise.run.registry import find_live_run

    open_board(find_live_run(run_dir), port, open_browser=not no_browser)


@exercise.command()
@live_run_option
@click.option("--as", "name", required=True, metavar="PARTY", help="The seat you play.")
@click.option("--to", required=True, metavar="PARTY", help="The recipient.")
@click.option("--subject", default="", help="Subject (the exercise marking is prefixed).")
@click.option("--text", required=True, help="The letter.")
@click.option(
    "--precedence",
    type=click.Choice(["routine", "priority", "immediate", "flash"]),
    default="routine",
    show_default=True,
)
@click.option("--reply-to", metavar="ID|L3", help="The letter this answers (id or label).")
@json_option
def send(
    run_dir: Path | None,
    name: str,
    to: str,
    subject: str,
    text: str,
    precedence: str,
    reply_to: str | None,
    as_json: bool,
) -> None:
    """Send a letter in an escrow exercise: also sealed to the control cell's archive key."""
    import asyncio

    from channel.exercise.escrow import send_escrowed
    from channel.exercise.run.registry import find_live_run
    from channel.party.exercise import resolve_letter
    from channel.protocol.models import Precedence

    run = find_live_run(run_dir)
    if reply_to:
        reply_to = resolve_letter(run / "keyring", reply_to)  # `L3` as the report numbers it
    letter_id = asyncio.run(
        send_escrowed(run, name, to, text, subject, Precedence(precedence), reply_to)
    )
    if as_json:
        echo_json({"id": letter_id, "sender": name, "recipient": to, "escrowed": True})
        return
    click.echo(f"sent {letter_id} to {to} (escrowed for the control cell)")


@exercise.command()
@run_option
@click.option("--as", "name", required=True, metavar="PARTY", help="The seat you played.")
@json_option
def release(run_dir: Path, name: str, as_json: bool) -> None:
    """After a post_release exercise: publish the letters you opened into the run folder."""
    from channel.exercise.report.transcript import release as release_letters

    copied = release_letters(run_dir, name)
    if as_json:
        echo_json({"party": name, "released": [str(path) for path in copied]})
        return
    click.echo(f"released {_count(len(copied), 'letter')} opened by {name}")


@exercise.command("transcript")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE.")
@json_option
def transcript_command(run_dir: Path, output: Path | None, as_json: bool) -> None:
    """What the letters said (escrow: with the archive key; post_release: what was released),
    each content checked against the log and its sender's signature."""
    from channel.exercise.report.transcript import render, transcript

    result = transcript(run_dir)
    if as_json:
        text = json.dumps(dataclasses.asdict(result), indent=2, ensure_ascii=False) + "\n"
    else:
        text = render(result)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}")


@exercise.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Replay folder.")
@json_option
def replay(run_dir: Path, out: Path | None, as_json: bool) -> None:
    """Play a run again (same scenario copy, seed and seats) and compare the two event logs."""
    from channel.exercise.run.replay import replay_run
    from channel.logs import configure_logging

    configure_logging("console", "error")  # the courier shares this process
    result = replay_run(run_dir, out)
    if as_json:
        index, ours, theirs = result.divergence or (None, None, None)
        echo_json(
            {"identical": result.divergence is None, "records": result.records}
            | {"out": str(result.out), "diverged_at": index, "original": ours, "replay": theirs}
        )
    if result.divergence is not None:
        index, ours, theirs = result.divergence
        if not as_json:
            click.echo(f"record {index}:\n  original: {ours}\n  replay:   {theirs}", err=True)
        raise ReplayDiverged(f"the replay differs from the original at record {index}")
    if as_json:
        return
    click.echo(f"identical: {result.records} records, replayed in {result.out}")


class ReplayDiverged(ChannelError):
    """A replay with the same scenario and seed did not produce the same events."""

    code = "replay-diverged"
    exit_code = 5


@exercise.command()
@click.argument("target", metavar="RUN_DIR|LOG", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--format",
    "formats",
    type=click.Choice(REPORT_FORMATS),
    multiple=True,
    help="[html, md, json]; pdf prints the HTML with headless Chromium.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write here.")
@json_option
def report(target: Path, formats: tuple[str, ...], out: Path | None, as_json: bool) -> None:
    """(Re)make the after-action report / improvement plan from a run's event log, with the
    evaluators' notes (notes.yaml) and the participants' feedback (feedback/) in its folder."""
    from channel.exercise.eventlog import LOG_FILE
    from channel.exercise.report.render import write_reports

    log = target / LOG_FILE if target.is_dir() else target
    written = write_reports(log, out or log.parent, formats or FORMATS)
    if as_json:
        echo_json({name: str(path) for name, path in written.items()})
        return
    for name, path in written.items():
        click.echo(f"{name:>5}: {path}")


run_dir_argument = click.argument(
    "run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False, path_type=Path)
)


@exercise.command("notes")
@run_dir_argument
def notes_command(run_dir: Path) -> None:
    """Start the evaluators' notes for a run: notes.yaml, one block per objective.

    Fill in strengths, areas for improvement (observation, analysis, recommendation and the
    improvement-plan columns) and the core capability; `channel exercise report RUN` merges them.
    """
    from channel.exercise.report.render import start_notes

    click.echo(f"wrote {start_notes(run_dir)}: fill it in, then run `channel exercise report`")


@exercise.command("feedback")
@run_dir_argument
@click.option("--seat", required=True, metavar="PARTY", help="The seat you played.")
@click.option("--name", "respondent", help="Who is answering.")
@click.option("--rating", type=click.IntRange(1, 5), help="Objectives met: 1 not at all, 5 fully.")
@click.option("--went-well", "strengths", help="What went well?")
@click.option("--improve", "improvements", help="What should be improved, and how?")
@click.option("--do-differently", "actions", help="What will you do differently?")
@click.option("--comments", help="Anything else?")
@click.option("--no-input", is_flag=True, help="Ask nothing; unanswered questions stay blank.")
def feedback_command(
    run_dir: Path,
    seat: str,
    respondent: str | None,
    rating: int | None,
    no_input: bool,
    **answers: str | None,
) -> None:
    """Record a seat's hot-wash answers in the run folder (asks for any not given as flags)."""
    from channel.exercise.eventlog import LOG_FILE, run_started
    from channel.exercise.report.feedback import (
        QUESTIONS,
        RATING_QUESTION,
        Feedback,
        FeedbackError,
        save_feedback,
    )
    from channel.protocol.canonical import format_time, now_utc

    seats = [str(p["name"]) for p in run_started(run_dir / LOG_FILE)["data"].get("parties", [])]
    if seat not in [*seats, "control"]:
        raise FeedbackError(f"{seat!r} is not a seat of this run (seats: {', '.join(seats)})")
    if not no_input:
        if respondent is None:
            respondent = click.prompt("Your name", default="", show_default=False)
        if rating is None:
            given = click.prompt(RATING_QUESTION, default="", show_default=False)
            rating = int(given) if given.strip() in {"1", "2", "3", "4", "5"} else None
        for key, question in QUESTIONS:
            if answers.get(key) is None:
                answers[key] = click.prompt(question, default="", show_default=False)
    feedback = Feedback(
        seat=seat,
        respondent=respondent or "",
        rating=rating,
        at=format_time(now_utc()),
        **{key: (answers.get(key) or "").strip() for key, _ in QUESTIONS},
    )
    click.echo(f"recorded {save_feedback(run_dir, feedback)}")


@exercise.command("export-msel")
@click.argument("target", metavar="FILE|NAME")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to CSV.")
def export_msel(target: str, output: Path | None) -> None:
    """The scenario's injects as an MSEL spreadsheet (CSV)."""
    from channel.exercise.author.msel import export_msel as export

    text = export(load(target).scenario)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8", newline="")
    click.echo(f"wrote {output}")


@exercise.command("import-msel")
@click.argument(
    "csv_file", metavar="CSV", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--base", required=True, metavar="FILE|NAME", help="Parties, clock and policies.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write YAML here.")
def import_msel(csv_file: Path, base: str, output: Path | None) -> None:
    """A scenario from an MSEL CSV: the injects from the sheet, the rest from --base."""
    from channel.exercise.author.msel import import_msel as import_sheet
    from channel.exercise.author.msel import scenario_yaml
    from channel.exercise.author.scenario import ScenarioError

    try:
        text = csv_file.read_text(encoding="utf-8-sig")
        scenario = import_sheet(text, load(base).scenario, file=str(csv_file))
    except ScenarioError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        raise ScenarioProblems(f"{csv_file}: {_count(len(exc.problems), 'problem')}") from None
    text = scenario_yaml(scenario)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}")


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"
