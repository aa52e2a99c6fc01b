"""BIP-340 known-answer vectors through the functions the code actually uses.

All 19 rows run: ``SecretKey.sign_schnorr`` and ``PublicKey.verify_schnorr`` call
libsecp256k1's ``schnorrsig_sign_custom``/``schnorrsig_verify`` with the message length, so
rows 15-18 (messages of 0, 1, 17 and 100 bytes) need no skip.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from dvm.nostr.errors import InvalidKeyError, SignatureError
from dvm.nostr.keys import PublicKey, SecretKey

VECTORS = Path(__file__).parents[3] / "vectors" / "bip340.test-vectors.csv"
ROWS = list(csv.DictReader(VECTORS.read_text(encoding="utf-8").splitlines()))
SIGNING_ROWS = [r for r in ROWS if r["secret key"]]


def test_vector_file_is_the_published_one() -> None:
    assert len(ROWS) == 19
    assert [int(r["index"]) for r in ROWS] == list(range(19))
    # Rows with a secret key are signed too (0-3 and 15-18); the rest are verify-only.
    assert [int(r["index"]) for r in SIGNING_ROWS] == [0, 1, 2, 3, 15, 16, 17, 18]


@pytest.mark.parametrize("row", SIGNING_ROWS, ids=lambda r: f"row{r['index']}")
def test_sign(row: dict[str, str]) -> None:
    secret = SecretKey.from_hex(row["secret key"].lower())
    assert secret.public_key.raw == bytes.fromhex(row["public key"])
    signature = secret.sign_schnorr(
        bytes.fromhex(row["message"]), aux_rand=bytes.fromhex(row["aux_rand"])
    )
    assert signature == bytes.fromhex(row["signature"])


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"row{r['index']}")
def test_verify(row: dict[str, str]) -> None:
    message = bytes.fromhex(row["message"])
    signature = bytes.fromhex(row["signature"])
    expected = row["verification result"] == "TRUE"
    try:
        public = PublicKey.from_bytes(bytes.fromhex(row["public key"]))
    except InvalidKeyError:
        # Row 5: the public key is not on the curve. Parsing refuses it; verification must too.
        assert not expected
        with pytest.raises(SignatureError):
            PublicKey(bytes.fromhex(row["public key"])).verify_schnorr(signature, message)
        return
    if expected:
        public.verify_schnorr(signature, message)
    else:
        with pytest.raises(SignatureError):
            public.verify_schnorr(signature, message)


def test_rows_15_to_18_cover_non_32_byte_messages() -> None:
    lengths = {len(bytes.fromhex(r["message"])) for r in ROWS[15:19]}
    assert lengths == {0, 1, 17, 100}


def test_vector_file_digest() -> None:
    # A changed vector file must be noticed, not silently accepted.
    digest = hashlib.sha256(VECTORS.read_bytes()).hexdigest()
    assert digest == "34c9d1d9c3a88d524bc80778540dc43f8306ec249a7485293063c376db851c2d"
