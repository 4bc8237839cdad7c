"""`channel exercise run`: set the stage (run folder, courier, keys), play, and write the report.

run folder/
  events.jsonl      the hash-chained event log (docs/eventlog.md)
  scenario/         the exact scenario file (and bodies) that was played
  keyring/          the parties' keys (0700/0600): humans play their seats with it; control's
                    public key and exercise.json (the run, its seats) beside them
  control/          the control cell's own party keys (0600): it signs the notices to people
  courier/          the embedded courier's Redis data and key (without --server)
  control.json      while running: the control API's address and token (0600)
  report.html, report.md, report.json
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from channel.courier.embedded import EmbeddedRedis
from channel.courier.server.run import courier_in_process, load_courier_key
from channel.exercise.author.clock import Clocks
from channel.exercise.author.scenario import (
    Inject,
    Scenario,
    ScenarioError,
    Source,
    Transcript,
    format_offset,
)
from channel.exercise.escrow import ARCHIVE_KEY_FILE, ESCROW_DIR
from channel.exercise.eventlog import LOG_FILE, EventLog, b64
from channel.exercise.run.control import control_api
from channel.exercise.run.notices import Notices, cast_control, save_seats
from channel.exercise.run.runner import Runner
from channel.party.client import Client
from channel.party.keyring import Keyring
from channel.protocol.canonical import format_time
from channel.protocol.errors import BadRequest, ChannelError, NameTaken
from channel.protocol.seal import PartyKeys, raw_private, raw_public

SCENARIO_DIR = "scenario"


@dataclass(frozen=True)
class Stage:
    """What players need to join a run: printed before the first inject."""

    url: str
    out: Path
    keyring: Path
    seats: dict[str, str]
    clocks: Clocks | None = None  # the run's clocks, for a view that ticks between events


@dataclass(frozen=True)
class RunOptions:
    source: Source
    out: Path
    server: str | None = None
    speed: float | None = None  # None: as fast as possible
    seed: int = 1
    rehearse: bool = False
    humans: tuple[str, ...] = ()
    on_record: Callable[[dict[str, Any]], None] | None = None
    on_stage: Callable[[Stage], None] | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class Played:
    out: Path
    log: Path
    reason: str


def default_out(scenario: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("exercise-runs") / f"{scenario.stem}-{stamp}"


def seats_for(scenario: Scenario, *, rehearse: bool, humans: tuple[str, ...]) -> dict[str, str]:
    """Who plays each party in this run: the scenario's seats, with the run's overrides."""
    names = {party.name for party in scenario.parties}
    problems = [f"--human {name}: no such party" for name in humans if name not in names]
    seats = {}
    for party in scenario.parties:
        seat = party.play
        if party.name in humans:
            seat = "human"
        elif rehearse and seat == "human":
            if party.stand_in is None:
                problems.append(f"{party.name} is a human seat with no stand_in to rehearse with")
                continue
            seat = party.stand_in
        policy = seat.removeprefix("bot:")
        if seat.startswith("bot:") and policy not in scenario.policies:
            problems.append(f"{party.name} is played by bot:{policy}, which is not a policy")
        seats[party.name] = seat
    if problems:
        raise BadRequest("; ".join(problems))
    return seats


def check_speed(speed: float | None, seats: dict[str, str]) -> None:
    humans = sorted(name for name, seat in seats.items() if seat == "human")
    if speed is None and humans:
        raise BadRequest(
            f"speed max needs bots in every seat, but {', '.join(humans)} "
            "is played by a human: use --rehearse, or a speed such as 1"
        )


async def play(options: RunOptions) -> Played:
    """Play the scenario to its end; the event log is complete when this returns."""
    scenario = options.source.scenario
    seats = seats_for(scenario, rehearse=options.rehearse, humans=options.humans)
    check_speed(options.speed, seats)
    clocks = Clocks(scenario.clock, options.speed)
    _scheduled_or_fail(options.source, clocks)
    out = prepare_out(options.out, options.source)
    log_path = out / LOG_FILE
    with _Stopper() as stopper:
        reason = await _stage_and_play(options, seats, clocks, out, stopper)
    return Played(out, log_path, reason)


class _Stopper:
    """Ctrl-C and SIGTERM end the run gracefully from the moment `play` starts: the log gets its
    final records, and the embedded courier and Redis stop with the run (no orphans)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.runner: Runner | None = None
        self.requested = False

    def __enter__(self) -> _Stopper:
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            with suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            with suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)

    def stop(self) -> None:
        self.requested = True
        if self.runner is not None:
            self.runner.stop("interrupted")

    def attach(self, runner: Runner) -> None:
        self.runner = runner
        if self.requested:
            runner.stop("interrupted")


async def _stage_and_play(
    options: RunOptions, seats: dict[str, str], clocks: Clocks, out: Path, stopper: _Stopper
) -> str:
    scenario = options.source.scenario
    async with AsyncExitStack() as stack:
        url, courier_key = await _courier(stack, out, options.server)
        session = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=options.timeout))
        )
        ring = Keyring(out / "keyring")
        clients = await _cast(Client(url, session=session), ring, scenario, courier_key, url)
        control = await cast_control(Client(url, session=session), out, ring, courier_key, url)
        save_seats(ring.home, out.name, scenario, seats)
        events = stack.enter_context(EventLog(out / LOG_FILE))
        archive = _archive_key(out) if scenario.transcript is Transcript.ESCROW else None
        runner = Runner(
            scenario,
            seats,
            clients,
            clocks,
            events,
            seed=options.seed,
            on_record=options.on_record,
            archive_key=archive,
            escrow_dir=out / ESCROW_DIR,
            labels_home=ring.home if "human" in seats.values() else None,
        )
        runner.notices = Notices(
            control, scenario, seats, clocks, runner.write, run=out.name, archive_key=archive
        )
        data, evidence = _started(options, seats, url, courier_key, clients, clocks)
        evidence["control_key"] = b64(control.me.public().signing_key)
        if archive is not None:
            evidence["archive_key"] = b64(archive)
        runner.write("run_started", data, evidence)
        stopper.attach(runner)
        await stack.enter_async_context(control_api(runner, out))
        if options.on_stage is not None:
            options.on_stage(Stage(url, out, ring.home, seats, clocks))
        async with _watching(runner, seats, clients, live=options.speed is not None):
            reason = await runner.run()
        await runner.finish(reason, releases=scenario.transcript is Transcript.POST_RELEASE)
    return reason


def prepare_out(out: Path, source: Source) -> Path:
    """A fresh run folder holding a copy of the scenario and its bodies, exactly as played.

    Absolute from here on: the embedded Redis's unix socket lives in it.
    """
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise BadRequest(f"{out} is not empty: each run gets a folder of its own")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    copy = out / SCENARIO_DIR
    copy.mkdir(mode=0o700)
    shutil.copy2(source.path, copy / source.path.name)
    for inject in source.scenario.injects:
        if inject.body_file:
            target = copy / inject.body_file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.path.parent / inject.body_file, target)
    return out


def _archive_key(out: Path) -> bytes:
    """The control cell's escrow key: the private half stays in the run folder (0600)."""
    key = X25519PrivateKey.generate()
    descriptor = os.open(out / ARCHIVE_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(raw_private(key))
    (out / ESCROW_DIR).mkdir(mode=0o700)
    return key.public_key().public_bytes_raw()


def _scheduled_or_fail(source: Source, clocks: Clocks) -> None:
    problems = [
        source.problem(f"world time {inject.world} falls in no move", "injects", index, "world")
        for index, inject in enumerate(source.scenario.injects)
        if inject.world is not None and clocks.exercise_at(inject.world) is None
    ]
    if problems:
        raise ScenarioError(problems)


async def _courier(stack: AsyncExitStack, out: Path, server: str | None) -> tuple[str, bytes]:
    """The exercise's courier: the one at `server`, or an embedded one in the run folder."""
    if server is not None:
        async with Client(server) as probe:
            key = (await probe.courier_key()).signing_key
        return server.rstrip("/"), key
    data = out / "courier"
    data.mkdir(mode=0o700)
    redis = EmbeddedRedis(data)
    redis.start()
    stack.callback(redis.stop)
    url = await stack.enter_async_context(courier_in_process(data, redis.url))
    return url, raw_public(load_courier_key(data))


async def _cast(
    base: Client, ring: Keyring, scenario: Scenario, courier_key: bytes, url: str
) -> dict[str, Client]:
    """Make every party's keys, register them, and give each a client that trusts the others."""
    keys: dict[str, PartyKeys] = {party.name: ring.new(party.name) for party in scenario.parties}
    ring.pin_courier(url, courier_key)
    clients = {}
    for name, party_keys in keys.items():
        client = base.as_party(party_keys)
        client.trust_courier(courier_key)
        for other in keys.values():
            client.trust(other.public())
            ring.pin_contact(other.public())
        try:
            await client.register()
        except NameTaken:
            raise NameTaken(
                f"{name} is already registered on {url} with other keys: "
                "play on a fresh courier, or rename the party"
            ) from None
        clients[name] = client
    return clients


def _started(
    options: RunOptions,
    seats: dict[str, str],
    url: str,
    courier_key: bytes,
    clients: dict[str, Client],
    clocks: Clocks,
) -> tuple[dict[str, Any], dict[str, Any]]:
    scenario = options.source.scenario
    data = {
        "scenario": {
            "title": scenario.title,
            "revision": scenario.revision,
            "digest": scenario.digest(),
            "file": options.source.path.name,
            "marking": scenario.marking,
            "summary": scenario.summary,
            "transcript": scenario.transcript.value,
        },
        "seed": options.seed,
        "speed": "max" if options.speed is None else f"{options.speed:g}",
        "rehearse": options.rehearse,
        "parties": [
            {
                "name": party.name,
                "label": party.label or party.name,
                "play": seats[party.name],
                "player": party.player,
            }
            for party in scenario.parties
        ],
        "objectives": [{"id": o.id, "text": o.text} for o in scenario.objectives],
        "moves": [
            {
                "id": s.move.id,
                "title": s.move.title,
                "t": round(s.move.at * 1000),
                "world": format_time(s.world_start),
            }
            for s in clocks.spans
        ],
        "injects": [_inject_plan(inject, clocks) for inject in scenario.injects],
        "end": round(scenario.clock.end * 1000),
        "world_speed": f"{scenario.clock.speed:g}",
        "latency": scenario.latency.described(),
    }
    evidence = {
        "courier_url": url,
        "courier_key": b64(courier_key),
        "party_keys": {
            name: {
                "signing_key": b64(client.me.public().signing_key),
                "encryption_key": b64(client.me.public().encryption_key),
            }
            for name, client in clients.items()
        },
    }
    return data, evidence


def _inject_plan(inject: Inject, clocks: Clocks) -> dict[str, Any]:
    t = clocks.scheduled(inject)
    return {
        "id": inject.id,
        "move": inject.move or (clocks.span_at(t).move.id if t is not None else None),
        "channel": inject.channel.value,
        "from": inject.from_,
        "to": list(inject.to),
        "subject": inject.subject,
        "objectives": list(inject.objectives),
        "contingency": inject.contingency,
        "t": round(t * 1000) if t is not None else None,
        "at": format_offset(t) if t is not None else None,
        "expect": [
            {
                "id": exp.id,
                "check": exp.check.value,
                "from": exp.from_,
                "to": exp.to,
                "within": round(exp.within),
                "score": exp.score,
                "contingency": exp.contingency,
                "objectives": list(exp.objectives),
                "text": exp.text,
            }
            for exp in inject.expect
        ],
    }


@asynccontextmanager
async def _watching(
    runner: Runner, seats: dict[str, str], clients: dict[str, Client], *, live: bool
) -> AsyncIterator[None]:
    """Follow the live event streams of the seats people play (not at speed max: no people),
    each from its position as the run starts, so nothing a person does is missed."""
    watched = [name for name, seat in seats.items() if seat in ("human", "control")] if live else []
    positions = {name: await _position(runner, name, clients[name]) for name in watched}
    tasks = [
        asyncio.create_task(_watch(runner, name, clients[name], positions[name]))
        for name in watched
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task


async def _position(runner: Runner, party: str, client: Client) -> str | None:
    try:
        return await client.event_position()
    except ChannelError as exc:
        # Watching still starts (from its first connection's position), and the log says why.
        runner.failed(party, "find its event stream's position", exc)
        return None


async def _watch(runner: Runner, party: str, client: Client, position: str | None) -> None:
    """`watch` reconnects by itself, carrying its position; what it cannot survive (a receipt
    that is not the courier's) goes into the log rather than silently ending the watch."""
    try:
        async for event in client.watch(position):
            await runner.queue.put((party, event))
    except ChannelError as exc:
        runner.failed(party, "follow its live events", exc)
