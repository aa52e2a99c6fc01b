"""Keys: range checks, redaction, wipe, raw ECDH."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from dvm.nostr.errors import InvalidKeyError, SignatureError
from dvm.nostr.keys import PublicKey, SecretKey, ecdh_x

ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECRET_HEX = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"


@pytest.mark.parametrize("value", [0, ORDER, ORDER + 1, 2**256 - 1])
def test_secret_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(InvalidKeyError, match="out of range"):
        SecretKey(value.to_bytes(32, "big"))


def test_secret_wrong_length() -> None:
    with pytest.raises(InvalidKeyError):
        SecretKey(b"\x01" * 31)


def test_known_public_key() -> None:
    # NIP-19's example pair (nsec1vl029... -> npub10elfcs...).
    key = SecretKey.from_hex(SECRET_HEX)
    assert key.public_key.hex() == (
        "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e"
    )


def test_repr_and_str_redact() -> None:
    key = SecretKey.from_hex(SECRET_HEX)
    for text in (repr(key), str(key), f"{key}", f"{[key]}"):
        assert SECRET_HEX not in text
        assert "sensitive" in text


def test_wipe_zeroes_and_blocks_use() -> None:
    key = SecretKey.from_hex(SECRET_HEX)
    key.wipe()
    assert key.reveal_bytes() == bytes(32)
    with pytest.raises(InvalidKeyError, match="wiped"):
        key.sign_schnorr(bytes(32), aux_rand=bytes(32))
    with pytest.raises(InvalidKeyError, match="wiped"):
        ecdh_x(key, SecretKey(b"\x02" * 32).public_key)


def test_generate_uses_the_given_source_and_retries_out_of_range() -> None:
    draws = iter([bytes(32), (ORDER + 5).to_bytes(32, "big"), b"\x05" * 32])
    key = SecretKey.generate(lambda n: next(draws))
    assert key.reveal_bytes() == b"\x05" * 32


def test_generate_gives_up_on_a_broken_source() -> None:
    with pytest.raises(InvalidKeyError):
        SecretKey.generate(bytes)


def test_secret_keys_compare_without_hashing() -> None:
    a, b = SecretKey(b"\x03" * 32), SecretKey(b"\x03" * 32)
    assert a == b
    assert a != SecretKey(b"\x04" * 32)
    with pytest.raises(TypeError):
        hash(a)


@pytest.mark.parametrize("value", ["", "zz" * 32, "AB" * 32, "00" * 31, "00" * 33, "00" * 32])
def test_public_from_hex_rejects(value: str) -> None:
    with pytest.raises(InvalidKeyError):
        PublicKey.from_hex(value)


def test_signature_wrong_length() -> None:
    key = SecretKey(b"\x03" * 32)
    with pytest.raises(SignatureError):
        key.public_key.verify_schnorr(b"\x00" * 63, bytes(32))


def test_aux_rand_length_is_checked() -> None:
    with pytest.raises(InvalidKeyError):
        SecretKey(b"\x03" * 32).sign_schnorr(bytes(32), aux_rand=b"short")


@given(
    a=st.integers(min_value=1, max_value=ORDER - 1),
    b=st.integers(min_value=1, max_value=ORDER - 1),
)
def test_ecdh_x_is_symmetric_and_unhashed(a: int, b: int) -> None:
    ka, kb = SecretKey(a.to_bytes(32, "big")), SecretKey(b.to_bytes(32, "big"))
    shared = ecdh_x(ka, kb.public_key)
    assert shared == ecdh_x(kb, ka.public_key)
    # Independent check with `cryptography`'s ECDH on the even-y lift of each x-only key:
    # its output is the raw x, never hashed.
    peer = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256K1(), kb.public_key.to_point_bytes()
    )
    theirs = ec.derive_private_key(a, ec.SECP256K1()).exchange(ec.ECDH(), peer)
    assert shared == theirs
    assert shared != hashlib.sha256(b"\x02" + shared).digest()
