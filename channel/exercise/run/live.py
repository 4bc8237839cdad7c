"""The live terminal view of a run: clocks, each letter and receipt as it happens, expectations
met or missed, and progress through the MSEL. On a terminal it redraws in place (rich.live);
otherwise (CI, a pipe) it prints one line per event."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from channel.exercise.author.clock import Clocks
from channel.exercise.author.scenario import Scenario, format_offset
from channel.exercise.tally import InjectTally, describe_ended

_SHOWN = 14
_STYLE = {
    "letter_sent": "cyan",
    "receipt": "white",
    "inject_fired": "magenta",
    "inject_tasked": "bold magenta",
    "expectation_met": "green",
    "expectation_missed": "red",
    "control": "yellow",
    "action_failed": "bold red",
    "move_started": "bold blue",
}
_QUIET = {"letter_final", "state_changed", "decision", "run_started"}


def describe(record: dict[str, Any]) -> str:
    """One line for a log record, in the exercise's terms."""
    kind, d = record["kind"], record["data"]
    if kind == "letter_sent":
        subject = f' "{d["subject"]}"' if d.get("subject") else ""
        reply = f" (reply to {d['in_reply_to']})" if d.get("in_reply_to") else ""
        return f"{d['letter']} {d['from']} → {d['to']} [{d['precedence']}]{subject}{reply}"
    if kind == "receipt":
        reason = f' — "{d["reason"]}"' if d.get("reason") else ""
        return f"{d['letter']} {d['event'].replace('_', ' ')} by {d['by']}{reason}"
    if kind in ("inject_fired", "inject_tasked"):
        who = d.get("from") or "control"
        to = ", ".join(d.get("to", [])) or "everyone"
        verb = "tasks" if kind == "inject_tasked" else d["channel"]
        # Players read public items and their taskings here: show the words, not just a title.
        words = d.get("text") or d.get("action")
        detail = f" — {_clip(words)}" if words else ""
        return f"{d['inject']} {verb}: {who} → {to}: {d['subject']}{detail}"
    if kind in ("escrowed", "released"):
        by = f" by {d['by']}" if d.get("by") else ""
        return f"{d['letter']} {kind}{by}"
    if kind in ("expectation_met", "expectation_missed"):
        outcome = "met" if kind == "expectation_met" else "MISSED"
        by = f" by {d['letter']}" if d.get("letter") else ""
        return f"{d['expectation']} {outcome}{by}: {d['check']} {d['from']} → {d['to']}"
    if kind == "move_started":
        return f"move {d['id']}: {d['title']}"
    if kind == "decision":
        return f"{d['party']} decides to {d['choice']} {d['letter']}"
    if kind == "state_changed":
        return f"{d['party']} {d['variable']} {d['old']} → {d['new']} ({d['cause']})"
    if kind in ("inject_skipped", "inject_held", "inject_released"):
        return f"{d['inject']} {kind.removeprefix('inject_')} by control"
    if kind == "control":
        return f"control: {d['command']} {d.get('argument', '')}".rstrip()
    if kind == "notice_sent":
        return f"notice to {d['party']}: {d['subject']}"
    if kind == "action_failed":
        return f"{d['party']} could not {d['action']}: {d['error']}"
    if kind == "run_ended":
        return f"exercise ended ({d['reason']}): {describe_ended(d)}, {d['letters']} letters"
    return str(kind).replace("_", " ")


def _clip(text: str, most: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= most else line[: most - 1] + "…"


class LiveView:
    """Feed it every record (`show`); use it as a context manager around the run."""

    def __init__(self, scenario: Scenario, console: Console, *, live: bool = True) -> None:
        self.console = console
        self.redraw = live and console.is_terminal
        self.scenario = scenario
        self.recent: deque[tuple[dict[str, Any], str]] = deque(maxlen=_SHOWN)
        self.met = self.missed = 0
        self.paused = False
        self.last: dict[str, Any] | None = None
        self.tally = InjectTally.of((i.id, i.contingency) for i in scenario.injects)
        self.progress = Progress(
            TextColumn("MSEL"), BarColumn(), TextColumn("{task.description}"), console=console
        )
        self.task = self.progress.add_task(self.tally.text(), total=self.tally.expected or 1)
        self.clocks: Clocks | None = None
        self._live: Live | None = None

    def follow(self, clocks: Clocks) -> None:
        """Read the header's clocks from the run's own clocks, so they tick between events."""
        self.clocks = clocks

    def __enter__(self) -> LiveView:
        if self.redraw:
            # `get_renderable`: each refresh (4 a second) re-renders, so the clocks move on
            # their own; records only add lines.
            self._live = Live(
                console=self.console, refresh_per_second=4, get_renderable=self._render
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(None, None, None)
            self._live = None

    def show(self, record: dict[str, Any]) -> None:
        self._count(record)
        if record["kind"] in _QUIET:
            return
        line = describe(record)
        if self._live is None:
            stamp = f"{format_offset(record['t'] / 1000)} {record['world'][:16]}Z"
            self.console.print(f"{stamp}  {line}", markup=False, highlight=False, soft_wrap=True)
            return
        self.recent.append((record, line))
        self._live.refresh()

    def _count(self, record: dict[str, Any]) -> None:
        kind, data = record["kind"], record["data"]
        self.last = record
        if kind == "expectation_met":
            self.met += 1
        elif kind == "expectation_missed":
            self.missed += 1
        elif kind == "control" and data["command"] in ("pause", "resume"):
            self.paused = data["command"] == "pause"
        elif self.tally.see(kind, data):
            self.progress.update(
                self.task,
                description=self.tally.text(),
                completed=len(self.tally.fired),
                total=self.tally.expected or 1,
            )

    def _render(self) -> RenderableType:
        return Group(self._header(), self._table(), self._footer(), self.progress)

    def _header(self) -> Text:
        """The title and the three clocks: wall, exercise (T+) and world, read now."""
        title = Text(f"{self.scenario.marking}  {self.scenario.title}", style="bold")
        wall = datetime.now(UTC).strftime("%H:%M:%SZ")
        if self.clocks is not None:
            t = self.clocks.now()
            world = self.clocks.world_at(t).strftime("%Y-%m-%d %H:%M:%S")
            move, paused = self.clocks.span_at(t).move.id, self.clocks.paused
        elif self.last is not None:  # not following the run's clocks: the last record's
            t, move, paused = self.last["t"] / 1000, self.last["move"], self.paused
            world = self.last["world"][:19].replace("T", " ")
        else:
            return title
        clocks = f"\nwall {wall}   exercise {format_offset(t)}   world {world}Z   move {move}"
        state = "   [PAUSED]" if paused else ""
        return title + Text(clocks + state, style="yellow" if paused else "dim")

    def _table(self) -> Table:
        table = Table(box=None, show_header=True, header_style="dim", expand=True)
        table.add_column("exercise", no_wrap=True)
        table.add_column("world", no_wrap=True)
        table.add_column("event")
        for record, line in list(self.recent):  # a copy: the refresh thread reads it too
            style = _STYLE.get(record["kind"], "white")
            world = record["world"][5:16].replace("T", " ")
            table.add_row(format_offset(record["t"] / 1000), world, Text(line, style=style))
        return table

    def _footer(self) -> Text:
        return Text(f"expectations: {self.met} met, {self.missed} missed", style="dim")
