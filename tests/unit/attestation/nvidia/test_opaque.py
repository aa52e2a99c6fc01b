"""attestation.nvidia.opaque: NVIDIA's opaque-data TLVs, the Hopper sample, strictness, garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attestation.errors import ParseError
from attestation.nvidia.opaque import (
    FeatureFlag,
    Nvdec0Status,
    OpaqueFieldType,
    parse_opaque_data,
)
from attestation.nvidia.spdm import parse_gpu_report

# NVIDIA's sample (tests/vectors/gpu): request 37 bytes, MeasurementRecordLength 3520, so the
# opaque data starts at response offset 8 + 3520 + 32 + 2 = 3562 (report offset 3599).
SAMPLE_OPAQUE_AT = 3599
SAMPLE_OPAQUE_SIZE_BYTES = 422
SAMPLE_TLVS = [
    # (report offset of the TLV header, type id, value length)
    (3599, 6, 8),
    (3611, 14, 4),
    (3619, 15, 9),
    (3632, 16, 5),
    (3641, 17, 5),
    (3650, 18, 5),
    (3659, 19, 2),
    (3665, 3, 10),
    (3679, 4, 8),
    (3691, 12, 256),
    (3951, 13, 4),
    (3959, 11, 1),
    (3964, 20, 48),
    (4016, 21, 1),
]
SAMPLE_FWID = (
    "f5c384aebb579217a2c66b17ed0f28e6a9b8d639041acd7b4721cec004f72754"
    "94ba94bb5cdfdb3055ee051762b1f75d"
)


def tlv(field_type: int, value: bytes) -> bytes:
    return field_type.to_bytes(2, "little") + len(value).to_bytes(2, "little") + value


def test_sample_opaque_data_known_answer(sample_report: bytes) -> None:
    raw = sample_report[SAMPLE_OPAQUE_AT : SAMPLE_OPAQUE_AT + SAMPLE_OPAQUE_SIZE_BYTES]
    assert int.from_bytes(sample_report[SAMPLE_OPAQUE_AT - 2 : SAMPLE_OPAQUE_AT], "little") == 422
    opaque = parse_opaque_data(raw)
    assert parse_gpu_report(sample_report).response.opaque_data == opaque
    offsets, offset = [], SAMPLE_OPAQUE_AT
    for f in opaque.fields:
        offsets.append((offset, f.field_type, len(f.value)))
        offset += 4 + len(f.value)
    assert offsets == SAMPLE_TLVS
    assert opaque.driver_version == "550.90.07"
    assert opaque.vbios_version == "96.00.9f.00.01"
    assert (opaque.project, opaque.project_sku, opaque.chip_sku) == ("1010", "0200", "882")
    assert opaque.nvdec0_status is Nvdec0Status.DISABLED
    assert opaque.fwid is not None
    assert opaque.fwid.hex() == SAMPLE_FWID
    assert opaque.measurement_counts is not None
    assert len(opaque.measurement_counts) == 64
    assert opaque.measurement_counts[:4] == (0, 1, 4, 1)
    # What the sample states about the mode: nothing. No FEATURE_FLAG (36), no
    # OPAQUE_DATA_VERSION (34): legacy opaque data.
    assert opaque.feature_flag is None
    assert opaque.opaque_data_version is None
    assert opaque.get(OpaqueFieldType.PROTECTED_PCIE_STATUS) == b"\x55"
    assert opaque.get(OpaqueFieldType.GPU_INFO) == bytes.fromhex("8001000000000000")


@pytest.mark.parametrize(
    ("raw", "flag"),
    [
        (b"\x00", FeatureFlag.SPT),
        (b"\x01", FeatureFlag.MPT),
        (b"\x02", FeatureFlag.PPCIE),
        (b"\x01\x00\x00\x00", FeatureFlag.MPT),
        (b"\x02" + bytes(7), FeatureFlag.PPCIE),
    ],
)
def test_feature_flag_values(raw: bytes, flag: FeatureFlag) -> None:
    assert parse_opaque_data(tlv(36, raw)).feature_flag is flag


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "FEATURE_FLAG is 0 bytes"),
        (b"\x01" * 9, "FEATURE_FLAG is 9 bytes"),
        (b"\x03", "FEATURE_FLAG 3 is none of"),
        (b"\x00\x01", "FEATURE_FLAG 256 is none of"),
    ],
)
def test_feature_flag_refused(raw: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_opaque_data(tlv(36, raw))


def test_opaque_data_version_and_nvdec0() -> None:
    opaque = parse_opaque_data(tlv(34, b"\x02\x00") + tlv(11, b"\xaa"))
    assert opaque.opaque_data_version == 2
    assert opaque.nvdec0_status is Nvdec0Status.ENABLED
    assert opaque.feature_flag is None
    assert parse_opaque_data(b"") == parse_opaque_data(b"")
    assert parse_opaque_data(b"").fields == ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (tlv(11, b"\x00"), "NVDEC0 status '00'"),
        (tlv(11, b"\x55\x55"), "NVDEC0 status '5555'"),
        (tlv(12, b"\x00" * 5), "not a multiple of 4"),
        (tlv(6, b"\x00" * 7), "VBIOS version field is 7 bytes"),
        (tlv(3, b"5\x0050"), "driver version has a NUL"),
        (tlv(17, b"\xff\x00"), "project is not ASCII"),
        (tlv(34, b""), "OPAQUE_DATA_VERSION is 0 bytes"),
        (tlv(255, b""), "type 255"),
        (tlv(3, b"1\x00") + tlv(3, b"2\x00"), "type 3 appears twice"),
        (b"\x03\x00\x05", "header truncated at offset 0"),
        (tlv(3, b"1\x00")[:-1], "length 2, 1 left"),
    ],
)
def test_malformed_opaque_data_refused(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_opaque_data(data)


def test_unknown_types_kept_raw() -> None:
    opaque = parse_opaque_data(tlv(0x7777, b"raw") + tlv(33, b"\x01"))
    assert opaque.get(0x7777) == b"raw"
    assert opaque.get(OpaqueFieldType.SYS_ENABLE_STATUS) == b"\x01"
    assert opaque.get(OpaqueFieldType.FWID) is None


@given(st.binary(max_size=300))
def test_garbage_raises_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_opaque_data(data)


_TYPED = st.sampled_from([3, 6, 11, 12, 15, 17, 18, 20, 34, 36, 255, 0x7777])


@given(st.lists(st.tuples(_TYPED, st.binary(max_size=12)), max_size=6))
def test_well_framed_tlvs_with_garbage_values_raise_only_our_errors(
    items: list[tuple[int, bytes]],
) -> None:
    with contextlib.suppress(ParseError):
        parse_opaque_data(b"".join(tlv(t, v) for t, v in items))


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=63))
def test_truncated_sample_opaque_data_raises_only_parse_error(
    sample_report: bytes, suffix: bytes, cut: int
) -> None:
    raw = sample_report[SAMPLE_OPAQUE_AT : SAMPLE_OPAQUE_AT + SAMPLE_OPAQUE_SIZE_BYTES]
    with contextlib.suppress(ParseError):
        parse_opaque_data(raw[: len(raw) - 1 - cut] + suffix)
