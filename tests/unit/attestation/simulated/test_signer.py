"""The simulated signer: SNP-ABI reports that the real AMD verifier accepts under its root."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from attestation.binding import host_data_for_initdata, report_data
from attestation.errors import ParseError, SignatureInvalid
from attestation.evidence import EvidenceType
from attestation.simulated.chain import SIMULATED_PRODUCT, SIMULATED_TCB, SimulatedChain
from attestation.simulated.signer import SimulatedTee
from attestation.snp.abi import GuestPolicy, SigningKey, parse_report, serialize_report
from attestation.snp.validate import DEFAULT_POLICY, validate
from attestation.snp.verify import verify_report

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
MEASUREMENT = hashlib.sha384(b"runtime").digest()
PUBKEY = bytes.fromhex("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
CLAIMS = {
    "pubkey": PUBKEY.hex(),
    "job": "11" * 32,
    "nonce": "22" * 32,
    "provider": "33" * 32,
    "model": {"name": "m", "sha256": "44" * 32},
    "runtime": {"version": "1", "image": "i"},
}


def verify(chain: SimulatedChain, raw: bytes) -> object:
    return verify_report(
        raw,
        now=NOW,
        vek=chain.der("vcek"),
        chain=(chain.der("ask"), chain.der("ark")),
        trusted_arks={SIMULATED_PRODUCT: frozenset({hashlib.sha256(chain.der("ark")).hexdigest()})},
    )


def test_report_verifies_with_the_hardware_code_path(chain: SimulatedChain) -> None:
    tee = SimulatedTee(chain, MEASUREMENT)
    raw = tee.report(report_data=b"\x07" * 64, host_data=b"\x08" * 32)
    verified = verify(chain, raw)
    report = verified.report  # type: ignore[attr-defined]
    assert report.measurement == MEASUREMENT
    assert report.report_data == b"\x07" * 64
    assert report.host_data == b"\x08" * 32
    assert report.key_info.signing_key == SigningKey.VCEK
    assert report.reported_tcb == SIMULATED_TCB
    assert report.chip_id == chain.chip_id
    assert report.product == SIMULATED_PRODUCT
    assert not report.policy.debug
    assert not report.policy.migrate_ma
    validate(verified, DEFAULT_POLICY)  # type: ignore[arg-type]
    assert serialize_report(report) == raw  # byte-for-byte the ABI format


def test_signing_is_deterministic(chain: SimulatedChain) -> None:
    tee = SimulatedTee(chain, MEASUREMENT)
    assert tee.report(report_data=bytes(64)) == tee.report(report_data=bytes(64))
    assert tee.report(report_data=bytes(64)) != tee.report(report_data=b"\x01" + bytes(63))


def test_a_flipped_byte_breaks_the_signature(chain: SimulatedChain) -> None:
    raw = bytearray(SimulatedTee(chain, MEASUREMENT).report(report_data=bytes(64)))
    raw[0x90] ^= 1  # MEASUREMENT
    with pytest.raises(SignatureInvalid):
        verify(chain, bytes(raw))


def test_policy_and_vmpl_are_the_callers(chain: SimulatedChain) -> None:
    raw = SimulatedTee(chain, MEASUREMENT).report(
        report_data=bytes(64), policy=GuestPolicy(debug=True), vmpl=2
    )
    report = parse_report(raw)
    assert report.policy.debug
    assert report.vmpl == 2


def test_attest_binds_key_claims_and_initdata(chain: SimulatedChain) -> None:
    item = SimulatedTee(chain, MEASUREMENT).attest(
        container_pubkey=PUBKEY, claims=CLAIMS, initdata=b"initdata"
    )
    assert item.type == EvidenceType.SIMULATED
    report = parse_report(item.report)
    assert report.report_data == report_data(PUBKEY, CLAIMS)
    assert report.host_data == host_data_for_initdata(b"initdata")
    assert item.ark == chain.der("ark")
    assert item.vek == chain.der("vcek")
    other = SimulatedTee(chain, MEASUREMENT).attest(container_pubkey=PUBKEY, claims=CLAIMS)
    assert parse_report(other.report).host_data == bytes(32)


def test_report_id_is_per_binding_unless_given(chain: SimulatedChain) -> None:
    tee = SimulatedTee(chain, MEASUREMENT)
    a = parse_report(tee.attest(container_pubkey=PUBKEY, claims=CLAIMS).report).report_id
    other = {**CLAIMS, "job": "55" * 32}
    b = parse_report(tee.attest(container_pubkey=PUBKEY, claims=other).report).report_id
    assert a != b
    fixed = tee.attest(container_pubkey=PUBKEY, claims=CLAIMS, report_id=b"\x09" * 32)
    assert parse_report(fixed.report).report_id == b"\x09" * 32


def test_measurement_must_be_48_bytes(chain: SimulatedChain) -> None:
    with pytest.raises(ParseError, match="48"):
        SimulatedTee(chain, b"\x00" * 32)
