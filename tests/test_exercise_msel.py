"""The MSEL spreadsheet: CSV export cell by cell, exact round trips, and import errors by cell."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from channel.exercise.author.msel import COLUMNS, export_msel, import_msel, scenario_yaml
from channel.exercise.author.scenario import (
    Scenario,
    ScenarioError,
    bundled_dir,
    load_scenario,
    parse_scenario,
)

# Speed 60: T+00:05:00 is five hours of story time; move 2 jumps to 2 December at T+1h.
SCENARIO = """\
title: Letter to Soleimani
objectives:
  - id: OBJ-1
    text: Deliver a warning through a direct channel
  - id: OBJ-2
    text: Read a refusal as a message
parties:
  - name: us.cia.director
    play: human
    stand_in: bot:director
  - name: ir.irgc.quds
    play: bot:quds
  - name: ch.protecting-power
    play: control
clock:
  start: 2017-11-20T09:00:00Z
  speed: 60
  end: T+02:00:00
  moves:
    - id: 1
      title: The letter
      at: T+00:00:00
    - id: 2
      title: Reagan Forum
      at: T+01:00:00
      world: 2017-12-02T09:00:00Z
policies:
  director: {}
  quds:
    letters:
      - open: 0.0
injects:
  - id: INJ-01
    at: T+00:05:00
    from: us.cia.director
    to: [ir.irgc.quds, ch.protecting-power]
    subject: Accountability for attacks in Iraq
    body: |-
      General,

      we will hold you and Iran accountable.
    precedence: immediate
    objectives: [OBJ-1]
    action: Write and send the letter
    controller: Cell A
    expect:
      - id: EXP-01
        check: sent
        from: us.cia.director
        to: ir.irgc.quds
        within: 6h
        score: 2
        contingency: INJ-03
        objectives: [OBJ-1, OBJ-2]
        text: The director sends the letter
      - id: EXP-02
        check: returned_unopened
        from: us.cia.director
        to: ir.irgc.quds
        within: 1d12h
        text: |-
          Quds returns it unopened.
          That is the message.
  - id: INJ-02
    move: 2
    world: 2017-12-02T10:00:00Z
    channel: news
    subject: "=Director speaks at the Reagan Forum"
    body: "- the letter came back unopened"
    objectives: [OBJ-2]
  - id: INJ-03
    move: 1
    contingency: true
    channel: news
    subject: Wire reports a letter is being drafted
    body_file: nudge.md
  - id: INJ-04
    after: {expectation: EXP-01, outcome: met, delay: 30m}
    channel: communique
    from: ch.protecting-power
    subject: Protecting power confirms it carried a letter
    body: Switzerland acted as protecting power.
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    (tmp_path / "nudge.md").write_text("Control nudges the director.\n", encoding="utf-8")
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    return scenario


@pytest.fixture
def scenario(path: Path) -> Scenario:
    return load_scenario(path).scenario


def rows(csv_text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(csv_text, newline="")))


def cells(csv_text: str, control_no: str) -> dict[str, str]:
    header, *body = rows(csv_text)
    row = next(row for row in body if row[0] == control_no)
    return dict(zip(header, row, strict=True))


def edit(csv_text: str, control_no: str, **changes: str) -> str:
    """The CSV with some cells of one row changed (`from_` for the `from` column)."""
    table = rows(csv_text)
    header = table[0]
    for row in table[1:]:
        if row[0] == control_no:
            for column, value in changes.items():
                row[header.index(column.removesuffix("_"))] = value
    buffer = io.StringIO()
    csv.writer(buffer).writerows(table)
    return buffer.getvalue()


def problems(csv_text: str, base: Scenario) -> list[tuple[int, str, str]]:
    with pytest.raises(ScenarioError) as caught:
        import_msel(csv_text, base, file="msel.csv")
    return [(p.line, p.path, p.message) for p in caught.value.problems]


# --- export --------------------------------------------------------------------------------------


def test_export_header_and_a_scheduled_letter(scenario: Scenario) -> None:
    """An `at` letter's row: move and world time worked out, lists joined, expectations coded."""
    text = export_msel(scenario)
    assert rows(text)[0] == list(COLUMNS)
    assert cells(text, "INJ-01") == {
        "control_no": "INJ-01",
        "move": "1",
        "offset": "T+00:05:00",
        "world_time": "2017-11-20T14:00:00Z",
        "timing": "at",
        "channel": "letter (immediate)",
        "from": "us.cia.director",
        "to": "ir.irgc.quds;ch.protecting-power",
        "subject": "Accountability for attacks in Iraq",
        "body": "General,\n\nwe will hold you and Iran accountable.",
        "objectives": "OBJ-1",
        "expected_action": "Write and send the letter",
        "expectations": (
            "EXP-01: sent us.cia.director -> ir.irgc.quds within 6h score 2 contingency INJ-03 "
            "objectives OBJ-1;OBJ-2 | The director sends the letter\n"
            "EXP-02: returned_unopened us.cia.director -> ir.irgc.quds within 1d12h score 1 "
            "| Quds returns it unopened.\nThat is the message."
        ),
        "controller": "Cell A",
        "status": "",
    }


def test_export_world_after_and_contingency_rows(scenario: Scenario) -> None:
    """A world-time row gets its offset from the clock; relative rows have no time cells."""
    text = export_msel(scenario)
    world = cells(text, "INJ-02")
    assert (world["move"], world["offset"], world["world_time"], world["timing"]) == (
        "2",
        "T+01:01:00",
        "2017-12-02T10:00:00Z",
        "world",
    )
    contingency = cells(text, "INJ-03")
    assert (contingency["offset"], contingency["timing"], contingency["body"]) == (
        "",
        "contingency",
        "Control nudges the director.",
    )
    after = cells(text, "INJ-04")
    assert (after["move"], after["offset"], after["world_time"], after["timing"]) == (
        "",
        "",
        "",
        "after:EXP-01:met:30m",
    )
    assert (after["channel"], after["to"]) == ("communique", "")


def test_export_guards_cells_a_spreadsheet_would_run_as_formulas(scenario: Scenario) -> None:
    """Text starting with = or - gets a leading quote, so Excel shows it instead of computing it."""
    row = cells(export_msel(scenario), "INJ-02")
    assert row["subject"] == "'=Director speaks at the Reagan Forum"
    assert row["body"] == "'- the letter came back unopened"


def test_export_is_excel_csv_without_bom(scenario: Scenario) -> None:
    """UTF-8 text with no BOM, CRLF row ends, and cells with line breaks quoted."""
    text = export_msel(scenario)
    assert text.startswith("control_no,move,offset,")
    assert text.count("\r\n") == len(scenario.injects) + 1
    assert '"General,\n\nwe will hold you and Iran accountable."' in text


# --- round trips ---------------------------------------------------------------------------------


def test_round_trip_is_exact(scenario: Scenario) -> None:
    """Importing an untouched export gives back the same scenario: moves, body files and all."""
    assert import_msel(export_msel(scenario), scenario) == scenario


@pytest.mark.parametrize("name", sorted(bundled_dir().glob("*.yaml")), ids=lambda p: p.stem)
def test_bundled_scenarios_round_trip(name: Path) -> None:
    """Every bundled scenario survives MSEL export and import, and YAML dump and parse."""
    source = load_scenario(name)
    assert import_msel(export_msel(source.scenario), source.scenario) == source.scenario
    assert parse_scenario(scenario_yaml(source.scenario), name).scenario == source.scenario


def test_worked_out_moves_stay_implicit(scenario: Scenario) -> None:
    """A move the clock worked out imports as no move; one the sheet changes is kept."""
    text = export_msel(scenario)
    assert cells(text, "INJ-01")["move"] == "1"
    assert import_msel(text, scenario).inject("INJ-01").move is None
    moved = import_msel(edit(text, "INJ-01", move="2"), scenario)
    assert moved.inject("INJ-01").move == 2  # lint then says it is in the wrong move


def test_yaml_dump_parses_back_to_the_same_scenario(path: Path, scenario: Scenario) -> None:
    """scenario_yaml leaves defaults out, keeps body_file by reference, and parses back equal."""
    text = scenario_yaml(scenario)
    assert "marking:" not in text
    assert "body_file: nudge.md" in text
    assert "Control nudges the director." not in text
    assert parse_scenario(text, path).scenario == scenario


def test_imported_sheet_dumps_to_yaml_that_loads(path: Path, scenario: Scenario) -> None:
    """An edited sheet becomes a scenario file: bodies changed in the sheet are written inline."""
    text = edit(export_msel(scenario), "INJ-03", body="Control nudges harder.")
    imported = import_msel(text, scenario)
    assert imported.inject("INJ-03").body_file is None
    assert parse_scenario(scenario_yaml(imported), path).scenario == imported


# --- import --------------------------------------------------------------------------------------


def test_import_takes_rows_and_keeps_the_rest_of_the_base(scenario: Scenario) -> None:
    """Rows replace the injects (edited, dropped, reordered); parties, clock, policies stay."""
    table = rows(edit(export_msel(scenario), "INJ-01", offset="T+00:20:00", world_time=""))
    buffer = io.StringIO()
    csv.writer(buffer).writerows([table[0], table[4], table[1], table[3]])
    imported = import_msel(buffer.getvalue(), scenario)
    assert [inj.id for inj in imported.injects] == ["INJ-04", "INJ-01", "INJ-03"]
    assert imported.inject("INJ-01").at == 1200
    assert imported.model_copy(update={"injects": scenario.injects}) == scenario


def test_import_accepts_bom_blank_rows_extra_columns_and_status(scenario: Scenario) -> None:
    """Excel's BOM, empty rows, a controller's own columns and a filled status do not matter."""
    table = rows(export_msel(scenario))
    table[0].append("notes")
    table[1][COLUMNS.index("status")] = "fired 09:05"
    table[1].append("called the director")
    table.insert(2, [""] * len(COLUMNS))
    buffer = io.StringIO()
    csv.writer(buffer).writerows(table)
    assert import_msel("\ufeff" + buffer.getvalue(), scenario) == scenario


def test_import_errors_name_the_row_and_column(scenario: Scenario) -> None:
    """Every bad cell is reported, each with its spreadsheet row (header = 1) and column."""
    text = edit(export_msel(scenario), "INJ-01", offset="half past nine", world_time="")
    text = edit(text, "INJ-02", channel="fax")
    assert problems(text, scenario) == [
        (2, "offset", "'half past nine' is not an offset: write T+HH:MM:SS or T+90m"),
        (
            3,
            "channel",
            "'fax' is not a channel: write letter, communique or news, with a precedence other "
            "than routine in brackets (priority, immediate, flash): letter (flash)",
        ),
    ]


def test_import_error_prints_as_file_row_and_column(scenario: Scenario) -> None:
    """A problem prints as file:row: message (column)."""
    text = edit(export_msel(scenario), "INJ-04", timing="later")
    with pytest.raises(ScenarioError) as caught:
        import_msel(text, scenario, file="msel.csv")
    assert str(caught.value) == (
        "msel.csv:5: 'later' is not a timing: write at, world, contingency or "
        "after:<inject or expectation>:<fired, met or missed>:<delay> (timing)"
    )


def test_import_refuses_a_stale_worked_out_time(scenario: Scenario) -> None:
    """Moving an `at` row but leaving its old world time is an error on world_time."""
    text = edit(export_msel(scenario), "INJ-01", offset="T+00:20:00")
    assert problems(text, scenario) == [
        (
            2,
            "world_time",
            "the timing is `at`, so world_time follows from the offset (2017-11-21T05:00:00Z): "
            "clear it, or set timing to `world` to fire at this world time",
        )
    ]


def test_import_refuses_times_on_relative_rows(scenario: Scenario) -> None:
    """An `after` or `contingency` row has no fixed time: an offset there is an error."""
    text = edit(export_msel(scenario), "INJ-04", offset="T+00:30:00")
    assert problems(text, scenario) == [
        (
            5,
            "offset",
            "the timing is `after:EXP-01:met:30m`, not a fixed time: clear offset and world_time",
        )
    ]


def test_import_points_validation_errors_at_cells(scenario: Scenario) -> None:
    """Bad values inside cells (a party name, an expectation's within) name row and column."""
    text = edit(export_msel(scenario), "INJ-04", to="Not A Party")
    line = "EXP-01: sent us.cia.director -> ir.irgc.quds within soon score 2"
    text = edit(text, "INJ-01", expectations=line)
    found = problems(text, scenario)
    assert [(row, column) for row, column, _ in found] == [(2, "expectations"), (5, "to")]
    assert found[0][2] == (
        "expectation 1, within: 'soon' is not a duration such as 90m, 6h or 1d12h"
    )
    assert found[1][2].startswith("'Not A Party' is not a party name: use 3-64 characters")


def test_import_refuses_a_line_that_is_not_an_expectation(scenario: Scenario) -> None:
    """An expectations cell must start with an `ID: check from -> to ...` line."""
    text = edit(export_msel(scenario), "INJ-01", expectations="the director writes")
    assert problems(text, scenario) == [
        (
            2,
            "expectations",
            "line 1 is not an expectation: write "
            "`EXP-ID: check from -> to within 6h score 1 | text`",
        )
    ]


def test_import_refuses_a_sheet_without_the_columns(scenario: Scenario) -> None:
    """A header missing required columns is one problem on row 1 that lists them."""
    assert problems("control_no,subject\r\nINJ-01,Hello\r\n", scenario) == [
        (
            1,
            "",
            "the header lacks move, offset, world_time, timing, channel, from, to, body, "
            "objectives, expected_action, expectations, controller: the columns are "
            + ", ".join(COLUMNS),
        )
    ]


def test_import_moves_a_world_row_by_its_world_time(scenario: Scenario) -> None:
    """On a `world` row the world time rules: a new one imports, a stale offset is an error."""
    text = edit(export_msel(scenario), "INJ-02", world_time="2017-12-02T12:00:00Z", offset="")
    imported = import_msel(text, scenario).inject("INJ-02")
    assert imported.world == datetime(2017, 12, 2, 12, tzinfo=UTC)
    text = edit(text, "INJ-02", offset="T+01:01:00")
    assert problems(text, scenario) == [
        (
            3,
            "offset",
            "the timing is `world`, so the offset follows from the world time (T+01:03:00): "
            "clear it, or set timing to `at` to fire at this offset",
        )
    ]
