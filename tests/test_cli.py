"""The `channel` command line against a real courier and a real Redis.

Most tests run the CLI in-process with click's CliRunner, in a worker thread (each command runs
its own `asyncio.run`) while the courier serves on the test's event loop. A few run `channel`
as a subprocess: `--help`, `serve` + `admin invite`, and `demo`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner, Result
from structlog.testing import capture_logs

from channel.cli import cli
from channel.courier.embedded import EmbeddedRedis
from channel.party.client import Client
from channel.party.keyring import Keyring
from channel.protocol.errors import IntegrityError, KeyringError, ServerUnreachable
from channel.protocol.lifecycle import State
from channel.protocol.models import LetterStatus
from channel.protocol.seal import PartyKeys
from tests.conftest import CourierFactory, free_port

DIRECTOR = "us.cia.director"
QUDS = "ir.irgc.quds"
BODY = "We will hold you and Iran accountable for attacks on American interests in Iraq."
CHANNEL = [sys.executable, "-m", "channel"]


@pytest.fixture(autouse=True)
def quiet_courier() -> Iterator[None]:
    """Keep the in-process courier's log lines out of the CLI's captured stdout."""
    with capture_logs():
        yield


@dataclass
class Shell:
    """`channel` with one keyring home and one courier, run in-process off the event loop."""

    home: Path
    server: str

    async def __call__(self, *args: str, input: str | None = None, **env: str | None) -> Result:
        environment: dict[str, str | None] = {
            "CHANNEL_HOME": str(self.home),
            "CHANNEL_SERVER": self.server,
        }
        environment |= {"CHANNEL_PASSPHRASE": None} | env
        runner = CliRunner()
        return await asyncio.to_thread(
            runner.invoke, cli, list(args), input=input, env=environment, catch_exceptions=False
        )

    async def ok(self, *args: str, input: str | None = None, **env: str | None) -> Result:
        result = await self(*args, input=input, **env)
        assert result.exit_code == 0, result.output
        return result

    async def json(self, *args: str, **env: str | None) -> Any:
        return json.loads((await self.ok(*args, "--json", **env)).stdout)


def assert_user_error(result: Result, exit_code: int, fragment: str) -> None:
    """One line on stderr, `error: ...`, the error's exit code, nothing on stdout, no traceback."""
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""


@pytest.fixture
def shell(tmp_path: Path, courier_url: str) -> Shell:
    return Shell(tmp_path / "keyring", courier_url)


async def registered(shell: Shell, *names: str) -> None:
    for name in names:
        await shell.ok("keys", "new", name)
        await shell.ok("register", name)


async def send(shell: Shell, sender: str = DIRECTOR, to: str = QUDS, *extra: str) -> str:
    sent = await shell.json("send", "--as", sender, "--to", to, "--text", BODY, *extra)
    assert sent["state"] == "accepted"
    return str(sent["id"])


# --- the whole lifecycle ---------------------------------------------------------------------


async def test_lifecycle_returned_unopened(shell: Shell, tmp_path: Path) -> None:
    """keys → register → send → inbox (delivered) → return → status → verify → returned, all OK."""
    await registered(shell, DIRECTOR, QUDS)
    sent = await shell.json(
        "send", "--as", DIRECTOR, "--to", QUDS, "--text", BODY,
        "--subject", "Iraq", "--precedence", "immediate", "--expires", "72h",
    )  # fmt: skip
    letter_id = sent["id"]
    assert (sent["recipient"], sent["receipt"]["event"]) == (QUDS, "accepted")
    assert sent["envelope"]["precedence"] == "immediate"

    inbox = await shell.json("inbox", "--as", QUDS)
    assert [(row["id"], row["sender"], row["state"]) for row in inbox] == [
        (letter_id, DIRECTOR, "delivered")
    ]
    assert all("body" not in json.dumps(row) for row in inbox)

    returned = await shell.json("return", letter_id, "--as", QUDS, "--reason", "Not accepted")
    assert returned["state"] == "returned_unopened"

    status = await shell.json("status", letter_id, "--as", DIRECTOR)
    assert set(status) == {"id", "state", "envelope", "seal", "receipts", "keys"}
    assert [r["event"] for r in status["receipts"]] == [
        "accepted",
        "delivered",
        "returned_unopened",
    ]
    assert status["receipts"][-1]["reason"] == "Not accepted"

    evidence = tmp_path / "letter.json"
    evidence.write_text(json.dumps(status))
    verified = await shell.ok("verify", str(evidence))
    assert verified.stdout.count("✓") == 4  # the seal and three receipts
    assert "✗" not in verified.stdout

    back = await shell.json("returned", letter_id, "--as", DIRECTOR)
    assert back["identical"] is True
    assert back["state"] == "returned_unopened"
    sent_copy = shell.home / DIRECTOR / "sent" / f"{letter_id}.json"
    assert json.loads(sent_copy.read_bytes()) == back["letter"]

    outbox = (await shell.ok("outbox", "--as", DIRECTOR)).stdout
    assert letter_id in outbox
    assert "returned_unopened" in outbox


async def test_open_prints_the_body_and_keeps_a_private_copy(shell: Shell, tmp_path: Path) -> None:
    """Opening prints subject and body (or writes the body to --output) and keeps it 0600."""
    await registered(shell, DIRECTOR, QUDS)
    first = await shell.json(
        "send", "--as", DIRECTOR, "--to", QUDS, "--subject", "Warning", input=BODY
    )
    second = await send(shell)

    printed = (await shell.ok("open", first["id"], "--as", QUDS)).stdout
    assert "Subject: Warning" in printed
    assert BODY in printed
    assert f"From:    {DIRECTOR}" in printed
    kept = shell.home / QUDS / "received" / f"{first['id']}.json"
    assert json.loads(kept.read_text())["content"]["body"] == BODY
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    body_file = tmp_path / "body.txt"
    written = await shell.ok("open", second, "--as", QUDS, "--output", str(body_file))
    assert body_file.read_text() == BODY
    assert BODY not in written.stdout

    status = await shell.json("status", second, "--as", DIRECTOR)
    assert status["state"] == "opened"


async def test_withdrawn_letter_comes_back_byte_for_byte(shell: Shell) -> None:
    """A withdrawn letter can be fetched back and matches the sent copy exactly."""
    await registered(shell, DIRECTOR, QUDS)
    letter_id = await send(shell)
    withdrawn = await shell.json("withdraw", letter_id, "--as", DIRECTOR)
    assert [r["event"] for r in withdrawn["receipts"]] == ["accepted", "withdrawn"]
    text = (await shell.ok("returned", letter_id, "--as", DIRECTOR)).stdout
    assert "byte for byte" in text
    assert "withdrawn" in text


async def test_returned_refuses_a_letter_that_differs_from_the_sent_copy(shell: Shell) -> None:
    """If the sent copy and the returned letter differ by one byte, `returned` fails loudly."""
    await registered(shell, DIRECTOR, QUDS)
    letter_id = await send(shell)
    await shell.ok("withdraw", letter_id, "--as", DIRECTOR)
    copy = shell.home / DIRECTOR / "sent" / f"{letter_id}.json"
    sealed = json.loads(copy.read_bytes())
    sealed["envelope"]["precedence"] = "flash"
    copy.write_text(json.dumps(sealed, separators=(",", ":")))
    result = await shell("returned", letter_id, "--as", DIRECTOR)
    assert_user_error(result, IntegrityError.exit_code, "differs from the copy sent")


# --- offline verification ------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(status: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = status
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


def _swap_receipts(status: dict[str, Any]) -> None:
    status["receipts"][1], status["receipts"][2] = status["receipts"][2], status["receipts"][1]


def _drop_delivered(status: dict[str, Any]) -> None:
    del status["receipts"][1]


OTHER_KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_SIGNATURE = base64.b64encode(bytes(64)).decode()

ALTERATIONS = {
    "receipt time": (_set("receipts.1.at", "2017-12-02T18:30:00.000Z"), "receipt 1"),
    "refusal reason": (_set("receipts.2.reason", "Accepted"), "receipt 2"),
    "receipt event": (_set("receipts.2.event", "opened"), "receipt 2"),
    "receipt order": (_swap_receipts, "receipt 1"),
    "removed receipt": (_drop_delivered, "receipt 1"),
    "recipient signature": (_set("receipts.2.recipient_signature", OTHER_SIGNATURE), "receipt 2"),
    "envelope precedence": (_set("envelope.precedence", "flash"), "seal"),
    "envelope deadline": (_set("envelope.expires_at", "2030-01-01T00:00:00.000Z"), "seal"),
    "seal": (_set("seal", OTHER_SIGNATURE), "seal"),
    "state": (_set("state", "opened"), "state"),
    "courier key": (_set("keys.courier", OTHER_KEY), "receipt 0"),
    "recipient key": (_set("keys.recipient", OTHER_KEY), "receipt 2"),
    "signature length": (_set("receipts.0.signature", OTHER_KEY), "receipts.0.signature"),
}


@pytest.fixture
async def evidence(director: Client, quds: Client) -> dict[str, Any]:
    """A `status --json` document for a letter returned unopened, as the director saw it."""
    sealed, _ = await director.send_letter(QUDS, BODY)
    await quds.return_letter(sealed.envelope.id, reason="Not accepted")
    status = await director.verified_status(sealed.envelope.id)
    document: dict[str, Any] = json.loads(status.model_dump_json(exclude_none=True))
    return document


@pytest.mark.parametrize("alteration", sorted(ALTERATIONS))
async def test_verify_names_what_was_altered(
    alteration: str, evidence: dict[str, Any], tmp_path: Path
) -> None:
    """Any altered field makes `verify` fail with IntegrityError's code, naming the failed part."""
    change, named = ALTERATIONS[alteration]
    change(evidence)
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(evidence))
    result = await Shell(tmp_path / "empty-keyring", "http://127.0.0.1:1")("verify", str(altered))
    assert result.exit_code == IntegrityError.exit_code, result.output
    assert "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert named in last


async def test_verify_accepts_the_untouched_file_and_says_where_keys_came_from(
    evidence: dict[str, Any], tmp_path: Path
) -> None:
    """The unaltered file verifies with its own keys; each key's source is a warning."""
    original = tmp_path / "status.json"
    original.write_text(json.dumps(evidence, indent=2))
    result = await Shell(tmp_path / "empty-keyring", "http://127.0.0.1:1").ok(
        "verify", str(original)
    )
    assert [line[0] for line in result.stdout.splitlines()[:4]] == ["✓"] * 4
    assert "comes from the file" in result.stderr
    report = json.loads(
        (await Shell(tmp_path / "empty", "http://x:1").ok("verify", str(original), "--json")).stdout
    )
    assert report["ok"] is True
    assert [c["subject"] for c in report["checks"]] == [
        "seal",
        "receipt 0 (accepted)",
        "receipt 1 (delivered)",
        "receipt 2 (returned_unopened)",
    ]


async def test_verify_prefers_pinned_keys_and_warns_on_a_mismatch(
    shell: Shell, tmp_path: Path
) -> None:
    """With the parties in the keyring, a swapped key in the file is a warning, not trusted."""
    await registered(shell, DIRECTOR, QUDS)
    letter_id = await send(shell)
    await shell.ok("return", letter_id, "--as", QUDS)
    status = await shell.json("status", letter_id, "--as", DIRECTOR)
    status["keys"]["recipient"] = OTHER_KEY
    path = tmp_path / "status.json"
    path.write_text(json.dumps(status))
    result = await shell.ok("verify", str(path))
    assert f"key for {QUDS} differs from the one in your keyring" in result.stderr
    assert "✗" not in result.stdout


# --- user errors: one line, an exit code, no traceback ---------------------------------------


async def test_unknown_party(shell: Shell) -> None:
    """Sending to a name the courier does not know is UnknownParty (exit 4)."""
    await registered(shell, DIRECTOR)
    result = await shell("send", "--as", DIRECTOR, "--to", "nobody.known", "--text", BODY)
    assert_user_error(result, 4, "no party named 'nobody.known'")


async def test_bad_name_is_refused_before_the_network(tmp_path: Path) -> None:
    """A bad name fails with InvalidName even when no courier is listening."""
    offline = Shell(tmp_path, f"http://127.0.0.1:{free_port()}")
    await offline.ok("keys", "new", DIRECTOR)
    result = await offline("send", "--as", DIRECTOR, "--to", "Not_A_Name", "--text", BODY)
    assert_user_error(result, 2, "'Not_A_Name' is not a valid party name")
    assert_user_error(await offline("keys", "new", "x"), 2, "is not a valid party name")


async def test_not_your_letter(shell: Shell) -> None:
    """A third party asking about someone else's letter hears it does not exist (exit 4)."""
    await registered(shell, DIRECTOR, QUDS, "ch.fdfa.bern")
    letter_id = await send(shell)
    result = await shell("status", letter_id, "--as", "ch.fdfa.bern")
    assert_user_error(result, 4, f"you have no letter {letter_id}")
    result = await shell("open", letter_id, "--as", "ch.fdfa.bern")
    assert_user_error(result, 4, "no letter")


async def test_already_opened(shell: Shell) -> None:
    """Opening twice, or returning an opened letter, is an invalid transition (exit 5)."""
    await registered(shell, DIRECTOR, QUDS)
    letter_id = await send(shell)
    await shell.ok("open", letter_id, "--as", QUDS)
    assert_user_error(await shell("open", letter_id, "--as", QUDS), 5, "already opened")
    assert_user_error(await shell("return", letter_id, "--as", QUDS), 5, "already opened")


async def test_server_unreachable(tmp_path: Path) -> None:
    """A closed port is ServerUnreachable (exit 6) and names the URL."""
    closed = f"http://127.0.0.1:{free_port()}"
    offline = Shell(tmp_path, closed)
    await offline.ok("keys", "new", DIRECTOR)
    result = await offline("register", DIRECTOR)
    assert_user_error(result, ServerUnreachable.exit_code, f"cannot reach the courier at {closed}")


async def test_missing_keyring_party(shell: Shell) -> None:
    """Acting as a party the keyring lacks says how to create it (exit 7)."""
    result = await shell("inbox", "--as", "ghost.party")
    assert_user_error(
        result, KeyringError.exit_code, "create it with `channel keys new ghost.party`"
    )


async def test_bad_expires_is_a_usage_error(shell: Shell) -> None:
    """A malformed --expires is click's usage error (exit 2), before anything else happens."""
    result = await shell("send", "--as", DIRECTOR, "--to", QUDS, "--text", BODY, "--expires", "3x")
    assert result.exit_code == 2
    assert "'3x' is not a duration" in result.stderr
    assert "Traceback" not in result.output


async def test_empty_letter_is_refused(shell: Shell) -> None:
    """With no --text, no --file and an empty stdin, nothing is sent and nothing blocks."""
    await registered(shell, DIRECTOR, QUDS)
    result = await shell("send", "--as", DIRECTOR, "--to", QUDS, input="")
    assert result.exit_code == 2
    assert "the letter is empty" in result.stderr


# --- keys and the keyring ------------------------------------------------------------------------


async def test_keyring_files_are_private_and_export_is_public_only(shell: Shell) -> None:
    """Keyring files are 0600 in 0700 dirs; `keys export` carries no private key material."""
    await registered(shell, DIRECTOR, QUDS)
    await send(shell)
    for path in [shell.home, *shell.home.rglob("*")]:
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
    exported = json.loads((await shell.ok("keys", "export", DIRECTOR)).stdout)
    assert set(exported) == {"name", "signing_key", "encryption_key"}
    private = json.loads((shell.home / DIRECTOR / "private.json").read_text())
    text = json.dumps(exported)
    assert private["signing_key"] not in text
    assert private["encryption_key"] not in text
    assert exported == json.loads((shell.home / DIRECTOR / "public.json").read_text())


async def test_passphrase_protected_keys(shell: Shell) -> None:
    """Encrypted keys work with the right passphrase; wrong or absent ones fail without blocking."""
    secret = "correct horse battery staple"
    created = await shell.json("keys", "new", DIRECTOR, CHANNEL_PASSPHRASE=secret)
    assert created["encrypted"] is True
    stored = json.loads((shell.home / DIRECTOR / "private.json").read_text())
    assert stored["encrypted"] is True
    assert "signing_key" not in stored

    await shell.ok("register", DIRECTOR, CHANNEL_PASSPHRASE=secret)
    wrong = await shell("inbox", "--as", DIRECTOR, CHANNEL_PASSPHRASE="wrong")
    assert_user_error(wrong, KeyringError.exit_code, "wrong passphrase")
    absent = await shell("inbox", "--as", DIRECTOR)
    assert_user_error(absent, KeyringError.exit_code, "passphrase-protected")
    asked = await shell("keys", "new", QUDS, "--passphrase-prompt")
    assert_user_error(asked, KeyringError.exit_code, "--passphrase-prompt needs a terminal")


async def test_keys_list_show_and_import(shell: Shell, tmp_path: Path) -> None:
    """Exported keys import as a pinned contact; a different key for that name is refused."""
    await shell.ok("keys", "new", DIRECTOR)
    exported = tmp_path / "director.pub.json"
    await shell.ok("keys", "export", DIRECTOR, "--output", str(exported))
    shown = await shell.json("keys", "show", DIRECTOR)

    other = Shell(tmp_path / "other", shell.server)
    imported = await other.json("keys", "import", str(exported))
    assert imported == {"name": DIRECTOR, "fingerprint": shown["fingerprint"], "new": True}
    listed = await other.json("keys", "list")
    assert listed["contacts"] == [{"name": DIRECTOR, "fingerprint": shown["fingerprint"]}]
    assert listed["parties"] == []
    assert (await other.json("keys", "show", DIRECTOR))["kind"] == "contact"

    impostor = tmp_path / "impostor.pub.json"
    impostor.write_text(PartyKeys.generate(DIRECTOR).public().model_dump_json())
    result = await other("keys", "import", str(impostor))
    assert_user_error(result, IntegrityError.exit_code, "differ from the keys pinned")


async def test_contact_keys_are_pinned_on_first_use(courier_url: str, tmp_path: Path) -> None:
    """The sender pins the recipient's keys when first writing; changed keys are then refused."""
    director = Shell(tmp_path / "langley", courier_url)
    quds = Shell(tmp_path / "tehran", courier_url)
    await registered(director, DIRECTOR)
    await registered(quds, QUDS)
    await send(director, DIRECTOR, QUDS, "--trust-new")
    pin = director.home / "contacts" / f"{QUDS}.pub.json"
    assert json.loads(pin.read_text()) == json.loads((quds.home / QUDS / "public.json").read_text())

    pin.write_text(PartyKeys.generate(QUDS).public().model_dump_json())
    result = await director("send", "--as", DIRECTOR, "--to", QUDS, "--text", BODY)
    assert_user_error(result, IntegrityError.exit_code, f"keys offered for {QUDS}")
    assert len(list((director.home / DIRECTOR / "sent").iterdir())) == 1


async def test_courier_key_is_pinned_per_server(shell: Shell) -> None:
    """The courier's key is pinned on registration; a courier with another key is refused."""
    await registered(shell, DIRECTOR)
    (pin,) = (shell.home / "couriers").iterdir()
    assert pin.name == shell.server.removeprefix("http://").replace(":", "_") + ".json"
    pin.write_text(json.dumps({"url": shell.server, "signing_key": OTHER_KEY}))
    result = await shell("register", DIRECTOR)
    assert_user_error(result, IntegrityError.exit_code, "offers a different key")


# --- operator: invitations -----------------------------------------------------------------------


async def test_invitation_registers_once(
    start_courier: CourierFactory,
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    tmp_path: Path,
) -> None:
    """On an invite-only courier, `admin invite` admits NAME once; the token is then spent."""
    url = await start_courier(open_registration=False)
    embassy = Shell(tmp_path / "embassy", url)
    await embassy.ok("keys", "new", "ch.embassy.tehran")
    refused = await embassy("register", "ch.embassy.tehran")
    assert_user_error(refused, 3, "invitation")

    minted = await embassy.json("admin", "invite", "ch.embassy.tehran", "--redis", redis_server.url)
    token = minted["token"]
    assert minted["name"] == "ch.embassy.tehran"
    joined = await embassy.json("register", "ch.embassy.tehran", "--invite", token)
    assert joined["name"] == "ch.embassy.tehran"
    assert [key async for key in redis.scan_iter(match="*invite*")] == []

    thief = Shell(tmp_path / "thief", url)
    await thief.ok("keys", "new", "ch.embassy.tehran")
    reused = await thief("register", "ch.embassy.tehran", "--invite", token)
    assert_user_error(reused, 5, "already registered with other keys")


async def test_admin_invite_needs_a_running_store(tmp_path: Path) -> None:
    """Without a running embedded Redis, `admin invite` says to start `channel serve`."""
    result = await Shell(tmp_path, "http://x:1")(
        "admin", "invite", "ch.embassy", "--data-dir", str(tmp_path / "courier")
    )
    assert_user_error(result, 6, "start `channel serve` first, or pass --redis URL")


async def test_invitation_is_stored_as_a_hash(
    redis: aioredis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """The store keeps the invitation's hash with a TTL from --ttl, never the token itself."""
    shell = Shell(tmp_path, "http://x:1")
    minted = await shell.json(
        "admin", "invite", "ch.embassy", "--redis", redis_server.url, "--ttl", "2h"
    )
    keys = [key async for key in redis.scan_iter(match="*invite*")]
    assert len(keys) == 1
    stored = await redis.get(keys[0])
    assert isinstance(stored, bytes)
    assert minted["token"].encode() not in stored
    assert 7000 < await redis.ttl(keys[0]) <= 7200


# --- real processes ------------------------------------------------------------------------------


def test_help_exits_zero() -> None:
    """`channel --help` works as a process and lists every command."""
    done = subprocess.run(
        [*CHANNEL, "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0
    for command in ("serve", "keys", "admin", "register", "send", "inbox", "verify", "demo"):
        assert re.search(rf"^\s+{command}\s", done.stdout, re.MULTILINE), command


def test_serve_and_admin_invite_through_the_data_dir(tmp_path: Path) -> None:
    """`channel serve` with its embedded Redis, then `admin invite --data-dir` and `register`;
    the data dir, left open (0755) before, is private (0700) once the courier has run in it."""
    data = tmp_path / "courier"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    env = {**os.environ, "CHANNEL_HOME": str(tmp_path / "keyring")}
    serve = [*CHANNEL, "serve", "--port", "0", "--data-dir", str(data), "--invite-only"]
    with subprocess.Popen(
        [*serve, "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    ) as server:  # fmt: skip
        try:
            assert server.stdout is not None
            ready = server.stdout.readline()
            assert ready.startswith("Courier ready at http://"), ready
            url = ready.split()[-1]

            def channel(*args: str) -> subprocess.CompletedProcess[str]:
                command = [*CHANNEL, "--server", url, *args]
                return subprocess.run(
                    command, capture_output=True, text=True, env=env, timeout=60, check=False
                )

            minted = channel("admin", "invite", "ch.embassy", "--data-dir", str(data), "--json")
            assert minted.returncode == 0, minted.stderr
            token = json.loads(minted.stdout)["token"]
            assert channel("keys", "new", "ch.embassy").returncode == 0
            joined = channel("register", "ch.embassy", "--invite", token)
            assert joined.returncode == 0, joined.stderr
            assert "registered ch.embassy" in joined.stdout
            assert stat.S_IMODE(data.stat().st_mode) == 0o700
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    assert server.returncode == 0


def test_demo_tells_the_story_and_leaves_verifiable_evidence(tmp_path: Path) -> None:
    """`demo --story` runs with no stdin or server, returns the letter unopened, verifies."""
    kept = tmp_path / "demo"
    done = subprocess.run(
        [*CHANNEL, "demo", "--story", "--keep", str(kept)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    story = done.stdout
    for moment in (
        "The content was not released",
        "returned the letter unopened",
        "byte for byte",
        "✓ receipt 2",
        "Done: returned unopened",
    ):
        assert moment in story, moment
    assert "Traceback" not in done.stderr
    status = LetterStatus.model_validate_json((kept / "status.json").read_bytes())
    assert status.state is State.RETURNED_UNOPENED

    ring = Keyring(kept / "keyring")
    assert ring.names() == [QUDS, DIRECTOR]
    verified = subprocess.run(
        [*CHANNEL, "--home", str(kept / "keyring"), "verify", str(kept / "status.json")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == ""  # every key came from the keyring's pins


# --- the command line's edges ------------------------------------------------------------------

BAD_SERVERS = {
    "127.0.0.1:8700": "has no scheme: write http://127.0.0.1:8700",
    "ftp://127.0.0.1:8700": "the scheme must be http or https, not ftp",
    "http://127.0.0.1:99999": "Port out of range",
    "http://127.0.0.1:port": "is not a URL",
    "http://[::1": "is not a URL",
    "http://": "names no host",
    "http://127.0.0.1:0": "port 0",
    "http://127.0.0.1:8700/?x=1": "no user, query or fragment",
}


@pytest.mark.parametrize("url", sorted(BAD_SERVERS))
@pytest.mark.parametrize("where", ["environment", "before", "after"])
async def test_a_bad_server_url_is_one_line(tmp_path: Path, url: str, where: str) -> None:
    """A courier URL with no or a bad scheme, a bad port or host is a one-line usage error
    naming where it came from, before any network call, in CHANNEL_SERVER or --server."""
    shell = Shell(tmp_path, "http://127.0.0.1:1")
    if where == "environment":
        result = await shell("inbox", "--as", DIRECTOR, CHANNEL_SERVER=url)
    elif where == "before":
        result = await shell("--server", url, "inbox", "--as", DIRECTOR)
    else:
        result = await shell("inbox", "--as", DIRECTOR, "--server", url)
    assert_user_error(result, 2, BAD_SERVERS[url])
    named = "CHANNEL_SERVER" if where == "environment" else "'--server'"
    assert named in result.stderr


async def test_global_options_are_taken_after_the_command(shell: Shell, tmp_path: Path) -> None:
    """--server and --home work after the command (and in a group's subcommand), and there
    override the environment."""
    offline = Shell(tmp_path / "elsewhere", f"http://127.0.0.1:{free_port()}")
    home = str(shell.home)
    await offline.ok("keys", "new", DIRECTOR, "--home", home)
    await offline.ok("register", DIRECTOR, "--server", shell.server, "--home", home)
    listed = await offline.json("keys", "list", "--home", home)
    assert [p["name"] for p in listed["parties"]] == [DIRECTOR]
    assert [c["url"] for c in listed["couriers"]] == [shell.server]
    assert not (tmp_path / "elsewhere").exists()


async def test_usage_errors_are_one_line(shell: Shell) -> None:
    """click's own usage errors (a missing option, an unknown command) are one line too."""
    missing = await shell("send", "--as", DIRECTOR, "--text", BODY)
    assert_user_error(missing, 2, "Missing option '--to'")
    assert "send --help" in missing.stderr
    assert_user_error(await shell("sned"), 2, "No such command 'sned'")


def test_help_loads_no_command_and_names_each_as_its_docstring() -> None:
    """`channel --help` imports no command module; each summary in the table is the first
    sentence of the command's own docstring, so the two cannot drift apart."""
    probe = (
        "import sys\n"
        "from channel.cli import cli\n"
        "cli.main(['--help'], standalone_mode=False)\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    loaded = set(done.stdout.splitlines()[-1].split())
    from channel.cli import COMMANDS, LazyGroup

    commands = {target.partition(":")[0] for target, _ in COMMANDS.values()}
    heavy = {"aiohttp", "redis", "pydantic", "rich", "structlog", "cryptography", "yaml"}
    assert "channel.cli" in loaded
    assert not loaded & (commands | heavy)

    assert isinstance(cli, LazyGroup)
    with cli.make_context("channel", ["inbox"]) as ctx:
        for name, (_, summary) in COMMANDS.items():
            command = cli.get_command(ctx, name)
            assert command is not None
            assert command.get_short_help_str(limit=1000) == summary, name


def test_party_commands_never_import_the_courier() -> None:
    """Loading every party command (and the session they share) imports neither the courier,
    its store nor Redis."""
    probe = (
        "import sys\n"
        "import channel.party.commands.keys, channel.party.commands.letters\n"
        "import channel.party.commands.watch, channel.party.commands.verify\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    loaded = set(done.stdout.split())
    assert "channel.party.commands.letters" in loaded
    courier_side = {"courier", "store", "embedded", "settings", "server"}
    assert not {m for m in loaded if m.startswith("channel.") and m.split(".")[1] in courier_side}
    assert "redis" not in loaded


@pytest.mark.parametrize(
    "args",
    [["keys", "list"], ["keys", "list", "--json"], ["exercise", "list"], ["exercise", "schema"]],
)
def test_a_closed_stdout_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    """`channel ... | head`: when stdout's reader is gone, nothing is said on stderr."""
    read, write = os.pipe()
    os.close(read)  # the reader left before the first byte: every write fails with EPIPE
    try:
        done = subprocess.run(
            [*CHANNEL, *args],
            stdout=write,
            stderr=subprocess.PIPE,
            env={**os.environ, "CHANNEL_HOME": str(tmp_path)},
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert done.stderr == b""
    assert done.returncode == 1


def test_watch_json_keeps_stdout_for_json_when_the_stream_breaks(tmp_path: Path) -> None:
    """`watch --json` against a courier that is gone: its reconnect log lines go to stderr and
    stdout stays empty (no log line can corrupt the JSON stream)."""
    home = tmp_path / "keyring"
    gone = f"http://127.0.0.1:{free_port()}"
    ring = Keyring(home)
    ring.new(DIRECTOR)
    ring.pin_courier(gone, bytes(32))  # pinned: the watch goes straight to the event stream
    env = {**os.environ, "CHANNEL_HOME": str(home)}
    with subprocess.Popen(
        [*CHANNEL, "watch", "--as", DIRECTOR, "--json", "--server", gone],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    ) as watcher:  # fmt: skip
        try:
            assert watcher.stderr is not None
            first = watcher.stderr.readline()  # the first reconnect
        finally:
            watcher.send_signal(signal.SIGINT)
            stdout, stderr = watcher.communicate(timeout=30)
    assert b"event_stream_lost" in first, first + stderr
    assert stdout == b""
    assert watcher.returncode == 0


def test_exercise_run_plays_on_the_courier_named_before_the_command(tmp_path: Path) -> None:
    """`channel --server URL exercise run` plays on that courier, not an embedded one: a closed
    port is ServerUnreachable naming it."""
    closed = f"http://127.0.0.1:{free_port()}"
    play = ["exercise", "run", "letter-to-soleimani", "--rehearse", "--no-live"]
    done = subprocess.run(
        [*CHANNEL, "--server", closed, *play, "--out", str(tmp_path / "run")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == ServerUnreachable.exit_code, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: cannot reach the courier at {closed}")
    )
    assert not (tmp_path / "run" / "courier").exists()
