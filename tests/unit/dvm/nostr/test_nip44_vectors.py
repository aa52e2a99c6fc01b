"""NIP-44 v2 known-answer tests: every case of the official vector file, plus the current spec's
extended-prefix rows.

The vector file is paulmillr/nip44 ``nip44.vectors.json`` (its sha256 is the one 44.md
publishes). It predates the extended length prefix (nips PR #1907): its
``invalid.encrypt_msg_lengths`` still lists 65536, 100000 and 10000000, which the current text
allows. Those rows are asserted here to encrypt and round-trip instead; only 0 stays invalid.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from dvm.nostr import nip44
from dvm.nostr.errors import DecryptionError, EncryptionError, InvalidKeyError
from dvm.nostr.keys import PublicKey, SecretKey

VECTORS_PATH = Path(__file__).parents[3] / "vectors" / "nip44.vectors.json"
VECTORS_SHA256 = "269ed0f69e4c192512cc779e78c555090cebc7c785b609e338a62afc3ce25040"
V2: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["v2"]
VALID = V2["valid"]
INVALID = V2["invalid"]

# Lengths the file calls invalid that the current 44.md allows (extended prefix).
OBSOLETE_INVALID_LENGTHS = (65536, 100000, 10000000)


def test_vector_file_is_the_one_the_spec_pins() -> None:
    assert hashlib.sha256(VECTORS_PATH.read_bytes()).hexdigest() == VECTORS_SHA256


def test_vector_file_has_the_expected_case_counts() -> None:
    # A silently truncated file would otherwise make the parametrised tests pass vacuously.
    counts = {f"valid.{k}": len(v) for k, v in VALID.items()}
    counts |= {f"invalid.{k}": len(v) for k, v in INVALID.items()}
    assert counts == {
        "valid.get_conversation_key": 35,
        "valid.get_message_keys": 2,
        "valid.calc_padded_len": 24,
        "valid.encrypt_decrypt": 10,
        "valid.encrypt_decrypt_long_msg": 3,
        "invalid.encrypt_msg_lengths": 4,
        "invalid.get_conversation_key": 8,
        "invalid.decrypt": 12,
    }


@pytest.mark.parametrize("case", VALID["get_conversation_key"])
def test_get_conversation_key(case: dict[str, str]) -> None:
    key = nip44.get_conversation_key(
        SecretKey.from_hex(case["sec1"]), PublicKey.from_hex(case["pub2"])
    )
    assert key.reveal_bytes().hex() == case["conversation_key"]


def _message_key_cases() -> list[tuple[str, dict[str, str]]]:
    block = VALID["get_message_keys"]
    return [(block["conversation_key"], keys) for keys in block["keys"]]


@pytest.mark.parametrize(("conversation_key", "case"), _message_key_cases())
def test_get_message_keys(conversation_key: str, case: dict[str, str]) -> None:
    keys = nip44.get_message_keys(
        nip44.ConversationKey(bytes.fromhex(conversation_key)), bytes.fromhex(case["nonce"])
    )
    assert keys.chacha_key.hex() == case["chacha_key"]
    assert keys.chacha_nonce.hex() == case["chacha_nonce"]
    assert keys.hmac_key.hex() == case["hmac_key"]


@pytest.mark.parametrize(("unpadded", "padded"), VALID["calc_padded_len"])
def test_calc_padded_len(unpadded: int, padded: int) -> None:
    assert nip44.calc_padded_len(unpadded) == padded


@pytest.mark.parametrize("case", VALID["encrypt_decrypt"])
def test_encrypt_decrypt(case: dict[str, str]) -> None:
    sec1, sec2 = SecretKey.from_hex(case["sec1"]), SecretKey.from_hex(case["sec2"])
    key_12 = nip44.get_conversation_key(sec1, sec2.public_key)
    assert key_12.reveal_bytes().hex() == case["conversation_key"]
    payload = nip44.encrypt(case["plaintext"], key_12, nonce=bytes.fromhex(case["nonce"]))
    assert payload == case["payload"]
    key_21 = nip44.get_conversation_key(sec2, sec1.public_key)
    assert key_21 == key_12
    assert nip44.decrypt(payload, key_21) == case["plaintext"]


@pytest.mark.parametrize("case", VALID["encrypt_decrypt_long_msg"])
def test_encrypt_decrypt_long_msg(case: dict[str, Any]) -> None:
    key = nip44.ConversationKey(bytes.fromhex(case["conversation_key"]))
    plaintext = case["pattern"] * case["repeat"]
    assert hashlib.sha256(plaintext.encode("utf-8")).hexdigest() == case["plaintext_sha256"]
    payload = nip44.encrypt(plaintext, key, nonce=bytes.fromhex(case["nonce"]))
    assert hashlib.sha256(payload.encode("ascii")).hexdigest() == case["payload_sha256"]
    assert nip44.decrypt(payload, key) == plaintext


@pytest.mark.parametrize("case", INVALID["get_conversation_key"], ids=lambda c: c["note"])
def test_invalid_get_conversation_key(case: dict[str, str]) -> None:
    with pytest.raises(InvalidKeyError):
        nip44.get_conversation_key(
            SecretKey.from_hex(case["sec1"]), PublicKey.from_hex(case["pub2"])
        )


@pytest.mark.parametrize("case", INVALID["decrypt"], ids=lambda c: c["note"])
def test_invalid_decrypt(case: dict[str, str]) -> None:
    key = nip44.ConversationKey(bytes.fromhex(case["conversation_key"]))
    with pytest.raises(DecryptionError) as info:
        nip44.decrypt(case["payload"], key)
    # One message for every reason: no oracle.
    assert str(info.value) == "NIP-44 payload could not be decrypted"


def test_invalid_encrypt_msg_lengths_partition() -> None:
    # The file lists exactly the lengths below; only 0 is still invalid under the current text.
    assert sorted(INVALID["encrypt_msg_lengths"]) == [0, *OBSOLETE_INVALID_LENGTHS]


def test_zero_length_plaintext_is_still_invalid() -> None:
    assert 0 in INVALID["encrypt_msg_lengths"]
    key = nip44.ConversationKey(bytes(range(32)))
    with pytest.raises(EncryptionError):
        nip44.encrypt("", key, nonce=bytes(32))
    with pytest.raises(EncryptionError):
        nip44.calc_padded_len(0)


@pytest.mark.parametrize("length", OBSOLETE_INVALID_LENGTHS)
def test_formerly_invalid_lengths_now_encrypt_and_round_trip(length: int) -> None:
    assert length in INVALID["encrypt_msg_lengths"]
    key = nip44.ConversationKey(hashlib.sha256(b"extended %d" % length).digest())
    plaintext = "z" * length
    payload = nip44.encrypt(plaintext, key, nonce=hashlib.sha256(b"nonce").digest())
    assert len(payload) == nip44.payload_chars_for(length)
    limit = max(nip44.DEFAULT_MAX_PAYLOAD_CHARS, nip44.payload_chars_for(length))
    assert nip44.decrypt(payload, key, max_payload_chars=limit) == plaintext


# 44.md's padding rows around the extended-prefix threshold: (plaintext length, the length
# prefix the padded blob starts with, calc_padded_len). 65535 is the last u16 length; 65536 is
# extended_prefix_threshold; at 65537 the padding moves to the 2**17 bucket (chunk 16384).
EXTENDED_PREFIX_ROWS = (
    (65535, "ffff", 65536),
    (65536, "000000010000", 65536),
    (65537, "000000010001", 81920),
)


@pytest.mark.parametrize(("length", "prefix_hex", "padded_len"), EXTENDED_PREFIX_ROWS)
def test_extended_prefix_rows(length: int, prefix_hex: str, padded_len: int) -> None:
    plaintext = "x" * length
    assert nip44.calc_padded_len(length) == padded_len
    padded = nip44.pad(plaintext)
    prefix = bytes.fromhex(prefix_hex)
    assert padded[: len(prefix)] == prefix
    assert len(padded) == len(prefix) + padded_len
    assert padded[len(prefix) : len(prefix) + length] == plaintext.encode()
    assert padded[len(prefix) + length :] == bytes(padded_len - length)
    assert nip44.unpad(padded) == plaintext
    key = nip44.ConversationKey(
        bytes.fromhex(VALID["encrypt_decrypt_long_msg"][0]["conversation_key"])
    )
    payload = nip44.encrypt(plaintext, key, nonce=bytes(32))
    assert nip44.decrypt(payload, key) == plaintext


def test_extended_prefix_for_a_short_length_is_refused() -> None:
    # A canonical 5-byte message re-encoded with the 6-byte prefix: unambiguous encodings only.
    canonical = nip44.pad("hello")
    non_canonical = b"\x00\x00" + (5).to_bytes(4, "big") + canonical[2:]
    with pytest.raises(DecryptionError):
        nip44.unpad(non_canonical)
