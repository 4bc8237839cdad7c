"""The client keyring: a party's private keys, pinned public keys, and copies of its letters.

Layout under the keyring home (`$CHANNEL_HOME`, default `<user data dir>/backchannel/keyring`).
Directories are 0700, files 0600, and every file is written atomically (temp file, then rename):

    <name>/private.json             the party's private keys (format below)
    <name>/public.json              its public keys: exactly `protocol.models.PublicKeys` JSON,
                                    the format a courier pins from `keys/parties/NAME.pub.json`
    <name>/sent/<letter_id>.json    each letter as sent (SealedLetter JSON: ciphertext only), so a
                                    returned letter can be compared byte for byte
    <name>/received/<letter_id>.json  each letter the party opened (SignedContent JSON, plaintext)
    contacts/<name>.pub.json        another party's public keys, pinned on first use (TOFU)
    couriers/<host>_<port>.json     a courier's receipt-signing key, pinned by server URL

`private.json` without a passphrase holds the raw 32-byte private keys in base64:

    {"v": 1, "name": "...", "encrypted": false,
     "signing_key": "<Ed25519>", "encryption_key": "<X25519>"}

With a passphrase, the 64 bytes `signing_key || encryption_key` are encrypted with
ChaCha20-Poly1305 under a key derived by scrypt (n=2**15, r=8, p=1, 32-byte key); the associated
data is `backchannel/v1/keyring\\0` followed by the party name, so a file cannot be moved to
another name:

    {"v": 1, "name": "...", "encrypted": true,
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<16 bytes>"},
     "cipher": "chacha20poly1305", "nonce": "<12 bytes>", "ciphertext": "<64 bytes + tag>"}

Private keys never leave this directory: exports carry public keys only.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import json
import os
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import platformdirs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pydantic import ValidationError

from channel.protocol.canonical import parse_time
from channel.protocol.errors import IntegrityError, KeyringError
from channel.protocol.models import (
    ChainKeys,
    Envelope,
    LetterContent,
    PublicKeys,
    SealedLetter,
    SignedContent,
)
from channel.protocol.names import check_letter_id, check_party_name
from channel.protocol.seal import (
    PartyKeys,
    open_letter,
    party_fingerprint,
    raw_private,
    seal_letter,
)

if TYPE_CHECKING:
    from channel.party.client import Client

PASSPHRASE_ENV = "CHANNEL_PASSPHRASE"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_AAD = b"backchannel/v1/keyring\x00"
_FORMAT = 1
# Names that are valid party names but are the keyring's own directories.
_RESERVED = frozenset({"contacts", "couriers"})

Asker = Callable[[str], str | None]


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("backchannel")) / "keyring"


def ask_passphrase(prompt: str) -> str | None:
    """The passphrase from $CHANNEL_PASSPHRASE, else a prompt if stdin is a terminal, else None."""
    given = os.environ.get(PASSPHRASE_ENV)
    if given:
        return given
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(prompt) or None
    return None


class Keyring:
    def __init__(self, home: Path | None = None, *, ask: Asker = ask_passphrase) -> None:
        self.home = (home or default_home()).expanduser()
        self._ask = ask

    # --- own parties ---------------------------------------------------------------------------

    def new(self, name: str, passphrase: str | None = None) -> PartyKeys:
        """Generate a party's keys; refuses a name the keyring already holds."""
        check_party_name(name)
        if name in _RESERVED:
            raise KeyringError(f"{name!r} is reserved in the keyring; choose another party name")
        if passphrase == "":
            raise KeyringError("an empty passphrase protects nothing; give one or none")
        directory = self._party_dir(name)
        if (directory / "private.json").exists():
            raise KeyringError(f"party {name} already exists in the keyring at {self.home}")
        self._ensure_dir(self.home)
        self._ensure_dir(directory)
        keys = PartyKeys.generate(name)
        # private.json marks a complete party, so it is written last.
        _write(directory / "public.json", keys.public().model_dump_json(indent=2).encode())
        _write(directory / "private.json", _private_document(keys, passphrase))
        return keys

    def load(self, name: str, passphrase: str | None = None) -> PartyKeys:
        """The party's private keys, decrypted with `passphrase` (asked for when needed)."""
        document = self._private_document(name)
        if not document.get("encrypted"):
            return _party_keys(
                name, _b64(document, "signing_key") + _b64(document, "encryption_key")
            )
        if passphrase is None:
            passphrase = self._ask(f"Passphrase for {name}: ")
        if not passphrase:
            raise KeyringError(
                f"the keys of {name} are passphrase-protected: set {PASSPHRASE_ENV} "
                "or run in a terminal"
            )
        return _party_keys(name, _decrypt(name, document, passphrase))

    def is_encrypted(self, name: str) -> bool:
        return bool(self._private_document(name).get("encrypted"))

    def names(self) -> list[str]:
        """The keyring's own parties, sorted."""
        if not self.home.is_dir():
            return []
        return sorted(p.name for p in self.home.iterdir() if (p / "private.json").is_file())

    def public(self, name: str) -> PublicKeys:
        """An own party's public keys."""
        self._require(name)
        return _read_public(self._party_dir(name) / "public.json")

    def export(self, name: str) -> str:
        """An own party's public keys as JSON text, to hand to the operator or another party."""
        return self.public(name).model_dump_json(indent=2) + "\n"

    # --- other parties' keys (trust on first use) ----------------------------------------------

    def contacts(self) -> list[PublicKeys]:
        directory = self.home / "contacts"
        if not directory.is_dir():
            return []
        return [_read_public(p) for p in sorted(directory.glob("*.pub.json"))]

    def contact(self, name: str) -> PublicKeys | None:
        path = self._contact_path(name)
        return _read_public(path) if path.exists() else None

    def known(self, name: str) -> PublicKeys | None:
        """Keys for `name` this keyring vouches for: an own party's or a pinned contact's."""
        if (self._party_dir(name) / "public.json").is_file():
            return self.public(name)
        return self.contact(name)

    def pin_contact(self, keys: PublicKeys) -> bool:
        """Pin `keys` for their name; True if new. IntegrityError if other keys are pinned."""
        pinned = self.known(keys.name)
        if pinned is None:
            _write(self._contact_path(keys.name), keys.model_dump_json(indent=2).encode())
            return True
        if pinned != keys:
            raise IntegrityError(
                f"the keys offered for {keys.name} (fingerprint {party_fingerprint(keys)}) differ "
                f"from the keys pinned in your keyring ({party_fingerprint(pinned)}); refusing"
            )
        return False

    def import_public(self, path: Path) -> tuple[PublicKeys, bool]:
        """Pin a contact's public keys from a file written by `channel keys export`."""
        try:
            keys = PublicKeys.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            raise KeyringError(f"{path} is not a public key file ({_first_error(exc)})") from None
        except OSError as exc:
            raise KeyringError(f"cannot read {path}: {exc.strerror}") from None
        return keys, self.pin_contact(keys)

    def courier(self, url: str) -> bytes | None:
        """The courier key pinned for this server URL, if any."""
        path = self._courier_path(url)
        if not path.exists():
            return None
        return _b64(_read_json(path), "signing_key")

    def couriers(self) -> dict[str, bytes]:
        """Every pinned courier key, by server URL."""
        directory = self.home / "couriers"
        if not directory.is_dir():
            return {}
        pinned = {}
        for path in sorted(directory.glob("*.json")):
            document = _read_json(path)
            pinned[str(document.get("url"))] = _b64(document, "signing_key")
        return pinned

    def pin_courier(self, url: str, signing_key: bytes) -> bool:
        """Pin a courier's key on first contact; True if new. IntegrityError if it changed."""
        pinned = self.courier(url)
        if pinned is None:
            document = {"url": url, "signing_key": _encode(signing_key)}
            _write(self._courier_path(url), json.dumps(document, indent=2).encode())
            return True
        if pinned != signing_key:
            raise IntegrityError(
                f"the courier at {url} offers a different key from the one pinned in your "
                f"keyring ({self._courier_path(url)}); refusing"
            )
        return False

    async def trust_courier(self, client: Client, *, refresh: bool = False) -> bytes:
        """Make `client` use the courier key pinned for its URL, pinning it on first contact.

        With `refresh`, ask the courier even if a key is pinned, and refuse if it changed.
        """
        pinned = self.courier(client.base_url)
        if pinned is not None and not refresh:
            client.trust_courier(pinned)
            return pinned
        offered = (await client.courier_key()).signing_key
        self.pin_courier(client.base_url, offered)
        return offered

    async def vouch(self, client: Client, name: str) -> PublicKeys:
        """The courier's keys for `name`, pinned on first use and refused if they differ later."""
        keys = await client.public_keys(name)
        self.pin_contact(keys)
        return keys

    def chain_keys(
        self, offered: ChainKeys, envelope: Envelope, server: str
    ) -> tuple[ChainKeys, list[str]]:
        """The keys to verify a letter's chain with, and warnings about where they came from.

        The keyring's keys win; each is cross-checked against `offered` (the keys embedded in a
        status file), and the file's are used only for what the keyring does not hold.
        """
        warnings: list[str] = []
        keys = ChainKeys(
            courier=self._courier_for(offered.courier, server, warnings),
            sender=self._party_key(envelope.sender, offered.sender, warnings),
            recipient=self._party_key(envelope.recipient, offered.recipient, warnings),
        )
        return keys, warnings

    def _courier_for(self, offered: bytes, server: str, warnings: list[str]) -> bytes:
        if offered in self.couriers().values():
            return offered
        pinned = self.courier(server)
        if pinned is None:
            warnings.append("the courier key comes from the file: your keyring has no pin for it")
            return offered
        warnings.append(f"the file's courier key differs from the one pinned for {server}")
        return pinned

    def _party_key(self, name: str, offered: bytes, warnings: list[str]) -> bytes:
        known = self.known(name)
        if known is None:
            warnings.append(f"the key of {name} comes from the file: it is not in your keyring")
            return offered
        if known.signing_key != offered:
            warnings.append(f"the file's key for {name} differs from the one in your keyring")
        return known.signing_key

    # --- letters -------------------------------------------------------------------------------

    def save_sent(self, name: str, letter: SealedLetter) -> Path:
        path = self._letter_path(name, "sent", letter.envelope.id)
        _write(path, sent_bytes(letter))
        return path

    def load_sent(self, name: str, letter_id: str) -> bytes:
        """The letter exactly as sent (its JSON bytes)."""
        path = self._letter_path(name, "sent", letter_id)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise KeyringError(
                f"letter {letter_id} is not among {name}'s sent letters in {path.parent}"
            ) from None

    def save_received(self, name: str, content: SignedContent) -> Path:
        path = self._letter_path(name, "received", content.content.letter_id)
        _write(path, content.model_dump_json(indent=2, exclude_none=True).encode())
        return path

    def received(self, name: str) -> list[LetterContent]:
        """The letters `name` opened, from its local archive (in no particular order)."""
        directory = self._party_dir(name) / "received"
        if not directory.is_dir():
            return []
        return [
            SignedContent.model_validate_json(path.read_bytes()).content
            for path in directory.glob("*.json")
        ]

    def keep_copy(self, keys: PartyKeys, letter: SealedLetter, subject: str, body: str) -> Path:
        """Keep a readable copy of a letter sent: the same content sealed to the sender itself
        (the copy kept by `save_sent` is sealed to the recipient, unreadable by its sender)."""
        env = letter.envelope
        copy = seal_letter(
            keys,
            keys.public(),
            letter_id=env.id,
            subject=subject,
            body=body,
            sent_at=parse_time(env.sent_at),
            expires_at=parse_time(env.expires_at),
            precedence=env.precedence,
            in_reply_to=env.in_reply_to,
        )
        path = self._letter_path(keys.name, "copies", env.id)
        _write(path, sent_bytes(copy))
        return path

    def read_letter(self, keys: PartyKeys, letter_id: str) -> LetterContent | None:
        """The text of a letter `keys` opened or sent, from the local archive; None if it holds
        none (a letter not yet opened, or sent from another machine)."""
        received = self._letter_path(keys.name, "received", letter_id)
        if received.is_file():
            return SignedContent.model_validate_json(received.read_bytes()).content
        copy = self._letter_path(keys.name, "copies", letter_id)
        if not copy.is_file():
            return None
        sealed = SealedLetter.model_validate_json(copy.read_bytes())
        content = open_letter(sealed, keys, keys.public().signing_key).content
        sent = self._letter_path(keys.name, "sent", letter_id)
        if sent.is_file():  # the copy is sealed to the sender: name the real recipient
            recipient = SealedLetter.model_validate_json(sent.read_bytes()).envelope.recipient
            content = content.model_copy(update={"recipient": recipient})
        return content

    # --- paths ---------------------------------------------------------------------------------

    def _party_dir(self, name: str) -> Path:
        return self.home / check_party_name(name)

    def _require(self, name: str) -> None:
        if not (self._party_dir(name) / "private.json").is_file():
            raise KeyringError(
                f"no party {name} in the keyring at {self.home}; "
                f"create it with `channel keys new {name}`"
            )

    def _private_document(self, name: str) -> dict[str, Any]:
        self._require(name)
        return _read_json(self._party_dir(name) / "private.json")

    def _contact_path(self, name: str) -> Path:
        return self.home / "contacts" / f"{check_party_name(name)}.pub.json"

    def _courier_path(self, url: str) -> Path:
        return self.home / "couriers" / f"{courier_slug(url)}.json"

    def _letter_path(self, name: str, box: str, letter_id: str) -> Path:
        self._require(name)
        return self._party_dir(name) / box / f"{check_letter_id(letter_id)}.json"

    def _ensure_dir(self, path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)


def sent_bytes(letter: SealedLetter) -> bytes:
    """A sealed letter's JSON as the client sends it: what `returned` compares byte for byte."""
    return letter.model_dump_json(exclude_none=True).encode()


def courier_slug(url: str) -> str:
    """`http://127.0.0.1:8700` -> `127.0.0.1_8700`: one pin per host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = re.sub(r"[^A-Za-z0-9.-]", "-", parts.hostname or "unknown")
    return f"{host}_{port}"


# --- private key documents -----------------------------------------------------------------------


def _private_document(keys: PartyKeys, passphrase: str | None) -> bytes:
    signing, encryption = raw_private(keys.signing), raw_private(keys.encryption)
    document: dict[str, Any] = {"v": _FORMAT, "name": keys.name}
    if passphrase is None:
        document |= {
            "encrypted": False,
            "signing_key": _encode(signing),
            "encryption_key": _encode(encryption),
        }
    else:
        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
        box = ChaCha20Poly1305(_derive(passphrase, salt))
        document |= {
            "encrypted": True,
            "kdf": {
                "name": "scrypt",
                "n": SCRYPT_N,
                "r": SCRYPT_R,
                "p": SCRYPT_P,
                "salt": _encode(salt),
            },
            "cipher": "chacha20poly1305",
            "nonce": _encode(nonce),
            "ciphertext": _encode(
                box.encrypt(nonce, signing + encryption, _AAD + keys.name.encode())
            ),
        }
    return json.dumps(document, indent=2).encode()


def _decrypt(name: str, document: dict[str, Any], passphrase: str) -> bytes:
    kdf = document.get("kdf")
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise KeyringError(f"the private key file of {name} uses an unknown key derivation")
    salt = _b64(kdf, "salt")
    box = ChaCha20Poly1305(_derive(passphrase, salt, int(kdf["n"]), int(kdf["r"]), int(kdf["p"])))
    try:
        raw = box.decrypt(
            _b64(document, "nonce"), _b64(document, "ciphertext"), _AAD + name.encode()
        )
    except InvalidTag:
        raise KeyringError(f"wrong passphrase for {name}") from None
    return raw


def _party_keys(name: str, raw: bytes) -> PartyKeys:
    """Keys from `signing || encryption` private bytes, refusing a damaged file."""
    if len(raw) != 64:
        raise KeyringError(f"the private key file of {name} is damaged")
    return PartyKeys.from_raw(name, raw[:32], raw[32:])


def _derive(
    passphrase: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


# --- files ---------------------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    """Write `data` atomically: readers see the old file or the new one, never a torn one."""
    for directory in reversed([path.parent, *path.parent.parents]):
        if not directory.exists():
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise KeyringError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise KeyringError(f"{path} is not valid JSON") from None
    if not isinstance(document, dict):
        raise KeyringError(f"{path} is not a keyring file")
    return document


def _read_public(path: Path) -> PublicKeys:
    try:
        return PublicKeys.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise KeyringError(f"{path} is damaged ({_first_error(exc)})") from None
    except OSError as exc:
        raise KeyringError(f"cannot read {path}: {exc.strerror}") from None


def _b64(document: dict[str, Any], key: str) -> bytes:
    try:
        return base64.b64decode(str(document[key]), validate=True)
    except (KeyError, binascii.Error):
        raise KeyringError(f"a keyring file lacks a valid {key!r}") from None


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "file"
    return f"{where}: {first['msg']}"
