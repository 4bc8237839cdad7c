"""The after-action report as PDF: the HTML page, printed by headless Chromium.

The page carries its own print stylesheet (A4, page breaks before each part, the marking on
every page), so printing is all Chromium does; nothing is fetched, as the page fetches nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from channel.protocol.errors import ChannelError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pdf-header-footer",
)


class PrintError(ChannelError):
    """The report could not be printed to PDF."""

    code = "print-failed"
    exit_code = 1


def browser() -> str | None:
    """The first headless-capable Chromium on PATH."""
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def print_pdf(html: Path, pdf: Path, timeout: float = 120) -> Path:
    """Print `html` to `pdf` with headless Chromium; PrintError when it cannot."""
    binary = browser()
    if binary is None:
        raise PrintError(
            "--format pdf prints with Chromium, and none is installed "
            "(apt-get install chromium); the HTML report prints from any browser too"
        )
    pdf.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="channel-print-") as profile:
        command = [
            binary,
            *_FLAGS,
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf}",
            html.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PrintError(f"Chromium took more than {timeout:g}s to print {html}") from None
    if done.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PrintError(f"Chromium could not print {html}: {last}")
    return pdf
