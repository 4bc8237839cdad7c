"""`channel exercise board`: the control cell's board on 127.0.0.1, opened in the browser."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import click

from channel.exercise.board.app import board_app
from channel.party.web import serve


def open_board(run_dir: Path, port: int, open_browser: bool) -> None:
    """Serve the board for the run in `run_dir` until Ctrl-C."""

    async def run() -> None:
        app, guard = board_app(run_dir)
        runner, url = await serve(app, guard, port=port, open_browser=open_browser)
        click.echo(f"the board of {run_dir} is open at\n  {url}\n(Ctrl-C to close it)")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
