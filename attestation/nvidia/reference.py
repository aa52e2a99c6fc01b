"""Expected GPU measurements (reference values that name RIMs) and their validation: policy.

Specs: DMTF DSP0274 (SPDM) 1.1 §10.11.1 (measurement blocks, 1-based indices); NVIDIA's use of
RIMs as read from NVIDIA/nvtrust ``local_gpu_verifier`` (``verifier.py``, not copied): the
golden value for RIM index *i* (0-based) is compared with SPDM block *i* + 1, an index active
in both the driver and the VBIOS RIM is refused, and RIM index 35 (SPDM block 36) is skipped
when the report's NVDEC0 status says the decoder is disabled.

Contract:

* :class:`ExpectedGpuMeasurements` is what a requester pins: for each SPDM block index the
  accepted SHA-384 values, optionally the driver and VBIOS versions, and the RIMs they came
  from (names only, for messages). :func:`expected_from_rims` builds one from the driver and
  VBIOS RIMs the requester chose; :func:`parse_expected_measurements` from a JSON object.
  **Where the RIMs came from is the caller's trust decision**: their XMLDSig signatures are
  not verified here (see :mod:`attestation.nvidia.rim` and LIMITATIONS.md).
* :func:`validate_gpu_measurements` raises one :class:`~attestation.errors.PolicyViolation`
  that lists **every** failing block index (absent or different) and every version mismatch;
  it returns None when all match. On NVIDIA's model a full match is also what establishes the
  confidential-computing mode (NVIDIA's verifier claims ``secboot`` and ``dbgstat: disabled``
  only then): the mode is in the measured configuration, not in any opaque-data field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from attestation.errors import Failure, ParseError, PolicyViolation
from attestation.nvidia.opaque import Nvdec0Status
from attestation.nvidia.rim import Rim
from attestation.nvidia.verify import VerifiedGpuReport

__all__ = [
    "ExpectedGpuMeasurements",
    "expected_from_rims",
    "parse_expected_measurements",
    "validate_gpu_measurements",
]

SHA384_SIZE_BYTES = 48
# RIM index 35 = SPDM block 36: NVDEC0's measurement, void when the decoder is disabled.
_NVDEC0_BLOCK_INDEX = 36
_MAX_BLOCK_INDEX = 254  # SPDM 1.1: 0 and 255 are reserved


@dataclass(frozen=True, slots=True)
class ExpectedGpuMeasurements:
    """Accepted values per SPDM block index (1-based), optional versions, and their sources."""

    blocks: Mapping[int, tuple[bytes, ...]]
    driver_version: str | None = None
    vbios_version: str | None = None
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ValueError("expected GPU measurements name no block")
        for index, values in self.blocks.items():
            if not 1 <= index <= _MAX_BLOCK_INDEX or not values:
                raise ValueError(f"expected block {index}: index 1..254 with at least one value")
            if any(len(v) != SHA384_SIZE_BYTES for v in values):
                raise ValueError(f"expected block {index}: every value must be 48 bytes")
        object.__setattr__(self, "blocks", MappingProxyType(dict(sorted(self.blocks.items()))))


def expected_from_rims(driver_rim: Rim, vbios_rim: Rim) -> ExpectedGpuMeasurements:
    """Every *active* golden value of both RIMs, keyed by SPDM block index (RIM index + 1).

    Versions come from the RIMs' ``colloquialVersion``. An index active in both RIMs is a
    PolicyViolation listing every such index (nvtrust refuses the pair too).
    """
    blocks: dict[int, tuple[bytes, ...]] = {}
    conflicts: list[Failure] = []
    for rim in (driver_rim, vbios_rim):
        for golden in rim.measurements:
            if not golden.active:
                continue
            if golden.index + 1 in blocks:
                conflicts.append(
                    Failure(
                        f"RIM index {golden.index}",
                        "active in the driver and the VBIOS RIM",
                        "active in one RIM only",
                    )
                )
            blocks[golden.index + 1] = golden.alternatives
    if conflicts:
        raise PolicyViolation(conflicts)
    return ExpectedGpuMeasurements(
        blocks=blocks,
        driver_version=driver_rim.colloquial_version,
        vbios_version=vbios_rim.colloquial_version,
        sources=(driver_rim.tag_id, vbios_rim.tag_id),
    )


def _hex48(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * SHA384_SIZE_BYTES:
        raise ParseError(f"{where} is not 96 hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ParseError(f"{where} is not 96 hex digits") from None


def _version(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ParseError(f"{key} is not a non-empty string")
    return value.lower()


def parse_expected_measurements(obj: Any) -> ExpectedGpuMeasurements:
    """Parse ``{"measurements": {"<block>": "<hex>" | ["<hex>", ...]}, "driver_version": ...,
    "vbios_version": ..., "sources": [...]}`` (block = decimal SPDM index 1..254, each value 96
    lowercase or uppercase hex digits). Raises ParseError and nothing else."""
    if not isinstance(obj, Mapping):
        raise ParseError("expected GPU measurements are not a JSON object")
    raw = obj.get("measurements")
    if not isinstance(raw, Mapping) or not raw:
        raise ParseError("expected GPU measurements have no 'measurements' object")
    blocks: dict[int, tuple[bytes, ...]] = {}
    for key, value in raw.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 3):
            raise ParseError(f"measurement key {key!r} is not a decimal block index")
        index = int(key)
        if not 1 <= index <= _MAX_BLOCK_INDEX:
            raise ParseError(f"measurement block {index} is outside 1..254")
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ParseError(f"measurement block {index} accepts no value")
        blocks[index] = tuple(_hex48(v, f"measurement block {index}") for v in values)
    sources = obj.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise ParseError("'sources' is not a list of strings")
    return ExpectedGpuMeasurements(
        blocks=blocks,
        driver_version=_version(obj, "driver_version"),
        vbios_version=_version(obj, "vbios_version"),
        sources=tuple(sources),
    )


def validate_gpu_measurements(report: VerifiedGpuReport, expected: ExpectedGpuMeasurements) -> None:
    """Raise one PolicyViolation naming every block (and version) that is not as expected."""
    nvdec0_off = report.opaque_data.nvdec0_status is Nvdec0Status.DISABLED
    failures: list[Failure] = []
    for index, accepted in expected.blocks.items():
        if index == _NVDEC0_BLOCK_INDEX and nvdec0_off:
            continue
        block = report.block(index)
        wanted = " or ".join(v.hex() for v in accepted)
        if block is None:
            failures.append(Failure(f"GPU measurement block {index}", "absent", wanted))
        elif block.value not in accepted:
            failures.append(Failure(f"GPU measurement block {index}", block.value.hex(), wanted))
    for what, want, seen in (
        ("GPU driver_version", expected.driver_version, report.driver_version),
        ("GPU vbios_version", expected.vbios_version, report.vbios_version),
    ):
        if want is not None and (seen is None or seen.lower() != want.lower()):
            failures.append(Failure(what, str(seen), want))
    if failures:
        raise PolicyViolation(failures)
