"""`channel verify`: a `status --json` file checked offline, with the keys the keyring pinned."""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import ValidationError

from channel.cli_options import Config, echo_json, json_option
from channel.party.keyring import Keyring
from channel.party.timeline import audit, failure, make_console, render_checks
from channel.protocol.errors import IntegrityError
from channel.protocol.models import LetterStatus


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_obj
def verify(config: Config, file: Path, as_json: bool) -> None:
    """Verify a `status --json` file offline.

    Checks the sender's seal and every receipt, with the keys pinned in your keyring where it
    has them (else those in the file, with a warning). Exits non-zero naming what fails.
    """
    try:
        letter = LetterStatus.model_validate_json(file.read_bytes())
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"])) or "file"
        raise IntegrityError(
            f"{file} is not a valid letter status: {where}: {first['msg']}"
        ) from None
    keys, warnings = Keyring(config.home).chain_keys(letter.keys, letter.envelope, config.server)
    checks = audit(letter, keys)
    bad = failure(checks)
    if as_json:
        echo_json(
            {"id": letter.id, "ok": bad is None, "warnings": warnings}
            | {"checks": [{"subject": c.subject, "ok": c.ok, "detail": c.detail} for c in checks]}
        )
    else:
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        render_checks(make_console(), checks)
    if bad is not None:
        raise IntegrityError(f"{bad.subject}: {bad.detail}")
    if not as_json:
        click.echo(f"verified: the seal and {len(letter.receipts)} receipts of letter {letter.id}")
