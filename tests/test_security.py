"""Request signatures, replay, access control, registration and what the store may hold."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from http_message_signatures import HTTPMessageSigner, algorithms
from structlog.testing import capture_logs

from channel.courier.service import Courier
from channel.party.client import Client
from channel.protocol.errors import (
    BadRequest,
    Forbidden,
    LetterIdConflict,
    NameTaken,
    RegistrationClosed,
    UnknownLetter,
)
from channel.protocol.httpsig import COVERED, LABEL, TAG, RequestView
from channel.protocol.lifecycle import State
from channel.protocol.models import OpenRequest, RegisterRequest, ReturnRequest, SealedLetter
from channel.protocol.seal import PartyKeys, decision_for, sign_decision
from tests.conftest import (
    SECRETS,
    Connect,
    CourierFactory,
    PartyFactory,
    assert_problem,
    identity,
    nonce_free,
    plaintext_needles,
    raw_call,
    signed_call,
    signed_headers,
    store_blobs,
    store_snapshot,
)

QUDS = "ir.irgc.quds"
DIRECTOR = "us.cia.director"


def _body(model: SealedLetter | OpenRequest | ReturnRequest | RegisterRequest) -> bytes:
    return model.model_dump_json(exclude_none=True).encode()


# --- request signatures ----------------------------------------------------------------------


async def test_replayed_send_is_refused_and_changes_nothing(
    director: Client, quds: Client, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    """The same signed send posted twice: the second is 401 `replayed`, the store untouched."""
    sealed = await director.seal(QUDS, "once only")
    url = f"{director.base_url}/v1/letters"
    body = _body(sealed)
    headers = signed_headers(identity(director), "POST", url, body)
    first = await raw_call(http, "POST", url, body, headers)
    assert first.status == 201
    before = await store_snapshot(redis)
    second = await raw_call(http, "POST", url, body, headers)
    assert_problem(second, 401, "replayed")
    assert await store_snapshot(redis) == before


async def test_replayed_withdraw_is_refused(
    director: Client, quds: Client, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    """A captured withdrawal cannot be replayed: 401 `replayed` before any state check."""
    sealed, _ = await director.send_letter(QUDS, "withdraw me")
    url = f"{director.base_url}/v1/letters/{sealed.envelope.id}/withdraw"
    headers = signed_headers(identity(director), "POST", url)
    assert (await raw_call(http, "POST", url, b"", headers)).status == 200
    before = await store_snapshot(redis)
    assert_problem(await raw_call(http, "POST", url, b"", headers), 401, "replayed")
    assert await store_snapshot(redis) == before
    status = await director.status(sealed.envelope.id)
    assert [r.event for r in status.receipts] == [State.ACCEPTED, State.WITHDRAWN]


async def test_replay_to_a_second_courier_instance_is_refused(
    director: Client,
    quds: Client,
    start_courier: CourierFactory,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
) -> None:
    """Nonces live in the shared store: a request replayed to another instance is refused too."""
    other = await start_courier()
    sealed = await director.seal(QUDS, "one courier only")
    body = _body(sealed)
    url = f"{director.base_url}/v1/letters"
    headers = signed_headers(identity(director), "POST", url, body)
    assert (await raw_call(http, "POST", url, body, headers)).status == 201
    before = await store_snapshot(redis)
    replay = await raw_call(http, "POST", f"{other}/v1/letters", body, headers)
    assert_problem(replay, 401, "replayed")
    assert await store_snapshot(redis) == before


async def test_forged_signature_is_refused(
    director: Client, quds: Client, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    """A request claiming to be the director but signed with another key is 401, nothing stored."""
    sealed = await director.seal(QUDS, "forged")
    forger = PartyKeys(DIRECTOR, PartyKeys.generate("x").signing, identity(director).encryption)
    url = f"{director.base_url}/v1/letters"
    body = _body(sealed)
    before = await store_snapshot(redis)
    reply = await raw_call(http, "POST", url, body, signed_headers(forger, "POST", url, body))
    assert_problem(reply, 401, "unauthenticated")
    assert await store_snapshot(redis) == before


@pytest.mark.parametrize(
    "offset",
    [datetime.timedelta(minutes=-5), datetime.timedelta(minutes=5)],
    ids=["stale", "future"],
)
async def test_signature_outside_the_time_window_is_refused(
    director: Client,
    quds: Client,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    offset: datetime.timedelta,
) -> None:
    """A signature created minutes before (or after) now is 401, however valid otherwise."""
    sealed = await director.seal(QUDS, "late")
    url = f"{director.base_url}/v1/letters"
    body = _body(sealed)
    created = datetime.datetime.now(datetime.UTC) + offset
    headers = signed_headers(identity(director), "POST", url, body, created=created)
    before = await store_snapshot(redis)
    assert_problem(await raw_call(http, "POST", url, body, headers), 401, "unauthenticated")
    assert await store_snapshot(redis) == before


async def test_signature_inside_the_window_is_accepted(
    director: Client, quds: Client, http: aiohttp.ClientSession
) -> None:
    """A signature made 30 seconds ago is still fresh (the window check is not too strict)."""
    created = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=30)
    url = f"{director.base_url}/v1/outbox"
    headers = signed_headers(identity(director), "GET", url, created=created)
    reply = await raw_call(http, "GET", url, b"", headers)
    assert reply.status == 200
    assert reply.json() == {"letters": []}


async def test_request_signed_for_one_path_is_refused_on_another(
    director: Client, quds: Client, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    """A signature covers the path: signed to withdraw one letter, it cannot withdraw another."""
    kept, _ = await director.send_letter(QUDS, "keep")
    target, _ = await director.send_letter(QUDS, "also keep")
    base = director.base_url
    headers = signed_headers(
        identity(director), "POST", f"{base}/v1/letters/{kept.envelope.id}/withdraw"
    )
    before = await store_snapshot(redis)
    moved = await raw_call(
        http, "POST", f"{base}/v1/letters/{target.envelope.id}/withdraw", b"", headers
    )
    assert_problem(moved, 401, "unauthenticated")
    assert await store_snapshot(redis) == before
    inbox_headers = signed_headers(identity(quds), "GET", f"{base}/v1/inbox")
    assert_problem(
        await raw_call(http, "GET", f"{base}/v1/outbox", b"", inbox_headers), 401, "unauthenticated"
    )


async def test_request_signed_with_one_query_is_refused_with_another(
    quds: Client, http: aiohttp.ClientSession
) -> None:
    """A signature covers the query string: ?limit=1 signed cannot be sent as ?limit=2."""
    url = f"{quds.base_url}/v1/inbox"
    headers = signed_headers(identity(quds), "GET", f"{url}?limit=1")
    assert_problem(
        await raw_call(http, "GET", f"{url}?limit=2", b"", headers), 401, "unauthenticated"
    )


async def test_tampered_body_is_refused(
    director: Client, quds: Client, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    """A body changed after signing is 401, with the original digest or with a recomputed one."""
    sealed = await director.seal(QUDS, "original")
    other = await director.seal(QUDS, "substituted")
    url = f"{director.base_url}/v1/letters"
    headers = signed_headers(identity(director), "POST", url, _body(sealed))
    before = await store_snapshot(redis)
    assert_problem(await raw_call(http, "POST", url, _body(other), headers), 401, "unauthenticated")
    recomputed = signed_headers(identity(director), "POST", url, _body(other))
    mixed = {**headers, "Content-Digest": recomputed["Content-Digest"]}
    assert_problem(await raw_call(http, "POST", url, _body(other), mixed), 401, "unauthenticated")
    assert await store_snapshot(redis) == before


async def test_unsigned_request_is_refused(quds: Client, http: aiohttp.ClientSession) -> None:
    """A party route without a signature is 401."""
    reply = await raw_call(http, "GET", f"{quds.base_url}/v1/inbox")
    problem = assert_problem(reply, 401, "unauthenticated")
    assert "not signed" in problem["detail"]


def _crafted(
    keys: PartyKeys,
    method: str,
    url: str,
    body: bytes,
    *,
    covered: tuple[str, ...] = COVERED,
    nonce: str | None = "f" * 32,
    tag: str = TAG,
) -> dict[str, str]:
    """Headers signed by `keys` with chosen coverage, nonce and tag (what a sloppy client does)."""
    view = RequestView(method, url, {})
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_Resolver(keys))  # type: ignore[arg-type]
    digest_covered = "content-digest" in covered
    signer.sign(
        view,
        key_id=keys.name,
        created=datetime.datetime.now(datetime.UTC),
        nonce=nonce,
        label=LABEL,
        tag=tag,
        covered_component_ids=covered,
        body=body if digest_covered else None,
    )
    headers = dict(view.headers)
    if body:
        headers["Content-Type"] = "application/json"
    return headers


class _Resolver:
    def __init__(self, keys: PartyKeys) -> None:
        self.keys = keys

    def resolve_private_key(self, key_id: str) -> object:
        return self.keys.signing

    def resolve_public_key(self, key_id: str) -> object:
        return self.keys.signing.public_key()


@pytest.mark.parametrize(
    "options",
    [
        {"covered": ("@method", "@path", "@query")},
        {"covered": ("@method", "@path", "content-digest")},
        {"covered": ("@path", "@query", "content-digest")},
        {"nonce": None},
        {"nonce": "short"},
        {"tag": "someone-else"},
    ],
    ids=["no-digest", "no-query", "no-method", "no-nonce", "short-nonce", "wrong-tag"],
)
async def test_signature_missing_a_required_part_is_refused(
    director: Client,
    quds: Client,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    options: dict[str, object],
) -> None:
    """Signatures must cover method, path, query and body digest, and carry a nonce and our tag."""
    sealed = await director.seal(QUDS, "sloppy")
    url = f"{director.base_url}/v1/letters"
    body = _body(sealed)
    headers = _crafted(identity(director), "POST", url, body, **options)  # type: ignore[arg-type]
    before = nonce_free(await store_snapshot(redis))
    assert_problem(await raw_call(http, "POST", url, body, headers), 401, "unauthenticated")
    assert nonce_free(await store_snapshot(redis)) == before


async def test_crafted_signature_with_every_part_is_accepted(
    director: Client, quds: Client, http: aiohttp.ClientSession
) -> None:
    """The hand-made signer is right when nothing is left out, so its refusals mean something."""
    sealed = await director.seal(QUDS, "complete")
    url = f"{director.base_url}/v1/letters"
    body = _body(sealed)
    reply = await raw_call(http, "POST", url, body, _crafted(identity(director), "POST", url, body))
    assert reply.status == 201


# --- who may touch a letter ------------------------------------------------------------------


@pytest.fixture
async def letter(director: Client, quds: Client) -> SealedLetter:
    sealed, _ = await director.send_letter(QUDS, "for the commander only")
    return sealed


async def test_third_party_cannot_touch_a_letter(
    letter: SealedLetter,
    party: PartyFactory,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    quds: Client,
) -> None:
    """A third party cannot list, read, open, return, withdraw or fetch it: 404 unknown_letter."""
    svr = await party("ru.svr.director")
    me = identity(svr)
    assert await svr.inbox() == []
    assert await svr.outbox() == []
    env = letter.envelope
    base = f"{svr.base_url}/v1/letters/{env.id}"
    open_body = _body(OpenRequest(signature=sign_decision(me, decision_for(State.OPENED, env))))
    return_body = _body(
        ReturnRequest(signature=sign_decision(me, decision_for(State.RETURNED_UNOPENED, env)))
    )
    before = nonce_free(await store_snapshot(redis))
    attempts = [
        ("GET", base, b""),
        ("POST", f"{base}/open", open_body),
        ("POST", f"{base}/return", return_body),
        ("POST", f"{base}/withdraw", b""),
        ("GET", f"{base}/returned", b""),
    ]
    for method, url, body in attempts:
        assert_problem(await signed_call(http, me, method, url, body), 404, "unknown_letter")
    assert nonce_free(await store_snapshot(redis)) == before
    # ...and after it is returned, the third party still cannot fetch the returned copy.
    await quds.return_letter(env.id, reason="no")
    assert_problem(await signed_call(http, me, "GET", f"{base}/returned"), 404, "unknown_letter")


async def test_recipient_cannot_withdraw_or_fetch_the_returned_copy(
    letter: SealedLetter, quds: Client, director: Client
) -> None:
    """Withdrawal is the sender's: the recipient gets 403; the returned copy is 404 to it."""
    with pytest.raises(Forbidden) as refused:
        await quds.withdraw(letter.envelope.id)
    assert refused.value.code == "forbidden"
    await quds.return_letter(letter.envelope.id)
    with pytest.raises(UnknownLetter):
        await quds.returned(letter.envelope.id)
    assert (await director.returned(letter.envelope.id)).letter == letter


async def test_sender_cannot_open_or_return(
    letter: SealedLetter, director: Client, redis: aioredis.Redis
) -> None:
    """Opening and returning are the recipient's: the sender gets 403 and nothing changes."""
    env = letter.envelope
    me = identity(director)
    before = nonce_free(await store_snapshot(redis))
    with pytest.raises(Forbidden):
        await director.open(env.id, sign_decision(me, decision_for(State.OPENED, env)))
    with pytest.raises(Forbidden):
        await director.return_unopened(
            env.id, sign_decision(me, decision_for(State.RETURNED_UNOPENED, env))
        )
    assert nonce_free(await store_snapshot(redis)) == before


async def test_decision_signed_by_another_key_is_refused(
    letter: SealedLetter, quds: Client, redis: aioredis.Redis
) -> None:
    """The courier checks the recipient's decision signature before it releases anything."""
    env = letter.envelope
    impostor = PartyKeys.generate(QUDS)
    before = nonce_free(await store_snapshot(redis))
    with pytest.raises(BadRequest, match="decision signature") as refused:
        await quds.open(env.id, sign_decision(impostor, decision_for(State.OPENED, env)))
    assert refused.value.status == 400
    # A signature over the other decision does not count either.
    wrong_kind = sign_decision(identity(quds), decision_for(State.RETURNED_UNOPENED, env))
    with pytest.raises(BadRequest, match="decision signature"):
        await quds.open(env.id, wrong_kind)
    assert nonce_free(await store_snapshot(redis)) == before


async def test_reusing_an_id_for_a_letter_back_is_refused(
    director: Client, quds: Client, redis: aioredis.Redis
) -> None:
    """A party's letter ids name one letter each: reusing one for a letter back is 409."""
    sealed, _ = await director.send_letter(QUDS, "original")
    letter_id = sealed.envelope.id
    before = nonce_free(await store_snapshot(redis))
    with pytest.raises(LetterIdConflict):  # the recipient answers under the same id
        await quds.send_letter(DIRECTOR, "shadow", letter_id=letter_id)
    assert nonce_free(await store_snapshot(redis)) == before
    status = await director.status(letter_id)
    assert status.envelope == sealed.envelope
    await director.withdraw(letter_id)
    assert (await director.returned(letter_id)).letter == sealed
    # ...nor can the sender reuse, for another letter, an id that names one in its own inbox.
    reply, _ = await quds.send_letter(DIRECTOR, "a reply")
    with pytest.raises(LetterIdConflict):
        await director.send_letter(QUDS, "clash", letter_id=reply.envelope.id)


# --- registration ----------------------------------------------------------------------------


async def test_registered_name_cannot_be_taken_over(
    quds: Client, client: Client, redis: aioredis.Redis
) -> None:
    """Registering a taken name with other keys is 409 name_taken; the original keys stay."""
    before = nonce_free(await store_snapshot(redis))
    usurper = client.as_party(PartyKeys.generate(QUDS))
    with pytest.raises(NameTaken) as refused:
        await usurper.register()
    assert refused.value.status == 409
    assert nonce_free(await store_snapshot(redis)) == before
    assert (await client.party(QUDS)).signing_key == identity(quds).public().signing_key
    # Keeping one key and changing the other is a takeover too.
    half = PartyKeys(QUDS, identity(quds).signing, PartyKeys.generate(QUDS).encryption)
    with pytest.raises(NameTaken):
        await client.as_party(half).register()


async def test_registration_signed_with_another_key_is_refused(
    client: Client, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    """Proof of possession: registering keys needs a signature by the signing key registered."""
    keys = PartyKeys.generate("gb.fco.desk")
    other = PartyKeys.generate("gb.fco.desk")
    url = f"{client.base_url}/v1/parties"
    body = _body(RegisterRequest(**keys.public().model_dump()))
    before = await store_snapshot(redis)
    reply = await raw_call(http, "POST", url, body, signed_headers(other, "POST", url, body))
    assert_problem(reply, 401, "unauthenticated")
    assert await store_snapshot(redis) == before
    unsigned = await raw_call(http, "POST", url, body, {"Content-Type": "application/json"})
    assert_problem(unsigned, 401, "unauthenticated")
    assert await store_snapshot(redis) == before


async def test_replayed_registration_is_refused(
    client: Client, http: aiohttp.ClientSession
) -> None:
    """A captured registration cannot be posted again."""
    keys = PartyKeys.generate("gb.fco.desk")
    url = f"{client.base_url}/v1/parties"
    body = _body(RegisterRequest(**keys.public().model_dump()))
    headers = signed_headers(keys, "POST", url, body)
    assert (await raw_call(http, "POST", url, body, headers)).status == 201
    assert_problem(await raw_call(http, "POST", url, body, headers), 401, "replayed")


async def test_closed_registration_needs_an_invitation(
    start_courier: CourierFactory, connect: Connect, redis: aioredis.Redis
) -> None:
    """Without an invitation a closed courier refuses (403 registration_closed), stores nothing."""
    url = await start_courier(open_registration=False)
    before = nonce_free(await store_snapshot(redis))
    with pytest.raises(RegistrationClosed) as refused:
        await connect(url, PartyKeys.generate("gb.fco.desk")).register()
    assert refused.value.code == "registration_closed"
    with pytest.raises(RegistrationClosed):
        await connect(url, PartyKeys.generate("gb.fco.desk")).register(invite="x" * 32)
    assert nonce_free(await store_snapshot(redis)) == before


async def test_invitation_admits_exactly_once(
    start_courier: CourierFactory,
    connect: Connect,
    local_courier: Courier,
    redis: aioredis.Redis,
) -> None:
    """An invitation registers its named party once; it admits neither another name nor a rerun."""
    url = await start_courier(open_registration=False)
    token = await local_courier.invite("gb.fco.desk")
    with pytest.raises(RegistrationClosed):  # an invitation is for one name
        await connect(url, PartyKeys.generate("fr.quai.desk")).register(invite=token)
    invited = PartyKeys.generate("gb.fco.desk")
    record = await connect(url, invited).register(invite=token)
    assert record.signing_key == invited.public().signing_key
    assert [k async for k in redis.scan_iter(match="*invite*")] == []
    with pytest.raises(NameTaken):  # the token is spent; the name is someone's now
        await connect(url, PartyKeys.generate("gb.fco.desk")).register(invite=token)
    again = await connect(url, invited).register(invite=token)  # same keys: idempotent
    assert again == record
    assert token not in json.dumps(
        {k.decode(): repr(v) for k, v in (await store_snapshot(redis)).items()}
    )


async def test_pinned_directory_admits_its_parties(
    start_courier: CourierFactory,
    connect: Connect,
    tmp_path: Path,
    redis: aioredis.Redis,
) -> None:
    """A closed courier with a key directory knows those parties; they can write at once."""
    directory = tmp_path / "keys"
    directory.mkdir()
    pinned = {name: PartyKeys.generate(name) for name in (DIRECTOR, QUDS)}
    for name, keys in pinned.items():
        (directory / f"{name}.pub.json").write_text(keys.public().model_dump_json())
    url = await start_courier(open_registration=False, directory=directory)
    director, quds = connect(url, pinned[DIRECTOR]), connect(url, pinned[QUDS])
    record = await director.party(QUDS)
    assert record.signing_key == pinned[QUDS].public().signing_key
    sealed, _ = await director.send_letter(QUDS, "pinned keys work")
    content, _ = await quds.open_letter(sealed.envelope.id)
    assert content.content.body == "pinned keys work"
    assert (await quds.register()).name == QUDS  # same keys: fine
    with pytest.raises(NameTaken):
        await connect(url, PartyKeys.generate(QUDS)).register()
    with pytest.raises(RegistrationClosed):
        await connect(url, PartyKeys.generate("gb.fco.desk")).register()


# --- what the store and the logs may hold ----------------------------------------------------


async def test_plaintext_never_reaches_redis(
    director: Client, quds: Client, redis: aioredis.Redis
) -> None:
    """After sending, opening and returning letters, no subject or body is in any key or value."""
    letters = []
    for subject, body in SECRETS:
        sealed, _ = await director.send_letter(QUDS, body, subject=subject)
        letters.append(sealed)
    await quds.inbox()
    content, _ = await quds.open_letter(letters[0].envelope.id)
    assert content.content.body == SECRETS[0][1]
    await quds.return_letter(letters[1].envelope.id, reason="Not accepted")
    blobs = await store_blobs(redis)
    assert len(blobs) > 20
    assert any(letters[2].ciphertext == blob for blob in blobs)  # the scan does see letter data
    for subject, body in SECRETS:
        for needle in plaintext_needles(subject) + plaintext_needles(body):
            assert not any(needle in blob for blob in blobs), needle


async def test_logs_never_carry_plaintext_or_invitations(
    director: Client, quds: Client, local_courier: Courier
) -> None:
    """The courier logs letter ids and parties, never a subject, a body or an invitation token."""
    subject, body = SECRETS[0]
    with capture_logs() as logs:
        sealed, _ = await director.send_letter(QUDS, body, subject=subject)
        await quds.open_letter(sealed.envelope.id)
        token = await local_courier.invite("gb.fco.desk")
    accepted = [e for e in logs if e.get("event") == "letter_accepted"]
    assert [e["letter_id"] for e in accepted] == [sealed.envelope.id]
    assert any(e.get("event") == "letter_opened" for e in logs)
    text = repr(logs)
    for secret in (subject, body, token):
        assert secret not in text


@contextlib.contextmanager
def _leak_watch() -> Iterator[list[str]]:
    """Collect 'unclosed ...' resource warnings, including those raised in __del__ during GC."""
    caught: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: caught.append(repr(unraisable.exc_value))
    try:
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always")
            yield caught
            gc.collect()
        caught += [str(w.message) for w in recorded]
    finally:
        sys.unraisablehook = previous
    caught[:] = [c for c in caught if "unclosed" in c.lower()]


async def test_pinned_directory_conflicting_with_a_registration_refuses_to_start(
    start_courier: CourierFactory, quds: Client, tmp_path: Path, redis: aioredis.Redis
) -> None:
    """A key file for a name registered with other keys stops the courier, leaking nothing."""
    directory = tmp_path / "keys"
    directory.mkdir()
    (directory / f"{QUDS}.pub.json").write_text(PartyKeys.generate(QUDS).public().model_dump_json())
    before = nonce_free(await store_snapshot(redis))
    with _leak_watch() as leaks:
        with pytest.raises(NameTaken):
            await start_courier(open_registration=False, directory=directory)
        await asyncio.sleep(0)
    assert nonce_free(await store_snapshot(redis)) == before
    assert (await quds.party(QUDS)).signing_key == identity(quds).public().signing_key
    assert leaks == []


async def test_malformed_key_file_refuses_to_start(
    start_courier: CourierFactory, tmp_path: Path
) -> None:
    """A key directory holding something that is not a public key file stops the courier."""
    directory = tmp_path / "keys"
    directory.mkdir()
    (directory / "gb.fco.desk.pub.json").write_text('{"name": "gb.fco.desk"}')
    with pytest.raises(BadRequest, match="not a public key file"):
        await start_courier(open_registration=False, directory=directory)


async def test_forged_sends_spend_rate_limit_tokens_and_store_nothing(
    start_courier: CourierFactory,
    director: Client,
    quds: Client,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
) -> None:
    """A send takes its token inside its own script, but one refused by its own checks (here a
    forged seal) still spends a token: a flood of forgeries is limited like any other request,
    and none of them changes the store."""
    base = await start_courier(rate_limit_per_second=0.2, rate_limit_burst=2)
    sealed = await director.seal(QUDS, "forged")
    forged = sealed.model_copy(update={"seal": bytes(64)})
    body, url = forged.model_dump_json().encode(), f"{base}/v1/letters"
    before = nonce_free(await store_snapshot(redis))
    statuses = []
    for _ in range(3):
        headers = signed_headers(identity(director), "POST", url, body)
        statuses.append((await raw_call(http, "POST", url, body, headers)).status)
    assert statuses == [400, 400, 429]
    after = nonce_free(await store_snapshot(redis))
    assert {k: v for k, v in after.items() if not k.endswith(b":bucket")} == before
