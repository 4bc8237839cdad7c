"""Scenario lint: the checks that need the whole scenario, each pointing at a line of the file.

`load_scenario` already refuses what the schema alone can see (unknown fields, bad times, missing
body files). `lint` finds what only the whole file shows: a name that is not a party, a seat
played by a policy that does not exist, an inject that fires after the end or in the wrong move,
references that wait on each other, deadlines that outlast the exercise.

Every finding says what is wrong and what to do. An *error* makes the exercise wrong; a
*warning* makes it weaker (a human seat nobody can rehearse, a contingency only the control cell
can fire, a deadline still open when play stops).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template
from typing import Literal

from channel.exercise.author.clock import Clocks, MoveSpan
from channel.exercise.author.scenario import (
    Channel,
    Check,
    Expectation,
    Inject,
    OnInject,
    OnLetter,
    OnReceipt,
    OnThreshold,
    OnTime,
    Policy,
    Problem,
    Scenario,
    ScenarioError,
    Send,
    Source,
    format_duration,
    format_offset,
    load_scenario,
)
from channel.protocol.notice import CONTROL_PARTY

Severity = Literal["error", "warning"]
Where = tuple[str | int, ...]

# What a bot fills into its templates besides its state (channel.exercise.bots._values): the
# letter's names only when the rule reacts to a letter.
_ALWAYS = frozenset({"party"})
_FROM_LETTER = frozenset({"sender", "recipient", "subject", "body"})


# The least wall time a person is given to meet a deadline, unless the facilitator says otherwise:
# reading a letter, deciding with the room and writing back takes minutes, whatever the story says.
MIN_WALL_MINUTES = 3.0
# The speed people play at unless `exercise run --speed` says otherwise (real time).
PEOPLE_SPEED = 1.0


@dataclass(frozen=True)
class Pace:
    """The run the scenario is linted for: its speed (exercise seconds per wall second; None at
    speed max, where no person plays) and the least wall time a person's deadline may give."""

    speed: float | None = PEOPLE_SPEED
    min_wall_minutes: float = MIN_WALL_MINUTES


def lint_file(path: Path, pace: Pace = Pace()) -> list[Problem]:
    """Load and lint a scenario file: schema problems and lint findings alike, by line."""
    try:
        source = load_scenario(path)
    except ScenarioError as exc:
        return _by_line(exc.problems)
    return lint(source, pace)


def lint(source: Source, pace: Pace = Pace()) -> list[Problem]:
    """Every semantic problem in a loaded scenario, by line (people's deadlines at `pace`)."""
    findings = [finding for check in _CHECKS for finding in check(source)]
    return _by_line([*findings, *_people_deadlines(source, pace)])


def _by_line(findings: Iterable[Problem]) -> list[Problem]:
    return sorted(findings, key=lambda finding: finding.line)


def _error(source: Source, message: str, *where: str | int) -> Problem:
    return _finding(source, "error", message, where)


def _warning(source: Source, message: str, *where: str | int) -> Problem:
    return _finding(source, "warning", message, where)


def _finding(source: Source, severity: Severity, message: str, where: Where) -> Problem:
    problem = source.problem(message, *where)
    return Problem(problem.file, problem.line, problem.message, problem.path, severity)


def _hint(name: str, known: Iterable[str]) -> str:
    """A suggestion for a name that is not there; `known` lists each use, repeats included.

    When the closest name is used twice, the likelier story is that one of the two was meant to
    be `name`: suggesting the duplicate would send the author to the wrong line.
    """
    uses = list(known)
    close = difflib.get_close_matches(name, sorted(set(uses)), n=3)
    repeated = [candidate for candidate in close if uses.count(candidate) > 1]
    if repeated:
        return f" ({repeated[0]!r} is used twice: is one of them meant to be {name!r}?)"
    return f" (did you mean {close[0]!r}?)" if close else ""


def _world(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- names used twice ----------------------------------------------------------------------------


def _repeated_names(source: Source) -> Iterator[Problem]:
    scenario = source.scenario
    yield from _repeats(
        source,
        "party name",
        [(p.name, ("parties", i, "name")) for i, p in enumerate(scenario.parties)],
    )
    yield from _repeats(
        source,
        "objective id",
        [(o.id, ("objectives", i, "id")) for i, o in enumerate(scenario.objectives)],
    )
    yield from _repeats(
        source,
        "inject id",
        [(inj.id, ("injects", i, "id")) for i, inj in enumerate(scenario.injects)],
    )
    expectations = [
        (exp.id, ("injects", i, "expect", k, "id"))
        for i, inj in enumerate(scenario.injects)
        for k, exp in enumerate(inj.expect)
    ]
    yield from _repeats(source, "expectation id", expectations)
    for i, party in enumerate(scenario.parties):
        if party.name == CONTROL_PARTY:
            yield _error(
                source,
                f"{CONTROL_PARTY!r} is the control cell's own party in every run (it sends the "
                "people's seats their notices): give this party another name",
                "parties",
                i,
                "name",
            )


def _repeats(source: Source, what: str, named: Sequence[tuple[str, Where]]) -> Iterator[Problem]:
    first: dict[str, Where] = {}
    for name, where in named:
        if name not in first:
            first[name] = where
            continue
        line = source.line(*first[name])
        yield _error(
            source, f"{what} {name!r} is used twice (first on line {line}): rename one", *where
        )


# --- parties -------------------------------------------------------------------------------------


def _unknown_parties(source: Source) -> Iterator[Problem]:
    names = [party.name for party in source.scenario.parties]
    for name, where in _party_references(source.scenario):
        if name not in names:
            message = (
                f"{name!r} is not a party{_hint(name, names)}: add it under `parties` or fix it"
            )
            yield _error(source, message, *where)


def _party_references(scenario: Scenario) -> Iterator[tuple[str, Where]]:
    for i, inj in enumerate(scenario.injects):
        if inj.from_ is not None:
            yield inj.from_, ("injects", i, "from")
        for j, name in enumerate(inj.to):
            yield name, ("injects", i, "to", j)
        for k, exp in enumerate(inj.expect):
            yield exp.from_, ("injects", i, "expect", k, "from")
            yield exp.to, ("injects", i, "expect", k, "to")
    for policy_name, policy in scenario.policies.items():
        yield from _policy_party_references(policy, ("policies", policy_name))


def _policy_party_references(policy: Policy, base: Where) -> Iterator[tuple[str, Where]]:
    for i, rule in enumerate(policy.letters):
        for j, sender in enumerate(rule.from_):
            yield sender, (*base, "letters", i, "from", j)
        if rule.reply is not None and rule.reply.to is not None:
            yield rule.reply.to, (*base, "letters", i, "reply", "to")
        if rule.forward is not None:
            yield rule.forward.to, (*base, "letters", i, "forward", "to")
    for i, receipt in enumerate(policy.receipts):
        for j, name in enumerate(receipt.to):
            yield name, (*base, "receipts", i, "to", j)
    for where, send in _sends(policy, base):
        yield send.to, (*where, "to")


def _sends(policy: Policy, base: Where) -> Iterator[tuple[Where, Send]]:
    kinds: tuple[tuple[str, Sequence[OnReceipt | OnInject | OnThreshold | OnTime]], ...] = (
        ("receipts", policy.receipts),
        ("injects", policy.injects),
        ("thresholds", policy.thresholds),
        ("times", policy.times),
    )
    for kind, rules in kinds:
        for i, rule in enumerate(rules):
            if rule.send is not None:
                yield (*base, kind, i, "send"), rule.send


def _seats(source: Source) -> Iterator[Problem]:
    for i, party in enumerate(source.scenario.parties):
        yield from _seat_policy(source, party.play, ("parties", i, "play"))
        if party.stand_in is not None:
            yield from _stand_in(source, i)
        elif party.play == "human":
            message = (
                f"human seat {party.name!r} has no stand_in: a rehearsal (--rehearse) cannot "
                "play it; add `stand_in: bot:<policy>`"
            )
            yield _warning(source, message, "parties", i, "play")


def _stand_in(source: Source, index: int) -> Iterator[Problem]:
    party = source.scenario.parties[index]
    where = ("parties", index, "stand_in")
    if party.play != "human":
        message = (
            f"only human seats have a stand_in, and {party.name!r} is played by {party.play}: "
            "remove the stand_in"
        )
        yield _warning(source, message, *where)
    elif party.stand_in is not None and _policy_of(party.stand_in) is None:
        message = "a stand_in is the bot that takes a human seat in a rehearsal: write bot:<policy>"
        yield _error(source, message, *where)
    elif party.stand_in is not None:
        yield from _seat_policy(source, party.stand_in, where)


def _seat_policy(source: Source, seat: str, where: Where) -> Iterator[Problem]:
    policy = _policy_of(seat)
    policies = source.scenario.policies
    if policy is not None and policy not in policies:
        message = (
            f"no policy named {policy!r}{_hint(policy, policies)}: define it under `policies` "
            "or fix the seat"
        )
        yield _error(source, message, *where)


def _policy_of(seat: str) -> str | None:
    return seat.removeprefix("bot:") if seat.startswith("bot:") else None


# --- policies ------------------------------------------------------------------------------------


def _policies(source: Source) -> Iterator[Problem]:
    seats = [seat for p in source.scenario.parties for seat in (p.play, p.stand_in) if seat]
    used = {_policy_of(seat) for seat in seats}
    for name, policy in source.scenario.policies.items():
        base = ("policies", name)
        if name not in used:
            message = (
                f"no seat plays policy {name!r}, so it never runs: name it in a seat's `play` "
                "or `stand_in`, or remove it"
            )
            yield _warning(source, message, *base)
        yield from _policy_injects(source, policy, base)
        yield from _policy_state(source, name, policy, base)
        yield from _policy_templates(source, policy, base)


def _policy_injects(source: Source, policy: Policy, base: Where) -> Iterator[Problem]:
    ids = [inj.id for inj in source.scenario.injects]
    for i, rule in enumerate(policy.injects):
        if rule.inject not in ids:
            message = f"no inject {rule.inject!r}{_hint(rule.inject, ids)}: this rule never runs"
            yield _error(source, message, *base, "injects", i, "inject")


def _policy_state(source: Source, name: str, policy: Policy, base: Where) -> Iterator[Problem]:
    declared = policy.state
    for i, threshold in enumerate(policy.thresholds):
        if threshold.variable not in declared:
            message = _undeclared(threshold.variable, name, declared)
            yield _warning(source, message, *base, "thresholds", i, "variable")
    escalating: tuple[tuple[str, Sequence[OnLetter | OnReceipt | OnInject | OnTime]], ...] = (
        ("letters", policy.letters),
        ("receipts", policy.receipts),
        ("injects", policy.injects),
        ("times", policy.times),
    )
    for kind, rules in escalating:
        for i, rule in enumerate(rules):
            for variable in rule.escalate:
                if variable not in declared:
                    message = _undeclared(variable, name, declared)
                    yield _warning(source, message, *base, kind, i, "escalate", variable)


def _undeclared(variable: str, policy: str, declared: Iterable[str]) -> str:
    # A warning: a bot counts an undeclared variable from 0, so the exercise runs, but a typo
    # silently starts a second counter that no threshold watches.
    return (
        f"{variable!r} is not a state variable of policy {policy!r}{_hint(variable, declared)}: "
        f"declare it under `state` (e.g. {variable}: 0)"
    )


def _policy_templates(source: Source, policy: Policy, base: Where) -> Iterator[Problem]:
    for where, text, with_letter in _templates(policy, base):
        known = set(policy.state) | _ALWAYS | (_FROM_LETTER if with_letter else set())
        for name in Template(text).get_identifiers():
            if name in known:
                continue
            listed = ", ".join(f"${k}" for k in sorted(known))
            message = f"${name} is not filled in here (only {listed}): it will appear as written"
            yield _warning(source, message, *where)


def _templates(policy: Policy, base: Where) -> Iterator[tuple[Where, str, bool]]:
    """Each template with whether the rule reacts to a letter (which fills $sender, ...)."""
    for i, rule in enumerate(policy.letters):
        for part, answer in (("reply", rule.reply), ("forward", rule.forward)):
            if answer is not None:
                where = (*base, "letters", i, part)
                yield (*where, "subject"), answer.subject, True
                yield (*where, "body"), answer.body, True
    for where, send in _sends(policy, base):
        with_letter = where[len(base)] == "receipts"
        yield (*where, "subject"), send.subject, with_letter
        yield (*where, "body"), send.body, with_letter


# --- objectives ----------------------------------------------------------------------------------


def _objectives(source: Source) -> Iterator[Problem]:
    scenario = source.scenario
    defined = [objective.id for objective in scenario.objectives]
    served: set[str] = set()
    for name, where in _objective_references(scenario):
        served.add(name)
        if name not in defined:
            message = (
                f"objective {name!r} is not defined{_hint(name, defined)}: "
                "add it under `objectives` or fix the id"
            )
            yield _error(source, message, *where)
    for i, objective in enumerate(scenario.objectives):
        if objective.id not in served:
            message = (
                f"no inject or expectation serves objective {objective.id!r}: the report has "
                "nothing to rate it by; list it in an inject's or expectation's `objectives`"
            )
            yield _warning(source, message, "objectives", i, "id")


def _objective_references(scenario: Scenario) -> Iterator[tuple[str, Where]]:
    for i, inj in enumerate(scenario.injects):
        for j, objective in enumerate(inj.objectives):
            yield objective, ("injects", i, "objectives", j)
        for k, exp in enumerate(inj.expect):
            for j, objective in enumerate(exp.objectives):
                yield objective, ("injects", i, "expect", k, "objectives", j)


# --- the clock -----------------------------------------------------------------------------------


def _moves(source: Source) -> Iterator[Problem]:
    clock = source.scenario.clock
    implicit = len(clock.all_moves()) > len(clock.moves)
    for i, move in enumerate(clock.moves):
        where = ("clock", "moves", i)
        if implicit and move.id == 1:
            message = (
                f"move 1 is the implicit first move at T+0 (the first listed move starts at "
                f"{format_offset(clock.moves[0].at)}): number this move 2 or start it at T+0"
            )
            yield _error(source, message, *where, "id")
        if move.at >= clock.end:
            message = (
                f"move {move.id} starts at {format_offset(move.at)}, at or after the end "
                f"({format_offset(clock.end)}): start it earlier or extend clock.end"
            )
            yield _error(source, message, *where, "at")


def _timing(source: Source) -> Iterator[Problem]:
    clocks = Clocks(source.scenario.clock, None)
    spans = {span.move.id: span for span in clocks.spans}
    for i, inj in enumerate(source.scenario.injects):
        if inj.move is not None and inj.move not in spans:
            listed = ", ".join(map(str, spans))
            message = f"there is no move {inj.move} (moves: {listed}): fix `move` or add the move"
            yield _error(source, message, "injects", i, "move")
        if inj.at is not None:
            yield from _timed_at(source, clocks, i, inj.at)
        elif inj.world is not None:
            yield from _timed_world(source, clocks, i, inj.world)


def _timed_at(source: Source, clocks: Clocks, index: int, at: float) -> Iterator[Problem]:
    inj = source.scenario.injects[index]
    end = clocks.clock.end
    if at >= end:
        message = (
            f"{inj.id} fires at {format_offset(at)}, at or after the end of the exercise "
            f"({format_offset(end)}): fire it earlier or extend clock.end"
        )
        yield _error(source, message, "injects", index, "at")
        return
    span = clocks.span_at(at)
    if inj.move is not None and inj.move != span.move.id and _has_move(clocks, inj.move):
        message = (
            f"{inj.id} fires at {format_offset(at)}, in move {span.move.id} ({span.move.title}, "
            f"from {format_offset(span.move.at)}), not move {inj.move}: fix `move` or the time"
        )
        yield _error(source, message, "injects", index, "move")


def _has_move(clocks: Clocks, move_id: int) -> bool:
    return any(span.move.id == move_id for span in clocks.spans)


def _timed_world(source: Source, clocks: Clocks, index: int, world: datetime) -> Iterator[Problem]:
    inj = source.scenario.injects[index]
    where = ("injects", index, "world")
    if world < clocks.clock.start:
        message = (
            f"{inj.id} is set at {_world(world)}, before the exercise starts "
            f"({_world(clocks.clock.start)}): set a later world time"
        )
        yield _error(source, message, *where)
        return
    if inj.move is not None and _has_move(clocks, inj.move):
        yield from _world_in_move(source, clocks, index, world)
        return
    t = clocks.exercise_at(world)
    if t is None and world >= clocks.world_at(clocks.clock.end):
        yield _error(source, _after_end(inj, world, clocks), *where)
    elif t is None:
        message = (
            f"{inj.id} is set at {_world(world)}, which no move reaches ({_ranges(clocks)}): "
            "set a world time inside a move, or use `at`"
        )
        yield _error(source, message, *where)
    elif t >= clocks.clock.end:
        yield _error(source, _after_end(inj, world, clocks), *where)


def _world_in_move(
    source: Source, clocks: Clocks, index: int, world: datetime
) -> Iterator[Problem]:
    inj = source.scenario.injects[index]
    span = next(span for span in clocks.spans if span.move.id == inj.move)
    start, end = _world_range(clocks, span)
    where = ("injects", index, "world")
    last = span is clocks.spans[-1]
    if world < start:
        message = (
            f"{inj.id} is set at {_world(world)}, before move {inj.move} begins ({_world(start)}): "
            "fix `move` or the world time"
        )
        yield _error(source, message, *where)
    elif world >= end and last:
        yield _error(source, _after_end(inj, world, clocks), *where)
    elif world >= end:
        message = (
            f"{inj.id} is set at {_world(world)}, after move {inj.move} ends ({_world(end)}): "
            "fix `move` or the world time"
        )
        yield _error(source, message, *where)


def _world_range(clocks: Clocks, span: MoveSpan) -> tuple[datetime, datetime]:
    """World time from a move's start to the next move's start (or the end of the exercise)."""
    following = [s.move.at for s in clocks.spans if s.move.at > span.move.at]
    until = min([*following, clocks.clock.end])
    length = timedelta(seconds=(until - span.move.at) * clocks.clock.speed)
    return span.world_start, span.world_start + length


def _ranges(clocks: Clocks) -> str:
    ranges = [(span.move.id, *_world_range(clocks, span)) for span in clocks.spans]
    return "; ".join(f"move {m} runs {_world(a)} to {_world(b)}" for m, a, b in ranges)


def _after_end(inj: Inject, world: datetime, clocks: Clocks) -> str:
    end = clocks.world_at(clocks.clock.end)
    return (
        f"{inj.id} is set at {_world(world)}, at or after the end of the exercise "
        f"({_world(end)} at {format_offset(clocks.clock.end)}): set an earlier world time"
    )


# --- what fires what -----------------------------------------------------------------------------


def _contingencies(source: Source) -> Iterator[Problem]:
    scenario = source.scenario
    injects = {inj.id: inj for inj in reversed(scenario.injects)}
    named: set[str] = set()
    for i, inj in enumerate(scenario.injects):
        for k, exp in enumerate(inj.expect):
            if exp.contingency is None:
                continue
            named.add(exp.contingency)
            message = _contingency_problem(exp, injects, [o.id for o in scenario.injects])
            if message:
                yield _error(source, message, "injects", i, "expect", k, "contingency")
    for i, inj in enumerate(scenario.injects):
        if inj.contingency and inj.id not in named:
            message = (
                f"nothing fires contingency inject {inj.id}: no expectation names it in "
                "`contingency`, so only the control cell can fire it, by hand"
            )
            yield _warning(source, message, "injects", i, "contingency")


def _contingency_problem(exp: Expectation, injects: dict[str, Inject], ids: list[str]) -> str:
    target = injects.get(exp.contingency or "")
    if target is None:
        return (
            f"no inject {exp.contingency!r}{_hint(exp.contingency or '', ids)} to fire when "
            f"{exp.id} is missed: add it (with `contingency: true`) or fix the id"
        )
    if not target.contingency:
        return (
            f"{target.id} is not a contingency inject: it fires on its own schedule, not when "
            f"{exp.id} is missed; replace its time with `contingency: true`"
        )
    return ""


def _afters(source: Source) -> Iterator[Problem]:
    scenario = source.scenario
    inject_ids = [inj.id for inj in scenario.injects]
    expectation_ids = [exp.id for _, exp in scenario.expectations()]
    for i, inj in enumerate(scenario.injects):
        after = inj.after
        if after is None:
            continue
        if after.inject is not None and after.inject not in inject_ids:
            message = (
                f"no inject {after.inject!r}{_hint(after.inject, inject_ids)} for {inj.id} "
                "to follow: fix the id"
            )
            yield _error(source, message, "injects", i, "after", "inject")
        if after.expectation is not None and after.expectation not in expectation_ids:
            message = (
                f"no expectation {after.expectation!r}{_hint(after.expectation, expectation_ids)}"
                f" for {inj.id} to follow: fix the id"
            )
            yield _error(source, message, "injects", i, "after", "expectation")


def _loops(source: Source) -> Iterator[Problem]:
    scenario = source.scenario
    waits = _waits_for(scenario)
    reach = {inject_id: _reachable(waits, inject_id) for inject_id in waits}
    reported: set[str] = set()
    for i, inj in enumerate(scenario.injects):
        if inj.id in reported or inj.id not in reach[inj.id]:
            continue
        loop = [o.id for o in scenario.injects if o.id in reach[inj.id] and inj.id in reach[o.id]]
        reported.update(loop)
        if loop == [inj.id]:
            message = f"{inj.id} waits for itself, so it never fires on its own: break the loop"
        else:
            message = (
                f"injects {', '.join(loop)} wait for each other (through `after` and "
                "`contingency`), so none of them fires on its own: break the loop"
            )
        yield _error(source, message, "injects", i, "after" if inj.after else "contingency")


def _waits_for(scenario: Scenario) -> dict[str, list[str]]:
    """Each inject → the injects it waits for: its `after`, or those whose expectations fire it."""
    owner = {exp.id: inj.id for inj, exp in scenario.expectations()}
    waits: dict[str, list[str]] = {inj.id: [] for inj in scenario.injects}
    for inj in scenario.injects:
        if inj.after is not None and inj.after.inject is not None:
            waits[inj.id].append(inj.after.inject)
        if inj.after is not None and inj.after.expectation in owner:
            waits[inj.id].append(owner[inj.after.expectation])
    contingencies = {inj.id for inj in scenario.injects if inj.contingency}
    for inj, exp in scenario.expectations():
        if exp.contingency in contingencies:
            waits[exp.contingency].append(inj.id)
    return waits


def _reachable(waits: dict[str, list[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(waits.get(start, []))
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(waits.get(node, []))
    return seen


# --- deadlines -----------------------------------------------------------------------------------


def _earliest_offsets(scenario: Scenario) -> dict[str, float]:
    """The earliest exercise time each inject can fire on its own (world delays at clock speed).

    Injects in a loop, or waiting on something missing, are left out.
    """
    clocks = Clocks(scenario.clock, None)
    injects = {inj.id: inj for inj in reversed(scenario.injects)}
    owners = {exp.id: (inj, exp) for inj, exp in reversed(scenario.expectations())}
    triggers: dict[str, list[tuple[Inject, Expectation]]] = {}
    for inj, exp in scenario.expectations():
        if exp.contingency is not None:
            triggers.setdefault(exp.contingency, []).append((inj, exp))
    memo: dict[str, float | None] = {}

    def visit(inject_id: str) -> float | None:
        if inject_id not in memo:
            memo[inject_id] = None  # a loop that comes back here finds "never"
            memo[inject_id] = fires(injects[inject_id]) if inject_id in injects else None
        return memo[inject_id]

    def fires(inj: Inject) -> float | None:
        if inj.at is not None or inj.world is not None:
            return clocks.scheduled(inj)
        if inj.after is not None and inj.after.inject is not None:
            return _later(visit(inj.after.inject), inj.after.delay, clocks)
        if inj.after is not None and inj.after.expectation in owners:
            source, exp = owners[inj.after.expectation]
            wait = exp.within if inj.after.outcome == "missed" else 0.0
            return _later(visit(source.id), wait + inj.after.delay, clocks)
        if inj.after is not None:
            return None  # waits for something that does not exist
        times = [_later(visit(src.id), exp.within, clocks) for src, exp in triggers.get(inj.id, [])]
        return min((t for t in times if t is not None), default=None)

    found = {inject_id: visit(inject_id) for inject_id in injects}
    return {inject_id: t for inject_id, t in found.items() if t is not None}


def _later(t: float | None, world_seconds: float, clocks: Clocks) -> float | None:
    return None if t is None else t + clocks.exercise_seconds(world_seconds)


def _deadlines(source: Source) -> Iterator[Problem]:
    scenario = source.scenario
    clocks = Clocks(scenario.clock, None)
    end = scenario.clock.end
    fired = _earliest_offsets(scenario)
    for i, inj in enumerate(scenario.injects):
        t = fired.get(inj.id)
        if t is None:
            continue
        if t >= end and inj.after is not None:
            message = (
                f"{inj.id} fires at {format_offset(t)} at the earliest, after the exercise ends "
                f"({format_offset(end)}): shorten the wait or extend clock.end"
            )
            yield _warning(source, message, "injects", i, "after")
        if t >= end:
            continue
        for k, exp in enumerate(inj.expect):
            deadline = t + clocks.exercise_seconds(exp.within)
            if deadline > end:
                message = (
                    f"{exp.id} is due {format_duration(exp.within)} after {inj.id} fires at "
                    f"{format_offset(t)}, at {format_offset(deadline)}, after the exercise ends "
                    f"({format_offset(end)}): it will still be open when play stops; shorten "
                    f"`within` or fire {inj.id} earlier"
                )
                yield _warning(source, message, "injects", i, "expect", k, "within")


def _people_deadlines(source: Source, pace: Pace) -> Iterator[Problem]:
    """A deadline a person must meet that gives them too little wall time at the run's speed."""
    if pace.speed is None:
        return  # speed max: the run refuses people, so no person has a deadline to meet
    scenario = source.scenario
    people = {party.name for party in scenario.parties if party.play == "human"}
    least = pace.min_wall_minutes * 60
    for i, inj in enumerate(scenario.injects):
        for k, exp in enumerate(inj.expect):
            actor = exp.from_ if exp.check is Check.SENT else exp.to
            if actor not in people:
                continue
            exercise = exp.within / scenario.clock.speed
            wall = exercise / pace.speed
            if wall >= least:
                continue
            enough = exercise / least
            message = (
                f"{exp.id} gives {actor} (a person) {format_duration(wall)} of wall time at speed "
                f"{pace.speed:g} ({format_duration(exp.within)} of story time at clock.speed "
                f"{scenario.clock.speed:g}), less than {pace.min_wall_minutes:g} wall minutes: "
                f"play at speed {_round_down(enough)} or slower, or lengthen `within`"
            )
            yield _warning(source, message, "injects", i, "expect", k, "within")


def _round_down(speed: float) -> str:
    """A speed to recommend, to two significant figures and never above the one that is enough."""
    digits = 1 - math.floor(math.log10(speed))
    step = 10.0**-digits
    return f"{round(math.floor(speed / step + 1e-9) * step, max(digits, 0)):g}"


# --- letters -------------------------------------------------------------------------------------


def _letters(source: Source) -> Iterator[Problem]:
    seats = {party.name: party.play for party in source.scenario.parties}
    for i, inj in enumerate(source.scenario.injects):
        if inj.channel is Channel.LETTER and inj.from_ in inj.to:
            message = f"{inj.id} is a letter from {inj.from_} to itself: fix `from` or `to`"
            yield _error(source, message, "injects", i, "to", inj.to.index(inj.from_))
        if inj.channel is Channel.COMMUNIQUE and inj.from_ and seats.get(inj.from_) == "human":
            message = (
                f"{inj.id} is a communiqué in the name of {inj.from_}, a human seat: the control "
                "cell would speak for the player; make it a letter inject (a tasking) or news"
            )
            yield _warning(source, message, "injects", i, "from")
        for k, exp in enumerate(inj.expect):
            if exp.from_ == exp.to:
                message = (
                    f"{exp.id} expects {exp.to} to deal with itself: `from` writes the letter, "
                    "`to` receives it; fix one of them"
                )
                yield _error(source, message, "injects", i, "expect", k, "to")


def _news_from(source: Source) -> Iterator[Problem]:
    for i, inj in enumerate(source.scenario.injects):
        if inj.channel is Channel.NEWS and inj.from_ is not None:
            message = (
                f"{inj.id} is wire news, which comes from the control cell, so its `from` "
                f"({inj.from_}) is ignored: remove it, or make it a communiqué to speak for "
                f"{inj.from_}"
            )
            yield _warning(source, message, "injects", i, "from")


# --- what the seats can do -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Bot:
    """A policy playing a seat: always (`play: bot:…`), or only in a rehearsal (`stand_in`)."""

    party: str
    name: str  # the policy's
    policy: Policy
    rehearsal: bool

    def rule_for(self, sender: str) -> OnLetter:
        # The bot's own choice: the first rule whose `from` matches (channel.exercise.run.bots).
        for rule in self.policy.letters:
            if not rule.from_ or sender in rule.from_:
                return rule
        return OnLetter()


def _bots(scenario: Scenario, rehearsal: bool = True) -> dict[str, _Bot]:
    """The seats a policy plays: in a rehearsal, human seats with a stand-in too."""
    bots = {}
    for party in scenario.parties:
        seat, stand_in = party.play, False
        if rehearsal and party.play == "human" and party.stand_in is not None:
            seat, stand_in = party.stand_in, True
        name = _policy_of(seat) or ""
        if name in scenario.policies:
            bots[party.name] = _Bot(party.name, name, scenario.policies[name], stand_in)
    return bots


def _answers(bot: _Bot, sender: str) -> bool:
    """Whether `bot` can answer a letter from `sender` (a reply back to the sender)."""
    rule = bot.rule_for(sender)
    reply = rule.reply
    return (
        rule.open > 0 and reply is not None and reply.probability > 0 and reply.to in (None, sender)
    )


def _writes(bot: _Bot, to: str) -> bool:
    """Whether `bot` writes to `to` unprompted by `to`: a send, a forward, a redirected reply."""
    policy = bot.policy
    if any(send.to == to and send.probability > 0 for _, send in _sends(policy, ())):
        return True
    return any(
        rule.open > 0
        and (
            (rule.forward is not None and rule.forward.to == to)
            or (rule.reply is not None and rule.reply.to == to and rule.reply.probability > 0)
        )
        for rule in policy.letters
    )


def _letter_pairs(scenario: Scenario, rehearsal: bool) -> set[tuple[str, str]]:
    """Every (sender, recipient) a letter can ever go between, live or in a rehearsal.

    A person (or the control cell) may write to anyone; a bot only as its policy says.
    """
    names = [party.name for party in scenario.parties]
    bots = _bots(scenario, rehearsal)
    pairs = {(inj.from_, to) for inj in scenario.injects if inj.from_ for to in inj.to}
    pairs = {(a, b) for a, b in pairs if a in names and b in names}
    for a in names:
        for b in names:
            if a != b and (a not in bots or _writes(bots[a], b)):
                pairs.add((a, b))
    # A reply to the sender exists once the letter it answers does: grow to a fixed point.
    grown = True
    while grown:
        answers = {(b, a) for a, b in pairs if b in bots and _answers(bots[b], a)} - pairs
        pairs |= answers
        grown = bool(answers)
    return pairs


def _expected_letters(source: Source) -> Iterator[Problem]:
    scenario = source.scenario
    pairs = _letter_pairs(scenario, rehearsal=False) | _letter_pairs(scenario, rehearsal=True)
    names = {party.name for party in scenario.parties}
    for i, inj in enumerate(scenario.injects):
        own = {(inj.from_, to) for to in inj.to} if inj.channel is Channel.LETTER else set()
        for k, exp in enumerate(inj.expect):
            known = exp.from_ in names and exp.to in names  # else: `is not a party`
            if exp.check is Check.SENT or exp.from_ == exp.to or not known:
                continue
            where = ("injects", i, "expect", k, "from")
            swapped = (exp.to, exp.from_) in own
            fix = (
                f"; {inj.id}'s letter goes from {exp.to} to {exp.from_}: swap `from` and `to`"
                if swapped
                else ""
            )
            if (exp.from_, exp.to) not in pairs:
                message = (
                    f"{exp.id} ({exp.check.value}) waits on a letter from {exp.from_} to "
                    f"{exp.to}, and no one ever writes one, so it can never be met{fix}"
                )
                yield _error(source, message, *where)
            elif swapped:
                message = (
                    f"{exp.id} ({exp.check.value}) watches letters from {exp.from_} to {exp.to}, "
                    f"not {inj.id}'s own letter{fix} if it meant that one"
                )
                yield _warning(source, message, *where)


_ACTIONS = {
    Check.SENT: "write to",
    Check.OPENED: "open letters from",
    Check.RETURNED: "return letters unopened from",
    Check.REPLIED: "answer letters from",
}


def _stand_in_actions(source: Source) -> Iterator[Problem]:
    """An expectation on a human seat that its stand-in never meets fails every rehearsal.

    (A bot seat that never meets an expectation is usually the story: the miss fires a
    contingency. A stand-in is there to rehearse what the person is expected to do.)
    """
    scenario = source.scenario
    bots = _bots(scenario)
    pairs = _letter_pairs(scenario, rehearsal=True)
    names = {party.name for party in scenario.parties}
    for i, inj in enumerate(scenario.injects):
        for k, exp in enumerate(inj.expect):
            actor, other = (exp.from_, exp.to) if exp.check is Check.SENT else (exp.to, exp.from_)
            bot = bots.get(actor)
            if bot is None or not bot.rehearsal or other not in names:
                continue
            if _performs(bot, exp.check, other, pairs):
                continue
            message = (
                f"in a rehearsal, {actor}'s stand-in ({scenario.party(actor).stand_in}) never "
                f"does what {exp.id} expects ({_ACTIONS[exp.check]} {other}), so it is missed "
                "every time: give the stand-in's policy a rule that does"
            )
            yield _warning(source, message, "injects", i, "expect", k, "check")


def _performs(bot: _Bot, check: Check, other: str, pairs: set[tuple[str, str]]) -> bool:
    if check is Check.SENT:
        return (bot.party, other) in pairs
    rule = bot.rule_for(other)
    if check is Check.OPENED:
        return rule.open > 0
    if check is Check.RETURNED:
        return rule.open < 1
    return _answers(bot, other)


_Step = tuple[tuple[str, str], Where, bool]  # the next letter, the rule writing it, whether sure


def _letter_loops(source: Source) -> Iterator[Problem]:
    """Bots answering or forwarding each other's letters round a circle, for ever."""
    scenario = source.scenario
    steps: dict[tuple[str, str], list[_Step]] = {}
    bots = _bots(scenario)
    for name, bot in bots.items():
        base: Where = ("policies", bot.name)
        for sender in (other.name for other in scenario.parties if other.name != name):
            rule = bot.rule_for(sender)
            if rule.open <= 0 or rule not in bot.policy.letters:
                continue
            index = bot.policy.letters.index(rule)
            letter = (sender, name)
            if rule.reply is not None and rule.reply.probability > 0:
                sure = rule.open >= 1 and rule.reply.probability >= 1
                where = (*base, "letters", index, "reply")
                steps.setdefault(letter, []).append(((name, rule.reply.to or sender), where, sure))
            if rule.forward is not None:
                where = (*base, "letters", index, "forward")
                steps.setdefault(letter, []).append(
                    ((name, rule.forward.to), where, rule.open >= 1)
                )
    reported: set[frozenset[tuple[str, str]]] = set()
    for start in sorted(steps):
        for letters, rules in _cycles(start, steps):
            if frozenset(letters) in reported:
                continue
            reported.add(frozenset(letters))
            path = ", then ".join(f"{a} to {b}" for a, b in letters)
            stand_ins = sorted({b for _, b in letters if bots[b].rehearsal})
            if stand_ins:
                path += f" (in a rehearsal, where stand-ins play {', '.join(stand_ins)})"
            where = min((w for w, _ in rules), key=lambda w: source.line(*w))
            if all(sure for _, sure in rules):
                message = (
                    f"letters go round for ever: {path}, then again, every step certain; give "
                    "one rule a `from` that leaves the last sender out, or drop a reply"
                )
                yield _error(source, message, *where)
            else:
                message = (
                    f"letters can go round and round: {path}, then again, until a draw stops "
                    "them; give one rule a `from` that leaves the last sender out"
                )
                yield _warning(source, message, *where)


def _cycles(
    start: tuple[str, str], steps: dict[tuple[str, str], list[_Step]]
) -> Iterator[tuple[list[tuple[str, str]], list[tuple[Where, bool]]]]:
    """Each round from the letter `start` back to it: its letters, and the rule writing each."""
    todo: list[list[_Step]] = [[]]
    while todo:
        path = todo.pop()
        here = path[-1][0] if path else start
        for step in steps.get(here, []):
            letters = [start, *(letter for letter, _, _ in path)]
            if step[0] == start:
                yield letters, [(where, sure) for _, where, sure in [*path, step]]
            elif step[0] not in letters:
                todo.append([*path, step])


_CHECKS: tuple[Callable[[Source], Iterator[Problem]], ...] = (
    _repeated_names,
    _unknown_parties,
    _seats,
    _policies,
    _objectives,
    _moves,
    _timing,
    _contingencies,
    _afters,
    _loops,
    _deadlines,
    _letters,
    _news_from,
    _expected_letters,
    _stand_in_actions,
    _letter_loops,
)
