"""Tests for legacy NIP-04 (interoperability only; cross-checked against nostr-sdk in
tests/cross/test_nip44_cross.py)."""

from __future__ import annotations

import base64
import binascii
import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dvm.nostr import nip04
from dvm.nostr.errors import DecryptionError, EncryptionError
from dvm.nostr.keys import SecretKey, ecdh_x

ALICE = SecretKey(hashlib.sha256(b"alice").digest())
BOB = SecretKey(hashlib.sha256(b"bob").digest())
IV = hashlib.sha256(b"iv").digest()[:16]
MESSAGE = "legacy hello, ünïcødé 🦄"
PAYLOAD = nip04.encrypt(MESSAGE, ALICE, BOB.public_key, iv=IV)


def test_public_surface() -> None:
    assert set(nip04.__all__) == {"DEFAULT_MAX_PAYLOAD_CHARS", "IV_SEPARATOR", "decrypt", "encrypt"}


def test_docstring_marks_it_legacy() -> None:
    assert nip04.__doc__ is not None
    assert "LEGACY" in nip04.__doc__
    assert "never uses NIP-04 for job data" in nip04.__doc__


def test_wire_format_is_aes_256_cbc_under_the_raw_shared_x() -> None:
    ciphertext_b64, iv_b64 = PAYLOAD.split("?iv=")
    assert base64.b64decode(iv_b64, validate=True) == IV
    ciphertext = base64.b64decode(ciphertext_b64, validate=True)
    assert len(ciphertext) % 16 == 0
    # Decrypt independently of the module: the key is the unhashed x, PKCS#7 padding.
    decryptor = Cipher(algorithms.AES(ecdh_x(BOB, ALICE.public_key)), modes.CBC(IV)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    pad_len = padded[-1]
    assert 1 <= pad_len <= 16
    assert padded[-pad_len:] == bytes([pad_len]) * pad_len
    assert padded[:-pad_len].decode("utf-8") == MESSAGE


def test_decrypt_from_either_side() -> None:
    assert nip04.decrypt(PAYLOAD, BOB, ALICE.public_key) == MESSAGE
    assert nip04.decrypt(PAYLOAD, ALICE, BOB.public_key) == MESSAGE


def test_empty_plaintext_round_trips() -> None:
    payload = nip04.encrypt("", ALICE, BOB.public_key, iv=IV)
    assert nip04.decrypt(payload, BOB, ALICE.public_key) == ""


@pytest.mark.parametrize("iv", [b"", bytes(15), bytes(17), bytearray(16), "0" * 16])
def test_encrypt_rejects_bad_iv(iv: object) -> None:
    with pytest.raises(EncryptionError):
        nip04.encrypt(MESSAGE, ALICE, BOB.public_key, iv=iv)  # type: ignore[arg-type]


def test_encrypt_rejects_unencodable_plaintext() -> None:
    with pytest.raises(EncryptionError):
        nip04.encrypt("lone \udc00 surrogate", ALICE, BOB.public_key, iv=IV)


def test_wrong_key_fails_or_garbles() -> None:
    carol = SecretKey(hashlib.sha256(b"carol").digest())
    # No MAC in NIP-04: a wrong key usually breaks the padding, and never yields the message.
    try:
        result = nip04.decrypt(PAYLOAD, carol, ALICE.public_key)
    except DecryptionError:
        return
    assert result != MESSAGE


def test_max_is_enforced_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def decoder_must_not_run(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("base64 decoder reached for an oversized payload")

    monkeypatch.setattr(binascii, "a2b_base64", decoder_must_not_run)
    with pytest.raises(DecryptionError):
        nip04.decrypt("A" * (nip04.DEFAULT_MAX_PAYLOAD_CHARS + 1), BOB, ALICE.public_key)
    with pytest.raises(DecryptionError):
        nip04.decrypt(PAYLOAD, BOB, ALICE.public_key, max_payload_chars=len(PAYLOAD) - 1)


@pytest.mark.parametrize(
    "payload",
    [
        "",
        PAYLOAD.split("?iv=")[0],
        PAYLOAD + "?iv=" + PAYLOAD.split("?iv=")[1],
        PAYLOAD.split("?iv=")[0] + "?iv=" + base64.b64encode(bytes(15)).decode(),
        base64.b64encode(bytes(15)).decode() + "?iv=" + PAYLOAD.split("?iv=")[1],
        "?iv=" + PAYLOAD.split("?iv=")[1],
        PAYLOAD.replace("?iv=", "?IV="),
        "*" + PAYLOAD,
    ],
    ids=["empty", "no-iv", "two-ivs", "short-iv", "partial-block", "no-ciphertext", "caps", "junk"],
)
def test_malformed_payloads_raise_decryption_error(payload: str) -> None:
    with pytest.raises(DecryptionError) as info:
        nip04.decrypt(payload, BOB, ALICE.public_key)
    assert str(info.value) == "NIP-04 payload could not be decrypted"


@settings(max_examples=100)
@given(
    plaintext=st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
    iv=st.binary(min_size=16, max_size=16),
)
def test_round_trip(plaintext: str, iv: bytes) -> None:
    payload = nip04.encrypt(plaintext, ALICE, BOB.public_key, iv=iv)
    assert nip04.decrypt(payload, BOB, ALICE.public_key) == plaintext


@settings(max_examples=300)
@given(garbage=st.text(max_size=300))
@example(garbage="AAAAAAAAAAAAAAAAAAAAAA==?iv=AAAAAAAAAAAAAAAAAAAAAA==")
def test_garbage_text_raises_only_decryption_error(garbage: str) -> None:
    try:
        nip04.decrypt(garbage, BOB, ALICE.public_key)
    except DecryptionError:
        return
    # Without a MAC, well-formed random ciphertext can decrypt; only well-formed input may.
    assert "?iv=" in garbage


@settings(max_examples=300)
@given(ciphertext=st.binary(min_size=16, max_size=96), iv=st.binary(min_size=16, max_size=16))
def test_garbage_ciphertext_raises_only_decryption_error(ciphertext: bytes, iv: bytes) -> None:
    payload = f"{base64.b64encode(ciphertext).decode()}?iv={base64.b64encode(iv).decode()}"
    try:
        result = nip04.decrypt(payload, BOB, ALICE.public_key)
    except DecryptionError:
        return
    assert isinstance(result, str)


@settings(max_examples=300)
@given(garbage=st.binary(max_size=300))
def test_garbage_bytes_as_latin1_raise_only_decryption_error(garbage: bytes) -> None:
    try:
        nip04.decrypt(garbage.decode("latin-1"), BOB, ALICE.public_key)
    except DecryptionError:
        return
    assert b"?iv=" in garbage
