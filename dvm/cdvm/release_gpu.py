"""What a ``sev-snp+nvidia-h100`` release states about its GPUs: the ``gpu`` entries of kind 37100.

Schema: ``docs/protocol.md`` §9. One :class:`GpuReference` per GPU architecture / driver version /
VBIOS version: the expected SPDM measurement blocks (DMTF DSP0274 1.1 §10.11.1, 1-based block
indices, SHA-384 values) as :func:`attestation.nvidia.reference.parse_expected_measurements`
accepts them (the canonical subset: lists of lowercase hex), and the RIMs they came from (tag id
and the SHA-256 of the RIM file, so anyone can fetch the same RIMs and recompute the blocks with
``expected_from_rims``). :meth:`GpuReference.expected` is the
:class:`~attestation.nvidia.reference.ExpectedGpuMeasurements` a requester's pins compare with a
verified GPU report (:mod:`dvm.client.pins`).

Strict like the rest of the content (:mod:`dvm.cdvm.release`): exact keys, versions in lowercase,
block keys decimal without leading zeros, each value 96 lowercase hex, no duplicate value, at
least one block and one RIM. ``architecture`` (e.g. ``GH100``, the ``product`` NVIDIA's RIMs
name) is descriptive: H100 evidence has no field the verifier compares it with, so entries are
selected by driver and VBIOS version, which :func:`validate_gpu_measurements` compares.
Every failure raises :class:`~dvm.nostr.errors.CodecError`. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from attestation.nvidia.reference import ExpectedGpuMeasurements
from dvm.nostr.errors import CodecError
from dvm.nostr.hex64 import is_hex64

from .tee import is_gpu_job

__all__ = ["GpuReference", "RimRef", "check_release_gpu"]

_MAX_ALTERNATIVES = 64
_MAX_RIMS = 8
_MAX_BLOCK_INDEX = 254  # SPDM 1.1: 0 and 255 are reserved
_SHA384_HEX = re.compile(r"[0-9a-f]{96}")
_VERSION = re.compile(r"[0-9a-z][0-9a-z._+-]{0,63}")
_ARCHITECTURE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_BLOCK_KEY = re.compile(r"[1-9][0-9]{0,2}")
_ENTRY_KEYS = frozenset({"architecture", "driver_version", "vbios_version", "measurements", "rims"})
_RIM_KEYS = frozenset({"id", "sha256"})


def _exact(value: object, keys: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != keys:
        raise CodecError(f"{what} must be a JSON object with exactly the keys {sorted(keys)}")
    return value


def _match(pattern: re.Pattern[str], value: object, what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise CodecError(f"{what} must be {rule}")
    return value


@dataclass(frozen=True, slots=True)
class RimRef:
    """A RIM the values came from: its ``tagId`` and the SHA-256 of the file (None: not given)."""

    id: str
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not 0 < len(self.id) <= 256 or not self.id.isprintable():
            raise CodecError("gpu[].rims[].id must be 1-256 printable characters")
        if self.sha256 is not None and not is_hex64(self.sha256):
            raise CodecError("gpu[].rims[].sha256 must be 64 lowercase hex characters or null")


@dataclass(frozen=True, slots=True)
class GpuReference:
    """Expected GPU measurement blocks for one architecture / driver / VBIOS version.

    ``blocks``: (SPDM block index, accepted SHA-384 values as lowercase hex), sorted by index.
    """

    architecture: str
    driver_version: str
    vbios_version: str
    blocks: tuple[tuple[int, tuple[str, ...]], ...]
    rims: tuple[RimRef, ...]

    def __post_init__(self) -> None:
        _match(_ARCHITECTURE, self.architecture, "gpu[].architecture", "1-32 of A-Z a-z 0-9 _ . -")
        for name in ("driver_version", "vbios_version"):
            _match(_VERSION, getattr(self, name), f"gpu[].{name}", "1-64 of 0-9 a-z . _ + -")
        if not isinstance(self.blocks, tuple) or not self.blocks:
            raise CodecError("gpu[].measurements must name at least one block")
        indices = []
        for item in self.blocks:
            if not isinstance(item, tuple) or len(item) != 2:
                raise CodecError("gpu[].measurements entries must be (index, values)")
            index, values = item
            if type(index) is not int or not 1 <= index <= _MAX_BLOCK_INDEX:
                raise CodecError(f"gpu[].measurements block {index!r} is outside 1..254")
            if not isinstance(values, tuple) or not 0 < len(values) <= _MAX_ALTERNATIVES:
                raise CodecError(f"gpu[].measurements block {index}: 1-64 values")
            for value in values:
                _match(_SHA384_HEX, value, f"gpu[].measurements block {index}", "96 lowercase hex")
            if len(set(values)) != len(values):
                raise CodecError(f"gpu[].measurements block {index} lists a value twice")
            indices.append(index)
        if indices != sorted(set(indices)):
            raise CodecError("gpu[].measurements blocks must be distinct and sorted")
        if not isinstance(self.rims, tuple) or not 0 < len(self.rims) <= _MAX_RIMS:
            raise CodecError(f"gpu[].rims must name 1-{_MAX_RIMS} RIMs the values came from")
        if not all(isinstance(r, RimRef) for r in self.rims):
            raise CodecError("gpu[].rims must be RimRef values")

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.architecture, self.driver_version, self.vbios_version)

    def expected(self) -> ExpectedGpuMeasurements:
        """What a verified GPU report must show: these blocks and both versions."""
        return ExpectedGpuMeasurements(
            blocks={i: tuple(bytes.fromhex(v) for v in values) for i, values in self.blocks},
            driver_version=self.driver_version,
            vbios_version=self.vbios_version,
            sources=tuple(r.id for r in self.rims),
        )

    @classmethod
    def from_expected(
        cls, expected: ExpectedGpuMeasurements, *, architecture: str, rims: tuple[RimRef, ...]
    ) -> GpuReference:
        """The entry for ``expected`` (which must state both versions)."""
        if expected.driver_version is None or expected.vbios_version is None:
            raise CodecError(
                "GPU reference measurements must state driver_version and vbios_version"
            )
        return cls(
            architecture=architecture,
            driver_version=expected.driver_version.lower(),
            vbios_version=expected.vbios_version.lower(),
            blocks=tuple(
                (i, tuple(v.hex() for v in values)) for i, values in expected.blocks.items()
            ),
            rims=rims,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "driver_version": self.driver_version,
            "vbios_version": self.vbios_version,
            "measurements": {str(i): list(values) for i, values in self.blocks},
            "rims": [{"id": r.id, "sha256": r.sha256} for r in self.rims],
        }

    @classmethod
    def from_dict(cls, value: object) -> GpuReference:
        body = _exact(value, _ENTRY_KEYS, "gpu[]")
        raw = body["measurements"]
        if not isinstance(raw, dict):
            raise CodecError("gpu[].measurements must be a JSON object keyed by block index")
        blocks = []
        for key, values in raw.items():
            index = int(_match(_BLOCK_KEY, key, "a gpu[].measurements key", "decimal 1..254"))
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise CodecError(f"gpu[].measurements block {index} must be a list of hex strings")
            blocks.append((index, tuple(values)))
        rims = body["rims"]
        if not isinstance(rims, list):
            raise CodecError(f"gpu[].rims must name 1-{_MAX_RIMS} RIMs the values came from")
        refs = []
        for item in rims:
            rim = _exact(item, _RIM_KEYS, "gpu[].rims[]")
            refs.append(RimRef(rim["id"], rim["sha256"]))
        return cls(
            architecture=body["architecture"],
            driver_version=body["driver_version"],
            vbios_version=body["vbios_version"],
            blocks=tuple(sorted(blocks)),
            rims=tuple(refs),
        )


def check_release_gpu(tee: str, entries: tuple[GpuReference, ...]) -> None:
    """The per-TEE rule: a ``sev-snp+nvidia-h100`` release states at least one entry, none twice
    (same architecture, driver and VBIOS version); other kinds state none."""
    if not all(isinstance(g, GpuReference) for g in entries):
        raise CodecError("gpu must be GpuReference values")
    if not is_gpu_job(tee):
        if entries:
            raise CodecError(f"a {tee} release has no GPU (nothing would check gpu)")
        return
    if not entries:
        raise CodecError(f"a {tee} release must state its GPU reference measurements (gpu)")
    if len({g.key for g in entries}) != len(entries):
        raise CodecError("gpu states an architecture / driver / VBIOS version twice")
