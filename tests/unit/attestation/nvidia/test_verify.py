"""attestation.nvidia.verify: chain, signature, nonce and mode, on NVIDIA's sample and fakes."""

from __future__ import annotations

import contextlib
import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from attestation.errors import (
    AttestationError,
    BindingMismatch,
    ChainError,
    ParseError,
    PolicyViolation,
    SignatureInvalid,
)
from attestation.nvidia.roots import DEVICE_IDENTITY_CA_SHA256, corim_signing_root_ca
from attestation.nvidia.spdm import OpaqueFieldType, parse_gpu_report
from attestation.nvidia.verify import (
    GpuModeClaim,
    parse_cert_chain,
    verify_cert_chain,
    verify_gpu_evidence,
    verify_gpu_report,
)

NONCE = bytes(range(32))
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def _pem(certs) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


# --- NVIDIA's sample -------------------------------------------------------------------------


def test_sample_verifies(sample_report: bytes, sample_chain_pem: bytes, spdm) -> None:
    verified = verify_gpu_evidence(
        sample_report, sample_chain_pem, expected_nonce=spdm.sample_nonce, now=spdm.sample_now
    )
    assert verified.nonce == spdm.sample_nonce
    assert verified.driver_version == "550.90.07"
    assert verified.vbios_version == "96.00.9f.00.01"
    assert len(verified.blocks) == 64
    assert verified.operation == 0xFF
    assert "CN=GH100 A01 GSP FMC LF" in verified.leaf_subject
    assert verified.root_fingerprint_sha256 == DEVICE_IDENTITY_CA_SHA256
    assert verified.block(64) is not None
    assert verified.block(65) is None
    # The sample's opaque data carries no FEATURE_FLAG: it states no mode (see test_opaque).
    assert verified.cc_mode is GpuModeClaim.NOT_STATED
    assert verified.opaque_data.feature_flag is None
    assert verified.opaque(OpaqueFieldType.NVDEC0_STATUS) == b"\x55"


def test_wrong_expected_nonce_is_binding_mismatch(sample_report, sample_chain_pem, spdm) -> None:
    with pytest.raises(BindingMismatch, match="not the expected"):
        verify_gpu_evidence(
            sample_report,
            sample_chain_pem,
            expected_nonce=_flip(spdm.sample_nonce, 0),
            now=spdm.sample_now,
        )


def test_expected_nonce_of_wrong_length(sample_report, sample_chain_pem, spdm) -> None:
    with pytest.raises(BindingMismatch, match="16 bytes"):
        verify_gpu_evidence(
            sample_report, sample_chain_pem, expected_nonce=b"\x00" * 16, now=spdm.sample_now
        )


@pytest.mark.parametrize(
    "offset",
    [
        pytest.param(4, id="request-nonce"),
        pytest.param(37 + 8 + 4 + 20, id="measurement"),
        pytest.param(4117 - 200, id="opaque-data"),
        pytest.param(4117 - 96, id="signature-r"),
        pytest.param(4117 - 1, id="signature-s"),
    ],
)
def test_flipped_byte_is_signature_invalid(sample_report, sample_chain_pem, spdm, offset) -> None:
    with pytest.raises(SignatureInvalid):
        verify_gpu_evidence(
            _flip(sample_report, offset),
            sample_chain_pem,
            expected_nonce=spdm.sample_nonce,
            now=spdm.sample_now,
        )


def test_chain_without_root_still_chains_to_the_pin(sample_report, sample_chain, spdm) -> None:
    verified = verify_gpu_report(
        parse_gpu_report(sample_report),
        sample_chain[:4],
        expected_nonce=spdm.sample_nonce,
        now=spdm.sample_now,
    )
    assert verified.root_fingerprint_sha256 == DEVICE_IDENTITY_CA_SHA256


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        pytest.param(slice(0, 3), "not a pinned root", id="truncated-to-3"),
        pytest.param(slice(0, 1), "not a pinned root", id="leaf-only"),
        pytest.param(slice(0, 0), "empty", id="empty"),
        pytest.param(slice(4, 5), "only the root", id="root-only"),
        pytest.param(slice(1, 5), "is a CA", id="leaf-dropped"),
    ],
)
def test_truncated_chain_is_chain_error(sample_report, sample_chain, spdm, keep, message) -> None:
    with pytest.raises(ChainError, match=message):
        verify_gpu_report(
            parse_gpu_report(sample_report),
            sample_chain[keep],
            expected_nonce=spdm.sample_nonce,
            now=spdm.sample_now,
        )


def test_gapped_chain_is_chain_error(sample_chain, spdm) -> None:
    leaf, _brom, ica, gh100, root = sample_chain
    with pytest.raises(ChainError, match="does not validate"):
        verify_cert_chain([leaf, ica, gh100, root], now=spdm.sample_now)


@pytest.mark.parametrize("order", [(0, 2, 1, 3, 4), (0, 1, 2, 2, 3, 4)], ids=["swapped", "extra"])
def test_reordered_or_padded_chain_is_chain_error(sample_chain, spdm, order) -> None:
    """The path builder would find a way through; the supplied order must be the path."""
    with pytest.raises(ChainError, match="leaf-to-root order"):
        verify_cert_chain([sample_chain[i] for i in order], now=spdm.sample_now)


def test_sample_before_validity_is_chain_error(sample_chain) -> None:
    with pytest.raises(ChainError, match=r"certificate 2 .*not at 2022-02-28"):
        verify_cert_chain(sample_chain, now=datetime.datetime(2022, 2, 28, tzinfo=datetime.UTC))


def test_other_pinned_root_is_chain_error(sample_chain, spdm) -> None:
    with pytest.raises(ChainError, match="not a pinned root"):
        verify_cert_chain(
            sample_chain, now=spdm.sample_now, trusted_roots=[corim_signing_root_ca()]
        )


def test_naive_now_is_refused(sample_chain) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_cert_chain(sample_chain, now=datetime.datetime(2025, 1, 1))


def test_garbage_chain_pem_is_parse_error() -> None:
    with pytest.raises(ParseError, match="not PEM"):
        parse_cert_chain(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")


@given(st.binary(max_size=300))
def test_garbage_chain_raises_only_our_errors(data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        parse_cert_chain(data)


# --- a fake GPU: every path without NVIDIA's keys ---------------------------------------------


def test_fake_gpu_verifies_under_its_own_root(spdm, fake_signer) -> None:
    report = spdm.signed_report(fake_signer, NONCE, [spdm.block(1, b"\x07" * 48)])
    verified = verify_gpu_evidence(
        report,
        _pem(fake_signer.chain),
        expected_nonce=NONCE,
        now=NOW,
        trusted_roots=[fake_signer.root],
    )
    assert verified.block(1).value == b"\x07" * 48  # type: ignore[union-attr]
    assert verified.root_fingerprint_sha256 == fake_signer.root.fingerprint(hashes.SHA256())


def test_fake_gpu_is_not_trusted_by_default(spdm, fake_signer) -> None:
    report = spdm.signed_report(fake_signer, NONCE, [spdm.block(1, b"\x07" * 48)])
    with pytest.raises(ChainError, match="not a pinned root"):
        verify_gpu_evidence(report, _pem(fake_signer.chain), expected_nonce=NONCE, now=NOW)


def test_impostor_root_with_the_same_name_is_chain_error(spdm, fake_signer) -> None:
    impostor = spdm.make_signer()  # same subject names, different keys
    with pytest.raises(ChainError, match="does not validate"):
        verify_cert_chain(impostor.chain[:2], now=NOW, trusted_roots=[fake_signer.root])


def test_expired_leaf_is_chain_error(spdm) -> None:
    signer = spdm.make_signer(leaf_not_after=datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC))
    with pytest.raises(ChainError, match="certificate 0 "):
        verify_cert_chain(signer.chain, now=NOW, trusted_roots=[signer.root])


def test_leaf_without_p384_key_is_chain_error(spdm) -> None:
    signer = spdm.make_signer(leaf_curve=ec.SECP256R1())
    report = spdm.request(NONCE) + spdm.response([spdm.block(1, b"x")]) + b"\x01" * 96
    with pytest.raises(ChainError, match="P-384"):
        verify_gpu_evidence(
            report, _pem(signer.chain), expected_nonce=NONCE, now=NOW, trusted_roots=[signer.root]
        )


def test_signature_by_another_key_is_signature_invalid(spdm, fake_signer) -> None:
    other = spdm.make_signer()
    report = spdm.signed_report(other, NONCE, [spdm.block(1, b"\x07" * 48)])
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_gpu_evidence(
            report,
            _pem(fake_signer.chain),
            expected_nonce=NONCE,
            now=NOW,
            trusted_roots=[fake_signer.root],
        )


def test_hand_built_report_without_nonce_is_binding_mismatch(spdm, fake_signer) -> None:
    """A caller-built report whose request carries no nonce proves no freshness."""
    report = parse_gpu_report(spdm.signed_report(fake_signer, NONCE, [spdm.block(1, b"x")]))
    unsigned_request = type(report.request)(
        version=0x11, param1=0, operation=0xFF, nonce=None, slot_id=None, raw=report.request.raw
    )
    with pytest.raises(BindingMismatch, match="no nonce"):
        verify_gpu_report(
            type(report)(request=unsigned_request, response=report.response),
            fake_signer.chain,
            expected_nonce=NONCE,
            now=NOW,
            trusted_roots=[fake_signer.root],
        )


def test_leaf_ca_flag_refused_even_if_signed(spdm) -> None:
    signer = spdm.make_signer()
    # The intermediate is a CA: presenting it as the leaf must fail before any signature check.
    with pytest.raises(ChainError, match="is a CA"):
        verify_cert_chain(signer.chain[1:], now=NOW, trusted_roots=[signer.root])


def test_leaf_with_malformed_extension_is_chain_error(fake_signer) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "BROKEN LEAF")]))
        .issuer_name(fake_signer.root.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x01\x02"), critical=True
        )
        .sign(key, hashes.SHA384())
    )
    with pytest.raises(ChainError, match="malformed extension"):
        verify_cert_chain([leaf, fake_signer.root], now=NOW, trusted_roots=[fake_signer.root])


def test_parse_cert_chain_round_trip(fake_signer) -> None:
    chain = parse_cert_chain(_pem(fake_signer.chain))
    assert [c.subject for c in chain] == [c.subject for c in fake_signer.chain]
    assert all(isinstance(c, x509.Certificate) for c in chain)


def test_every_byte_flip_of_the_leaf_raises_only_our_errors(
    sample_chain: list[x509.Certificate],
) -> None:
    # Exhaustive over the real leaf certificate: each single-byte change either still parses or
    # is an AttestationError (never TypeError from a name attribute whose type contradicts its OID).
    leaf = sample_chain[0].public_bytes(serialization.Encoding.DER)
    rest = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in sample_chain[1:])
    for offset in range(len(leaf)):
        mutated = bytearray(leaf)
        mutated[offset] ^= 0x0F
        try:
            cert = x509.load_der_x509_certificate(bytes(mutated))
            pem = cert.public_bytes(serialization.Encoding.PEM) + rest
        except (ValueError, x509.InvalidVersion):
            continue  # not even a certificate: nothing reaches our parser
        with contextlib.suppress(AttestationError):
            parse_cert_chain(pem)


# --- the mode the evidence states (FEATURE_FLAG, opaque TLV 36) -------------------------------


def _with_feature_flag(sample_report: bytes, signer, value: bytes) -> bytes:
    """NVIDIA's sample with a FEATURE_FLAG TLV appended to its opaque data, re-signed by the
    test-only fake signer (the signature covers the opaque data, so NVIDIA's key cannot)."""
    request, response = sample_report[:37], sample_report[37:-96]
    opaque_len_at = 8 + int.from_bytes(response[5:8], "little") + 32
    old_len = int.from_bytes(response[opaque_len_at : opaque_len_at + 2], "little")
    flag = (36).to_bytes(2, "little") + len(value).to_bytes(2, "little") + value
    edited = (
        response[:opaque_len_at]
        + (old_len + len(flag)).to_bytes(2, "little")
        + response[opaque_len_at + 2 :]
        + flag
    )
    return request + edited + signer.sign(request + edited)


def _verify_edited(report: bytes, signer, spdm):
    return verify_gpu_evidence(
        report,
        _pem(signer.chain),
        expected_nonce=spdm.sample_nonce,
        now=NOW,
        trusted_roots=[signer.root],
    )


@pytest.mark.parametrize(
    ("value", "claim"),
    [(b"\x00", GpuModeClaim.SINGLE_GPU_CC), (b"\x01\x00\x00\x00", GpuModeClaim.MULTI_GPU_CC)],
)
def test_edited_sample_stating_a_cc_mode_verifies(
    sample_report, spdm, fake_signer, value, claim
) -> None:
    verified = _verify_edited(
        _with_feature_flag(sample_report, fake_signer, value), fake_signer, spdm
    )
    assert verified.cc_mode is claim
    assert verified.driver_version == "550.90.07"
    assert len(verified.blocks) == 64


def test_edited_sample_stating_ppcie_is_refused(sample_report, spdm, fake_signer) -> None:
    report = _with_feature_flag(sample_report, fake_signer, b"\x02")
    with pytest.raises(PolicyViolation) as exc:
        _verify_edited(report, fake_signer, spdm)
    assert [f.field for f in exc.value.failures] == ["FEATURE_FLAG"]
    assert exc.value.failures[0].seen.startswith("PPCIE")
    assert "confidential computing off" in str(exc.value)


def test_edited_sample_with_unknown_mode_is_parse_error(sample_report, spdm, fake_signer) -> None:
    report = _with_feature_flag(sample_report, fake_signer, b"\x07")
    with pytest.raises(ParseError, match="FEATURE_FLAG 7 is none of"):
        _verify_edited(report, fake_signer, spdm)


def test_feature_flag_added_without_resigning_is_signature_invalid(
    sample_report, sample_chain_pem, spdm
) -> None:
    """Stating SPT into NVIDIA's genuine report breaks NVIDIA's signature: it is refused."""
    edited = _with_feature_flag(sample_report, spdm.make_signer(), b"\x00")
    forged = edited[:-96] + sample_report[-96:]
    with pytest.raises(SignatureInvalid):
        verify_gpu_evidence(
            forged, sample_chain_pem, expected_nonce=spdm.sample_nonce, now=spdm.sample_now
        )


def test_ppcie_with_a_bad_signature_is_reported_as_forged(spdm, fake_signer) -> None:
    """Authenticity first: a PPCIE report signed by another key is SignatureInvalid."""
    other = spdm.make_signer()
    report = spdm.signed_report(
        other, NONCE, [spdm.block(1, b"\x07" * 48)], opaque=spdm.tlv(36, b"\x02")
    )
    with pytest.raises(SignatureInvalid):
        verify_gpu_evidence(
            report,
            _pem(fake_signer.chain),
            expected_nonce=NONCE,
            now=NOW,
            trusted_roots=[fake_signer.root],
        )
