"""attestation.snp.vek: certificate loading and the AMD extension decoder."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.errors import AttestationError, ParseError
from attestation.snp import vek
from attestation.snp.vek import load_certificate, load_certificates, parse_vek_extensions
from attestation.snp.verify import verify_report

VECTORS = Path(__file__).parents[3] / "vectors" / "snp"


def ext(leaf: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.3704.1." + leaf), value)


def cert_with(fake: Any, *exts: x509.UnrecognizedExtension) -> x509.Certificate:
    cert: x509.Certificate = fake.cert(
        "SEV-VCEK", "SEV-Milan", fake.vek_key.public_key(), fake.ask_key, extensions=list(exts)
    )
    return cert


def test_der_and_pem_load_the_same_vcek() -> None:
    der = load_certificate((VECTORS / "constellation-azure-milan-v2" / "vcek.cert").read_bytes())
    pem = load_certificate((VECTORS / "constellation-azure-milan-v2" / "vcek.pem").read_bytes())
    assert der == pem
    assert parse_vek_extensions(der).product_name == "Milan-B0"


def test_bundle_loads_in_order_and_single_load_refuses_it() -> None:
    bundle = (VECTORS / "trustee-azure-milan-hcl" / "vcek.pem").read_bytes()
    certs = load_certificates(bundle)
    assert [c.subject.rfc4514_string().split(",")[0] for c in certs] == [
        "CN=SEV-VCEK",
        "CN=SEV-Milan",
        "CN=ARK-Milan",
    ]
    with pytest.raises(ParseError, match="expected one certificate, found 3"):
        load_certificate(bundle)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x30\x03\x02\x01\x00",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_garbage_is_a_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError, match=r"not an X\.509 certificate"):
        load_certificates(data)


def test_non_bytes() -> None:
    with pytest.raises(ParseError, match="must be bytes"):
        load_certificates("cert")  # type: ignore[arg-type]


def test_hwid_encodings_of_the_negative_vcek_pair() -> None:
    legacy = load_certificate((VECTORS / "negative" / "test-vcek-invalid-legacy.der").read_bytes())
    new = load_certificate((VECTORS / "negative" / "test-vcek-invalid-new.der").read_bytes())
    raw_values = [
        e.value.value
        for c in (legacy, new)
        for e in c.extensions
        if e.oid.dotted_string == "1.3.6.1.4.1.3704.1.4"
    ]
    assert len(raw_values[0]) == 64
    assert raw_values[1][:2] == b"\x04\x40"
    assert parse_vek_extensions(legacy).hw_id == parse_vek_extensions(new).hw_id == bytes(range(64))


def test_non_amd_certificates_have_no_amd_extensions() -> None:
    ask = load_certificates((VECTORS / "amd-roots" / "ask_ark_milan.pem").read_bytes())[0]
    ext_values = parse_vek_extensions(ask)
    assert (
        ext_values.struct_version,
        ext_values.product_name,
        ext_values.spl,
        ext_values.hw_id,
    ) == (None, None, {}, None)


def test_long_form_lengths_and_string_types(fake_amd: Any) -> None:
    csp = "CN=" + "x" * 200
    cert = cert_with(
        fake_amd,
        ext("5", b"\x0c\x81\xcb" + csp.encode()),  # UTF8String, long-form length 203
        ext("2", b"\x13\x05Genoa"),  # PrintableString
        ext("3.8", b"\x02\x02\x00\xd9"),
        ext("4", b"\x04\x08" + bytes(range(8))),
    )
    parsed = parse_vek_extensions(cert)
    assert parsed.csp_id == csp
    assert parsed.product_name == "Genoa"
    assert parsed.spl == {"ucodeSPL": 217}
    assert parsed.hw_id == bytes(range(8))
    assert hash(parsed) == hash(parse_vek_extensions(cert))


@pytest.mark.parametrize(
    ("leaf", "value", "message"),
    [
        ("1", b"\x16\x01a", "unexpected DER encoding"),
        ("1", b"\x02", "unexpected DER encoding"),
        ("3.1", b"\x02\x01\xff", "not a non-negative INTEGER"),
        ("3.1", b"\x02\x00", "not a non-negative INTEGER"),
        ("3.1", b"\x02\x02\x01", "disagrees"),
        ("3.1", b"\x02\x80", "bad DER length"),
        ("3.1", b"\x02\x83\x00\x00\x01\x00", "bad DER length"),
        ("3.1", b"\x02\x82\x00", "bad DER length"),
        ("2", b"\x04\x01a", "unexpected DER encoding"),
        ("4", bytes(63), "63 bytes"),
        ("4", b"\x04\x05" + bytes(5), "5 bytes"),
    ],
)
def test_malformed_extension_values(fake_amd: Any, leaf: str, value: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_vek_extensions(cert_with(fake_amd, ext(leaf, value)))


def test_unknown_amd_leaf_is_ignored(fake_amd: Any) -> None:
    parsed = parse_vek_extensions(cert_with(fake_amd, ext("9", b"\x05\x00")))
    assert parsed.spl == {}
    assert parsed.hw_id is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_into_the_loader(data: bytes) -> None:
    try:
        certs = load_certificates(data)
    except AttestationError:
        return
    for cert in certs:
        parse_vek_extensions(cert)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1318), st.integers(1, 255))
def test_mutated_vlek_only_raises_our_errors(offset: int, xor: int) -> None:
    der = bytearray((VECTORS / "trustee-milan-vlek-v3" / "test-vlek.der").read_bytes())
    der[offset] ^= xor
    try:
        cert = load_certificate(bytes(der))
        parse_vek_extensions(cert)
        cert.public_bytes(serialization.Encoding.DER)
    except AttestationError:
        pass


def test_a_name_attribute_with_a_contradicting_type_is_a_parse_error() -> None:
    # Found by the test above: this flip turns a name attribute into a BitString, which
    # `cryptography` refuses with TypeError while decoding the issuer.
    der = bytearray((VECTORS / "trustee-milan-vlek-v3" / "test-vlek.der").read_bytes())
    der[360] ^= 0x0F
    with pytest.raises(AttestationError):
        load_certificate(bytes(der))


def test_every_single_byte_change_of_a_vek_raises_only_our_errors() -> None:
    # Exhaustive where random sampling would miss the few offsets that, e.g., duplicate an
    # extension OID (cryptography raises DuplicateExtension lazily for those).
    der = (VECTORS / "trustee-milan-v2" / "test-vcek.der").read_bytes()
    report = (VECTORS / "trustee-milan-v2" / "test-report.bin").read_bytes()
    now = datetime(2025, 6, 1, tzinfo=UTC)
    outcomes: set[str] = set()
    for offset in range(len(der)):
        for xor in (0x01, 0x80):
            mutated = bytearray(der)
            mutated[offset] ^= xor
            with pytest.raises(AttestationError) as info:
                verify_report(report, vek=bytes(mutated), now=now)
            outcomes.add(type(info.value).__name__)
    assert outcomes >= {"ParseError", "ChainError"}


def test_der_walker_refuses_truncation() -> None:
    with pytest.raises(ParseError, match="truncated"):
        vek._tlv(b"\x30", 0)
    with pytest.raises(ParseError, match="runs past"):
        vek._tlv(b"\x30\x05\x00", 0)
    assert vek._tlv(b"\x30\x81\x01\x00", 0) == (0x30, 3, 4)
