"""How control's notices read on a player's terminal: a block for what control tells the seat
(taskings with their deadlines, communiqués, news), one line for a clock change, and the line
that says the exercise is over."""

from __future__ import annotations

from datetime import datetime, timedelta

from channel.party.seat import Due, Heard, clock_of
from channel.protocol.notice import Deadline, NoticeKind

ONE_LINE = frozenset({NoticeKind.PAUSED, NoticeKind.RESUMED, NoticeKind.SPEED})


def world(moment: datetime) -> str:
    """`2017-12-22 09:00Z`: world time to the minute."""
    return moment.strftime("%Y-%m-%d %H:%MZ")


def wall(moment: datetime) -> str:
    """`16:20:05Z`: wall-clock time of day."""
    return moment.strftime("%H:%M:%SZ")


def span(interval: float | timedelta) -> str:
    """`45s`, `4m10s`, `2h05m`, `3d4h`: an interval (seconds, or a timedelta) for people; a
    negative one reads as its length."""
    seconds = interval.total_seconds() if isinstance(interval, timedelta) else interval
    whole = round(abs(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600}h"


def time_left(heard: Heard, deadline: Deadline, now: datetime) -> str:
    """How long from `now` (wall) until a deadline, at the notice's rate."""
    clock = clock_of([heard])
    assert clock is not None  # one notice makes a clock
    due = Due.of(deadline, heard.notice.inject, clock, now)
    if due.passed:
        return "passed"
    if due.wall_left is None:
        return "clock paused"
    return f"in {span(due.wall_left)} at the current speed"


def heading_line(heard: Heard) -> str:
    """`16:20:05Z  world 2017-12-22 09:00Z  Tasking INJ-02: title`."""
    notice = heard.notice
    line = f"{wall(heard.sent)}  world {world(notice.world)}  {notice.heading}"
    if notice.kind is NoticeKind.SPEED:
        line += f" (world time runs {notice.rate:g}x the wall clock)"
    if notice.author:
        line += f" ({notice.author})"
    return line


def block(heard: Heard, now: datetime) -> list[str]:
    """A notice as the lines `watch` prints; clock changes take one line."""
    notice = heard.notice
    if notice.kind in ONE_LINE:
        return [heading_line(heard)]
    marking = f"  {notice.marking}" if notice.marking else ""
    lines = [f"── From control{marking} " + "─" * 20, heading_line(heard)]
    if notice.text.strip():
        lines += [f"  {text}" if text else "" for text in notice.text.rstrip().split("\n")]
    for deadline in notice.deadlines:
        what = f" {deadline.text}" if deadline.text else ""
        lines.append(
            f"  Deadline {deadline.expectation}:{what} by {world(deadline.due)} world time "
            f"({time_left(heard, deadline, now)})"
        )
    return [*lines, ""]


def ended_line(heard: Heard) -> str:
    """What `watch` says before it stops."""
    said = heard.notice.text.strip().split("\n")[0] or heard.notice.title or heard.notice.run
    return f"The exercise has ended: {said} (world {world(heard.notice.world)}). Stopping."
