"""The run's schedule: timed actions in exercise time, and the clocks that pace them.

Everything that will happen at a known exercise time (a move, an inject, a letter reaching a bot,
a bot's decision, a deadline) sits here ordered by time and then by the order it was scheduled,
so at speed `max` the order depends only on the scenario and the seed. No I/O: the runner's loop
asks how long to wait (`wait`) and takes the next due action (`pop`); pause, resume and speed
are the clocks' (author/clock.py).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from channel.exercise.author.clock import Clocks
from channel.exercise.author.scenario import Channel, Latency
from channel.exercise.eventlog import Stamp
from channel.exercise.run.bots import sample

Action = Callable[..., Awaitable[None]]


@dataclass(order=True)
class Due:
    """One timed action."""

    t: float
    order: int
    action: Action = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)


class Schedule:
    """Timed actions, the run's exercise time `now`, and the simulated courier's latency."""

    def __init__(self, clocks: Clocks, latency: Latency, seed: int) -> None:
        self.clocks = clocks
        self.latency = latency
        self.courier_rng = random.Random(f"{seed}:courier")
        self.now = 0.0
        self._due: list[Due] = []
        self._order = 0

    def at(self, t: float, action: Action, *args: Any) -> None:
        """Do `action(*args)` at exercise time `t` (never before now)."""
        self._order += 1
        heapq.heappush(self._due, Due(max(t, self.now), self._order, action, args))

    def after_world(self, world_seconds: float, action: Action, *args: Any) -> None:
        """Do it once `world_seconds` of story time have passed."""
        self.at(self.now + self.clocks.exercise_seconds(world_seconds), action, *args)

    def after_latency(self, channel: Channel, action: Action, *args: Any) -> None:
        """Do it once the channel's simulated courier latency (a world-time draw) has passed."""
        self.after_world(sample(self.latency.of(channel), self.courier_rng), action, *args)

    def wait(self) -> float | None:
        """Wall seconds until the next action is due (≤ 0: now; None: nothing, or paused)."""
        return self.clocks.wall_until(self._due[0].t) if self._due else None

    def pop(self) -> Due:
        """Take the next due action and move `now` to it (at `max`, the clock jumps there)."""
        due = heapq.heappop(self._due)
        if self.clocks.speed is None:
            self.clocks.advance_to(due.t)
            self.now = due.t
        else:
            self.now = max(self.now, self.clocks.now())
        return due

    def catch_up(self) -> None:
        """Something arrived from outside: at a paced speed, `now` is the clock's time."""
        if self.clocks.speed is not None:
            self.now = self.clocks.now()

    def settle(self) -> None:
        """At the end: `now` no earlier than the clock (at a paced speed)."""
        if self.clocks.speed is not None:
            self.now = max(self.now, self.clocks.now())

    def stamp(self) -> Stamp:
        """The clocks at `now`, for a log record."""
        return self.clocks.stamp(self.now)
