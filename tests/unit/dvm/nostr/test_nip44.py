"""API and property tests for NIP-44 v2 (known answers live in test_nip44_vectors.py)."""

from __future__ import annotations

import base64
import binascii
import hashlib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dvm.nostr import nip44
from dvm.nostr.errors import DecryptionError, EncryptionError, InvalidKeyError, NostrError
from dvm.nostr.keys import SecretKey

ALICE = SecretKey(hashlib.sha256(b"alice").digest())
BOB = SecretKey(hashlib.sha256(b"bob").digest())
KEY = nip44.get_conversation_key(ALICE, BOB.public_key)
NONCE = hashlib.sha256(b"nonce").digest()
MESSAGE = "attested hello, ünïcødé 🦄"
PAYLOAD = nip44.encrypt(MESSAGE, KEY, nonce=NONCE)

# Lengths where the padding or the prefix changes: each boundary, one below and one above.
BOUNDARIES = (32, 64, 256, 1024, 65535, 65536)
NEAR_BOUNDARY = sorted({n + d for n in BOUNDARIES for d in (-1, 0, 1)})


def test_public_surface() -> None:
    assert set(nip44.__all__) == {
        "DEFAULT_MAX_PAYLOAD_CHARS",
        "DEFAULT_MAX_PLAINTEXT_BYTES",
        "EXTENDED_PREFIX_THRESHOLD_BYTES",
        "MAX_PLAINTEXT_BYTES",
        "MIN_PAYLOAD_CHARS",
        "MIN_PLAINTEXT_BYTES",
        "VERSION",
        "ConversationKey",
        "MessageKeys",
        "calc_padded_len",
        "decrypt",
        "encrypt",
        "get_conversation_key",
        "get_message_keys",
        "pad",
        "payload_chars_for",
        "unpad",
    }
    for name in nip44.__all__:
        assert hasattr(nip44, name), name


def test_conversation_key_is_symmetric() -> None:
    assert nip44.get_conversation_key(BOB, ALICE.public_key) == KEY
    assert nip44.get_conversation_key(ALICE, ALICE.public_key) != KEY


def test_conversation_key_repr_redacts() -> None:
    secret_hex = KEY.reveal_bytes().hex()
    for text in (repr(KEY), str(KEY), f"{KEY}", repr([KEY])):
        assert "<sensitive>" in text
        assert secret_hex not in text
        assert secret_hex[:8] not in text
    keys = nip44.get_message_keys(KEY, NONCE)
    assert "<sensitive>" in repr(keys)
    for part in (keys.chacha_key, keys.chacha_nonce, keys.hmac_key):
        assert part.hex() not in repr(keys)


def test_conversation_key_rejects_wrong_length() -> None:
    for raw in (b"", bytes(31), bytes(33)):
        with pytest.raises(EncryptionError):
            nip44.ConversationKey(raw)


def test_conversation_keys_are_not_hashable() -> None:
    with pytest.raises(TypeError):
        hash(KEY)


def test_wipe_zeroes_and_disables_the_key() -> None:
    key = nip44.get_conversation_key(ALICE, BOB.public_key)
    payload = nip44.encrypt("before wipe", key, nonce=NONCE)
    key.wipe()
    assert key._key == bytearray(32)
    with pytest.raises(EncryptionError):
        nip44.encrypt("after wipe", key, nonce=NONCE)
    with pytest.raises(DecryptionError):
        nip44.decrypt(payload, key)
    with pytest.raises(EncryptionError):
        key.reveal_bytes()


def test_payload_layout() -> None:
    raw = base64.b64decode(PAYLOAD, validate=True)
    assert raw[0] == nip44.VERSION
    assert raw[1:33] == NONCE
    assert len(raw) == 1 + 32 + 2 + nip44.calc_padded_len(len(MESSAGE.encode())) + 32
    assert len(PAYLOAD) == nip44.payload_chars_for(len(MESSAGE.encode()))


def test_encrypt_is_deterministic_in_the_nonce() -> None:
    assert nip44.encrypt(MESSAGE, KEY, nonce=NONCE) == PAYLOAD
    assert nip44.encrypt(MESSAGE, KEY, nonce=bytes(32)) != PAYLOAD


@pytest.mark.parametrize("nonce", [b"", bytes(31), bytes(33), bytearray(32), "0" * 32])
def test_encrypt_rejects_bad_nonce(nonce: object) -> None:
    with pytest.raises(EncryptionError):
        nip44.encrypt(MESSAGE, KEY, nonce=nonce)  # type: ignore[arg-type]


def test_encrypt_rejects_empty_and_unencodable_plaintext() -> None:
    with pytest.raises(EncryptionError):
        nip44.encrypt("", KEY, nonce=NONCE)
    with pytest.raises(EncryptionError):
        nip44.encrypt("lone \ud800 surrogate", KEY, nonce=NONCE)
    with pytest.raises(EncryptionError):
        nip44.encrypt(b"bytes", KEY, nonce=NONCE)  # type: ignore[arg-type]


def test_calc_padded_len_range() -> None:
    assert nip44.calc_padded_len(nip44.MAX_PLAINTEXT_BYTES) == 2**32
    with pytest.raises(EncryptionError):
        nip44.calc_padded_len(nip44.MAX_PLAINTEXT_BYTES + 1)
    with pytest.raises(EncryptionError):
        nip44.calc_padded_len(-1)


@given(st.integers(min_value=1, max_value=nip44.MAX_PLAINTEXT_BYTES))
def test_calc_padded_len_properties(length: int) -> None:
    padded = nip44.calc_padded_len(length)
    assert padded >= max(length, 32)
    # Never more than 1/8 (plus the 32-byte floor) of overhead: the scheme's leakage bound.
    assert padded <= max(32, length + length // 4 + 32)
    if padded <= nip44.MAX_PLAINTEXT_BYTES:
        assert nip44.calc_padded_len(padded) == padded  # a padded length is its own bucket


def test_default_bound_admits_exactly_the_default_plaintext() -> None:
    limit = nip44.DEFAULT_MAX_PLAINTEXT_BYTES
    assert nip44.payload_chars_for(limit) == nip44.DEFAULT_MAX_PAYLOAD_CHARS
    payload = nip44.encrypt("m" * limit, KEY, nonce=NONCE)
    assert len(payload) == nip44.DEFAULT_MAX_PAYLOAD_CHARS
    assert nip44.decrypt(payload, KEY) == "m" * limit
    bigger = nip44.encrypt("m" * (limit + 1), KEY, nonce=NONCE)
    with pytest.raises(DecryptionError):
        nip44.decrypt(bigger, KEY)
    assert nip44.decrypt(bigger, KEY, max_payload_chars=len(bigger)) == "m" * (limit + 1)


def test_max_is_enforced_before_base64_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def decoder_must_not_run(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("base64 decoder reached for an oversized payload")

    monkeypatch.setattr(binascii, "a2b_base64", decoder_must_not_run)
    huge = "A" * (64 * 1024 * 1024)
    with pytest.raises(DecryptionError):
        nip44.decrypt(huge, KEY)
    with pytest.raises(DecryptionError):
        nip44.decrypt("#" + huge, KEY)
    with pytest.raises(DecryptionError):
        nip44.decrypt(PAYLOAD, KEY, max_payload_chars=len(PAYLOAD) - 1)


def test_payload_at_the_max_is_accepted() -> None:
    assert nip44.decrypt(PAYLOAD, KEY, max_payload_chars=len(PAYLOAD)) == MESSAGE


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "#" + PAYLOAD[1:],
        "#",
        PAYLOAD[: nip44.MIN_PAYLOAD_CHARS - 4],
        PAYLOAD + "=",
        PAYLOAD + "====",
        PAYLOAD[:-4] + "QQ===",
        PAYLOAD + "\n",
        " " + PAYLOAD,
        PAYLOAD.replace("+", "-").replace("/", "_") if ("+" in PAYLOAD or "/" in PAYLOAD) else "?",
        base64.b64encode(b"\x01" + base64.b64decode(PAYLOAD)[1:]).decode(),
        base64.b64encode(b"\x03" + base64.b64decode(PAYLOAD)[1:]).decode(),
        base64.b64encode(base64.b64decode(PAYLOAD)[:-1]).decode(),
    ],
    ids=[
        "empty",
        "hash-prefix",
        "hash-only",
        "too-short",
        "extra-padding",
        "extra-padding-quad",
        "triple-padding",
        "newline",
        "leading-space",
        "urlsafe-alphabet",
        "version-1",
        "version-3",
        "truncated-mac",
    ],
)
def test_malformed_payloads_raise_decryption_error(payload: str) -> None:
    with pytest.raises(DecryptionError) as info:
        nip44.decrypt(payload, KEY)
    assert str(info.value) == "NIP-44 payload could not be decrypted"


def test_non_canonical_base64_tail_is_refused() -> None:
    # Find a payload whose last quad carries unused bits, then set them.
    for length in range(1, 200):
        payload = nip44.encrypt("q" * length, KEY, nonce=NONCE)
        if payload.endswith("=="):
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            last = alphabet.index(payload[-3])
            assert last & 0x0F == 0
            twisted = payload[:-3] + alphabet[last | 0x01] + "=="
            assert base64.b64decode(twisted) == base64.b64decode(payload)
            with pytest.raises(DecryptionError):
                nip44.decrypt(twisted, KEY)
            return
    pytest.fail("no payload with a '==' tail in the sampled lengths")


def test_decrypt_with_the_wrong_key_fails() -> None:
    other = nip44.get_conversation_key(ALICE, ALICE.public_key)
    with pytest.raises(DecryptionError):
        nip44.decrypt(PAYLOAD, other)


def test_mac_is_checked_before_decrypting(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = bytearray(base64.b64decode(PAYLOAD))
    raw[40] ^= 0x01  # a ciphertext byte
    tampered = base64.b64encode(bytes(raw)).decode()

    def chacha_must_not_run(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("decrypted before the MAC was verified")

    monkeypatch.setattr(nip44, "_chacha20", chacha_must_not_run)
    with pytest.raises(DecryptionError):
        nip44.decrypt(tampered, KEY)


text_strategy = st.text(
    alphabet=st.characters(codec="utf-8"),  # any encodable code point, non-ASCII included
    min_size=1,
    max_size=300,
)


@settings(max_examples=150)
@given(plaintext=text_strategy, nonce=st.binary(min_size=32, max_size=32))
def test_round_trip_text(plaintext: str, nonce: bytes) -> None:
    payload = nip44.encrypt(plaintext, KEY, nonce=nonce)
    assert nip44.decrypt(payload, nip44.get_conversation_key(BOB, ALICE.public_key)) == plaintext


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    length=st.sampled_from(NEAR_BOUNDARY),
    filler=st.sampled_from(["a", "é", "€", "🦄"]),
    nonce=st.binary(min_size=32, max_size=32),
)
def test_round_trip_near_padding_boundaries(length: int, filler: str, nonce: bytes) -> None:
    # Build exactly `length` UTF-8 bytes ending in a multi-byte character where possible.
    width = len(filler.encode())
    plaintext = "a" * (length % width) + filler * (length // width)
    assert len(plaintext.encode()) == length
    payload = nip44.encrypt(plaintext, KEY, nonce=nonce)
    assert len(payload) == nip44.payload_chars_for(length)
    assert nip44.decrypt(payload, KEY) == plaintext


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_tampering_any_character_is_detected(data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(PAYLOAD) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
    replacement = data.draw(st.sampled_from(alphabet).filter(lambda c: c != PAYLOAD[index]))
    tampered = PAYLOAD[:index] + replacement + PAYLOAD[index + 1 :]
    with pytest.raises(DecryptionError):
        nip44.decrypt(tampered, KEY)


@settings(max_examples=200)
@given(data=st.data())
def test_tampering_any_decoded_byte_is_detected(data: st.DataObject) -> None:
    raw = bytearray(base64.b64decode(PAYLOAD))
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(DecryptionError):
        nip44.decrypt(base64.b64encode(bytes(raw)).decode(), KEY)


@settings(max_examples=300)
@given(garbage=st.text(max_size=400))
@example(garbage="#" * 200)
@example(garbage="A" * 132)
@example(garbage="Ag" + "A" * 130)
def test_garbage_text_raises_only_decryption_error(garbage: str) -> None:
    with pytest.raises(DecryptionError):
        nip44.decrypt(garbage, KEY)


@settings(max_examples=300)
@given(garbage=st.binary(max_size=400))
def test_garbage_bytes_as_latin1_raise_only_decryption_error(garbage: bytes) -> None:
    with pytest.raises(DecryptionError):
        nip44.decrypt(garbage.decode("latin-1"), KEY)


@settings(max_examples=300)
@given(garbage=st.binary(min_size=99, max_size=400))
def test_garbage_valid_base64_raises_only_decryption_error(garbage: bytes) -> None:
    # Well-formed base64 with a version-2 byte: reaches the MAC check, which must refuse it.
    payload = base64.b64encode(b"\x02" + garbage[1:]).decode()
    with pytest.raises(DecryptionError):
        nip44.decrypt(payload, KEY)


@settings(max_examples=300)
@given(garbage=st.binary(max_size=300))
def test_unpad_garbage_raises_only_decryption_error(garbage: bytes) -> None:
    try:
        text = nip44.unpad(garbage)
    except DecryptionError:
        return
    # The rare well-formed blob must agree with pad() on everything but the padding bytes,
    # which the MAC (not unpad) protects.
    expected = nip44.pad(text)
    length = len(text.encode())
    meaningful = len(expected) - (nip44.calc_padded_len(length) - length)
    assert len(garbage) == len(expected)
    assert garbage[:meaningful] == expected[:meaningful]


def test_errors_are_nostr_errors() -> None:
    assert issubclass(DecryptionError, NostrError)
    assert issubclass(EncryptionError, NostrError)
    assert issubclass(InvalidKeyError, NostrError)
