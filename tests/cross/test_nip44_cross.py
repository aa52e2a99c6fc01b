"""NIP-44 v2 and legacy NIP-04 against an independent implementation (rust-nostr's binding).

Both directions: what we encrypt, nostr-sdk decrypts; what nostr-sdk encrypts, we decrypt.
nostr-sdk 0.45.1 refuses to *encrypt* more than 65408 bytes (65536 - 128, its own cap) and has
no extended length prefix, so sizes stay at or below that on its side; our 65535-byte payloads
(the largest u16 length) are still checked to open there. Example counts are modest: the
binding runs at a few MB/s.
"""

from __future__ import annotations

import hashlib

import nostr_sdk
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.nostr import nip04, nip44
from dvm.nostr.keys import SecretKey

NOSTR_SDK_MAX_PLAINTEXT_BYTES = 65408
BOUNDARIES = (32, 64, 256, 1024, NOSTR_SDK_MAX_PLAINTEXT_BYTES)
NEAR_BOUNDARY = sorted({n + d for n in BOUNDARIES for d in (-1, 0, 1)} - {65409})

seeds = st.integers(min_value=1, max_value=2**255)
texts = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=200)


def _pair(seed_a: int, seed_b: int) -> tuple[SecretKey, SecretKey]:
    return (
        SecretKey(hashlib.sha256(seed_a.to_bytes(32, "big")).digest()),
        SecretKey(hashlib.sha256(b"b" + seed_b.to_bytes(32, "big")).digest()),
    )


def _theirs(secret: SecretKey) -> tuple[nostr_sdk.SecretKey, nostr_sdk.PublicKey]:
    return (
        nostr_sdk.SecretKey.parse(secret.reveal_hex()),
        nostr_sdk.PublicKey.parse(secret.public_key.hex()),
    )


def _sized_text(length: int, filler: str) -> str:
    width = len(filler.encode())
    text = "a" * (length % width) + filler * (length // width)
    assert len(text.encode()) == length
    return text


def _check_nip44_both_ways(alice: SecretKey, bob: SecretKey, plaintext: str, nonce: bytes) -> None:
    their_alice_sk, their_alice_pk = _theirs(alice)
    their_bob_sk, their_bob_pk = _theirs(bob)
    ours = nip44.encrypt(plaintext, nip44.get_conversation_key(alice, bob.public_key), nonce=nonce)
    assert nostr_sdk.nip44_decrypt(their_bob_sk, their_alice_pk, ours) == plaintext
    theirs = nostr_sdk.nip44_encrypt(
        their_alice_sk, their_bob_pk, plaintext, nostr_sdk.Nip44Version.V2
    )
    assert nip44.decrypt(theirs, nip44.get_conversation_key(bob, alice.public_key)) == plaintext


@settings(max_examples=60, deadline=None)
@given(seed_a=seeds, seed_b=seeds, plaintext=texts, nonce=st.binary(min_size=32, max_size=32))
def test_nip44_text_both_ways(seed_a: int, seed_b: int, plaintext: str, nonce: bytes) -> None:
    alice, bob = _pair(seed_a, seed_b)
    _check_nip44_both_ways(alice, bob, plaintext, nonce)


@settings(max_examples=25, deadline=None)
@given(
    length=st.sampled_from(NEAR_BOUNDARY),
    filler=st.sampled_from(["a", "ß", "€", "🦄"]),
    nonce=st.binary(min_size=32, max_size=32),
)
def test_nip44_sizes_near_padding_boundaries_both_ways(
    length: int, filler: str, nonce: bytes
) -> None:
    alice, bob = _pair(7, 11)
    _check_nip44_both_ways(alice, bob, _sized_text(length, filler), nonce)


def test_nip44_largest_u16_length_opens_in_nostr_sdk() -> None:
    alice, bob = _pair(3, 5)
    their_bob_sk, their_alice_pk = _theirs(bob)[0], _theirs(alice)[1]
    plaintext = _sized_text(65535, "€")
    ours = nip44.encrypt(
        plaintext, nip44.get_conversation_key(alice, bob.public_key), nonce=bytes(32)
    )
    assert nostr_sdk.nip44_decrypt(their_bob_sk, their_alice_pk, ours) == plaintext


@settings(max_examples=25, deadline=None)
@given(seed_a=seeds, seed_b=seeds)
def test_nip44_conversation_key_matches_through_payloads(seed_a: int, seed_b: int) -> None:
    # nostr-sdk exposes no conversation key; equal keys show as payloads that open both ways
    # from each side's own derivation, including the self-conversation (a == b).
    alice, bob = _pair(seed_a, seed_b)
    _check_nip44_both_ways(alice, alice, "self", bytes(32))
    _check_nip44_both_ways(bob, alice, "reverse", bytes(32))


@settings(max_examples=40, deadline=None)
@given(
    seed_a=seeds,
    seed_b=seeds,
    plaintext=st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    iv=st.binary(min_size=16, max_size=16),
)
def test_nip04_both_ways(seed_a: int, seed_b: int, plaintext: str, iv: bytes) -> None:
    alice, bob = _pair(seed_a, seed_b)
    their_alice_sk, their_alice_pk = _theirs(alice)
    their_bob_sk, their_bob_pk = _theirs(bob)
    ours = nip04.encrypt(plaintext, alice, bob.public_key, iv=iv)
    assert nostr_sdk.nip04_decrypt(their_bob_sk, their_alice_pk, ours) == plaintext
    theirs = nostr_sdk.nip04_encrypt(their_alice_sk, their_bob_pk, plaintext)
    assert nip04.decrypt(theirs, bob, alice.public_key) == plaintext
