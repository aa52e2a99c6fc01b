"""attestation.binding (DESIGN §3.4): known answer, round trip, each half tampered.

The known answer below was computed twice: by this module and, independently, by coreutils
(``{ printf 'cdvm/1 attestation\\0'; printf '%s' "$JSON"; } | sha256sum``). The container
reaches this module through ``dvm.cdvm.kind7100.report_data``; ``tests/unit/dvm/cdvm`` checks
that its claims arrive here as the canonical object.
"""

from __future__ import annotations

import contextlib
import hashlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attestation.binding import (
    CLAIMS_DOMAIN,
    REPORT_DATA_SIZE_BYTES,
    canonical_claims_json,
    claims_digest,
    gpu_nonce,
    host_data_for_initdata,
    report_data,
    verify_binding,
)
from attestation.errors import AttestationError, BindingMismatch, ParseError

PUBKEY = bytes.fromhex("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
CLAIMS = {
    "pubkey": PUBKEY.hex(),
    "job": "5c83da77af1dec6d7289834998ad7aafbd9e2191396d75ec3cc27f5a77226f36",
    "nonce": "00" * 32,
    "provider": "c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5",
    "model": {"sha256": "ab" * 32, "name": "gemma-3-270m \u00e9"},
    "runtime": {"version": "0.1.0", "image": "ghcr.io/x/cdvm@sha256:" + "cd" * 32},
}
CANONICAL = (
    '{"job":"5c83da77af1dec6d7289834998ad7aafbd9e2191396d75ec3cc27f5a77226f36",'
    '"model":{"name":"gemma-3-270m \u00e9","sha256":"'
    + "ab" * 32
    + '"},"nonce":"'
    + "00" * 32
    + '","provider":"c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5",'
    '"pubkey":"79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",'
    '"runtime":{"image":"ghcr.io/x/cdvm@sha256:' + "cd" * 32 + '","version":"0.1.0"}}'
).encode("utf-8")
DIGEST = bytes.fromhex("ede3f3b2bc2a98e9843130c160f9e055529bb04f67b475fbb55839e5ec52ead2")


def test_known_answer_canonical_json() -> None:
    assert canonical_claims_json(CLAIMS) == CANONICAL
    assert "é".encode() in CANONICAL  # ensure_ascii=False: UTF-8, not \u00e9


def test_known_answer_digest_and_report_data() -> None:
    assert CLAIMS_DOMAIN == b"cdvm/1 attestation\x00"
    assert claims_digest(CLAIMS) == DIGEST
    rd = report_data(PUBKEY, CLAIMS)
    assert rd == PUBKEY + DIGEST
    assert len(rd) == REPORT_DATA_SIZE_BYTES
    assert gpu_nonce(rd) == DIGEST


def test_key_order_does_not_matter() -> None:
    reordered = dict(reversed(list(CLAIMS.items())))
    assert claims_digest(reordered) == DIGEST


def test_round_trip_verifies() -> None:
    verify_binding(report_data(PUBKEY, CLAIMS), PUBKEY, CLAIMS)


def test_pubkey_half_tampered() -> None:
    rd = bytearray(report_data(PUBKEY, CLAIMS))
    rd[0] ^= 1
    with pytest.raises(BindingMismatch, match=r"REPORT_DATA\[0:32\]") as caught:
        verify_binding(bytes(rd), PUBKEY, CLAIMS)
    assert "[32:64]" not in str(caught.value)


def test_claims_half_tampered() -> None:
    rd = bytearray(report_data(PUBKEY, CLAIMS))
    rd[63] ^= 1
    with pytest.raises(BindingMismatch, match=r"REPORT_DATA\[32:64\]") as caught:
        verify_binding(bytes(rd), PUBKEY, CLAIMS)
    assert "[0:32]" not in str(caught.value)


def test_other_claims_are_a_claims_mismatch() -> None:
    other = {**CLAIMS, "job": "00" * 32}
    with pytest.raises(BindingMismatch, match=r"REPORT_DATA\[32:64\]"):
        verify_binding(report_data(PUBKEY, CLAIMS), PUBKEY, other)


def test_both_halves_tampered_names_both() -> None:
    other_key = bytes(32)
    with pytest.raises(BindingMismatch, match=r"\[0:32\].*\[32:64\]"):
        verify_binding(report_data(other_key, {**CLAIMS, "job": "x"}), PUBKEY, CLAIMS)


def test_claims_naming_another_key_are_refused() -> None:
    other_key = bytes.fromhex("c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5")
    claims = {**CLAIMS, "pubkey": other_key.hex()}
    with pytest.raises(BindingMismatch, match=r"claims\.pubkey") as caught:
        verify_binding(report_data(PUBKEY, claims), PUBKEY, claims)
    assert "REPORT_DATA" not in str(caught.value)
    without = {k: v for k, v in CLAIMS.items() if k != "pubkey"}
    with pytest.raises(BindingMismatch, match=r"claims\.pubkey is None"):
        verify_binding(report_data(PUBKEY, without), PUBKEY, without)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: report_data(PUBKEY[:31], CLAIMS), "31 bytes"),
        (lambda: gpu_nonce(bytes(63)), "63 bytes"),
        (lambda: verify_binding(bytes(65), PUBKEY, CLAIMS), "65 bytes"),
        (lambda: verify_binding(bytes(64), PUBKEY + b"\x00", CLAIMS), "33 bytes"),
        (lambda: claims_digest({"x": math.nan}), "not canonical JSON"),
        (lambda: claims_digest({"x": b"bytes"}), "not canonical JSON"),
        (lambda: claims_digest({"x": "\ud800"}), "not valid Unicode"),
    ],
)
def test_malformed_inputs_are_parse_errors(call, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        call()


def test_host_data_is_sha256_of_initdata() -> None:
    initdata = b'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"job" = "abc"\n'
    assert host_data_for_initdata(initdata) == hashlib.sha256(initdata).digest()
    assert host_data_for_initdata(b"") == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(), json_values, max_size=5), st.binary(min_size=32, max_size=32))
def test_round_trip_any_claims(claims, key) -> None:
    claims = {**claims, "pubkey": key.hex()}
    rd = report_data(key, claims)
    verify_binding(rd, key, claims)
    assert gpu_nonce(rd) == claims_digest(claims)


@given(st.binary(max_size=80), st.binary(max_size=40))
def test_garbage_raises_only_our_errors(rd: bytes, key: bytes) -> None:
    with contextlib.suppress(AttestationError):
        verify_binding(rd, key, CLAIMS)
