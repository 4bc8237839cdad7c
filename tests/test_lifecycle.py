"""The letter lifecycle as a pure unit: every (state, event) pair checked against the table."""

from __future__ import annotations

import itertools

import pytest

from channel.protocol import lifecycle
from channel.protocol.errors import Forbidden, InvalidTransition, LetterExpired
from channel.protocol.lifecycle import (
    ACTORS,
    IMPLIED,
    SIGNED_BY_RECIPIENT,
    TERMINAL,
    TRANSITIONS,
    Actor,
    State,
    apply,
    is_terminal,
    steps,
)

S = State

# The rules, written out independently of the module's table, so a change to either shows here.
ALLOWED: dict[tuple[State, State], State] = {
    (S.ACCEPTED, S.DELIVERED): S.DELIVERED,
    (S.ACCEPTED, S.WITHDRAWN): S.WITHDRAWN,
    (S.ACCEPTED, S.EXPIRED): S.EXPIRED,
    (S.DELIVERED, S.OPENED): S.OPENED,
    (S.DELIVERED, S.RETURNED_UNOPENED): S.RETURNED_UNOPENED,
    (S.DELIVERED, S.WITHDRAWN): S.WITHDRAWN,
    (S.DELIVERED, S.EXPIRED): S.EXPIRED,
}
ALL_PAIRS = list(itertools.product(State, State))


def _pair_id(pair: tuple[State, State]) -> str:
    return f"{pair[0].value}+{pair[1].value}"


def test_table_is_exactly_the_documented_rules() -> None:
    """The module's transition table holds exactly the seven documented moves."""
    assert dict(TRANSITIONS) == ALLOWED


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=_pair_id)
def test_every_state_event_pair(pair: tuple[State, State]) -> None:
    """An allowed pair gives its next state; any other is refused with the right error type."""
    state, event = pair
    before = State(state)
    if pair in ALLOWED:
        assert apply(state, event) is ALLOWED[pair]
        return
    expected = LetterExpired if state is S.EXPIRED else InvalidTransition
    with pytest.raises(InvalidTransition) as refused:
        apply(state, event)
    assert type(refused.value) is expected
    assert refused.value.status == 409
    assert state is before


@pytest.mark.parametrize("state", sorted(TERMINAL), ids=str)
def test_terminal_states_allow_nothing(state: State) -> None:
    """No event at all leads out of a terminal state."""
    assert is_terminal(state)
    for event in State:
        with pytest.raises(InvalidTransition):
            apply(state, event)


def test_exactly_four_terminal_states() -> None:
    """Opened, returned unopened, withdrawn and expired end a letter; nothing else does."""
    assert {s for s in State if is_terminal(s)} == {
        S.OPENED,
        S.RETURNED_UNOPENED,
        S.WITHDRAWN,
        S.EXPIRED,
    }
    assert not is_terminal(S.ACCEPTED)
    assert not is_terminal(S.DELIVERED)


def test_refusal_messages_name_the_state() -> None:
    """A refusal says what the letter already is, so a user learns why."""
    with pytest.raises(InvalidTransition, match="already opened"):
        apply(S.OPENED, S.RETURNED_UNOPENED)
    with pytest.raises(InvalidTransition, match="already returned unopened"):
        apply(S.RETURNED_UNOPENED, S.OPENED)
    with pytest.raises(InvalidTransition, match="accepted cannot become accepted"):
        apply(S.ACCEPTED, S.ACCEPTED)
    with pytest.raises(LetterExpired, match="deadline"):
        apply(S.EXPIRED, S.WITHDRAWN)


@pytest.mark.parametrize("event", [S.OPENED, S.RETURNED_UNOPENED], ids=str)
def test_recipient_decision_on_undelivered_letter_implies_delivery(event: State) -> None:
    """Opening or returning an accepted letter records `delivered` first, then the decision."""
    assert steps(S.ACCEPTED, event, ACTORS[event]) == [S.DELIVERED, event]


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=_pair_id)
def test_steps_replay_through_apply(pair: tuple[State, State]) -> None:
    """steps() returns a legal path ending in `event`, and refuses what apply() refuses."""
    state, event = pair
    if pair in ALLOWED or pair in IMPLIED:
        path = steps(state, event, ACTORS[event])
        assert path[-1] is event
        current = state
        for step in path:
            current = apply(current, step)
        assert current is event
    else:
        with pytest.raises(InvalidTransition):
            steps(state, event, ACTORS[event])


def test_only_recipient_decisions_imply_delivery() -> None:
    """Withdrawal and expiry apply directly to an accepted letter; no implied step is added."""
    assert set(IMPLIED) == {(S.ACCEPTED, S.OPENED), (S.ACCEPTED, S.RETURNED_UNOPENED)}
    assert steps(S.ACCEPTED, S.WITHDRAWN, ACTORS[S.WITHDRAWN]) == [S.WITHDRAWN]
    assert steps(S.ACCEPTED, S.EXPIRED, ACTORS[S.EXPIRED]) == [S.EXPIRED]
    assert steps(S.DELIVERED, S.OPENED, ACTORS[S.OPENED]) == [S.OPENED]


def test_actors_of_each_event() -> None:
    """Courier accepts and expires; recipient takes delivery and decides; sender withdraws."""
    assert ACTORS == {
        S.ACCEPTED: Actor.COURIER,
        S.DELIVERED: Actor.RECIPIENT,
        S.OPENED: Actor.RECIPIENT,
        S.RETURNED_UNOPENED: Actor.RECIPIENT,
        S.WITHDRAWN: Actor.SENDER,
        S.EXPIRED: Actor.COURIER,
    }


def test_recipient_signs_exactly_its_decisions() -> None:
    """Only the recipient's own decisions (opened, returned_unopened) carry its signature."""
    assert {S.OPENED, S.RETURNED_UNOPENED} == SIGNED_BY_RECIPIENT
    assert all(ACTORS[event] is Actor.RECIPIENT for event in SIGNED_BY_RECIPIENT)


def test_every_state_but_accepted_is_reached_by_its_own_event() -> None:
    """A letter's state is named after the event that moved it there (the table's invariant)."""
    targets = {next_state for (_, event), next_state in TRANSITIONS.items() if event is next_state}
    assert targets == set(State) - {S.ACCEPTED}
    assert all(event is nxt for (_, event), nxt in TRANSITIONS.items())


def test_mermaid_diagram_is_generated_from_the_table() -> None:
    """The docs' state diagram draws every transition and marks every terminal state."""
    diagram = lifecycle.mermaid_diagram()
    assert diagram.startswith("stateDiagram-v2")
    for (state, _), nxt in TRANSITIONS.items():
        assert f"    {state.value} --> {nxt.value}" in diagram.splitlines()
    for state in TERMINAL:
        assert f"    {state.value} --> [*]" in diagram.splitlines()
    assert f"    {S.DELIVERED.value} --> [*]" not in diagram.splitlines()


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=_pair_id)
def test_steps_refuse_every_other_actor(pair: tuple[State, State]) -> None:
    """The transition function enforces ACTORS: an event caused by anyone else is Forbidden."""
    state, event = pair
    for actor in Actor:
        if actor is not ACTORS[event]:
            with pytest.raises(Forbidden):
                steps(state, event, actor)
