"""What the container publishes: attestation, wrapped channel messages, the NIP-90 result."""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest

from container.outbox import result_content, sign_attestation, sign_result, wrap_for
from dvm.cdvm.channel import build_ready
from dvm.cdvm.kind7100 import Claims, ModelClaim, RuntimeClaim, parse_attestation
from dvm.nostr import nip44, nip59
from dvm.nostr.errors import DecryptionError
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip90 import build_job_request, parse_job_request, parse_job_result

_counter = itertools.count(1)
NOW = 1_700_000_000


def det_bytes(size: int) -> bytes:
    return hashlib.sha512(next(_counter).to_bytes(8, "big")).digest()[:size]


def key(n: int) -> SecretKey:
    return SecretKey(hashlib.sha256(bytes([n])).digest())


CONTAINER, REQUESTER, SESSION, PROVIDER = key(1), key(2), key(3), key(4)


def request(*, session: bool = False, result_to: bool = False):  # type: ignore[no-untyped-def]
    event = build_job_request(
        requester=REQUESTER.public_key,
        provider=PROVIDER.public_key,
        tee="simulated",
        nonce=bytes(32),
        created_at=NOW,
        session=SESSION.public_key if session else None,
        result_to_requester=result_to,
    ).sign(REQUESTER, aux_rand=bytes(32))
    return parse_job_request(event)


def test_oneshot_result_is_the_answer_and_chat_is_a_json_array() -> None:
    assert result_content(["only"], oneshot=True) == "only"
    assert json.loads(result_content(["a", "b"], oneshot=False)) == ["a", "b"]
    assert result_content([], oneshot=False) == "[]"


def _decrypt(content: str, key: SecretKey) -> str:
    conversation = nip44.get_conversation_key(key, CONTAINER.public_key)
    try:
        return nip44.decrypt(content, conversation)
    finally:
        conversation.wipe()


@pytest.mark.parametrize(
    ("session", "result_to", "reader", "locked_out"),
    [
        (True, False, SESSION, REQUESTER),  # default: only S, which the requester wipes
        (True, True, REQUESTER, SESSION),  # ["result-to", U]: readable by U
        (False, False, REQUESTER, SESSION),  # no session key: U is the reply key
    ],
)
def test_result_is_encrypted_to_the_requests_result_key(
    session: bool, result_to: bool, reader: SecretKey, locked_out: SecretKey
) -> None:
    req = request(session=session, result_to=result_to)
    event = sign_result(CONTAINER, req, "the answer", now=NOW, random_bytes=det_bytes)
    parsed = parse_job_result(event)
    assert event.kind == 6050
    assert event.pubkey == CONTAINER.public_key.hex()
    assert parsed.requester == REQUESTER.public_key.hex()  # the p tag names U either way
    assert "the answer" not in event.to_json()
    assert req.result_key == reader.public_key.hex()
    assert _decrypt(parsed.content, reader) == "the answer"
    with pytest.raises(DecryptionError):
        _decrypt(parsed.content, locked_out)


def test_attestation_is_signed_by_the_container_for_the_reply_key() -> None:
    req = request(session=True)
    claims = Claims(
        pubkey=CONTAINER.public_key.hex(),
        job=req.id,
        nonce=req.nonce,
        provider=PROVIDER.public_key.hex(),
        model=ModelClaim("m", "ab" * 32),
        runtime=RuntimeClaim("1", "img"),
    )
    event = sign_attestation(
        CONTAINER,
        claims=claims,
        recipient=SESSION.public_key,
        tee="simulated",
        evidence=[{"type": "simulated"}],
        expiration=NOW + 60,
        now=NOW,
        random_bytes=det_bytes,
    )
    att = parse_attestation(event)
    assert att.container == CONTAINER.public_key.hex()
    assert att.recipient == SESSION.public_key.hex()
    assert att.expiration == NOW + 60


@pytest.mark.parametrize(("kind", "backdated"), [(21059, False), (1059, True)])
def test_wraps_go_to_the_peer_only_in_the_kind_asked(kind: int, backdated: bool) -> None:
    rumors = [
        build_ready(CONTAINER.public_key, SESSION.public_key, "cd" * 32, created_at=NOW)
        for _ in range(8)
    ]
    wraps = wrap_for(
        rumors, CONTAINER, SESSION.public_key, kind=kind, now=NOW, random_bytes=det_bytes
    )
    assert len(wraps) == 8
    assert {w.kind for w in wraps} == {kind}
    assert all(w.tag_values("p") == [SESSION.public_key.hex()] for w in wraps)
    assert len({w.pubkey for w in wraps}) == 8  # a fresh wrapper key each
    assert any(w.created_at < NOW for w in wraps) is backdated
    opened = nip59.unwrap(wraps[0], SESSION, expected_sender=CONTAINER.public_key)
    assert opened.rumor == rumors[0]
