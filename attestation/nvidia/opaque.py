"""NVIDIA's opaque data in an SPDM MEASUREMENTS response: TLVs in, typed fields out. Parse only.

Spec: DMTF DSP0274 (SPDM) 1.1 §10.11 leaves ``OpaqueData`` (at most 1024 bytes) to the vendor.
NVIDIA fills it with TLVs ``type (u16 LE) | length (u16 LE) | value``; the type ids and value
encodings below are those of NVIDIA/nvtrust (``local_gpu_verifier`` ``OpaqueData``, the newer
``nv_attestation`` C++ SDK, ids up to 36) and of Confidential Containers trustee's NVIDIA
verifier (``deps/verifier/src/nvidia/spdm_response.rs``: NVDEC0 and FEATURE_FLAG values), as
read there, not copied:

====  ====================  ===========================================================
  id  name                  value as decoded here
====  ====================  ===========================================================
   3  DRIVER_VERSION        NUL-terminated ASCII (``550.90.07``)
   6  VBIOS_VERSION         8 bytes: LE u32 = first four parts, byte 4 = the fifth
                            (rendered ``96.00.9f.00.01``, nvtrust ``format_vbios_version``)
  11  NVDEC0_STATUS         1 byte: 0xAA enabled, 0x55 disabled (anything else refused)
  12  MSRSCNT               LE u32 per measurement block (times each block was extended)
  15  CHIP_SKU              NUL-padded ASCII (with 17 PROJECT and 18 PROJECT_SKU it names
  17  PROJECT               the VBIOS RIM: ``{project}_{project_sku}_{chip_sku}_{vbios}``)
  18  PROJECT_SKU
  20  FWID                  raw bytes (the firmware id the device certificate also carries)
  34  OPAQUE_DATA_VERSION   1..8 bytes, LE unsigned (absent in legacy opaque data)
  36  FEATURE_FLAG          1..8 bytes, LE unsigned: 0 SPT, 1 MPT, 2 PPCIE (absent = legacy)
 255  INVALID               refused
====  ====================  ===========================================================

**No TLV states the confidential-computing mode (on / devtools / off).** FEATURE_FLAG names
the *topology* a CC-capable GPU runs in (single-GPU passthrough, multi-GPU passthrough,
protected PCIe), and only firmware that emits it has it; the Hopper sample in
``tests/vectors/gpu`` has none. How the verifier uses this is in :mod:`attestation.nvidia.verify`
and ``docs/attestation-nvidia.md``.

Contract: :func:`parse_opaque_data` raises :class:`~attestation.errors.ParseError` and nothing
else; every TLV must fit exactly, no type may appear twice (so no reader can pick a different
copy than another), type 255 is refused, other unknown types are kept raw in ``fields``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TypeVar

from attestation.errors import ParseError

__all__ = [
    "FeatureFlag",
    "Nvdec0Status",
    "OpaqueData",
    "OpaqueField",
    "OpaqueFieldType",
    "parse_opaque_data",
]

_TLV_HEADER_SIZE_BYTES = 4
_VBIOS_VERSION_SIZE_BYTES = 8
_U32_SIZE_BYTES = 4
_MAX_INTEGER_SIZE_BYTES = 8
_T = TypeVar("_T")


class OpaqueFieldType(IntEnum):
    """NVIDIA opaque-data field ids (nvtrust ``OPAQUE_DATA_TYPES`` / ``GpuOpaqueDataType``)."""

    CERT_ISSUER_NAME = 1
    CERT_AUTHORITY_KEY_IDENTIFIER = 2
    DRIVER_VERSION = 3
    GPU_INFO = 4
    SKU = 5
    VBIOS_VERSION = 6
    MANUFACTURER_ID = 7
    TAMPER_DETECTION = 8
    SMC = 9
    VPR = 10
    NVDEC0_STATUS = 11
    MSRSCNT = 12
    CPRINFO = 13
    BOARD_ID = 14
    CHIP_SKU = 15
    CHIP_SKU_MOD = 16
    PROJECT = 17
    PROJECT_SKU = 18
    PROJECT_SKU_MOD = 19
    FWID = 20
    PROTECTED_PCIE_STATUS = 21
    SWITCH_PDI = 22
    FLOORSWEPT_PORTS = 23
    POSITION_ID = 24
    LOCK_SWITCH_STATUS = 25
    GPU_LINK_CONN = 32
    SYS_ENABLE_STATUS = 33
    OPAQUE_DATA_VERSION = 34
    CHIP_INFO = 35
    FEATURE_FLAG = 36
    INVALID = 255


class FeatureFlag(IntEnum):
    """TLV 36: the topology a CC-capable GPU runs in (values as trustee's NVIDIA verifier reads)."""

    SPT = 0  # single-GPU passthrough: CC with one GPU per confidential VM
    MPT = 1  # multi-GPU passthrough: CC with several GPUs (NVLink encrypted)
    PPCIE = 2  # protected PCIe: CC off on the GPU, the PCIe/NVLink fabric trusted instead


class Nvdec0Status(StrEnum):
    """TLV 11: whether video decoder NVDEC0 is enabled (it decides whether RIM index 35 counts)."""

    ENABLED = "enabled"
    DISABLED = "disabled"


_NVDEC0 = {b"\xaa": Nvdec0Status.ENABLED, b"\x55": Nvdec0Status.DISABLED}


@dataclass(frozen=True, slots=True)
class OpaqueField:
    """One NVIDIA opaque-data TLV (type u16 LE, length u16 LE, value). Unknown types kept raw."""

    field_type: int
    value: bytes


@dataclass(frozen=True, slots=True)
class OpaqueData:
    """Every TLV in order (``fields``) and the typed values of those this project reads."""

    fields: tuple[OpaqueField, ...]
    driver_version: str | None = None
    vbios_version: str | None = None
    nvdec0_status: Nvdec0Status | None = None
    measurement_counts: tuple[int, ...] | None = None
    project: str | None = None
    project_sku: str | None = None
    chip_sku: str | None = None
    fwid: bytes | None = None
    opaque_data_version: int | None = None
    feature_flag: FeatureFlag | None = None

    def get(self, field_type: int) -> bytes | None:
        """The raw value of the field of this type, or None."""
        return next((f.value for f in self.fields if f.field_type == field_type), None)


def _vbios_version(raw: bytes) -> str:
    if len(raw) != _VBIOS_VERSION_SIZE_BYTES:
        raise ParseError(f"VBIOS version field is {len(raw)} bytes, wanted 8")
    low = int.from_bytes(raw[0:4], "little")
    parts = [f"{(low >> shift) & 0xFF:02x}" for shift in (24, 16, 8, 0)]
    return ".".join([*parts, f"{raw[4]:02x}"])


def _ascii_z(raw: bytes, what: str) -> str:
    text = raw.rstrip(b"\0")
    if b"\0" in text:
        raise ParseError(f"{what} has a NUL inside its {len(raw)} bytes")
    try:
        return text.decode("ascii")
    except UnicodeDecodeError:
        raise ParseError(f"{what} is not ASCII ({len(raw)} bytes)") from None


def _le_unsigned(raw: bytes, what: str) -> int:
    if not 1 <= len(raw) <= _MAX_INTEGER_SIZE_BYTES:
        raise ParseError(f"{what} is {len(raw)} bytes, wanted 1..8")
    return int.from_bytes(raw, "little")


def _feature_flag(raw: bytes) -> FeatureFlag:
    value = _le_unsigned(raw, "FEATURE_FLAG")
    try:
        return FeatureFlag(value)
    except ValueError:
        raise ParseError(f"FEATURE_FLAG {value} is none of SPT (0), MPT (1), PPCIE (2)") from None


def _nvdec0(raw: bytes) -> Nvdec0Status:
    try:
        return _NVDEC0[raw]
    except KeyError:
        raise ParseError(f"NVDEC0 status {raw.hex()!r} is neither aa nor 55") from None


def _counts(raw: bytes) -> tuple[int, ...]:
    if len(raw) % _U32_SIZE_BYTES:
        raise ParseError(f"measurement count field is {len(raw)} bytes, not a multiple of 4")
    return tuple(
        int.from_bytes(raw[i : i + _U32_SIZE_BYTES], "little")
        for i in range(0, len(raw), _U32_SIZE_BYTES)
    )


def _split(data: bytes) -> tuple[OpaqueField, ...]:
    fields: list[OpaqueField] = []
    seen: set[int] = set()
    offset = 0
    while offset < len(data):
        if len(data) - offset < _TLV_HEADER_SIZE_BYTES:
            raise ParseError(f"opaque TLV header truncated at offset {offset}")
        field_type = int.from_bytes(data[offset : offset + 2], "little")
        size = int.from_bytes(data[offset + 2 : offset + 4], "little")
        value = data[offset + 4 : offset + 4 + size]
        if len(value) != size:
            raise ParseError(f"opaque field type {field_type}: length {size}, {len(value)} left")
        if field_type == OpaqueFieldType.INVALID:
            raise ParseError(f"opaque field type 255 (INVALID) at offset {offset}")
        if field_type in seen:
            raise ParseError(f"opaque field type {field_type} appears twice")
        seen.add(field_type)
        fields.append(OpaqueField(field_type=field_type, value=bytes(value)))
        offset += _TLV_HEADER_SIZE_BYTES + size
    return tuple(fields)


def _optional(value: bytes | None, decode: Callable[[bytes], _T]) -> _T | None:
    return None if value is None else decode(value)


def parse_opaque_data(data: bytes) -> OpaqueData:
    """Split ``data`` into TLVs and decode the typed fields (see the module docstring)."""
    fields = _split(data)
    raw = {f.field_type: f.value for f in fields}
    t = OpaqueFieldType
    return OpaqueData(
        fields=fields,
        driver_version=_optional(
            raw.get(t.DRIVER_VERSION), lambda v: _ascii_z(v, "driver version")
        ),
        vbios_version=_optional(raw.get(t.VBIOS_VERSION), _vbios_version),
        nvdec0_status=_optional(raw.get(t.NVDEC0_STATUS), _nvdec0),
        measurement_counts=_optional(raw.get(t.MSRSCNT), _counts),
        project=_optional(raw.get(t.PROJECT), lambda v: _ascii_z(v, "project")),
        project_sku=_optional(raw.get(t.PROJECT_SKU), lambda v: _ascii_z(v, "project SKU")),
        chip_sku=_optional(raw.get(t.CHIP_SKU), lambda v: _ascii_z(v, "chip SKU")),
        fwid=raw.get(t.FWID),
        opaque_data_version=_optional(
            raw.get(t.OPAQUE_DATA_VERSION), lambda v: _le_unsigned(v, "OPAQUE_DATA_VERSION")
        ),
        feature_flag=_optional(raw.get(t.FEATURE_FLAG), _feature_flag),
    )
