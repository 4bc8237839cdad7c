"""The letter lifecycle: a table-driven state machine with no I/O.

A letter's state is named after the last receipt issued for it, so states and receipt events use
the same six words. The store enforces these rules atomically; this module only decides.

    accepted ──► delivered ──► opened
        │            ├───────► returned_unopened
        │            ├───────► withdrawn
        │            └───────► expired
        └─ (opened / returned_unopened imply delivered first; withdrawn and expired apply directly)
"""

from __future__ import annotations

from enum import StrEnum

from channel.protocol.errors import Forbidden, InvalidTransition, LetterExpired


class State(StrEnum):
    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    OPENED = "opened"
    RETURNED_UNOPENED = "returned_unopened"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


# Receipt events use the same words as states: the event that moved a letter names its state.
Event = State


class Actor(StrEnum):
    SENDER = "sender"
    RECIPIENT = "recipient"
    COURIER = "courier"


TERMINAL: frozenset[State] = frozenset(
    {State.OPENED, State.RETURNED_UNOPENED, State.WITHDRAWN, State.EXPIRED}
)

# (current state, event) -> next state. Anything absent is refused.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.ACCEPTED, Event.DELIVERED): State.DELIVERED,
    (State.DELIVERED, Event.OPENED): State.OPENED,
    (State.DELIVERED, Event.RETURNED_UNOPENED): State.RETURNED_UNOPENED,
    (State.ACCEPTED, Event.WITHDRAWN): State.WITHDRAWN,
    (State.DELIVERED, Event.WITHDRAWN): State.WITHDRAWN,
    (State.ACCEPTED, Event.EXPIRED): State.EXPIRED,
    (State.DELIVERED, Event.EXPIRED): State.EXPIRED,
}

# Who may cause each event. `accepted` is issued by the courier when a letter arrives.
ACTORS: dict[Event, Actor] = {
    Event.ACCEPTED: Actor.COURIER,
    Event.DELIVERED: Actor.RECIPIENT,
    Event.OPENED: Actor.RECIPIENT,
    Event.RETURNED_UNOPENED: Actor.RECIPIENT,
    Event.WITHDRAWN: Actor.SENDER,
    Event.EXPIRED: Actor.COURIER,
}

# A recipient's decision on an undelivered letter first records that the envelope was handed over.
IMPLIED: dict[tuple[State, Event], Event] = {
    (State.ACCEPTED, Event.OPENED): Event.DELIVERED,
    (State.ACCEPTED, Event.RETURNED_UNOPENED): Event.DELIVERED,
}

# Events whose receipt carries the recipient's own signature over its decision.
SIGNED_BY_RECIPIENT: frozenset[Event] = frozenset({Event.OPENED, Event.RETURNED_UNOPENED})


def apply(state: State, event: Event) -> State:
    """The state after `event`; raises InvalidTransition (LetterExpired) and changes nothing."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise _refusal(state, event) from None


def steps(state: State, event: Event, actor: Actor) -> list[Event]:
    """The events to record, in order, for `actor` to make `event` happen from `state` (implied
    ones first). Raises Forbidden if `event` is not `actor`'s to cause (ACTORS), whatever the
    state; InvalidTransition (LetterExpired) if the state does not allow it."""
    authorize(event, actor)
    implied = IMPLIED.get((state, event))
    if implied is None:
        apply(state, event)
        return [event]
    return [implied, event]


def authorize(event: Event, actor: Actor) -> None:
    """Raise Forbidden unless `actor` is the one who may cause `event` (ACTORS)."""
    allowed = ACTORS[event]
    if actor is not allowed:
        who = "the courier" if allowed is Actor.COURIER else f"its {allowed.value}"
        raise Forbidden(f"only {who} may make a letter {event.value.replace('_', ' ')}")


def is_terminal(state: State) -> bool:
    return state in TERMINAL


def _refusal(state: State, event: Event) -> InvalidTransition:
    if state is State.EXPIRED:
        return LetterExpired("the letter passed its deadline and went back to its sender")
    if state in TERMINAL:
        return InvalidTransition(f"the letter is already {state.value.replace('_', ' ')}")
    return InvalidTransition(f"a letter that is {state.value} cannot become {event.value}")


def mermaid_diagram() -> str:
    """The state diagram, generated from the table (docs/protocol.md embeds it)."""
    lines = ["stateDiagram-v2", "    [*] --> accepted"]
    lines += [f"    {a.value} --> {b.value}" for (a, _), b in TRANSITIONS.items()]
    lines += [f"    {s.value} --> [*]" for s in State if s in TERMINAL]
    return "\n".join(lines)
