"""structlog set-up: JSON lines in production, a readable console in development.

Callers bind `request_id` and `letter_id` with contextvars; nothing here logs plaintext, private
keys or invitation tokens because nothing that calls it is given them.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto", level: str = "info"
) -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def configure_cli_logging() -> None:
    """Log lines from a command (the client's reconnects, say) go to stderr, never to stdout,
    which carries the command's output (`watch --json`). Set-up already made (a test capturing
    logs, a courier sharing the process) is left as it is."""
    if not structlog.is_configured():
        configure_logging("console", "info")
