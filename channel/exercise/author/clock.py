"""The three clocks of an exercise, kept apart.

- **wall**: the machine's clock; only used to pace exercise time (and stamp log lines).
- **exercise**: seconds since T+0. It pauses, and runs at `speed` times wall time, or, at speed
  `max`, jumps straight to the next thing that happens (the runner moves it with `advance_to`).
- **world**: story time. Each move starts at its own world time (a jump) and world time then
  runs `clock.speed` times faster than exercise time.

No I/O here: the wall clock is passed in, so tests can drive every transition.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from channel.exercise.author.scenario import Clock, Inject, Move
from channel.exercise.eventlog import Stamp
from channel.protocol.canonical import format_time


@dataclass(frozen=True)
class MoveSpan:
    move: Move
    world_start: datetime


def move_spans(clock: Clock) -> list[MoveSpan]:
    """Each move with the world time it starts at: its own jump, or where the last one got to."""
    spans: list[MoveSpan] = []
    for move in clock.all_moves():
        if move.world is not None:
            world = move.world
        elif spans:
            last = spans[-1]
            world = last.world_start + timedelta(seconds=(move.at - last.move.at) * clock.speed)
        else:
            world = clock.start
        spans.append(MoveSpan(move, world))
    return spans


class Clocks:
    """Exercise time (pausable, at a speed or `max`) and the world time it maps to."""

    def __init__(
        self,
        clock: Clock,
        speed: float | None,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.spans = move_spans(clock)
        self._wall = wall
        self._speed = speed  # None: as fast as possible
        self._paused = False
        self._base_t = 0.0
        self._base_wall = wall()

    # --- exercise time --------------------------------------------------------------------------

    @property
    def speed(self) -> float | None:
        return self._speed

    @property
    def paused(self) -> bool:
        return self._paused

    def now(self) -> float:
        if self._paused or self._speed is None:
            return self._base_t
        return self._base_t + (self._wall() - self._base_wall) * self._speed

    def advance_to(self, t: float) -> None:
        """At speed max, the runner moves time to the next event; time never goes back."""
        if self._speed is not None:
            raise RuntimeError("only a speed-max clock is advanced by hand")
        self._base_t = max(self._base_t, t)

    def pause(self) -> bool:
        if self._paused:
            return False
        self._rebase()
        self._paused = True
        return True

    def resume(self) -> bool:
        if not self._paused:
            return False
        self._paused = False
        self._base_wall = self._wall()
        return True

    def set_speed(self, speed: float | None) -> None:
        self._rebase()
        self._speed = speed

    def wall_until(self, t: float) -> float | None:
        """Wall seconds until exercise time reaches `t`: 0 at speed max, None while paused."""
        if self._paused:
            return None
        if self._speed is None:
            return 0.0
        return max(0.0, (t - self.now()) / self._speed)

    def _rebase(self) -> None:
        self._base_t = self.now()
        self._base_wall = self._wall()

    # --- world time -----------------------------------------------------------------------------

    def span_at(self, t: float) -> MoveSpan:
        current = self.spans[0]
        for span in self.spans:
            if span.move.at <= t:
                current = span
        return current

    def world_at(self, t: float) -> datetime:
        span = self.span_at(t)
        return span.world_start + timedelta(seconds=(t - span.move.at) * self.clock.speed)

    def exercise_at(self, world: datetime) -> float | None:
        """The exercise time at which world time reaches `world`, or None if no move covers it."""
        found = None
        for index, span in enumerate(self.spans):
            offset = (world - span.world_start).total_seconds() / self.clock.speed
            t = span.move.at + offset
            limit = self.spans[index + 1].move.at if index + 1 < len(self.spans) else self.clock.end
            if offset >= 0 and t <= limit:
                found = t
        return found

    def scheduled(self, inject: Inject) -> float | None:
        """The exercise time an inject is scheduled for: its `at`, or its `world` time placed
        on this clock. None when it waits for something else (`after`, a contingency) or its
        world time falls in no move."""
        if inject.at is not None:
            return inject.at
        if inject.world is not None:
            return self.exercise_at(inject.world)
        return None

    def exercise_seconds(self, world_seconds: float) -> float:
        """How much exercise time a stretch of story time takes."""
        return world_seconds / self.clock.speed

    def stamp(self, t: float | None = None) -> Stamp:
        t = self.now() if t is None else t
        return Stamp(
            t=round(t * 1000), world=format_time(self.world_at(t)), move=self.span_at(t).move.id
        )
