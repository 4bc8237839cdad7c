"""The keyring on disk: file modes, atomic writes, passphrases, pins and letter copies."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from channel.party.keyring import SCRYPT_N, Keyring, courier_slug, sent_bytes
from channel.protocol.canonical import now_utc
from channel.protocol.errors import IntegrityError, InvalidName, KeyringError
from channel.protocol.models import ChainKeys, PublicKeys, SealedLetter
from channel.protocol.names import new_letter_id
from channel.protocol.seal import PartyKeys, raw_private, seal_letter

DIRECTOR = "us.cia.director"
QUDS = "ir.irgc.quds"
PASSPHRASE = "correct horse battery staple"


def never_asked(prompt: str) -> str | None:
    raise AssertionError(f"the keyring asked for a passphrase: {prompt}")


@pytest.fixture
def ring(tmp_path: Path) -> Keyring:
    return Keyring(tmp_path / "keyring", ask=never_asked)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that would leave files world-readable if the keyring relied on it."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): stat.S_IMODE(path.stat().st_mode)
        for path in [root, *root.rglob("*")]
    }


def letter(sender: PartyKeys, recipient: PartyKeys) -> SealedLetter:
    now = now_utc()
    return seal_letter(
        sender,
        recipient.public(),
        letter_id=new_letter_id(),
        subject="Iraq",
        body="We will hold you accountable.",
        sent_at=now,
        expires_at=now + timedelta(days=3),
    )


def test_new_and_load_round_trip(ring: Keyring) -> None:
    """Keys written by new() load back as the same keys, without asking for a passphrase."""
    created = ring.new(DIRECTOR)
    loaded = ring.load(DIRECTOR)
    assert raw_private(loaded.signing) == raw_private(created.signing)
    assert raw_private(loaded.encryption) == raw_private(created.encryption)
    assert ring.names() == [DIRECTOR]
    assert ring.public(DIRECTOR) == created.public()
    assert not ring.is_encrypted(DIRECTOR)


@pytest.mark.usefixtures("permissive_umask")
def test_files_are_0600_and_directories_0700(ring: Keyring) -> None:
    """Every file is 0600 and every directory 0700, whatever the umask."""
    director, quds = ring.new(DIRECTOR), ring.new(QUDS)
    ring.pin_contact(PartyKeys.generate("ch.fdfa.bern").public())
    ring.pin_courier("http://127.0.0.1:8700", bytes(32))
    ring.save_sent(DIRECTOR, letter(director, quds))
    found = modes(ring.home)
    assert found
    for name, mode in found.items():
        expected = 0o700 if (ring.home / name).is_dir() else 0o600
        assert mode == expected, name


def test_writes_leave_no_temporary_files(ring: Keyring) -> None:
    """Atomic writes rename their temp file into place; none is left behind."""
    ring.new(DIRECTOR)
    ring.pin_courier("http://127.0.0.1:8700", bytes(32))
    assert not [p for p in ring.home.rglob("*") if p.name.endswith(".tmp")]


def test_new_refuses_an_existing_or_reserved_name(ring: Keyring) -> None:
    """A name is created once; the keyring's own directory names and bad names are refused."""
    ring.new(DIRECTOR)
    with pytest.raises(KeyringError, match="already exists"):
        ring.new(DIRECTOR)
    with pytest.raises(KeyringError, match="reserved"):
        ring.new("contacts")
    with pytest.raises(InvalidName):
        ring.new("../escape")


def test_load_of_a_missing_party_says_how_to_create_it(ring: Keyring) -> None:
    """The error names the party, the keyring path and the command that fixes it."""
    with pytest.raises(KeyringError) as caught:
        ring.load(QUDS)
    assert caught.value.detail == (
        f"no party {QUDS} in the keyring at {ring.home}; create it with `channel keys new {QUDS}`"
    )


def test_passphrase_round_trip(tmp_path: Path) -> None:
    """Encrypted keys load with the passphrase, given or asked for; the file holds no raw key."""
    asked: list[str] = []

    def ask(prompt: str) -> str | None:
        asked.append(prompt)
        return PASSPHRASE

    ring = Keyring(tmp_path, ask=ask)
    created = ring.new(DIRECTOR, PASSPHRASE)
    stored = json.loads((tmp_path / DIRECTOR / "private.json").read_text())
    assert stored["encrypted"] is True
    assert stored["kdf"]["name"] == "scrypt"
    assert stored["kdf"]["n"] == SCRYPT_N == 2**15
    assert stored["cipher"] == "chacha20poly1305"
    raw = raw_private(created.signing)
    assert base64.b64encode(raw).decode() not in json.dumps(stored)

    assert raw_private(ring.load(DIRECTOR, PASSPHRASE).signing) == raw
    assert raw_private(ring.load(DIRECTOR).signing) == raw
    assert asked == [f"Passphrase for {DIRECTOR}: "]


def test_wrong_or_missing_passphrase(tmp_path: Path) -> None:
    """A wrong passphrase is KeyringError; no passphrase available fails instead of blocking."""
    Keyring(tmp_path).new(DIRECTOR, PASSPHRASE)
    with pytest.raises(KeyringError, match=f"wrong passphrase for {DIRECTOR}"):
        Keyring(tmp_path).load(DIRECTOR, "not it")
    with pytest.raises(KeyringError, match="passphrase-protected"):
        Keyring(tmp_path, ask=lambda prompt: None).load(DIRECTOR)


def test_passphrase_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default asker reads CHANNEL_PASSPHRASE, so scripts and CI need no terminal."""
    Keyring(tmp_path).new(DIRECTOR, PASSPHRASE)
    monkeypatch.setenv("CHANNEL_PASSPHRASE", PASSPHRASE)
    assert Keyring(tmp_path).load(DIRECTOR).name == DIRECTOR


def test_encrypted_keys_are_bound_to_their_name(tmp_path: Path) -> None:
    """Copying one party's encrypted file under another name does not decrypt."""
    ring = Keyring(tmp_path)
    ring.new(DIRECTOR, PASSPHRASE)
    ring.new(QUDS, PASSPHRASE)
    (tmp_path / QUDS / "private.json").write_bytes(
        (tmp_path / DIRECTOR / "private.json").read_bytes()
    )
    with pytest.raises(KeyringError, match="wrong passphrase"):
        ring.load(QUDS, PASSPHRASE)


def test_export_is_exactly_the_public_keys(ring: Keyring) -> None:
    """Exported JSON is the PublicKeys model (what a courier pins) and nothing private."""
    keys = ring.new(DIRECTOR)
    exported = ring.export(DIRECTOR)
    assert PublicKeys.model_validate_json(exported) == keys.public()
    assert set(json.loads(exported)) == {"name", "signing_key", "encryption_key"}
    for private in (keys.signing, keys.encryption):
        assert base64.b64encode(raw_private(private)).decode() not in exported


def test_contacts_are_pinned_on_first_use(ring: Keyring, tmp_path: Path) -> None:
    """First keys for a name are pinned; the same keys again are fine; other keys are refused."""
    quds = PartyKeys.generate(QUDS).public()
    assert ring.pin_contact(quds) is True
    assert ring.pin_contact(quds) is False
    assert ring.contact(QUDS) == quds
    with pytest.raises(IntegrityError, match=f"keys offered for {QUDS}"):
        ring.pin_contact(PartyKeys.generate(QUDS).public())
    assert ring.contact(QUDS) == quds

    exported = tmp_path / "bern.pub.json"
    exported.write_text(PartyKeys.generate("ch.fdfa.bern").public().model_dump_json())
    imported, new = ring.import_public(exported)
    assert new is True
    assert ring.contacts() == sorted([quds, imported], key=lambda keys: keys.name)


def test_own_parties_cannot_be_pinned_over(ring: Keyring) -> None:
    """Keys offered for one of your own parties must be that party's keys."""
    mine = ring.new(DIRECTOR)
    assert ring.pin_contact(mine.public()) is False
    with pytest.raises(IntegrityError):
        ring.pin_contact(PartyKeys.generate(DIRECTOR).public())


def test_import_refuses_a_file_that_is_not_public_keys(ring: Keyring, tmp_path: Path) -> None:
    """A private key file or junk is not imported."""
    ring.new(DIRECTOR)
    with pytest.raises(KeyringError, match="is not a public key file"):
        ring.import_public(ring.home / DIRECTOR / "private.json")
    junk = tmp_path / "junk.json"
    junk.write_text("[]")
    with pytest.raises(KeyringError, match="is not a public key file"):
        ring.import_public(junk)


def test_couriers_are_pinned_per_host_and_port(ring: Keyring) -> None:
    """One pin per server; a different key for the same server is refused."""
    first, second = bytes(32), bytes(range(32))
    assert ring.pin_courier("http://127.0.0.1:8700/", first) is True
    assert ring.pin_courier("http://127.0.0.1:8700", first) is False
    assert ring.pin_courier("http://127.0.0.1:8701", second) is True
    with pytest.raises(IntegrityError, match="offers a different key"):
        ring.pin_courier("http://127.0.0.1:8700", second)
    assert ring.courier("http://127.0.0.1:8700") == first
    assert ring.couriers() == {"http://127.0.0.1:8700/": first, "http://127.0.0.1:8701": second}
    assert courier_slug("https://courier.example") == "courier.example_443"
    assert courier_slug("http://[::1]:8700") == "--1_8700"


def test_sent_letters_are_kept_byte_for_byte(ring: Keyring) -> None:
    """The sent copy is the letter's wire JSON exactly, ciphertext and no plaintext."""
    director, quds = ring.new(DIRECTOR), ring.new(QUDS)
    sealed = letter(director, quds)
    path = ring.save_sent(DIRECTOR, sealed)
    assert path == ring.home / DIRECTOR / "sent" / f"{sealed.envelope.id}.json"
    kept = ring.load_sent(DIRECTOR, sealed.envelope.id)
    assert kept == sent_bytes(sealed) == sealed.model_dump_json(exclude_none=True).encode()
    assert SealedLetter.model_validate_json(kept) == sealed
    assert b"hold you accountable" not in kept
    with pytest.raises(KeyringError, match="is not among"):
        ring.load_sent(QUDS, sealed.envelope.id)


def test_chain_keys_prefer_the_keyring_and_report_differences(ring: Keyring) -> None:
    """Keys the keyring holds win over a file's, with a warning when they differ."""
    director, quds = ring.new(DIRECTOR), ring.new(QUDS)
    envelope = letter(director, quds).envelope
    courier, other = bytes(range(32)), bytes(32)
    ring.pin_courier("http://127.0.0.1:8700", courier)
    honest = ChainKeys(
        courier=courier,
        sender=director.public().signing_key,
        recipient=quds.public().signing_key,
    )
    assert ring.chain_keys(honest, envelope, "http://elsewhere:1") == (honest, [])

    forged = ChainKeys(courier=other, sender=other, recipient=other)
    keys, warnings = ring.chain_keys(forged, envelope, "http://127.0.0.1:8700")
    assert keys == honest
    assert len(warnings) == 3

    empty = Keyring(ring.home / "nowhere")
    keys, warnings = empty.chain_keys(forged, envelope, "http://127.0.0.1:8700")
    assert keys == forged
    assert all("comes from the file" in warning for warning in warnings)
