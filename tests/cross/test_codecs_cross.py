"""cdvm/1 codec events against an independent implementation (rust-nostr's Python binding).

Every NIP-90 / NIP-89 / NIP-09 / kind-7100 event we build and sign verifies in nostr-sdk with the
same id, author, kind, content and tags; NIP-13 difficulty and NIP-01 coordinates agree; an event
nostr-sdk mines on top of a cdvm request (two nonce tags) parses and checks here.
"""

from __future__ import annotations

import json
from typing import Any

import nostr_sdk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.cdvm.kind7100 import Claims, ModelClaim, RuntimeClaim, build_attestation, parse_attestation
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip09 import build_deletion, parse_deletion
from dvm.nostr.nip13 import check_pow, leading_zero_bits, mine
from dvm.nostr.nip89 import Handler, ModelInfo, build_handler, handler_address, parse_handler
from dvm.nostr.nip90 import (
    ErrorReason,
    FeedbackStatus,
    build_job_feedback,
    build_job_request,
    build_job_result,
    parse_job_feedback,
    parse_job_request,
    parse_job_result,
)

USER = SecretKey(b"\x01" * 32)
PROVIDER = SecretKey(b"\x02" * 32)
CONTAINER = SecretKey(b"\x03" * 32)
SESSION = SecretKey(b"\x04" * 32)
AUX = bytes(32)
T = 1_700_000_000


def _same_in_nostr_sdk(ours: Event) -> nostr_sdk.Event:
    theirs = nostr_sdk.Event.from_json(ours.to_json())
    assert theirs.verify()
    assert theirs.id().to_hex() == ours.id
    assert theirs.author().to_hex() == ours.pubkey
    assert theirs.kind().as_u16() == ours.kind
    assert theirs.created_at().as_secs() == ours.created_at
    assert theirs.content() == ours.content
    assert [t.to_vec() for t in theirs.tags()] == [list(t) for t in ours.tags]
    assert json.loads(theirs.as_json()) == ours.to_dict()
    return theirs


def _request(**overrides: Any) -> Event:
    args: dict[str, Any] = {
        "requester": USER.public_key,
        "provider": PROVIDER.public_key,
        "tee": "sev-snp",
        "nonce": bytes(range(32)),
        "created_at": T,
        "params": [("model", "gemma-3-270m"), ("mode", "oneshot")],
        "session": SESSION.public_key,
        "relays": ["wss://relay.example", "ws://127.0.0.1:7777"],
        "expiration": T + 600,
    }
    args.update(overrides)
    return build_job_request(**args).sign(USER, aux_rand=AUX)


@settings(max_examples=30, deadline=None)
@given(
    params=st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=30), max_size=5),
    tee=st.text(min_size=1, max_size=24),
    kind=st.integers(5000, 5999),
)
def test_job_requests_verify_in_nostr_sdk(params: dict[str, str], tee: str, kind: int) -> None:
    ours = _request(params=list(params.items()), tee=tee, kind=kind)
    _same_in_nostr_sdk(ours)
    assert dict(parse_job_request(ours).params) == params


def test_job_result_verifies_in_nostr_sdk_with_its_embedded_request() -> None:
    request = parse_job_request(_request())
    ours = build_job_result(
        request, author=CONTAINER.public_key, ciphertext="AgAAAA==", created_at=T + 9
    ).sign(CONTAINER, aux_rand=AUX)
    theirs = _same_in_nostr_sdk(ours)
    embedded = next(t.to_vec()[1] for t in theirs.tags() if t.to_vec()[0] == "request")
    their_request = nostr_sdk.Event.from_json(embedded)
    assert their_request.verify()
    assert their_request.id().to_hex() == request.id
    assert theirs.kind().as_u16() == request.kind + 1000
    assert parse_job_result(ours).request.event == request.event


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (FeedbackStatus.PROCESSING, None),
        (FeedbackStatus.ERROR, ErrorReason.UNSUPPORTED_TEE),
        (FeedbackStatus.SUCCESS, None),
    ],
)
def test_job_feedback_verifies_in_nostr_sdk(
    status: FeedbackStatus, reason: ErrorReason | None
) -> None:
    ours = build_job_feedback(
        author=PROVIDER.public_key,
        request_id="ab" * 32,
        requester=USER.public_key,
        status=status,
        reason=reason,
        container=CONTAINER.public_key,
        destroyed=status is FeedbackStatus.SUCCESS,
        created_at=T,
        content="note",
    ).sign(PROVIDER, aux_rand=AUX)
    _same_in_nostr_sdk(ours)
    assert parse_job_feedback(ours).status is status


def test_handler_verifies_in_nostr_sdk_and_its_address_is_a_coordinate() -> None:
    handler = Handler(
        identifier="cdvm-node-1",
        kinds=(5050, 5051),
        name="Confidential DVM 🦙",
        about="jobs in SEV-SNP",
        tee=("sev-snp", "simulated"),
        models=(ModelInfo("gemma-3-270m", "llama-cpp", "ef" * 32),),
        nip90_params={"model": {"values": ["gemma-3-270m"]}},
    )
    ours = build_handler(handler, author_hex=PROVIDER.public_key.hex(), created_at=T).sign(
        PROVIDER, aux_rand=AUX
    )
    theirs = _same_in_nostr_sdk(ours)
    assert theirs.kind().is_addressable()
    address = handler_address(ours.pubkey, handler.identifier)
    coordinate = nostr_sdk.Coordinate.parse(address)
    assert coordinate.kind().as_u16() == 31990
    assert coordinate.public_key().to_hex() == PROVIDER.public_key.hex()
    assert coordinate.identifier() == "cdvm-node-1"
    assert parse_handler(ours) == handler


def test_deletion_of_the_announcement_verifies_in_nostr_sdk() -> None:
    address = handler_address(PROVIDER.public_key.hex(), "cdvm-node-1")
    ours = build_deletion(
        author_hex=PROVIDER.public_key.hex(),
        created_at=T,
        addresses=[address],
        kinds=[31990],
        reason="shutdown",
    ).sign(PROVIDER, aux_rand=AUX)
    _same_in_nostr_sdk(ours)
    assert parse_deletion(ours).addresses == (address,)


def test_attestation_verifies_in_nostr_sdk() -> None:
    claims = Claims(
        pubkey=CONTAINER.public_key.hex(),
        job="ab" * 32,
        nonce="cd" * 32,
        provider=PROVIDER.public_key.hex(),
        model=ModelClaim("gemma-3-270m", "ef" * 32),
        runtime=RuntimeClaim("0.1.0", "registry.example/cdvm@sha256:" + "01" * 32),
    )
    ours = build_attestation(
        claims=claims,
        recipient=SESSION.public_key,
        tee="simulated",
        expiration=T + 300,
        evidence=[{"type": "simulated", "report": "AAAA", "certs": ["x", "y"]}],
        initdata=b"policy",
        created_at=T,
    ).sign(CONTAINER, aux_rand=AUX)
    theirs = _same_in_nostr_sdk(ours)
    assert theirs.kind().is_regular()
    assert parse_attestation(ours).claims == claims


def test_nip13_difficulty_agrees_and_their_mining_keeps_the_cdvm_nonce() -> None:
    ours = mine(
        build_job_request(
            requester=USER.public_key,
            provider=PROVIDER.public_key,
            tee="simulated",
            nonce=bytes(range(32)),
            created_at=T,
            params=[("model", "m")],
        ),
        10,
    ).sign(USER, aux_rand=AUX)
    assert nostr_sdk.get_leading_zero_bits(bytes.fromhex(ours.id)) == leading_zero_bits(ours.id)
    _same_in_nostr_sdk(ours)

    unmined = build_job_request(
        requester=USER.public_key,
        provider=PROVIDER.public_key,
        tee="simulated",
        nonce=bytes(range(32)),
        created_at=T,
        params=[("model", "m")],
    )
    their_mined = nostr_sdk.UnsignedEvent.from_json(unmined.to_json()).mine(
        nostr_sdk.SingleThreadPow(), 10
    )
    signed = their_mined.sign(nostr_sdk.Keys.parse(USER.reveal_hex()))
    here = Event.from_json(signed.as_json())
    check_pow(here, 10)
    assert parse_job_request(here).nonce == bytes(range(32)).hex()
    assert leading_zero_bits(here.id) == nostr_sdk.get_leading_zero_bits(bytes.fromhex(here.id))


def test_unsigned_rumor_ids_agree() -> None:
    rumor = UnsignedEvent(
        USER.public_key.hex(),
        T,
        14,
        [["p", PROVIDER.public_key.hex()], ["chunk", "0", "2", "ab" * 32]],
        "x",
    )
    theirs = nostr_sdk.UnsignedEvent.from_json(rumor.to_json())
    assert theirs.id().to_hex() == rumor.id
