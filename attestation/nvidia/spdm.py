"""SPDM 1.1 GET_MEASUREMENTS / MEASUREMENTS as an NVIDIA H100 reports them: parse only.

Spec: DMTF DSP0274 (SPDM) 1.1.x, §10.11 "GET_MEASUREMENTS request and MEASUREMENTS response"
(https://www.dmtf.org/dsp/DSP0274), with the DMTF measurement block/value formats of §10.11.1.
NVIDIA's opaque-data TLVs are parsed by :mod:`attestation.nvidia.opaque` (ids and encodings
from NVIDIA/nvtrust, read, not copied).

Contract: bytes in, frozen values out, structural checks only (every length must add up
exactly, reserved index values are refused, the signature has the P-384 size). Anything that is
not the structure it claims raises :class:`~attestation.errors.ParseError` and nothing else.
Whether the report is *authentic* is :mod:`attestation.nvidia.verify`'s job.

An NVIDIA "attestation report" (``nvmlDeviceGetConfComputeGpuAttestationReport``) is the
GET_MEASUREMENTS request the driver sent, immediately followed by the signed MEASUREMENTS
response::

    request  (SPDM 1.1, signature requested: 37 bytes)
      0  SPDMVersion 0x11 | 1 code 0xE0 | 2 Param1 (bit 0: signature requested)
      3  Param2 (measurement operation, 0xFF = all) | 4 Nonce (32) | 36 SlotIDParam
    response
      0  SPDMVersion 0x11 | 1 code 0x60 | 2 Param1 | 3 Param2
      4  NumberOfBlocks (1) | 5 MeasurementRecordLength (3, little-endian)
      8  MeasurementRecord (L1) | 8+L1 Nonce (32) | 40+L1 OpaqueLength (2, LE)
      42+L1 OpaqueData (L2) | 42+L1+L2 Signature (96: raw r || s, big-endian, ECDSA P-384)
"""

from __future__ import annotations

from dataclasses import dataclass

from attestation.errors import ParseError
from attestation.nvidia.opaque import (
    FeatureFlag,
    OpaqueData,
    OpaqueField,
    OpaqueFieldType,
    parse_opaque_data,
)

__all__ = [
    "GET_MEASUREMENTS_CODE",
    "MEASUREMENTS_CODE",
    "SIGNATURE_SIZE_BYTES",
    "SPDM_VERSION_1_1",
    "FeatureFlag",
    "GpuAttestationReport",
    "MeasurementBlock",
    "MeasurementsRequest",
    "MeasurementsResponse",
    "OpaqueData",
    "OpaqueField",
    "OpaqueFieldType",
    "parse_gpu_report",
    "parse_measurements_request",
    "parse_measurements_response",
]

SPDM_VERSION_1_1 = 0x11
GET_MEASUREMENTS_CODE = 0xE0
MEASUREMENTS_CODE = 0x60
NONCE_SIZE_BYTES = 32
# ECDSA P-384 with SHA-384 (TPM_ALG_ECDSA_ECC_NIST_P384): r and s, 48 bytes each.
SIGNATURE_SIZE_BYTES = 96
# DSP0274 1.1 Table 41: OpaqueLength "shall be less than or equal to 1024".
MAX_OPAQUE_SIZE_BYTES = 1024
# MeasurementSpecification bit 0 = DMTF (DSP0274 1.1 §10.11.1, Table 45).
MEASUREMENT_SPEC_DMTF = 0x01
_SIGNATURE_REQUESTED = 0x01
_REQUEST_HEADER_SIZE_BYTES = 4
_SIGNED_REQUEST_SIZE_BYTES = _REQUEST_HEADER_SIZE_BYTES + NONCE_SIZE_BYTES + 1
_RESPONSE_FIXED_SIZE_BYTES = 8
_BLOCK_HEADER_SIZE_BYTES = 4
_DMTF_VALUE_HEADER_SIZE_BYTES = 3


@dataclass(frozen=True, slots=True)
class MeasurementsRequest:
    """A GET_MEASUREMENTS request. ``nonce``/``slot_id`` exist only when a signature is asked."""

    version: int
    param1: int
    operation: int
    nonce: bytes | None
    slot_id: int | None
    raw: bytes

    @property
    def signature_requested(self) -> bool:
        return bool(self.param1 & _SIGNATURE_REQUESTED)


@dataclass(frozen=True, slots=True)
class MeasurementBlock:
    """One measurement block with a DMTF measurement (DSP0274 1.1 Tables 45 and 46).

    ``value_type`` bit 7 set means a raw bit stream, clear means a digest; bits 0-6 name what
    was measured (0 immutable ROM, 1 mutable firmware, 2 hardware config, 3 firmware config...).
    """

    index: int
    value_type: int
    value: bytes

    @property
    def is_digest(self) -> bool:
        return not self.value_type & 0x80


@dataclass(frozen=True, slots=True)
class MeasurementsResponse:
    """A signed MEASUREMENTS response. ``signed_part`` is the response without its signature.

    ``opaque_data`` holds NVIDIA's TLVs and their typed values (driver and VBIOS versions,
    FEATURE_FLAG...); the properties below are shortcuts to it.
    """

    version: int
    param1: int
    param2: int
    blocks: tuple[MeasurementBlock, ...]
    nonce: bytes
    opaque_data: OpaqueData
    signature: bytes
    signed_part: bytes

    @property
    def opaque_fields(self) -> tuple[OpaqueField, ...]:
        return self.opaque_data.fields

    @property
    def driver_version(self) -> str | None:
        """Opaque type 3 (NUL-terminated ASCII, e.g. ``550.90.07``)."""
        return self.opaque_data.driver_version

    @property
    def vbios_version(self) -> str | None:
        """Opaque type 6 in NVIDIA's dotted lower-case form (``96.00.9f.00.01``)."""
        return self.opaque_data.vbios_version

    @property
    def feature_flag(self) -> FeatureFlag | None:
        """Opaque type 36, or None when the firmware does not emit it (legacy opaque data)."""
        return self.opaque_data.feature_flag

    def opaque(self, field_type: OpaqueFieldType) -> bytes | None:
        """The raw value of the opaque field of this type, or None."""
        return self.opaque_data.get(field_type)

    def block(self, index: int) -> MeasurementBlock | None:
        """The measurement block with this SPDM index (1-based), or None."""
        for blk in self.blocks:
            if blk.index == index:
                return blk
        return None


@dataclass(frozen=True, slots=True)
class GpuAttestationReport:
    """An NVIDIA GPU attestation report: the request, the response and what the key signed."""

    request: MeasurementsRequest
    response: MeasurementsResponse

    @property
    def signed_bytes(self) -> bytes:
        """request || response-without-signature: what SHA-384 and the leaf key cover."""
        return self.request.raw + self.response.signed_part


def _request_size(data: bytes) -> int:
    if len(data) < _REQUEST_HEADER_SIZE_BYTES:
        raise ParseError(f"GET_MEASUREMENTS request needs 4 bytes, got {len(data)}")
    if data[2] & _SIGNATURE_REQUESTED:
        return _SIGNED_REQUEST_SIZE_BYTES
    return _REQUEST_HEADER_SIZE_BYTES


def parse_measurements_request(data: bytes) -> MeasurementsRequest:
    """Parse exactly one SPDM 1.1 GET_MEASUREMENTS request (4 bytes, or 37 when signed)."""
    size = _request_size(data)
    if len(data) != size:
        raise ParseError(f"GET_MEASUREMENTS request is {len(data)} bytes, wanted {size}")
    if data[0] != SPDM_VERSION_1_1:
        raise ParseError(f"SPDM version 0x{data[0]:02x}, wanted 0x11")
    if data[1] != GET_MEASUREMENTS_CODE:
        raise ParseError(f"request code 0x{data[1]:02x}, wanted 0xe0 (GET_MEASUREMENTS)")
    signed = size == _SIGNED_REQUEST_SIZE_BYTES
    return MeasurementsRequest(
        version=data[0],
        param1=data[2],
        operation=data[3],
        nonce=bytes(data[4:36]) if signed else None,
        slot_id=data[36] if signed else None,
        raw=bytes(data),
    )


def _parse_blocks(record: bytes, count: int) -> tuple[MeasurementBlock, ...]:
    blocks: list[MeasurementBlock] = []
    seen: set[int] = set()
    offset = 0
    for _ in range(count):
        if len(record) - offset < _BLOCK_HEADER_SIZE_BYTES:
            raise ParseError(f"measurement block header truncated at record offset {offset}")
        index, spec = record[offset], record[offset + 1]
        size = int.from_bytes(record[offset + 2 : offset + 4], "little")
        body = record[offset + 4 : offset + 4 + size]
        if index in (0, 0xFF):
            raise ParseError(f"measurement block index {index} is reserved")
        if index in seen:
            raise ParseError(f"measurement block index {index} appears twice")
        if spec != MEASUREMENT_SPEC_DMTF:
            raise ParseError(f"measurement block {index}: specification 0x{spec:02x}, wanted DMTF")
        if len(body) != size or size < _DMTF_VALUE_HEADER_SIZE_BYTES:
            raise ParseError(f"measurement block {index}: size {size}, {len(body)} bytes left")
        value_size = int.from_bytes(body[1:3], "little")
        if value_size != size - _DMTF_VALUE_HEADER_SIZE_BYTES:
            raise ParseError(f"measurement block {index}: value size {value_size}, block {size}")
        blocks.append(MeasurementBlock(index=index, value_type=body[0], value=bytes(body[3:])))
        seen.add(index)
        offset += _BLOCK_HEADER_SIZE_BYTES + size
    if offset != len(record):
        raise ParseError(f"measurement record is {len(record)} bytes, blocks use {offset}")
    return tuple(blocks)


def parse_measurements_response(data: bytes) -> MeasurementsResponse:
    """Parse exactly one signed SPDM 1.1 MEASUREMENTS response with a 96-byte P-384 signature."""
    if len(data) < _RESPONSE_FIXED_SIZE_BYTES:
        raise ParseError(f"MEASUREMENTS response needs 8 bytes, got {len(data)}")
    if data[0] != SPDM_VERSION_1_1:
        raise ParseError(f"SPDM version 0x{data[0]:02x}, wanted 0x11")
    if data[1] != MEASUREMENTS_CODE:
        raise ParseError(f"response code 0x{data[1]:02x}, wanted 0x60 (MEASUREMENTS)")
    count = data[4]
    record_size = int.from_bytes(data[5:8], "little")
    nonce_at = _RESPONSE_FIXED_SIZE_BYTES + record_size
    opaque_at = nonce_at + NONCE_SIZE_BYTES + 2
    if len(data) < opaque_at:
        raise ParseError(
            f"MEASUREMENTS response truncated: {len(data)} bytes, record {record_size}"
        )
    opaque_size = int.from_bytes(data[opaque_at - 2 : opaque_at], "little")
    if opaque_size > MAX_OPAQUE_SIZE_BYTES:
        raise ParseError(f"opaque data is {opaque_size} bytes, SPDM 1.1 allows 1024")
    signature_at = opaque_at + opaque_size
    if len(data) != signature_at + SIGNATURE_SIZE_BYTES:
        raise ParseError(
            f"MEASUREMENTS response is {len(data)} bytes, "
            f"wanted {signature_at + SIGNATURE_SIZE_BYTES} with a 96-byte signature"
        )
    return MeasurementsResponse(
        version=data[0],
        param1=data[2],
        param2=data[3],
        blocks=_parse_blocks(data[_RESPONSE_FIXED_SIZE_BYTES:nonce_at], count),
        nonce=bytes(data[nonce_at : nonce_at + NONCE_SIZE_BYTES]),
        opaque_data=parse_opaque_data(data[opaque_at:signature_at]),
        signature=bytes(data[signature_at:]),
        signed_part=bytes(data[:signature_at]),
    )


def parse_gpu_report(data: bytes) -> GpuAttestationReport:
    """Split an NVIDIA attestation report into its signed request and response, and parse both.

    The request must ask for a signature: an unsigned report proves nothing.
    """
    size = _request_size(data)
    if size != _SIGNED_REQUEST_SIZE_BYTES:
        raise ParseError("GET_MEASUREMENTS request does not ask for a signature")
    return GpuAttestationReport(
        request=parse_measurements_request(data[:size]),
        response=parse_measurements_response(data[size:]),
    )
