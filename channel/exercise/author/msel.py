"""The MSEL (Master Scenario Events List) as a CSV spreadsheet, and a scenario back as YAML.

`export_msel` writes one row per inject, in the HSEEP column order controllers know:

    control_no, move, offset, world_time, timing, channel, from, to, subject, body, objectives,
    expected_action, expectations, controller, status

- `timing` says which cell rules: `at` (the offset), `world` (the world time),
  `after:<inject or expectation>:<fired|met|missed>:<delay>`, or `contingency`. The other time
  cell is worked out from the clock, for reading; a relative inject has neither.
- `move` is the move the inject falls in (written even when the scenario leaves it implicit).
- `channel` is `letter`, `communique` or `news`, with a precedence other than routine in
  brackets: `letter (flash)`.
- `to` and `objectives` are lists joined by `;`.
- `expectations` holds one expectation per line:
  `EXP-ID: <check> <from> -> <to> within <duration> score <n> [contingency <INJ>]
  [objectives A;B] | <text>`.
- `status` is left empty for controllers; import ignores it (and any column it does not know).

The file is UTF-8 without a byte order mark, in Excel's CSV dialect (commas, CRLF rows, quoted
cells with line breaks inside). Excel on Windows reads a BOM-less file as the local code page, so
open it with Data > From Text/CSV (UTF-8) there; import accepts a BOM, as Excel writes one when
saving "CSV UTF-8". A free-text cell starting with `=`, `+`, `-`, `@` or `'` is written with a
leading `'` so spreadsheets do not run it as a formula; import removes that quote again.

`import_msel` turns edited rows back into injects on top of a base scenario (parties, clock and
policies come from it). A row's `move` and a `body_file` are kept from the base scenario's inject
of the same control number when the row has not changed them, so an untouched export imports
back to the very same scenario. Bad cells raise ScenarioError; each problem's `line` is the
spreadsheet row (the header is row 1) and its `path` the column.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from channel.exercise.author.clock import Clocks
from channel.exercise.author.scenario import (
    Channel,
    Expectation,
    Inject,
    Problem,
    Scenario,
    ScenarioError,
    dump_yaml,
    format_duration,
    format_offset,
    is_union_tag,
    parse_offset,
    pattern_message,
)
from channel.protocol.models import Precedence

COLUMNS = (
    "control_no",
    "move",
    "offset",
    "world_time",
    "timing",
    "channel",
    "from",
    "to",
    "subject",
    "body",
    "objectives",
    "expected_action",
    "expectations",
    "controller",
    "status",
)
_OPTIONAL = frozenset({"status"})
_FORMULA = ("=", "+", "-", "@", "'")
_CHANNEL = re.compile(r"(\w+)(?: \((\w+)\))?")
_EXPECTATION = re.compile(
    r"(?P<id>\S+): (?P<check>\S+) (?P<from>\S+) -> (?P<to>\S+) within (?P<within>\S+)"
    r" score (?P<score>\S+)(?: contingency (?P<contingency>\S+))?"
    r"(?: objectives (?P<objectives>\S+))?(?: \| (?P<text>.*))?"
)
_EXPECTATION_FORM = "EXP-ID: check from -> to within 6h score 1 | text"
# Which column a field of Inject comes from, to point validation errors at a cell.
_COLUMN_OF = {
    "id": "control_no",
    "move": "move",
    "at": "offset",
    "world": "world_time",
    "after": "timing",
    "contingency": "timing",
    "channel": "channel",
    "precedence": "channel",
    "from": "from",
    "to": "to",
    "subject": "subject",
    "body": "body",
    "objectives": "objectives",
    "action": "expected_action",
    "expect": "expectations",
    "controller": "controller",
}


# --- export --------------------------------------------------------------------------------------


def export_msel(scenario: Scenario) -> str:
    """The scenario's injects as MSEL rows (see the module docstring for the cells)."""
    clocks = Clocks(scenario.clock, None)
    buffer = io.StringIO()
    writer = csv.writer(buffer, dialect="excel")
    writer.writerow(COLUMNS)
    writer.writerows(_row(inject, clocks) for inject in scenario.injects)
    return buffer.getvalue()


def _row(inject: Inject, clocks: Clocks) -> list[str]:
    t, world = _when(inject, clocks)
    move = inject.move if inject.move is not None else _move_at(t, clocks)
    return [
        inject.id,
        "" if move is None else str(move),
        "" if t is None else format_offset(t),
        "" if world is None else _rfc3339(world),
        _timing(inject),
        _channel(inject),
        inject.from_ or "",
        ";".join(inject.to),
        _text_out(inject.subject),
        _text_out(inject.text),
        ";".join(inject.objectives),
        _text_out(inject.action),
        "\n".join(_expectation(exp) for exp in inject.expect),
        _text_out(inject.controller),
        "",
    ]


def _when(inject: Inject, clocks: Clocks) -> tuple[float | None, datetime | None]:
    """Exercise and world time of a scheduled inject (None for what the clock cannot place)."""
    if inject.world is not None:
        return clocks.scheduled(inject), inject.world
    t = clocks.scheduled(inject)
    return t, None if t is None else clocks.world_at(t)


def _move_at(t: float | None, clocks: Clocks) -> int | None:
    return None if t is None else clocks.span_at(t).move.id


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _timing(inject: Inject) -> str:
    if inject.at is not None:
        return "at"
    if inject.world is not None:
        return "world"
    if inject.after is not None:
        anchor = inject.after.inject or inject.after.expectation
        return f"after:{anchor}:{inject.after.outcome}:{format_duration(inject.after.delay)}"
    return "contingency"


def _channel(inject: Inject) -> str:
    if inject.precedence is Precedence.ROUTINE:
        return inject.channel.value
    return f"{inject.channel.value} ({inject.precedence.value})"


def _expectation(exp: Expectation) -> str:
    parts = [
        f"{exp.id}: {exp.check.value} {exp.from_} -> {exp.to}",
        f"within {format_duration(exp.within)} score {exp.score}",
    ]
    if exp.contingency is not None:
        parts.append(f"contingency {exp.contingency}")
    if exp.objectives:
        parts.append(f"objectives {';'.join(exp.objectives)}")
    if exp.text:
        parts.append(f"| {exp.text}")
    return " ".join(parts)


def _text_out(text: str) -> str:
    return f"'{text}" if text.startswith(_FORMULA) else text


# --- import --------------------------------------------------------------------------------------


@dataclass
class _Row:
    """One spreadsheet row's cells by column, and the problems found in them."""

    file: str
    number: int
    cells: dict[str, str]
    problems: list[Problem] = field(default_factory=list)

    def __getitem__(self, column: str) -> str:
        return self.cells.get(column, "")

    def problem(self, column: str, message: str) -> None:
        self.problems.append(Problem(self.file, self.number, message, column))


def import_msel(csv_text: str, base: Scenario, *, file: str = "MSEL") -> Scenario:
    """`base` with its injects replaced by the MSEL's rows; ScenarioError names each bad cell."""
    rows = list(csv.reader(io.StringIO(csv_text.removeprefix("\ufeff"), newline="")))
    if not rows:
        raise ScenarioError([Problem(file, 1, "the MSEL is empty: it needs a header row")])
    columns = _header(rows[0], file)
    clocks = Clocks(base.clock, None)
    originals = {inject.id: inject for inject in reversed(base.injects)}
    injects: list[Inject] = []
    problems: list[Problem] = []
    for number, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue  # spreadsheets leave blank rows behind
        row = _Row(file, number, {name: _cell(cells, i) for name, i in columns.items()})
        inject = _inject(row, clocks, originals)
        problems += row.problems
        if inject is not None:
            injects.append(inject)
    if problems:
        raise ScenarioError(problems)
    return base.model_copy(update={"injects": injects})


def _header(header: list[str], file: str) -> dict[str, int]:
    columns = {name.strip(): index for index, name in enumerate(header)}
    missing = [name for name in COLUMNS if name not in columns and name not in _OPTIONAL]
    if missing:
        message = f"the header lacks {', '.join(missing)}: the columns are {', '.join(COLUMNS)}"
        raise ScenarioError([Problem(file, 1, message)])
    return {name: columns[name] for name in COLUMNS if name in columns}


def _cell(cells: list[str], index: int) -> str:
    # A spreadsheet may save line breaks inside a cell as CRLF; YAML text has LF only.
    return cells[index].replace("\r\n", "\n") if index < len(cells) else ""


def _inject(row: _Row, clocks: Clocks, originals: dict[str, Inject]) -> Inject | None:
    data = _inject_data(row)
    if row.problems:
        return None
    try:
        inject = Inject.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            _validation_problem(row, error)
        return None
    _check_times(row, inject, clocks)
    return _carried(inject, originals.get(inject.id), clocks)


def _inject_data(row: _Row) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row["control_no"].strip(),
        "to": _split(row["to"]),
        "subject": _text_in(row["subject"]),
        "objectives": _split(row["objectives"]),
        "action": _text_in(row["expected_action"]),
        "controller": _text_in(row["controller"]),
        "expect": _expectations(row),
        **_timing_data(row),
        **_channel_data(row),
    }
    # An empty cell leaves the field unset (no move written, no sender, no body).
    optional = {
        "move": row["move"].strip(),
        "from": row["from"].strip(),
        "body": _text_in(row["body"]),
    }
    return data | {key: value for key, value in optional.items() if value}


def _split(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(";") if part.strip()]


def _text_in(cell: str) -> str:
    return cell[1:] if cell[:1] == "'" and cell[1:].startswith(_FORMULA) else cell


def _timing_data(row: _Row) -> dict[str, Any]:
    timing = row["timing"].strip()
    if timing == "at":
        return {"at": row["offset"].strip()}
    if timing == "world":
        return {"world": row["world_time"].strip()}
    if timing == "contingency":
        return {"contingency": True}
    parts = timing.split(":")
    if parts[0] == "after" and len(parts) == 4:
        anchor, outcome, delay = parts[1:]
        key = "inject" if outcome == "fired" else "expectation"
        return {"after": {key: anchor, "outcome": outcome, "delay": delay}}
    message = (
        f"{timing!r} is not a timing: write at, world, contingency or "
        "after:<inject or expectation>:<fired, met or missed>:<delay>"
    )
    row.problem("timing", message)
    return {}


def _channel_data(row: _Row) -> dict[str, Any]:
    text = row["channel"].strip()
    match = _CHANNEL.fullmatch(text)
    channels = [channel.value for channel in Channel]
    precedences = [precedence.value for precedence in Precedence]
    if match and match[1] in channels and match[2] in [None, *precedences]:
        return {"channel": match[1], "precedence": match[2] or Precedence.ROUTINE.value}
    message = (
        f"{text!r} is not a channel: write {', '.join(channels[:-1])} or {channels[-1]}, with "
        f"a precedence other than routine in brackets ({', '.join(precedences[1:])}): "
        "letter (flash)"
    )
    row.problem("channel", message)
    return {}


def _expectations(row: _Row) -> list[dict[str, Any]]:
    cell = row["expectations"]
    found: list[dict[str, Any]] = []
    for number, line in enumerate(cell.split("\n") if cell.strip() else [], start=1):
        match = _EXPECTATION.fullmatch(line)
        if match:
            found.append(_expectation_data(match))
        elif found:
            found[-1]["text"] += "\n" + line  # an expectation's text that runs over lines
        else:
            message = f"line {number} is not an expectation: write `{_EXPECTATION_FORM}`"
            row.problem("expectations", message)
            return []
    return found


def _expectation_data(match: re.Match[str]) -> dict[str, Any]:
    data: dict[str, Any] = {key: value for key, value in match.groupdict().items() if value}
    data["objectives"] = _split(data.get("objectives", ""))
    data.setdefault("text", "")
    return data


def _validation_problem(row: _Row, error: Any) -> None:
    loc = [part for part in error["loc"] if not is_union_tag(part)]
    column = _COLUMN_OF.get(str(loc[0]), "") if loc else ""
    row.problem(column, _validation_message(error, loc))


def _validation_message(error: Any, loc: list[Any]) -> str:
    if error["type"] == "missing":
        return f"missing {loc[-1]}"
    message = pattern_message(error) or str(error["msg"]).removeprefix("Value error, ")
    if error["type"] not in {"value_error", "string_pattern_mismatch"} and isinstance(
        error["input"], str
    ):
        message = f"{error['input']!r}: {message}"  # our own value errors quote it already
    if loc[:1] == ["expect"] and len(loc) > 2:
        return f"expectation {int(loc[1]) + 1}, {loc[2]}: {message}"
    return message


def _check_times(row: _Row, inject: Inject, clocks: Clocks) -> None:
    """The cell `timing` does not use is worked out from the clock: it must agree or be empty."""
    t, world = _when(inject, clocks)
    offset_cell, world_cell = row["offset"].strip(), row["world_time"].strip()
    if inject.at is not None and world_cell and _parse_world(world_cell) != world:
        expected = "" if world is None else _rfc3339(world)
        message = (
            f"the timing is `at`, so world_time follows from the offset ({expected}): "
            "clear it, or set timing to `world` to fire at this world time"
        )
        row.problem("world_time", message)
    if inject.world is not None and offset_cell and _offsets_differ(offset_cell, t):
        expected = "none: no move reaches it" if t is None else format_offset(t)
        message = (
            f"the timing is `world`, so the offset follows from the world time ({expected}): "
            "clear it, or set timing to `at` to fire at this offset"
        )
        row.problem("offset", message)
    if t is None and world is None and (offset_cell or world_cell):
        message = (
            f"the timing is `{_timing(inject)}`, not a fixed time: clear offset and world_time"
        )
        row.problem("offset" if offset_cell else "world_time", message)


def _parse_world(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _offsets_differ(text: str, t: float | None) -> bool:
    try:
        offset = parse_offset(text)
    except ValueError:
        return True
    # The cell holds whole seconds (format_offset), the clock's answer need not.
    return t is None or round(offset) != round(t)


def _carried(inject: Inject, original: Inject | None, clocks: Clocks) -> Inject:
    """Keep from the base scenario what the row cannot show: whether `move` was written in the
    scenario or only worked out, and the body_file an unchanged body came from."""
    t, _ = _when(inject, clocks)
    written = original is not None and original.move is not None
    update: dict[str, Any] = {}
    if inject.move is not None and inject.move == _move_at(t, clocks) and not written:
        update["move"] = None
    if original is not None and original.body_file and original.body == inject.body:
        update["body_file"] = original.body_file
    return inject.model_copy(update=update) if update else inject


# --- YAML ----------------------------------------------------------------------------------------


def scenario_yaml(scenario: Scenario) -> str:
    """The scenario as YAML; `parse_scenario` of it, in the original's folder, gives it back.

    Defaults are left out. A body read from a `body_file` stays in its file: the YAML names the
    file, it does not repeat the text.
    """
    data = scenario.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for inject in data.get("injects", []):
        if "body_file" in inject:
            inject.pop("body", None)
    return dump_yaml(data)
