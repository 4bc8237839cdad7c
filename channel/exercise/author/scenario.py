"""The scenario file: what an exercise is, as pydantic models (the JSON Schema is made from them).

A scenario is one YAML file, optionally with letter bodies in Markdown files beside it. Times
come in two kinds, and the names say which:

- an *offset* (`T+00:30:00`, `T+90m`) is exercise time since the start: where a row sits in the
  MSEL. At speed 1 it is wall time.
- a *duration* (`90m`, `6h`, `1d12h`) is world (story) time: how long a bot thinks, how late
  a reply may be, how slow the courier is. The clock's `speed` turns one into the other.

`load_scenario` reads a file, attaches bodies, and raises `ScenarioError` with the file and line of
every problem it finds; `channel.exercise.author.lint` adds the checks that need the whole scenario.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from channel.protocol.canonical import sha256_hex
from channel.protocol.errors import ChannelError
from channel.protocol.models import Precedence
from channel.protocol.names import PARTY_NAME_RULE

SCHEMA_ID = "https://backchannel.invalid/schemas/scenario-v1.json"
DEFAULT_MARKING = "EXERCISE EXERCISE EXERCISE"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_CLOCK = re.compile(r"(\d+):([0-5]\d)(?::([0-5]\d))?")


class ScenarioError(ChannelError):
    """The scenario file cannot be used: every problem, each with its file and line."""

    code = "invalid-scenario"
    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario, where it is, and what to do about it."""

    file: str
    line: int
    message: str
    path: str = ""
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        kind = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}: {kind}{self.message}{where}"


# --- the two kinds of time -----------------------------------------------------------------------


def parse_duration(value: Any) -> float:
    """`90s`, `30m`, `6h`, `1d12h`, `1.5h` or a number of seconds → seconds of world time."""
    if isinstance(value, bool):
        raise ValueError("a duration is text such as 90m, 6h or 1d12h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        if not _DURATION.fullmatch(text):
            raise ValueError(f"{value!r} is not a duration such as 90m, 6h or 1d12h")
        seconds = sum(
            float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhdw])", text)
        )
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_offset(value: Any) -> float:
    """`T+01:30:00`, `T+01:30` (hours:minutes) or `T+90m` → seconds of exercise time."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)  # already seconds: a model built in code, or a round trip
    text = str(value).strip()
    if not text.upper().startswith("T+"):
        raise ValueError(f"{value!r} is not an offset: write T+HH:MM:SS or T+90m")
    rest = text[2:]
    if rest == "0":
        return 0.0
    clock = _CLOCK.fullmatch(rest)
    if clock:
        hours, minutes, seconds = clock.groups()
        return int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
    return parse_duration(rest)


def format_duration(seconds: float) -> str:
    whole = round(seconds)
    if whole == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def format_offset(seconds: float) -> str:
    whole = round(seconds)
    return f"T+{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("give world times a time zone, e.g. 2017-12-02T09:00:00Z")
    return moment.astimezone(UTC)


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": r"^(\d+(\.\d+)?[smhdw])+$", "examples": ["90m", "6h"]}
    ),
]
Offset = Annotated[
    float,
    BeforeValidator(parse_offset),
    PlainSerializer(format_offset, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[Tt]\+(0|\d+:[0-5]\d(:[0-5]\d)?|(\d+(\.\d+)?[smhdw])+)$",
            "examples": ["T+00:30:00", "T+90m"],
        }
    ),
]
WorldTime = Annotated[datetime, AfterValidator(_utc)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
_PARTY_PATTERN = r"^[a-z][a-z0-9.-]{2,63}$"
_IDENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"
_SEAT_PATTERN = r"^(human|control|bot:[a-z0-9][a-z0-9_-]*)$"
PartyName = Annotated[
    str, Field(pattern=_PARTY_PATTERN, description=f"A party name: {PARTY_NAME_RULE}")
]
Ident = Annotated[
    str,
    Field(
        pattern=_IDENT_PATTERN,
        description="An id: letters, digits, '.', '_' and '-' (e.g. INJ-01, OBJ-2)",
    ),
]
Seat = Annotated[
    str,
    Field(
        pattern=_SEAT_PATTERN,
        description="Who plays the seat: human, control, or bot:<policy>",
    ),
]


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


_PARTY_SCHEMA = {"type": "string", "pattern": _PARTY_PATTERN}
PartyNames = Annotated[
    list[PartyName],
    BeforeValidator(_listed),
    WithJsonSchema(
        {
            "description": "A party name, or a list of them",
            "anyOf": [_PARTY_SCHEMA, {"type": "array", "items": _PARTY_SCHEMA}],
        }
    ),
]


class Spec(BaseModel):
    """Scenario models refuse unknown fields: a misspelt key is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- distributions -------------------------------------------------------------------------------


class Uniform(Spec):
    uniform: tuple[Duration, Duration] = Field(description="[low, high], world time")


class Exponential(Spec):
    exponential: Duration = Field(description="The mean, world time")


class LogNormalShape(Spec):
    median: Duration
    sigma: Annotated[float, Field(gt=0, le=5)] = 0.5


class LogNormal(Spec):
    lognormal: LogNormalShape


class Fixed(Spec):
    fixed: Duration


_DURATION_SCHEMA = {"type": "string", "pattern": r"^(\d+(\.\d+)?[smhdw])+$"}


def _shape(**properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [next(iter(properties))],
        "additionalProperties": False,
    }


Distribution = Annotated[
    Fixed | Uniform | Exponential | LogNormal,
    BeforeValidator(lambda v: {"fixed": v} if isinstance(v, str | int | float) else v),
    WithJsonSchema(
        {
            "description": "A world-time delay: `2h`, {uniform: [1h, 4h]}, {exponential: 2h}, "
            "{lognormal: {median: 2h, sigma: 0.5}}",
            "anyOf": [
                _DURATION_SCHEMA,
                _shape(fixed=_DURATION_SCHEMA),
                _shape(
                    uniform={
                        "type": "array",
                        "items": _DURATION_SCHEMA,
                        "minItems": 2,
                        "maxItems": 2,
                    }
                ),
                _shape(exponential=_DURATION_SCHEMA),
                _shape(
                    lognormal=_shape(
                        median=_DURATION_SCHEMA,
                        sigma={"type": "number", "exclusiveMinimum": 0, "maximum": 5},
                    )
                ),
            ],
        }
    ),
]
NO_DELAY = Fixed(fixed=0.0)


def describe(distribution: Distribution) -> str:
    """`none`, `2h`, `uniform 1h to 4h`, `exponential, mean 2h`, `lognormal, median 2h`."""
    if isinstance(distribution, Fixed):
        return format_duration(distribution.fixed) if distribution.fixed else "none"
    if isinstance(distribution, Uniform):
        low, high = sorted(distribution.uniform)
        return f"uniform {format_duration(low)} to {format_duration(high)}"
    if isinstance(distribution, Exponential):
        return f"exponential, mean {format_duration(distribution.exponential)}"
    return f"lognormal, median {format_duration(distribution.lognormal.median)}"


# --- the cast ------------------------------------------------------------------------------------


class Objective(Spec):
    id: Ident
    text: str


class Party(Spec):
    name: PartyName
    label: str = Field(
        default="", description="How the report names the party, e.g. 'CIA Director'"
    )
    play: Seat = Field(description="Who plays the seat: human, control, or bot:<policy>")
    player: str = Field(default="", description="Who sits in the seat (a person, a team, a cell)")
    stand_in: Seat | None = Field(
        default=None, description="The bot that plays a human seat in a rehearsal (--rehearse)"
    )

    @property
    def policy(self) -> str | None:
        return self.play.removeprefix("bot:") if self.play.startswith("bot:") else None


# --- the clock -----------------------------------------------------------------------------------


class Move(Spec):
    id: Annotated[int, Field(ge=1)]
    title: str
    at: Offset = Field(description="When the move starts, exercise time")
    world: WorldTime | None = Field(
        default=None, description="World time when the move starts (a jump); default: time runs on"
    )


class Clock(Spec):
    start: WorldTime = Field(description="World time at T+0")
    speed: Annotated[float, Field(gt=0, le=1_000_000)] = Field(
        default=1.0, description="World seconds per exercise second (60: a minute plays an hour)"
    )
    end: Offset = Field(description="When the exercise ends, exercise time")
    moves: list[Move] = Field(default_factory=list)

    @model_validator(mode="after")
    def _moves_in_order(self) -> Clock:
        if self.end <= 0:
            raise ValueError("the exercise must end after T+0")
        ats = [move.at for move in self.moves]
        if ats != sorted(ats) or len(set(ats)) != len(ats):
            raise ValueError("moves must start at increasing offsets")
        ids = [move.id for move in self.moves]
        if len(set(ids)) != len(ids):
            raise ValueError("move ids must be unique")
        return self

    def all_moves(self) -> list[Move]:
        """The moves, with an implicit move 1 at T+0 when the scenario names none there."""
        if self.moves and self.moves[0].at == 0:
            return list(self.moves)
        return [Move(id=1, title="Exercise", at=0.0, world=self.start), *self.moves]


class Latency(Spec):
    """How long the courier (and the wires) take, in world time, per channel."""

    letter: Distribution = NO_DELAY
    communique: Distribution = NO_DELAY
    news: Distribution = NO_DELAY

    def described(self) -> dict[str, str]:
        """Each channel's delay in words, for the log and the report."""
        return {channel.value: describe(self.of(channel)) for channel in Channel}

    def of(self, channel: Channel) -> Distribution:
        by_channel: dict[Channel, Distribution] = {
            Channel.LETTER: self.letter,
            Channel.COMMUNIQUE: self.communique,
            Channel.NEWS: self.news,
        }
        return by_channel[channel]


# --- injects and expectations --------------------------------------------------------------------


class Check(StrEnum):
    SENT = "sent"  # a letter from `from` to `to`
    OPENED = "opened"  # `to` opens a letter from `from`
    RETURNED = "returned_unopened"  # `to` returns a letter from `from` unopened
    REPLIED = "replied"  # `to` answers a letter from `from` (a letter in reply to it)


class Expectation(Spec):
    id: Ident
    check: Check
    from_: PartyName = Field(alias="from")
    to: PartyName
    within: Duration = Field(description="Deadline after the inject fires, world time")
    score: Annotated[int, Field(ge=0, le=100)] = 1
    text: str = Field(default="", description="The expected player action, in words")
    contingency: Ident | None = Field(
        default=None, description="The inject to fire when this is missed"
    )
    objectives: list[Ident] = Field(default_factory=list)


class After(Spec):
    """Fire relative to something else: another inject firing, or an expectation's outcome."""

    inject: Ident | None = None
    expectation: Ident | None = None
    outcome: Literal["fired", "met", "missed"] = "fired"
    delay: Duration = 0.0

    @model_validator(mode="after")
    def _one_anchor(self) -> After:
        if (self.inject is None) == (self.expectation is None):
            raise ValueError("`after` names exactly one of `inject` or `expectation`")
        if self.inject is not None and self.outcome != "fired":
            raise ValueError("after an inject, the outcome is `fired`")
        if self.expectation is not None and self.outcome == "fired":
            raise ValueError("after an expectation, the outcome is `met` or `missed`")
        return self


class Channel(StrEnum):
    LETTER = "letter"  # a sealed letter through the courier
    COMMUNIQUE = "communique"  # a public statement by a party, to everyone
    NEWS = "news"  # a wire item from the control cell


class Inject(Spec):
    id: Ident
    move: Annotated[int, Field(ge=1)] | None = None
    at: Offset | None = Field(default=None, description="Exercise time offset")
    world: WorldTime | None = Field(default=None, description="World time")
    after: After | None = None
    contingency: bool = Field(default=False, description="Fires only when an expectation is missed")
    channel: Channel = Channel.LETTER
    from_: PartyName | None = Field(default=None, alias="from")
    to: PartyNames = Field(default_factory=list)
    subject: str
    body: str | None = None
    body_file: str | None = Field(default=None, description="A Markdown file beside the scenario")
    precedence: Precedence = Precedence.ROUTINE
    objectives: list[Ident] = Field(default_factory=list)
    expect: list[Expectation] = Field(default_factory=list)
    action: str = Field(default="", description="The expected player action (MSEL column)")
    controller: str = Field(default="", description="The responsible controller (MSEL column)")

    @model_validator(mode="after")
    def _one_when(self) -> Inject:
        whens = [self.at is not None, self.world is not None, self.after is not None]
        if sum(whens) + self.contingency != 1:
            raise ValueError("give exactly one of `at`, `world`, `after` or `contingency`")
        if self.channel is not Channel.NEWS and self.from_ is None:
            raise ValueError(f"a {self.channel.value} inject needs `from`")
        if self.channel is Channel.LETTER and not self.to:
            raise ValueError("a letter inject needs `to`")
        return self

    @property
    def text(self) -> str:
        return self.body or ""


# --- automated parties ---------------------------------------------------------------------------


Template = Annotated[
    str,
    Field(description="Text with $sender, $recipient, $subject, $body, $party and state names"),
]


class Send(Spec):
    """A letter the bot writes: to someone, after a (world-time) delay, with some probability."""

    to: PartyName
    subject: Template
    body: Template
    after: Distribution = NO_DELAY
    probability: Probability = 1.0
    precedence: Precedence = Precedence.ROUTINE


class Reply(Spec):
    """An answer to the letter just opened, to its sender unless `to` says otherwise."""

    body: Template
    subject: Template = "Re: $subject"
    after: Distribution = NO_DELAY
    probability: Probability = 1.0
    precedence: Precedence | None = None
    to: PartyName | None = None


class Forward(Spec):
    """Pass an opened letter's content on (an intermediary): a new letter, sealed afresh."""

    to: PartyName
    subject: Template = "$subject"
    body: Template = "Transmitted on behalf of $sender:\n\n$body"
    after: Distribution = NO_DELAY


class OnLetter(Spec):
    """What the bot does with a letter it receives. The first rule whose `from` matches wins."""

    from_: PartyNames = Field(
        default_factory=list, alias="from", description="Only letters from these (default: any)"
    )
    open: Probability = Field(
        default=1.0, description="Chance of opening; otherwise returned unopened"
    )
    think: Distribution = Field(default=NO_DELAY, description="World time before deciding")
    reason: str | None = Field(default=None, description="The reason given when returning unopened")
    reply: Reply | None = None
    forward: Forward | None = None
    escalate: dict[str, int] = Field(default_factory=dict)


class OnReceipt(Spec):
    """What the bot does when a letter it sent reaches a state (say, returned unopened)."""

    event: Literal["delivered", "opened", "returned_unopened", "withdrawn", "expired"]
    to: PartyNames = Field(default_factory=list, description="Only letters to these (default: any)")
    escalate: dict[str, int] = Field(default_factory=dict)
    send: Send | None = None


class OnInject(Spec):
    inject: Ident
    escalate: dict[str, int] = Field(default_factory=dict)
    send: Send | None = None


class OnThreshold(Spec):
    """Once, when a state variable first reaches `at_least`."""

    variable: str
    at_least: int
    send: Send | None = None


class OnTime(Spec):
    at: Offset
    escalate: dict[str, int] = Field(default_factory=dict)
    send: Send | None = None


class Policy(Spec):
    description: str = ""
    state: dict[str, int] = Field(default_factory=dict, description="Variables, e.g. tension: 0")
    letters: list[OnLetter] = Field(default_factory=list)
    receipts: list[OnReceipt] = Field(default_factory=list)
    injects: list[OnInject] = Field(default_factory=list)
    thresholds: list[OnThreshold] = Field(default_factory=list)
    times: list[OnTime] = Field(default_factory=list)


class Transcript(StrEnum):
    METADATA_ONLY = "metadata_only"  # control sees envelopes and receipts, never content
    ESCROW = "escrow"  # each letter is also sealed to the control cell's announced archive key
    POST_RELEASE = "post_release"  # players release what they received after the end


# --- the scenario --------------------------------------------------------------------------------


class Scenario(Spec):
    """An exercise: who plays, when things happen, and what the control cell expects to see."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        json_schema_extra={"$id": SCHEMA_ID, "title": "Backchannel exercise scenario"},
    )

    title: str
    revision: str = Field(
        default="1", description="The scenario's own version, shown in the report"
    )
    summary: str = ""
    marking: str = Field(default=DEFAULT_MARKING, description="Prefixed to every subject")
    objectives: list[Objective] = Field(default_factory=list)
    parties: Annotated[list[Party], Field(min_length=2)]
    clock: Clock
    latency: Latency = Latency()
    transcript: Transcript = Transcript.METADATA_ONLY
    policies: dict[str, Policy] = Field(default_factory=dict)
    injects: list[Inject] = Field(default_factory=list)

    def party(self, name: str) -> Party:
        for party in self.parties:
            if party.name == name:
                return party
        raise KeyError(name)

    def inject(self, inject_id: str) -> Inject:
        for inject in self.injects:
            if inject.id == inject_id:
                return inject
        raise KeyError(inject_id)

    def expectations(self) -> list[tuple[Inject, Expectation]]:
        return [(inject, exp) for inject in self.injects for exp in inject.expect]

    def digest(self) -> str:
        """sha256 of the scenario's canonical JSON, bodies included: the report's scenario hash."""
        data = self.model_dump(mode="json", by_alias=True)
        return sha256_hex(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())


def json_schema() -> dict[str, Any]:
    schema = Scenario.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# --- reading a file, with line numbers -----------------------------------------------------------


@dataclass
class Source:
    """A scenario as read: the model, its file, and the line of every YAML path in it."""

    scenario: Scenario
    path: Path
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)

    def line(self, *path: str | int) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(tuple(path[:end]))
            if found is not None:
                return found
        return 1

    def problem(self, message: str, *path: str | int) -> Problem:
        return Problem(str(self.path), self.line(*path), message, ".".join(map(str, path)))


def load_scenario(path: Path) -> Source:
    """Read, validate and attach bodies; ScenarioError lists every problem with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        unreadable = Problem(str(path), 0, f"cannot read the file: {exc.strerror}")
        raise ScenarioError([unreadable]) from None
    return parse_scenario(text, path)


def parse_scenario(text: str, path: Path) -> Source:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError([Problem(str(path), line, f"not valid YAML: {reason}")]) from None
    lines: dict[tuple[str | int, ...], int] = {}
    if node is not None:
        _walk(node, (), lines)
    if not isinstance(data, dict):
        raise ScenarioError([Problem(str(path), 1, "a scenario is a YAML mapping (title, ...)")])
    data, problems = _attach_bodies(data, path.parent, lines, str(path))
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems += [_problem(error, lines, str(path)) for error in exc.errors(include_url=False)]
    if problems:
        raise ScenarioError(problems)
    return Source(scenario, path, lines)


def _walk(node: yaml.Node, path: tuple[str | int, ...], lines: dict[Any, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            lines[child] = key.start_mark.line + 1
            _walk(value, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines)


def _attach_bodies(
    data: dict[str, Any], base: Path, lines: dict[Any, int], file: str
) -> tuple[dict[str, Any], list[Problem]]:
    """Read each inject's `body_file` (relative to the scenario) into its `body`."""
    injects = data.get("injects")
    if not isinstance(injects, list):
        return data, []
    problems: list[Problem] = []
    attached = []
    for index, inject in enumerate(injects):
        name = inject.get("body_file") if isinstance(inject, dict) else None
        if not isinstance(name, str):
            attached.append(inject)
            continue
        where = ("injects", index, "body_file")
        target = (base / name).resolve()
        if "body" in inject:
            message = "give `body` or `body_file`, not both"
            problems.append(Problem(file, lines.get(where, 1), message, _dotted(where)))
        elif not target.is_relative_to(base.resolve()):
            message = f"body_file {name!r} is outside the scenario's folder"
            problems.append(Problem(file, lines.get(where, 1), message, _dotted(where)))
        elif not target.is_file():
            message = f"body_file {name!r} does not exist next to the scenario"
            problems.append(Problem(file, lines.get(where, 1), message, _dotted(where)))
        else:
            inject = {**inject, "body": target.read_text(encoding="utf-8").strip()}
        attached.append(inject)
    return {**data, "injects": attached}, problems


def _problem(error: Any, lines: dict[Any, int], file: str) -> Problem:
    loc = tuple(part for part in error["loc"] if not is_union_tag(part))
    line = 1
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            line = lines[loc[:end]]
            break
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown field {loc[-1]!r} (misspelt?)"
    elif error["type"] == "missing":
        message = f"missing required field {loc[-1]!r}"
    elif (readable := pattern_message(error)) is not None:
        message = readable
    return Problem(file, line, message, _dotted(loc))


def pattern_message(error: Any) -> str | None:
    """A pydantic pattern mismatch on a name, id or seat, in words rather than the regex."""
    if error["type"] != "string_pattern_mismatch" or error["ctx"]["pattern"] not in _RULES:
        return None
    what, rule = _RULES[error["ctx"]["pattern"]]
    return f"{error['input']!r} is not {what}: use {rule}"


# A pattern mismatch in words, not as the raw regular expression.
_RULES = {
    _PARTY_PATTERN: ("a party name", PARTY_NAME_RULE),
    _IDENT_PATTERN: ("an id", "letters, digits, '.', '_' and '-', up to 40 (e.g. INJ-01)"),
    _SEAT_PATTERN: ("a seat", "human, control, or bot:<policy>"),
}


def is_union_tag(part: Any) -> bool:
    # pydantic names union members in error locations ("Fixed", "function-before[...]").
    return isinstance(part, str) and (part[:1].isupper() or "[" in part)


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(map(str, path))


def bundled_dir() -> Path:
    return Path(__file__).parent / "scenarios"


def resolve_scenario(name_or_path: str) -> Path:
    """A path, or the name of a bundled scenario (`letter-to-soleimani`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = bundled_dir() / f"{name_or_path}.yaml"
    if bundled.is_file():
        return bundled
    names = ", ".join(sorted(p.stem for p in bundled_dir().glob("*.yaml")))
    raise ScenarioError(
        [Problem(name_or_path, 0, f"no such file or bundled scenario (bundled: {names})")]
    )


class _Dumper(yaml.SafeDumper):
    """Multi-line text (letter bodies) as `|` blocks, readable and diffable."""


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _text)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
