"""attestation.binding (DESIGN §3.4, docs/protocol.md "Binding"): known answer, round trip,
key, claims and form tampered.

The pinned digest below was computed independently of this module, by coreutils
(``{ printf 'cdvm/1 attestation\\0'; printf '%s' "$PUBKEY_HEX" | xxd -r -p;
printf '%s' "$JSON"; } | sha256sum``), and the test recomputes it with ``hashlib`` by hand.
The container reaches this module through ``dvm.cdvm.kind7100.report_data``;
``tests/unit/dvm/cdvm`` checks that its claims arrive here as the canonical object.
"""

from __future__ import annotations

import contextlib
import hashlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attestation.binding import (
    BINDING_DOMAIN,
    REPORT_DATA_SIZE_BYTES,
    binding_digest,
    canonical_claims_json,
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
DIGEST = bytes.fromhex("34484fd197563add85a5425951fe7daf7f1b05045ababb060ffc5eb55e99eb8b")


def test_known_answer_canonical_json() -> None:
    assert canonical_claims_json(CLAIMS) == CANONICAL
    assert "é".encode() in CANONICAL  # ensure_ascii=False: UTF-8, not \u00e9


def test_known_answer_digest_and_report_data() -> None:
    assert BINDING_DOMAIN == b"cdvm/1 attestation\x00"
    by_hand = hashlib.sha256(b"cdvm/1 attestation\x00" + PUBKEY + CANONICAL).digest()
    assert by_hand == DIGEST
    assert binding_digest(PUBKEY, CLAIMS) == DIGEST
    rd = report_data(PUBKEY, CLAIMS)
    assert rd == b"34484fd197563add85a5425951fe7daf7f1b05045ababb060ffc5eb55e99eb8b"
    assert len(rd) == REPORT_DATA_SIZE_BYTES
    assert gpu_nonce(rd) == DIGEST


def test_report_data_is_text_the_attestation_agent_carries() -> None:
    """ASCII, so UTF-8 the agent takes as runtime_data; exactly 64 bytes, so no zero padding."""
    rd = report_data(PUBKEY, CLAIMS)
    assert rd.decode("utf-8").encode("utf-8") == rd
    assert rd.isascii()
    assert b"\0" not in rd


def test_key_order_does_not_matter() -> None:
    reordered = dict(reversed(list(CLAIMS.items())))
    assert binding_digest(PUBKEY, reordered) == DIGEST


def test_round_trip_verifies() -> None:
    verify_binding(report_data(PUBKEY, CLAIMS), PUBKEY, CLAIMS)


def test_tampered_report_data_is_refused() -> None:
    rd = bytearray(report_data(PUBKEY, CLAIMS))
    rd[0] = ord("0") if rd[0] != ord("0") else ord("1")
    with pytest.raises(BindingMismatch, match="not the binding of the container key"):
        verify_binding(bytes(rd), PUBKEY, CLAIMS)


def test_another_key_is_refused() -> None:
    other_key = bytes.fromhex("c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5")
    with pytest.raises(BindingMismatch, match="not the binding") as caught:
        verify_binding(report_data(other_key, CLAIMS), PUBKEY, CLAIMS)
    assert "claims.pubkey" not in str(caught.value)


def test_other_claims_are_refused() -> None:
    other = {**CLAIMS, "job": "00" * 32}
    with pytest.raises(BindingMismatch, match="not the binding"):
        verify_binding(report_data(PUBKEY, CLAIMS), PUBKEY, other)


def test_key_and_claims_cannot_trade_bytes() -> None:
    """C is a fixed-length input: the same bytes split differently give another digest."""
    assert binding_digest(PUBKEY, {"a": "b"}) != binding_digest(bytes(32), {"a": "b"})
    assert report_data(PUBKEY, {"a": "b"}) != report_data(PUBKEY, {"a": "c"})


@pytest.mark.parametrize(
    "form",
    [
        PUBKEY + DIGEST,  # the former raw form: key || digest
        DIGEST.hex().upper().encode(),  # uppercase hex
        DIGEST.hex()[:63].encode() + b"\0",  # zero-padded, as the agent pads shorter text
        b" " + DIGEST.hex()[1:].encode(),
    ],
)
def test_other_forms_are_refused(form: bytes) -> None:
    with pytest.raises(BindingMismatch, match="not the cdvm/1 form"):
        verify_binding(form, PUBKEY, CLAIMS)
    with pytest.raises(ParseError, match="not 64 lowercase hex"):
        gpu_nonce(form)


def test_claims_naming_another_key_are_refused() -> None:
    other_key = bytes.fromhex("c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5")
    claims = {**CLAIMS, "pubkey": other_key.hex()}
    with pytest.raises(BindingMismatch, match=r"claims\.pubkey") as caught:
        verify_binding(report_data(PUBKEY, claims), PUBKEY, claims)
    assert "REPORT_DATA" not in str(caught.value)
    without = {k: v for k, v in CLAIMS.items() if k != "pubkey"}
    with pytest.raises(BindingMismatch, match=r"claims\.pubkey is None"):
        verify_binding(report_data(PUBKEY, without), PUBKEY, without)


def test_every_failure_is_named() -> None:
    other_key = bytes(32)
    claims = {**CLAIMS, "pubkey": other_key.hex()}
    with pytest.raises(BindingMismatch, match=r"not the binding.*claims\.pubkey"):
        verify_binding(report_data(PUBKEY, CLAIMS), PUBKEY, claims)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: report_data(PUBKEY[:31], CLAIMS), "31 bytes"),
        (lambda: gpu_nonce(bytes(63)), "63 bytes"),
        (lambda: verify_binding(bytes(65), PUBKEY, CLAIMS), "65 bytes"),
        (lambda: verify_binding(bytes(64), PUBKEY + b"\x00", CLAIMS), "33 bytes"),
        (lambda: binding_digest(PUBKEY, {"x": math.nan}), "not canonical JSON"),
        (lambda: binding_digest(PUBKEY, {"x": b"bytes"}), "not canonical JSON"),
        (lambda: binding_digest(PUBKEY, {"x": "\ud800"}), "not valid Unicode"),
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
    assert gpu_nonce(rd) == binding_digest(key, claims)
    assert rd == binding_digest(key, claims).hex().encode("ascii")


@given(st.binary(max_size=80), st.binary(max_size=40))
def test_garbage_raises_only_our_errors(rd: bytes, key: bytes) -> None:
    with contextlib.suppress(AttestationError):
        verify_binding(rd, key, CLAIMS)
