"""attestation.snp.abi: offsets, reserved ranges, bit fields, the serializer, the cert table."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.errors import AttestationError, ParseError
from attestation.snp.abi import (
    REPORT_SIZE_BYTES,
    CertKind,
    CertTableEntry,
    Cpuid,
    GuestPolicy,
    KeyInfo,
    PlatformInfo,
    Product,
    Report,
    Signature,
    SigningKey,
    TcbVersion,
    parse_cert_table,
    parse_report,
    product_from_cpuid,
    serialize_cert_table,
    serialize_report,
)

MakeReport = Callable[..., Report]
# A real v3 report (AWS VLEK, Milan) as the starting point for mutation tests.
BASE_REPORT = (
    Path(__file__).parents[3] / "vectors" / "snp" / "trustee-milan-vlek-v3" / "test-vlek-report.bin"
).read_bytes()


def put(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def test_round_trip_of_every_field(make_report: MakeReport) -> None:
    report = make_report(signature=Signature(r=2**380 + 5, s=7))
    raw = serialize_report(report)
    assert len(raw) == REPORT_SIZE_BYTES
    assert parse_report(raw) == report


def test_offsets_of_the_fixed_fields(make_report: MakeReport) -> None:
    report = make_report(vmpl=2, guest_svn=9, signature=Signature(r=0x0102, s=0x0304))
    raw = serialize_report(report)
    assert struct.unpack_from("<I", raw, 0x00)[0] == 3
    assert struct.unpack_from("<I", raw, 0x04)[0] == 9
    assert struct.unpack_from("<I", raw, 0x30)[0] == 2
    assert struct.unpack_from("<I", raw, 0x34)[0] == 1
    assert raw[0x50:0x90] == report.report_data
    assert raw[0x90:0xC0] == report.measurement
    assert raw[0xC0:0xE0] == report.host_data
    assert raw[0x1A0:0x1E0] == report.chip_id
    assert raw[0x188:0x18B] == bytes([0x19, 0x01, 0x01])
    assert raw[0x1E8:0x1EB] == bytes([29, 55, 1])  # build, minor, major
    assert raw[0x2A0:0x2A2] == bytes([0x02, 0x01])  # r little-endian
    assert raw[0x2E8:0x2EA] == bytes([0x04, 0x03])  # s little-endian


def test_version_5_carries_mitigation_vectors(make_report: MakeReport) -> None:
    report = make_report(version=5, launch_mit_vector=0x11, current_mit_vector=0x22)
    raw = serialize_report(report)
    assert struct.unpack_from("<QQ", raw, 0x1F8) == (0x11, 0x22)
    assert parse_report(raw) == report
    with pytest.raises(ParseError, match=r"\[0x208, 0x2a0\)"):
        parse_report(put(raw, 0x208, b"\x01"))


def test_version_2_has_no_cpuid(make_report: MakeReport) -> None:
    raw = serialize_report(make_report(version=2, cpuid=None, product=None))
    report = parse_report(raw)
    assert report.cpuid is None
    assert report.product is None
    assert parse_report(raw, product=Product.GENOA).product == Product.GENOA
    with pytest.raises(ParseError, match=r"\[0x188, 0x1a0\)"):
        parse_report(put(raw, 0x188, b"\x19"))


@pytest.mark.parametrize("version", [0, 1, 4, 6, 0xFFFFFFFF])
def test_unsupported_versions(make_report: MakeReport, version: int) -> None:
    raw = put(serialize_report(make_report()), 0, struct.pack("<I", version))
    with pytest.raises(ParseError, match=f"version {version} is not supported"):
        parse_report(raw)


@pytest.mark.parametrize("size", [0, 1183, 1185, 2600])
def test_wrong_length(size: int) -> None:
    with pytest.raises(ParseError, match=f"got {size}"):
        parse_report(bytes(size))


def test_non_bytes_input() -> None:
    with pytest.raises(ParseError, match="non-bytes"):
        parse_report("x" * 1184)  # type: ignore[arg-type]


def test_signature_algorithm_must_be_ecdsa_p384(make_report: MakeReport) -> None:
    raw = put(serialize_report(make_report()), 0x34, struct.pack("<I", 2))
    with pytest.raises(ParseError, match="signature_algo 2"):
        parse_report(raw)


@pytest.mark.parametrize("offset", [0x4C, 0x18B, 0x19F, 0x1EB, 0x1EF, 0x1F8, 0x29F, 0x330, 0x49F])
def test_must_be_zero_ranges(make_report: MakeReport, offset: int) -> None:
    raw = put(serialize_report(make_report()), offset, b"\x80")
    with pytest.raises(ParseError, match="must be zero"):
        parse_report(raw)


def test_cpuid_decides_the_product(make_report: MakeReport) -> None:
    raw = serialize_report(make_report(cpuid=Cpuid(0x19, 0x11, 0x01), product=Product.GENOA))
    assert parse_report(raw).product == Product.GENOA
    with pytest.raises(ParseError, match="contradicts CPUID"):
        parse_report(raw, product=Product.MILAN)
    unknown = serialize_report(make_report(cpuid=Cpuid(0x17, 0x31, 0x00), product=None))
    assert parse_report(unknown).product is None
    assert parse_report(unknown, product=Product.MILAN).product == Product.MILAN


@pytest.mark.parametrize(
    ("family", "model", "product"),
    [
        (0x19, 0x01, Product.MILAN),
        (0x19, 0x0F, Product.MILAN),
        (0x19, 0x11, Product.GENOA),
        (0x19, 0xA0, Product.GENOA),
        (0x1A, 0x02, Product.TURIN),
        (0x1A, 0x11, Product.TURIN),
        (0x19, 0x21, None),
        (0x1A, 0x44, None),
        (0x17, 0x01, None),
    ],
)
def test_product_from_cpuid(family: int, model: int, product: Product | None) -> None:
    assert product_from_cpuid(Cpuid(family, model, 0)) == product


def test_turin_tcb_layout(make_report: MakeReport) -> None:
    tcb = TcbVersion(fmc=1, bl=2, tee=3, snp=4, ucode=5)
    assert tcb.encode().to_bytes(8, "little") == bytes([1, 2, 3, 4, 0, 0, 0, 5])
    assert TcbVersion.decode(tcb.encode(), turin=True) == tcb
    assert list(tcb.components()) == ["fmcSPL", "blSPL", "teeSPL", "snpSPL", "ucodeSPL"]
    assert str(tcb) == "fmcSPL=1 blSPL=2 teeSPL=3 snpSPL=4 ucodeSPL=5"
    report = make_report(
        cpuid=Cpuid(0x1A, 0x02, 0),
        product=Product.TURIN,
        current_tcb=tcb,
        reported_tcb=tcb,
        committed_tcb=tcb,
        launch_tcb=tcb,
    )
    assert parse_report(serialize_report(report)) == report


def test_milan_tcb_layout() -> None:
    tcb = TcbVersion(bl=3, tee=0, snp=8, ucode=115)
    assert tcb.encode().to_bytes(8, "little").hex() == "0300000000000873"
    assert TcbVersion.decode(tcb.encode(), turin=False) == tcb


@pytest.mark.parametrize(("turin", "byte"), [(False, 2), (False, 5), (True, 4), (True, 6)])
def test_tcb_reserved_bytes(turin: bool, byte: int) -> None:
    with pytest.raises(ParseError, match="reserved TCB bytes"):
        TcbVersion.decode(1 << (8 * byte), turin=turin, field="reported_tcb")


@pytest.mark.parametrize(
    "name",
    [
        "smt",
        "migrate_ma",
        "debug",
        "single_socket",
        "cxl_allow",
        "mem_aes_256_xts",
        "rapl_dis",
        "ciphertext_hiding",
        "page_swap_disable",
    ],
)
def test_policy_bits(name: str) -> None:
    bits = {
        "smt": 16,
        "migrate_ma": 18,
        "debug": 19,
        "single_socket": 20,
        "cxl_allow": 21,
        "mem_aes_256_xts": 22,
        "rapl_dis": 23,
        "ciphertext_hiding": 24,
        "page_swap_disable": 25,
    }
    raw = 1 << 17 | 1 << bits[name] | 0x0102
    policy = GuestPolicy.decode(raw)
    assert getattr(policy, name) is True
    assert (policy.abi_major, policy.abi_minor) == (1, 2)
    assert sum(bool(getattr(policy, n)) for n in bits) == 1
    assert policy.encode() == raw


def test_policy_reserved_bits() -> None:
    with pytest.raises(ParseError, match="bit 17 must be 1"):
        GuestPolicy.decode(0x30000 & ~(1 << 17))
    with pytest.raises(ParseError, match=r"bits 26\.\.63"):
        GuestPolicy.decode(1 << 17 | 1 << 26)


def test_platform_info_bits() -> None:
    info = PlatformInfo.decode(0b1011_1111)
    assert all(dataclasses.astuple(info))
    assert info.encode() == 0b1011_1111
    assert PlatformInfo.decode(39) == PlatformInfo(
        smt_enabled=True, tsme_enabled=True, ecc_enabled=True, alias_check_complete=True
    )
    for reserved in (6, 8, 63):
        with pytest.raises(ParseError, match="reserved bits set"):
            PlatformInfo.decode(1 << reserved)


def test_key_info() -> None:
    assert KeyInfo.decode(0) == KeyInfo(SigningKey.VCEK)
    assert KeyInfo.decode(0b111) == KeyInfo(SigningKey.VLEK, mask_chip_key=True, author_key_en=True)
    assert KeyInfo.decode(7 << 2) == KeyInfo(SigningKey.NONE)
    for info in (
        KeyInfo(SigningKey.VLEK, mask_chip_key=True),
        KeyInfo(SigningKey.NONE, author_key_en=True),
    ):
        assert KeyInfo.decode(info.encode()) == info
    for code in range(2, 7):
        with pytest.raises(ParseError, match=f"SIGNING_KEY {code} is reserved"):
            KeyInfo.decode(code << 2)
    with pytest.raises(ParseError, match=r"bits 5\.\.31"):
        KeyInfo.decode(1 << 5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"measurement": bytes(47)}, "measurement must be 48 bytes"),
        ({"chip_id": bytes(8)}, "chip_id must be 64 bytes"),
        ({"version": 2}, "cpuid is present exactly"),
        ({"version": 3, "cpuid": None}, "cpuid is present exactly"),
        ({"launch_mit_vector": 1}, "mitigation vectors exist only"),
        ({"current_mit_vector": 1}, "mitigation vectors exist only"),
        ({"vmpl": 2**32}, "out of range"),
        ({"cpuid": Cpuid(256, 0, 0)}, "out of range"),
        ({"signature": Signature(r=2**576, s=0)}, "out of range"),
    ],
)
def test_serializer_refuses_unrepresentable_fields(
    make_report: MakeReport, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ParseError, match=message):
        serialize_report(make_report(**overrides))


# --- certificate table ----------------------------------------------------------------------


def entry(kind: CertKind, data: bytes) -> CertTableEntry:
    return CertTableEntry(guid=uuid.UUID(kind.value), data=data)


def test_cert_table_round_trip() -> None:
    entries = (
        entry(CertKind.VCEK, b"vcek-der"),
        entry(CertKind.ASK, b"ask"),
        entry(CertKind.ARK, b"ark!"),
    )
    table = serialize_cert_table(entries)
    assert table[:16] == uuid.UUID(CertKind.VCEK.value).bytes
    assert struct.unpack_from("<II", table, 16) == (4 * 24, 8)
    assert table[3 * 24 : 4 * 24] == bytes(24)
    parsed = parse_cert_table(table)
    assert parsed == entries
    assert [e.kind for e in parsed] == [CertKind.VCEK, CertKind.ASK, CertKind.ARK]
    assert parse_cert_table(table + bytes(4096 - len(table))) == entries  # page padding


def test_cert_table_empty_and_unknown_guid() -> None:
    assert parse_cert_table(b"") == ()
    assert parse_cert_table(bytes(24)) == ()
    unknown = CertTableEntry(guid=uuid.UUID("ecae0c0f-9502-43b1-afa2-0ae2e0d565b6"), data=b"x")
    assert parse_cert_table(serialize_cert_table([unknown]))[0].kind is None
    assert entry(CertKind.VLEK, b"").kind == CertKind.VLEK


def test_cert_table_errors() -> None:
    good = serialize_cert_table([entry(CertKind.VCEK, b"abc")])
    with pytest.raises(ParseError, match="runs past"):
        parse_cert_table(good[:24])  # no terminator
    with pytest.raises(ParseError, match="outside the data"):
        parse_cert_table(good[:-1])
    with pytest.raises(ParseError, match="outside the data"):
        parse_cert_table(put(good, 16, struct.pack("<I", 8)))  # offset inside the headers
    dup = serialize_cert_table([entry(CertKind.ASK, b"1"), entry(CertKind.ASK, b"2")])
    with pytest.raises(ParseError, match="appears twice"):
        parse_cert_table(dup)
    with pytest.raises(ParseError, match="must be bytes"):
        parse_cert_table("table")  # type: ignore[arg-type]


# --- garbage in, only our errors out ----------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1300))
def test_random_bytes_into_parse_report(data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        parse_report(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, REPORT_SIZE_BYTES - 1), st.integers(0, 255)), max_size=6))
def test_mutated_reports_parse_or_raise_parse_error(edits: list[tuple[int, int]]) -> None:
    raw = bytearray(BASE_REPORT)
    for offset, value in edits:
        raw[offset] = value
    try:
        report = parse_report(bytes(raw))
    except ParseError:
        return
    assert serialize_report(report) == bytes(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_into_parse_cert_table(data: bytes) -> None:
    try:
        entries = parse_cert_table(data)
    except AttestationError:
        return
    assert all(isinstance(e.data, bytes) for e in entries)
