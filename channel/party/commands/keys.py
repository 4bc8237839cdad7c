"""`channel keys ...`: your keys and the public keys you pinned."""

from __future__ import annotations

import os
from pathlib import Path

import click

from channel.cli_options import Config, dump, echo_json, json_option
from channel.party.commands.acting import terminal
from channel.party.keyring import PASSPHRASE_ENV, Keyring
from channel.protocol.errors import KeyringError
from channel.protocol.names import check_party_name
from channel.protocol.seal import fingerprint, party_fingerprint


@click.group()
def keys() -> None:
    """Your keys and the public keys you pinned."""


@keys.command("new")
@click.argument("name")
@click.option(
    "--passphrase-prompt",
    is_flag=True,
    help="Protect the private keys with a passphrase (asked for; or CHANNEL_PASSPHRASE).",
)
@json_option
@click.pass_obj
def keys_new(config: Config, name: str, passphrase_prompt: bool, as_json: bool) -> None:
    """Create a party NAME with fresh keys."""
    check_party_name(name)
    passphrase = _new_passphrase(name, asked=passphrase_prompt) or os.environ.get(PASSPHRASE_ENV)
    ring = Keyring(config.home)
    public = ring.new(name, passphrase).public()
    party_print = party_fingerprint(public)
    if as_json:
        echo_json({**dump(public), "fingerprint": party_print, "encrypted": bool(passphrase)})
        return
    click.echo(f"created {name} in the keyring at {ring.home}")
    click.echo(f"  fingerprint  {party_print}")
    protection = "passphrase-protected" if passphrase else "not encrypted (file mode 0600)"
    click.echo(f"  private keys {protection}")
    click.echo(
        f"next: `channel register {name}`, or send `channel keys export {name}` to the operator"
    )


def _new_passphrase(name: str, *, asked: bool) -> str | None:
    if not asked:
        return None
    if terminal():
        text: str = click.prompt(
            f"New passphrase for {name}", hide_input=True, confirmation_prompt=True
        )
        return text
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV]
    raise KeyringError(f"--passphrase-prompt needs a terminal, or set {PASSPHRASE_ENV}")


@keys.command("list")
@json_option
@click.pass_obj
def keys_list(config: Config, as_json: bool) -> None:
    """List your parties and your pins."""
    ring = Keyring(config.home)
    parties = [
        {
            "name": name,
            "fingerprint": party_fingerprint(ring.public(name)),
            "encrypted": ring.is_encrypted(name),
        }
        for name in ring.names()
    ]
    contacts = [{"name": c.name, "fingerprint": party_fingerprint(c)} for c in ring.contacts()]
    couriers = [
        {"url": url, "fingerprint": fingerprint(key)} for url, key in ring.couriers().items()
    ]
    if as_json:
        echo_json(
            {"home": str(ring.home), "parties": parties, "contacts": contacts, "couriers": couriers}
        )
        return
    click.echo(f"keyring {ring.home}")
    for party in parties:
        lock = "  (passphrase)" if party["encrypted"] else ""
        click.echo(f"  party    {party['name']:<32} {party['fingerprint']}{lock}")
    for contact in contacts:
        click.echo(f"  contact  {contact['name']:<32} {contact['fingerprint']}")
    for courier in couriers:
        click.echo(f"  courier  {courier['url']:<32} {courier['fingerprint']}")


@keys.command("show")
@click.argument("name")
@json_option
@click.pass_obj
def keys_show(config: Config, name: str, as_json: bool) -> None:
    """Show a party's or contact's public keys."""
    ring = Keyring(config.home)
    public = ring.known(check_party_name(name))
    if public is None:
        raise KeyringError(f"no party or contact {name} in the keyring at {ring.home}")
    kind = "party" if name in ring.names() else "contact"
    shown = {**dump(public), "kind": kind, "fingerprint": party_fingerprint(public)}
    if as_json:
        echo_json(shown)
        return
    for label in ("name", "kind", "fingerprint", "signing_key", "encryption_key"):
        click.echo(f"{label:<15} {shown[label]}")


@keys.command("export")
@click.argument("name")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE.")
@click.pass_obj
def keys_export(config: Config, name: str, output: Path | None) -> None:
    """Export a party's public keys as JSON.

    Only public keys: private keys never leave the keyring.
    """
    text = Keyring(config.home).export(check_party_name(name))
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote the public keys of {name} to {output}", err=True)


@keys.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_obj
def keys_import(config: Config, file: Path, as_json: bool) -> None:
    """Pin a contact's public keys from FILE."""
    public, new = Keyring(config.home).import_public(file)
    party_print = party_fingerprint(public)
    if as_json:
        echo_json({"name": public.name, "fingerprint": party_print, "new": new})
        return
    verb = "pinned" if new else "already pinned with the same keys:"
    click.echo(f"{verb} {public.name} (fingerprint {party_print})")
