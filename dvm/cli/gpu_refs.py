"""GPU reference measurements on the command line: RIM files and expected-measurement JSON files.

Used by ``cdvm refs publish`` (the ``gpu`` entries of a ``sev-snp+nvidia-h100`` release,
``docs/protocol.md`` §9) and by ``cdvm submit|chat --gpu-measurements FILE`` (a requester's own
pin, ``docs/client.md``). Two inputs:

- ``--gpu-rims DRIVER_RIM VBIOS_RIM``: NVIDIA's driver and VBIOS RIMs (SWID XML, as the NVIDIA
  RIM service serves them), reduced to expected blocks by
  :func:`attestation.nvidia.reference.expected_from_rims`; the entry records each RIM's
  ``tagId`` and the SHA-256 of the file. **The RIMs' XMLDSig signatures are not verified**
  (LIMITATIONS.md): the publisher vouches for having authenticated them.
- ``--gpu-measurements FILE``: a JSON object as
  :func:`attestation.nvidia.reference.parse_expected_measurements` accepts (``measurements``,
  ``driver_version``, ``vbios_version``, ``sources``); a release's ``gpu`` entry is one such
  object. For publishing, both versions and at least one source are required.

Errors are :class:`GpuFileError` (one line, the file named, no file content).
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from pathlib import Path

from attestation.errors import AttestationError
from attestation.nvidia.reference import (
    ExpectedGpuMeasurements,
    expected_from_rims,
    parse_expected_measurements,
)
from attestation.nvidia.rim import parse_rim
from dvm.cdvm.refs import GpuReference, RimRef
from dvm.nostr.errors import CodecError, JsonError
from dvm.nostr.strict_json import parse_json

from .paths import resolved

__all__ = [
    "GpuFileError",
    "add_gpu_arguments",
    "gpu_entries",
    "load_gpu_measurements",
    "render_gpu",
]

_MAX_FILE_BYTES = 4 * 1024 * 1024


class GpuFileError(Exception):
    """A RIM or expected-measurements file that cannot be used."""


def _read(path: str, flag: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GpuFileError(f"{flag} {path}: {exc.strerror}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise GpuFileError(f"{flag} {path}: over {_MAX_FILE_BYTES} bytes")
    return data


def load_gpu_measurements(path: str) -> ExpectedGpuMeasurements:
    """The expected GPU measurements in the JSON file at ``path``."""
    try:
        text = _read(path, "--gpu-measurements").decode("utf-8")
        return parse_expected_measurements(parse_json(text))
    except (UnicodeDecodeError, JsonError, AttestationError) as exc:
        raise GpuFileError(f"--gpu-measurements {path}: {exc}") from None


def _from_rims(driver_path: str, vbios_path: str, architecture: str) -> GpuReference:
    driver_xml, vbios_xml = _read(driver_path, "--gpu-rims"), _read(vbios_path, "--gpu-rims")
    try:
        driver, vbios = parse_rim(driver_xml), parse_rim(vbios_xml)
        expected = expected_from_rims(driver, vbios)
    except AttestationError as exc:
        raise GpuFileError(f"--gpu-rims {driver_path} {vbios_path}: {exc}") from None
    for rim, path in ((driver, driver_path), (vbios, vbios_path)):
        if rim.product and rim.product != architecture:
            raise GpuFileError(
                f"--gpu-rims {path} is a RIM for {rim.product[:40]!r}, not --gpu-architecture "
                f"{architecture}"
            )
    rims = (
        RimRef(driver.tag_id, hashlib.sha256(driver_xml).hexdigest()),
        RimRef(vbios.tag_id, hashlib.sha256(vbios_xml).hexdigest()),
    )
    return GpuReference.from_expected(expected, architecture=architecture, rims=rims)


def _from_json(path: str, architecture: str) -> GpuReference:
    expected = load_gpu_measurements(path)
    if not expected.sources:
        raise GpuFileError(
            f"--gpu-measurements {path}: name the RIMs the values came from in 'sources'"
        )
    return GpuReference.from_expected(
        expected, architecture=architecture, rims=tuple(RimRef(s) for s in expected.sources)
    )


def gpu_entries(
    rim_pairs: Sequence[Sequence[str]], measurement_files: Sequence[str], architecture: str
) -> tuple[GpuReference, ...]:
    """The ``gpu`` entries of a release: one per RIM pair and per JSON file, in that order."""
    try:
        return (
            *(_from_rims(driver, vbios, architecture) for driver, vbios in rim_pairs),
            *(_from_json(path, architecture) for path in measurement_files),
        )
    except CodecError as exc:
        raise GpuFileError(str(exc)) from None


def render_gpu(entries: Sequence[GpuReference]) -> list[str]:
    """Human lines for ``cdvm refs show`` (public values only)."""
    lines = []
    for entry in entries:
        lines.append(
            f"  GPU {entry.architecture} driver {entry.driver_version} VBIOS "
            f"{entry.vbios_version}: {len(entry.blocks)} measurement block(s) "
            f"({', '.join(str(i) for i, _ in entry.blocks)})"
        )
        for rim in entry.rims:
            lines.append(f"    from RIM {rim.id}" + (f" sha256 {rim.sha256}" if rim.sha256 else ""))
    return lines


def add_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--gpu-rims``, ``--gpu-measurements`` and ``--gpu-architecture`` to ``refs publish``."""
    parser.add_argument(
        "--gpu-rims",
        nargs=2,
        action="append",
        default=[],
        type=resolved,
        metavar=("DRIVER_RIM", "VBIOS_RIM"),
        help="GPU releases: NVIDIA driver and VBIOS RIM files you authenticated (repeatable)",
    )
    parser.add_argument(
        "--gpu-measurements",
        action="append",
        default=[],
        type=resolved,
        metavar="FILE",
        help="GPU releases: expected measurement blocks as JSON (docs/attestation-nvidia.md)",
    )
    parser.add_argument(
        "--gpu-architecture", default="GH100", metavar="NAME", help="GPU the RIMs are for"
    )
