"""Scenario lint: every check fires on the line of the offending YAML node, and says what to do.

Each test writes a small scenario: a clean base with one section changed. The line a finding
must point at carries a `# <-` comment, so the expected line is read from the text itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from channel.exercise.author.lint import Pace, lint, lint_file
from channel.exercise.author.scenario import Problem, bundled_dir, load_scenario

HEADER = """\
title: Lint test
objectives:
  - id: OBJ-1
    text: Deliver a warning through a direct channel
"""
PARTIES = """\
parties:
  - name: us.cia.director
    play: human
    stand_in: bot:director
  - name: ir.irgc.quds
    play: bot:quds
  - name: ch.protecting-power
    play: control
"""
# Speed 60: move 1 covers 2017-11-20T09:00Z to 2017-11-22T21:00Z (T+0 to T+1h); move 2 jumps to
# 2017-12-02T09:00Z and covers up to 2017-12-04T21:00Z, the end at T+2h.
CLOCK = """\
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
"""
POLICIES = """\
policies:
  director:
    state: {patience: 3}
    receipts:
      - event: returned_unopened
        to: ir.irgc.quds
        escalate: {patience: -1}
        send:
          to: ir.irgc.quds
          subject: "Again: $subject"
          body: Patience is now $patience.
  quds:
    letters:
      - from: us.cia.director
        open: 0.0
        reason: Not accepted
"""
INJECTS = """\
injects:
  - id: INJ-01
    at: T+00:05:00
    from: us.cia.director
    to: ir.irgc.quds
    subject: Accountability
    body: We will hold you accountable.
    objectives: [OBJ-1]
    expect:
      - id: EXP-01
        check: sent
        from: us.cia.director
        to: ir.irgc.quds
        within: 6h
        contingency: INJ-02
  - id: INJ-02
    contingency: true
    channel: news
    subject: A letter is being drafted
    body: Control nudges the director.
"""
MARK = "# <-"


def write(
    tmp_path: Path,
    *,
    header: str = HEADER,
    parties: str = PARTIES,
    clock: str = CLOCK,
    policies: str = POLICIES,
    injects: str = INJECTS,
) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(header + parties + clock + policies + injects, encoding="utf-8")
    return path


def marked(path: Path) -> list[int]:
    """The lines that carry the `# <-` mark."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [number for number, line in enumerate(lines, start=1) if MARK in line]


def swap(section: str, old: str, new: str) -> str:
    assert section.count(old) == 1, old
    return section.replace(old, new)


def one(path: Path, severity: str = "error") -> Problem:
    """The only finding for the scenario, which must sit on the one marked line."""
    found = lint_file(path)
    assert [(f.line, f.severity) for f in found] == [(marked(path)[0], severity)], found
    return found[0]


def test_clean_scenario_lints_clean(tmp_path: Path) -> None:
    """The base scenario every other test changes has no findings at all."""
    assert lint_file(write(tmp_path)) == []


@pytest.mark.parametrize("path", sorted(bundled_dir().glob("*.yaml")), ids=lambda p: p.stem)
def test_bundled_scenarios_have_no_errors(path: Path) -> None:
    """The scenarios shipped with the package pass lint without errors."""
    assert [f for f in lint(load_scenario(path)) if f.severity == "error"] == []


# --- parties -------------------------------------------------------------------------------------

UNKNOWN_PARTY = {
    "inject from": (
        "injects",
        "    from: us.cia.director\n    to:",
        "    from: us.cia.dir  # <-\n    to:",
    ),
    "inject to": (
        "injects",
        "    to: ir.irgc.quds\n    subject",
        "    to: [ir.irgc.qds]  # <-\n    subject",
    ),
    "expectation from": (
        "injects",
        "        from: us.cia.director\n",
        "        from: us.cia.dir  # <-\n",
    ),
    "expectation to": ("injects", "        to: ir.irgc.quds\n", "        to: ir.irgc.qds  # <-\n"),
    "letter rule from": (
        "policies",
        "      - from: us.cia.director\n",
        "      - from:\n          - us.cia.dir  # <-\n",
    ),
    "receipt rule to": (
        "policies",
        "        to: ir.irgc.quds\n        escalate",
        "        to: ir.irgc.qds  # <-\n        escalate",
    ),
    "send to": ("policies", "          to: ir.irgc.quds\n", "          to: ir.irgc.qds  # <-\n"),
    "reply to": (
        "policies",
        "        reason: Not accepted\n",
        "        reason: Not accepted\n        reply:\n          body: Noted.\n"
        "          to: ch.protecting  # <-\n",
    ),
    "forward to": (
        "policies",
        "        reason: Not accepted\n",
        "        reason: Not accepted\n        forward:\n          to: ch.protecting  # <-\n",
    ),
}


@pytest.mark.parametrize("case", UNKNOWN_PARTY, ids=list(UNKNOWN_PARTY))
def test_unknown_party_is_an_error_on_its_line(tmp_path: Path, case: str) -> None:
    """A name that is no party, wherever a party is named, is an error on the line naming it."""
    section, old, new = UNKNOWN_PARTY[case]
    sections = {"injects": INJECTS, "policies": POLICIES}
    sections[section] = swap(sections[section], old, new)
    finding = one(write(tmp_path, **sections))
    assert "is not a party" in finding.message
    assert "did you mean" in finding.message
    assert "add it under `parties`" in finding.message


def test_duplicate_party_names(tmp_path: Path) -> None:
    """A party name used twice is an error on the second, naming the first one's line."""
    parties = PARTIES + "  - name: ir.irgc.quds  # <-\n    play: control\n"
    finding = one(write(tmp_path, parties=parties))
    assert finding.message.startswith("party name 'ir.irgc.quds' is used twice (first on line 9)")


def test_duplicate_inject_expectation_and_objective_ids(tmp_path: Path) -> None:
    """Inject, expectation and objective ids used twice are each an error on the repeat."""
    header = HEADER + "  - id: OBJ-1  # <-\n    text: Again\n"
    injects = INJECTS + (
        "  - id: INJ-01  # <-\n"
        "    at: T+00:10:00\n"
        "    channel: news\n"
        "    subject: Again\n"
        "    objectives: [OBJ-1]\n"
        "    expect:\n"
        "      - id: EXP-01  # <-\n"
        "        check: opened\n"
        "        from: us.cia.director\n"
        "        to: ir.irgc.quds\n"
        "        within: 1h\n"
    )
    path = write(tmp_path, header=header, injects=injects)
    found = lint_file(path)
    assert [f.line for f in found] == marked(path)
    assert [f.message.split(" is used twice")[0] for f in found] == [
        "objective id 'OBJ-1'",
        "inject id 'INJ-01'",
        "expectation id 'EXP-01'",
    ]


def test_move_one_clashes_with_the_implicit_first_move(tmp_path: Path) -> None:
    """Moves that start after T+0 get an implicit move 1, so a listed move 1 is a duplicate."""
    clock = swap(
        CLOCK,
        "    - id: 1\n      title: The letter\n      at: T+00:00:00\n",
        "    - id: 1  # <-\n      title: The letter\n      at: T+00:01:00\n",
    )
    finding = one(write(tmp_path, clock=clock))
    assert "implicit first move at T+0" in finding.message
    assert "number this move 2" in finding.message


# --- seats and policies --------------------------------------------------------------------------


def test_seat_played_by_a_missing_policy(tmp_path: Path) -> None:
    """`play: bot:<policy>` naming no policy is an error on the `play` line."""
    parties = swap(PARTIES, "    play: bot:quds\n", "    play: bot:qods  # <-\n")
    path = write(tmp_path, parties=parties)
    found = lint_file(path)
    # The real policy is now unused too: a warning on its own line.
    assert [(f.line, f.severity) for f in found] == [
        (marked(path)[0], "error"),
        (path.read_text().splitlines().index("  quds:") + 1, "warning"),
    ]
    assert found[0].message.startswith("no policy named 'qods' (did you mean 'quds'?)")


def test_stand_in_naming_a_missing_policy(tmp_path: Path) -> None:
    """A stand_in `bot:<policy>` naming no policy is an error on the `stand_in` line."""
    parties = swap(PARTIES, "    stand_in: bot:director\n", "    stand_in: bot:direktor  # <-\n")
    path = write(tmp_path, parties=parties)
    found = [f for f in lint_file(path) if f.severity == "error"]
    assert [f.line for f in found] == marked(path)
    assert found[0].message.startswith("no policy named 'direktor' (did you mean 'director'?)")


def test_human_seat_without_stand_in_is_a_warning(tmp_path: Path) -> None:
    """A human seat no bot can rehearse is a warning on its `play` line."""
    parties = swap(
        PARTIES, "    play: human\n    stand_in: bot:director\n", "    play: human  # <-\n"
    )
    parties += "    stand_in: bot:director\n"  # the control seat keeps the policy in use
    path = write(tmp_path, parties=parties)
    found = lint_file(path)
    assert [(f.line, f.severity) for f in found] == [
        (marked(path)[0], "warning"),
        (marked(path)[0] + 5, "warning"),
    ]
    assert found[0].message == (
        "human seat 'us.cia.director' has no stand_in: a rehearsal (--rehearse) cannot play it; "
        "add `stand_in: bot:<policy>`"
    )
    assert found[1].message.startswith("only human seats have a stand_in")


def test_stand_in_that_is_not_a_bot(tmp_path: Path) -> None:
    """A stand_in must be a bot: `stand_in: control` is an error on its line."""
    parties = swap(PARTIES, "    stand_in: bot:director\n", "    stand_in: control  # <-\n")
    path = write(tmp_path, parties=parties)
    found = [f for f in lint_file(path) if f.severity == "error"]
    assert [f.line for f in found] == marked(path)
    assert found[0].message == (
        "a stand_in is the bot that takes a human seat in a rehearsal: write bot:<policy>"
    )


def test_policy_no_seat_plays_is_a_warning(tmp_path: Path) -> None:
    """A policy no seat plays (or stands in with) never runs: a warning on its name."""
    policies = POLICIES + "  spare:  # <-\n    state: {}\n"
    finding = one(write(tmp_path, policies=policies), "warning")
    assert "no seat plays policy 'spare'" in finding.message


def test_inject_rule_naming_a_missing_inject(tmp_path: Path) -> None:
    """A policy's `injects` rule for an inject that does not exist is an error on `inject`."""
    policies = POLICIES + "    injects:\n      - inject: INJ-09  # <-\n        escalate: {}\n"
    finding = one(write(tmp_path, policies=policies))
    assert finding.message == "no inject 'INJ-09' (did you mean 'INJ-02'?): this rule never runs"


def test_undeclared_state_variables(tmp_path: Path) -> None:
    """Thresholds and escalations on variables missing from `state` are warnings on their lines."""
    policies = swap(
        POLICIES,
        "        escalate: {patience: -1}\n",
        "        escalate:\n          patiense: -1  # <-\n",
    )
    policies += "    thresholds:\n      - variable: anger  # <-\n        at_least: 2\n"
    path = write(tmp_path, policies=policies)
    found = lint_file(path)
    assert [(f.line, f.severity) for f in found] == [(line, "warning") for line in marked(path)]
    assert found[0].message.startswith(
        "'patiense' is not a state variable of policy 'director' (did you mean 'patience'?)"
    )
    assert "declare it under `state` (e.g. anger: 0)" in found[1].message


def test_template_names_nothing_fills_in(tmp_path: Path) -> None:
    """$names a bot does not fill in there (a typo, or $sender with no letter) are warnings."""
    policies = swap(
        POLICIES,
        "          body: Patience is now $patience.\n",
        "          body: Patience is now $patence.  # <-\n",
    )
    policies += (
        "    times:\n"
        "      - at: T+00:30:00\n"
        "        send:\n"
        "          to: ir.irgc.quds\n"
        "          subject: Still waiting for $sender  # <-\n"
        "          body: From $party.\n"
    )
    path = write(tmp_path, policies=policies)
    found = lint_file(path)
    assert [(f.line, f.severity) for f in found] == [(line, "warning") for line in marked(path)]
    assert found[0].message.startswith("$patence is not filled in here (only $body, $party,")
    assert found[1].message == (
        "$sender is not filled in here (only $party): it will appear as written"
    )


# --- objectives ----------------------------------------------------------------------------------


def test_objectives_referenced_but_not_defined(tmp_path: Path) -> None:
    """Objective ids on injects and expectations that are not defined are errors on their line."""
    injects = swap(
        INJECTS,
        "    objectives: [OBJ-1]\n",
        "    objectives:\n      - OBJ-1\n      - OBJ-2  # <-\n",
    )
    injects = swap(
        injects, "        within: 6h\n", "        within: 6h\n        objectives: [OBJ-3]  # <-\n"
    )
    path = write(tmp_path, injects=injects)
    found = lint_file(path)
    assert [f.line for f in found] == marked(path)
    assert [f.message.split(":")[0] for f in found] == [
        "objective 'OBJ-2' is not defined (did you mean 'OBJ-1'?)",
        "objective 'OBJ-3' is not defined (did you mean 'OBJ-1'?)",
    ]


def test_objective_nothing_serves_is_a_warning(tmp_path: Path) -> None:
    """An objective no inject or expectation lists cannot be rated: a warning on its id."""
    header = HEADER + "  - id: OBJ-2  # <-\n    text: Read a refusal\n"
    finding = one(write(tmp_path, header=header), "warning")
    assert "no inject or expectation serves objective 'OBJ-2'" in finding.message


# --- the clock -----------------------------------------------------------------------------------


def test_move_starting_at_or_after_the_end(tmp_path: Path) -> None:
    """A move that starts at or after clock.end is an error on its `at`."""
    clock = CLOCK + "    - id: 3\n      title: Late\n      at: T+02:00:00  # <-\n"
    finding = one(write(tmp_path, clock=clock))
    assert finding.message == (
        "move 3 starts at T+02:00:00, at or after the end (T+02:00:00): start it earlier or "
        "extend clock.end"
    )


def test_inject_at_or_after_the_end(tmp_path: Path) -> None:
    """An `at` inject at or after clock.end is an error on its `at`."""
    injects = swap(INJECTS, "    at: T+00:05:00\n", "    at: T+02:00:00  # <-\n")
    finding = one(write(tmp_path, injects=injects))
    assert finding.message.startswith("INJ-01 fires at T+02:00:00, at or after the end")


def test_inject_whose_move_does_not_match_its_time(tmp_path: Path) -> None:
    """An explicit `move` that is not the move the inject's time falls in is an error on `move`."""
    injects = swap(INJECTS, "    at: T+00:05:00\n", "    move: 2  # <-\n    at: T+00:05:00\n")
    finding = one(write(tmp_path, injects=injects))
    assert finding.message == (
        "INJ-01 fires at T+00:05:00, in move 1 (The letter, from T+00:00:00), not move 2: "
        "fix `move` or the time"
    )


def test_inject_naming_a_move_that_does_not_exist(tmp_path: Path) -> None:
    """An explicit `move` no move has is an error on `move`, listing the moves."""
    injects = swap(INJECTS, "    contingency: true\n", "    move: 5  # <-\n    contingency: true\n")
    finding = one(write(tmp_path, injects=injects))
    assert finding.message == "there is no move 5 (moves: 1, 2): fix `move` or add the move"


WORLD_TIMES = {
    "before the start": ("2017-11-19T09:00:00Z", "", "before the exercise starts"),
    "in no move": ("2017-11-25T09:00:00Z", "", "which no move reaches (move 1 runs"),
    "after the end": ("2017-12-05T09:00:00Z", "", "at or after the end of the exercise"),
    "at the end": ("2017-12-04T21:00:00Z", "", "at or after the end of the exercise"),
    "before its move": ("2017-11-21T09:00:00Z", "    move: 2\n", "before move 2 begins"),
    "after its move": ("2017-12-02T10:00:00Z", "    move: 1\n", "after move 1 ends"),
}


@pytest.mark.parametrize("case", WORLD_TIMES, ids=list(WORLD_TIMES))
def test_world_time_outside_the_exercise_or_its_move(tmp_path: Path, case: str) -> None:
    """A `world` time the clock never reaches for that inject is an error on its `world`."""
    world, move, words = WORLD_TIMES[case]
    injects = swap(INJECTS, "    at: T+00:05:00\n", f"{move}    world: {world}  # <-\n")
    finding = one(write(tmp_path, injects=injects))
    assert words in finding.message


def test_world_time_inside_a_jumped_move_is_fine(tmp_path: Path) -> None:
    """A world time inside move 2's jumped range, with or without `move: 2`, lints clean."""
    injects = swap(
        INJECTS, "    at: T+00:05:00\n", "    move: 2\n    world: 2017-12-02T10:00:00Z\n"
    )
    assert lint_file(write(tmp_path, injects=injects)) == []


# --- what fires what -----------------------------------------------------------------------------


def test_contingency_nothing_fires_is_a_warning(tmp_path: Path) -> None:
    """A contingency inject no expectation names can only be fired by hand: a warning."""
    injects = swap(INJECTS, "        contingency: INJ-02\n", "")
    injects = swap(injects, "    contingency: true\n", "    contingency: true  # <-\n")
    finding = one(write(tmp_path, injects=injects), "warning")
    assert finding.message.startswith("nothing fires contingency inject INJ-02")


def test_expectation_contingency_missing_or_not_a_contingency(tmp_path: Path) -> None:
    """An expectation's `contingency` must name an existing inject marked `contingency: true`."""
    injects = swap(INJECTS, "        contingency: INJ-02\n", "        contingency: INJ-03  # <-\n")
    injects = swap(injects, "    contingency: true\n", "    contingency: true  # <-\n")
    path = write(tmp_path, injects=injects)
    found = lint_file(path)
    assert [(f.line, f.severity) for f in found] == list(
        zip(marked(path), ["error", "warning"], strict=True)
    )
    assert found[0].message.startswith("no inject 'INJ-03' (did you mean 'INJ-02'?) to fire")

    injects = swap(INJECTS, "        contingency: INJ-02\n", "        contingency: INJ-01  # <-\n")
    injects = swap(injects, "    contingency: true\n", "    contingency: true  # <-\n")
    path = write(tmp_path, injects=injects)
    found = lint_file(path)
    assert [f.line for f in found] == marked(path)
    assert found[0].message.startswith("INJ-01 is not a contingency inject")


def test_after_naming_a_missing_inject_or_expectation(tmp_path: Path) -> None:
    """`after` must name an inject or expectation that exists: an error on the id's line."""
    injects = INJECTS + (
        "  - id: INJ-03\n"
        "    after: {inject: INJ-9}  # <-\n"
        "    channel: news\n"
        "    subject: Follow-up\n"
        "  - id: INJ-04\n"
        "    after:\n"
        "      expectation: EXP-9  # <-\n"
        "      outcome: met\n"
        "    channel: news\n"
        "    subject: Follow-up\n"
    )
    path = write(tmp_path, injects=injects)
    found = lint_file(path)
    assert [f.line for f in found] == marked(path)
    assert found[0].message.startswith("no inject 'INJ-9'")
    assert found[1].message == (
        "no expectation 'EXP-9' (did you mean 'EXP-01'?) for INJ-04 to follow: fix the id"
    )


def test_after_loops_are_errors_once_per_loop(tmp_path: Path) -> None:
    """Injects that wait for each other (or for themselves) are one error per loop."""
    injects = INJECTS + (
        "  - id: INJ-03\n"
        "    after: {inject: INJ-04}  # <-\n"
        "    channel: news\n"
        "    subject: One\n"
        "  - id: INJ-04\n"
        "    after: {inject: INJ-03}\n"
        "    channel: news\n"
        "    subject: Two\n"
        "  - id: INJ-05\n"
        "    after: {inject: INJ-05, delay: 1h}  # <-\n"
        "    channel: news\n"
        "    subject: Three\n"
    )
    path = write(tmp_path, injects=injects)
    found = lint_file(path)
    assert [f.line for f in found] == marked(path)
    assert found[0].message.startswith("injects INJ-03, INJ-04 wait for each other")
    assert found[1].message.startswith("INJ-05 waits for itself")


def test_contingency_loop_is_an_error(tmp_path: Path) -> None:
    """A contingency whose own expectation fires it again is a loop through `contingency`."""
    injects = INJECTS.replace(
        "  - id: INJ-02\n    contingency: true\n", "  - id: INJ-02\n    contingency: true  # <-\n"
    ) + (
        "    expect:\n"
        "      - id: EXP-02\n"
        "        check: sent\n"
        "        from: us.cia.director\n"
        "        to: ir.irgc.quds\n"
        "        within: 3h\n"
        "        contingency: INJ-02\n"
    )
    finding = one(write(tmp_path, injects=injects))
    assert finding.message.startswith("INJ-02 waits for itself")


# --- letters and deadlines -----------------------------------------------------------------------


def test_letter_to_oneself_and_expectation_on_one_party(tmp_path: Path) -> None:
    """A letter inject to its own sender, and an expectation from a party to itself, are errors."""
    injects = swap(
        INJECTS,
        "    to: ir.irgc.quds\n    subject",
        "    to:\n      - ir.irgc.quds\n      - us.cia.director  # <-\n    subject",
    )
    injects = swap(injects, "        to: ir.irgc.quds\n", "        to: us.cia.director  # <-\n")
    path = write(tmp_path, injects=injects)
    found = lint_file(path)
    assert [f.line for f in found] == marked(path)
    assert found[0].message == (
        "INJ-01 is a letter from us.cia.director to itself: fix `from` or `to`"
    )
    assert found[1].message.startswith("EXP-01 expects us.cia.director to deal with itself")


def test_communique_from_a_human_seat_is_a_warning(tmp_path: Path) -> None:
    """A communiqué in a human seat's name is the control cell speaking for the player."""
    injects = INJECTS + (
        "  - id: INJ-03\n"
        "    at: T+00:30:00\n"
        "    channel: communique\n"
        "    from: us.cia.director  # <-\n"
        "    subject: A statement\n"
    )
    finding = one(write(tmp_path, injects=injects), "warning")
    assert "human seat" in finding.message
    assert "make it a letter inject (a tasking)" in finding.message


def test_deadline_after_the_end_is_a_warning(tmp_path: Path) -> None:
    """An expectation due after clock.end (inject time + within, at clock speed) is a warning."""
    injects = swap(INJECTS, "    at: T+00:05:00\n", "    at: T+01:58:00\n")
    injects = swap(injects, "        within: 6h\n", "        within: 6h  # <-\n")
    finding = one(write(tmp_path, injects=injects), "warning")
    assert finding.message.startswith(
        "EXP-01 is due 6h after INJ-01 fires at T+01:58:00, at T+02:04:00, after the exercise "
        "ends (T+02:00:00)"
    )


def test_after_inject_that_fires_after_the_end_is_a_warning(tmp_path: Path) -> None:
    """An `after` inject whose earliest time (anchor + delay) is past the end is a warning."""
    injects = INJECTS + (
        "  - id: INJ-03\n"
        "    after: {expectation: EXP-01, outcome: missed, delay: 5d}  # <-\n"
        "    channel: news\n"
        "    subject: Much later\n"
    )
    finding = one(write(tmp_path, injects=injects), "warning")
    # INJ-01 at T+0:05, EXP-01 missed 6 min later, then 5 days of story time is 2 hours.
    assert finding.message.startswith("INJ-03 fires at T+02:11:00 at the earliest")


# --- schema problems come through lint_file, with lines ------------------------------------------


def test_schema_errors_come_with_lines(tmp_path: Path) -> None:
    """Unknown fields, bad offsets and missing body files are findings on their own lines."""
    injects = swap(INJECTS, "    at: T+00:05:00\n", "    at: half past  # <-\n")
    injects = swap(
        injects, "    body: We will hold you accountable.\n", "    body_file: missing.md  # <-\n"
    )
    injects = swap(injects, "    channel: news\n", "    chanel: news  # <-\n")
    path = write(tmp_path, injects=injects)
    found = lint_file(path)
    assert [(f.line, f.severity) for f in found] == [(line, "error") for line in marked(path)]
    assert found[0].message == "'half past' is not an offset: write T+HH:MM:SS or T+90m"
    assert found[1].message == "body_file 'missing.md' does not exist next to the scenario"
    assert found[2].message == "unknown field 'chanel' (misspelt?)"


def test_findings_print_as_file_line_and_severity(tmp_path: Path) -> None:
    """A finding prints as file:line: [warning: ]message (path), so editors can jump to it."""
    header = HEADER + "  - id: OBJ-2  # <-\n    text: Read a refusal\n"
    path = write(tmp_path, header=header)
    finding = one(path, "warning")
    assert str(finding) == (
        f"{path}:{marked(path)[0]}: warning: {finding.message} (objectives.1.id)"
    )


# --- blind spots: what only the whole cast shows -------------------------------------------------


def test_news_with_a_from_is_a_warning(tmp_path: Path) -> None:
    """Wire news comes from the control cell: a `from` on it would be silently ignored."""
    injects = swap(
        INJECTS, "    channel: news\n", "    channel: news\n    from: ir.irgc.quds  # <-\n"
    )
    finding = one(write(tmp_path, injects=injects), "warning")
    assert "wire news" in finding.message
    assert "its `from` (ir.irgc.quds) is ignored" in finding.message


EXPECT_OPENED = """\
      - id: EXP-02
        check: opened
        from: {sender}  # <-
        to: {recipient}
        within: 6h
"""


def test_expectation_on_a_letter_nobody_writes_is_an_error(tmp_path: Path) -> None:
    """`opened` the wrong way round waits on a letter no seat ever writes: an error, saying why."""
    wrong = EXPECT_OPENED.format(sender="ir.irgc.quds", recipient="us.cia.director")
    injects = swap(
        INJECTS, "        contingency: INJ-02\n", "        contingency: INJ-02\n" + wrong
    )
    finding = one(write(tmp_path, injects=injects))
    assert finding.message == (
        "EXP-02 (opened) waits on a letter from ir.irgc.quds to us.cia.director, and no one ever "
        "writes one, so it can never be met; INJ-01's letter goes from us.cia.director to "
        "ir.irgc.quds: swap `from` and `to`"
    )
    # The right way round is clean.
    right = EXPECT_OPENED.format(sender="us.cia.director", recipient="ir.irgc.quds")
    injects = swap(
        INJECTS, "        contingency: INJ-02\n", "        contingency: INJ-02\n" + right
    )
    assert lint_file(write(tmp_path, injects=injects)) == []


def test_replied_the_wrong_way_round_is_a_warning_when_such_letters_exist(tmp_path: Path) -> None:
    """A swapped `replied` that other letters could meet does not watch its inject's letter."""
    replied = EXPECT_OPENED.replace("opened", "replied").format(
        sender="ir.irgc.quds", recipient="us.cia.director"
    )
    injects = swap(
        INJECTS, "        contingency: INJ-02\n", "        contingency: INJ-02\n" + replied
    )
    # The Quds bot now writes to the director on its own, so the letter can exist, and the
    # director's stand-in answers it.
    policies = swap(
        POLICIES,
        "    state: {patience: 3}\n",
        "    state: {patience: 3}\n    letters:\n      - from: ir.irgc.quds\n"
        "        reply: {body: Understood.}\n",
    )
    policies = policies + (
        "    injects:\n"
        "      - inject: INJ-01\n"
        "        send: {to: us.cia.director, subject: Received, body: Noted.}\n"
    )
    finding = one(write(tmp_path, injects=injects, policies=policies), "warning")
    assert "watches letters from ir.irgc.quds to us.cia.director, not INJ-01's own" in (
        finding.message
    )
    assert "swap `from` and `to`" in finding.message


def test_stand_in_that_never_does_the_expected_action_is_a_warning(tmp_path: Path) -> None:
    """A tasking the human seat's stand-in never performs would fail every rehearsal."""
    tasking = (
        "  - id: INJ-03\n"
        "    at: T+00:20:00\n"
        "    from: ch.protecting-power\n"
        "    to: us.cia.director\n"
        "    subject: Read our note\n"
        "    objectives: [OBJ-1]\n"
        "    expect:\n"
        "      - id: EXP-03\n"
        "        check: opened  # <-\n"
        "        from: ch.protecting-power\n"
        "        to: us.cia.director\n"
        "        within: 4h\n"
    )
    policies = swap(
        POLICIES,
        "    state: {patience: 3}\n",
        "    state: {patience: 3}\n    letters:\n      - from: ch.protecting-power\n"
        "        open: 0\n",
    )
    finding = one(write(tmp_path, injects=INJECTS + tasking, policies=policies), "warning")
    assert finding.message.startswith(
        "in a rehearsal, us.cia.director's stand-in (bot:director) never does what EXP-03 "
        "expects (open letters from ch.protecting-power)"
    )
    # A stand-in that opens it is clean.
    assert lint_file(write(tmp_path, injects=INJECTS + tasking)) == []


SWISS = """\
  swiss:
    letters:
      - forward:
          to: ir.irgc.quds
"""
QUDS_REPLIES = """\
      - open: 1
        reply:  # <-
          body: Noted.
          probability: {p}
"""


@pytest.mark.parametrize(("p", "severity"), [("1.0", "error"), ("0.5", "warning")])
def test_reply_loop_through_an_intermediary(tmp_path: Path, p: str, severity: str) -> None:
    """An intermediary forwarding every answer back is a loop: certain, an error; else a warning."""
    parties = swap(PARTIES, "    play: control\n", "    play: bot:swiss\n")
    policies = POLICIES + SWISS + ""
    policies = swap(
        policies,
        "        reason: Not accepted\n",
        "        reason: Not accepted\n" + QUDS_REPLIES.format(p=p),
    )
    finding = one(write(tmp_path, parties=parties, policies=policies), severity)
    assert (
        "ch.protecting-power to ir.irgc.quds, then ir.irgc.quds to ch.protecting-power, then again"
    ) in finding.message


def test_readable_error_for_a_malformed_party_name(tmp_path: Path) -> None:
    """A party name that breaks the naming rule is explained in words, not as a regex."""
    injects = swap(INJECTS, "    to: ir.irgc.quds\n    subject", "    to: IRGC  # <-\n    subject")
    finding = one(write(tmp_path, injects=injects))
    assert finding.message == (
        "'IRGC' is not a party name: use 3-64 characters of lowercase ASCII letters, digits, "
        "'.' and '-', starting with a letter"
    )


def test_a_duplicate_id_is_not_suggested_for_the_missing_one(tmp_path: Path) -> None:
    """A reference to a missing id points at a duplicate id, not a misleading 'did you mean'."""
    injects = INJECTS + (
        "  - id: INJ-01  # <-\n"
        "    at: T+00:10:00\n"
        "    channel: news\n"
        "    subject: Meant to be INJ-03\n"
        "  - id: INJ-04\n"
        "    after: {inject: INJ-03}  # <-\n"
        "    channel: news\n"
        "    subject: Follows INJ-03\n"
    )
    path = write(tmp_path, injects=injects)
    found = lint_file(path)
    assert [f.line for f in found] == marked(path)
    assert found[1].message == (
        "no inject 'INJ-03' ('INJ-01' is used twice: is one of them meant to be 'INJ-03'?) for "
        "INJ-04 to follow: fix the id"
    )
    assert "did you mean" not in found[1].message


# --- time that suits people ----------------------------------------------------------------------


def test_a_persons_deadline_too_short_at_the_runs_speed_is_a_warning(tmp_path: Path) -> None:
    """6h of story at clock.speed 60 is 6 wall minutes at speed 1, but 2 at speed 3: a warning."""
    injects = swap(INJECTS, "        within: 6h\n", "        within: 6h  # <-\n")
    path = write(tmp_path, injects=injects)
    assert lint_file(path) == []
    [finding] = lint_file(path, Pace(speed=3))
    assert (finding.line, finding.severity) == (marked(path)[0], "warning")
    assert finding.message == (
        "EXP-01 gives us.cia.director (a person) 2m of wall time at speed 3 (6h of story time at "
        "clock.speed 60), less than 3 wall minutes: play at speed 2 or slower, or lengthen `within`"
    )
    [finding] = lint_file(path, Pace(speed=1, min_wall_minutes=9))
    assert "6m of wall time at speed 1" in finding.message
    assert "less than 9 wall minutes: play at speed 0.66 or slower" in finding.message


def test_bots_deadlines_and_speed_max_are_not_held_to_wall_minutes(tmp_path: Path) -> None:
    """Only people need wall minutes: a bot's deadline, or any at speed max, is not flagged."""
    path = write(tmp_path)
    assert lint_file(path, Pace(speed=None)) == []
    parties = swap(
        PARTIES, "    play: human\n    stand_in: bot:director\n", "    play: bot:director\n"
    )
    assert lint_file(write(tmp_path, parties=parties), Pace(speed=100)) == []


def test_lint_command_takes_the_runs_speed_and_the_least_wall_minutes(tmp_path: Path) -> None:
    """`exercise lint --speed N --min-wall-minutes M` warns by file:line and still exits 0."""
    injects = swap(INJECTS, "        within: 6h\n", "        within: 6h  # <-\n")
    path = write(tmp_path, injects=injects)
    lint_command = [sys.executable, "-m", "channel", "exercise", "lint", str(path)]
    done = subprocess.run(
        [*lint_command, "--speed", "2", "--min-wall-minutes", "4"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"{path}:{marked(path)[0]}: warning: EXP-01 gives")
    assert "3m of wall time at speed 2" in done.stderr
    assert "play at speed 1.5 or slower" in done.stderr
    refused = subprocess.run(
        [*lint_command, "--min-wall-minutes", "0"], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2
    assert "--min-wall-minutes" in refused.stderr
