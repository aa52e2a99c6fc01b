"""The GPU measurements as a pinned value: do the verified GPU reports match what was chosen?

Issue 9 item 7; specs: DMTF DSP0274 (SPDM) 1.1 §10.11.1 for the blocks, and NVIDIA's model (read
from nvtrust's ``local_gpu_verifier``) in which a devtools or CC-off H100 shows up as measurement
blocks that differ from the RIMs: comparing the blocks *is* the confidential-computing-mode check
(``docs/attestation-nvidia.md``). The comparison itself is
:func:`attestation.nvidia.reference.validate_gpu_measurements`, the one ``verify_evidence`` runs
for ``Expected.gpu_measurements``; this module decides *what* it compares with, per the
requester's pins (:mod:`dvm.client.pins`):

- **by flag**: every GPU report matches one of the expectations the requester gave
  (``--gpu-measurements FILE``, :class:`~attestation.nvidia.reference.ExpectedGpuMeasurements`);
- **by a publisher**: every GPU report matches one ``gpu`` entry of that trusted publisher's
  reference values for this TEE kind (:mod:`dvm.cdvm.release_gpu`; the entry states the driver
  and VBIOS versions, which are compared too). K publishers must each match (the threshold is
  applied by :mod:`dvm.client.pins`).

Why after verification and not as ``Expected.gpu_measurements`` before it: a publisher's entry
is chosen by the GPU's driver and VBIOS versions, which are authentic only once the report's
signature verified, and K publishers are counted one by one; the comparison is the same
function either way. What did not match is reported **block by block**
(:attr:`GpuMatch.mismatches`), public values only. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attestation.errors import Failure, PolicyViolation
from attestation.nvidia.reference import ExpectedGpuMeasurements, validate_gpu_measurements
from attestation.nvidia.verify import VerifiedGpuReport
from dvm.cdvm.refs import PublishedReference
from dvm.nostr.keys import PublicKey
from dvm.nostr.nip19 import encode_npub

__all__ = ["GpuMatch", "describe_gpus", "match_gpus"]

_SHOWN_CHARS = 16


@dataclass(frozen=True, slots=True)
class GpuMatch:
    """How the GPU reports fared against the flag's expectations and each trusted reference.

    ``publishers``/``releases``: the references every GPU matched (hex keys, sorted).
    ``mismatches``: one line per GPU and expectation that did not match, blocks listed.
    """

    value: str
    by_flag: bool
    publishers: tuple[str, ...]
    releases: tuple[str, ...]
    mismatches: tuple[str, ...]


def _versions(gpu: VerifiedGpuReport) -> str:
    return f"driver {gpu.driver_version or '(none)'}, VBIOS {gpu.vbios_version or '(none)'}"


def describe_gpus(gpus: Sequence[VerifiedGpuReport]) -> str:
    """``N GPU(s): driver D, VBIOS V`` (each distinct version pair once)."""
    if not gpus:
        return "no GPU report"
    pairs = sorted({_versions(g) for g in gpus})
    return f"{len(gpus)} GPU(s): {'; '.join(pairs)}"


def _short(text: str) -> str:
    return " or ".join(
        part if len(part) <= _SHOWN_CHARS + 8 else part[:_SHOWN_CHARS] + "…"
        for part in text.split(" or ")
    )


def _failures(gpu: VerifiedGpuReport, expected: ExpectedGpuMeasurements) -> tuple[Failure, ...]:
    try:
        validate_gpu_measurements(gpu, expected)
    except PolicyViolation as exc:
        return exc.failures
    return ()


def _text(failures: Sequence[Failure]) -> str:
    return "; ".join(
        f"{f.field.removeprefix('GPU ')}: saw {_short(f.seen)}, wanted {_short(f.wanted)}"
        for f in failures
    )


def _same_versions(gpu: VerifiedGpuReport, expected: ExpectedGpuMeasurements) -> bool:
    seen = ((gpu.driver_version or "").lower(), (gpu.vbios_version or "").lower())
    return seen == ((expected.driver_version or "").lower(), (expected.vbios_version or "").lower())


def _flag_lines(
    gpus: Sequence[VerifiedGpuReport], flags: Sequence[ExpectedGpuMeasurements]
) -> list[str]:
    lines = []
    for index, gpu in enumerate(gpus):
        results = [(e, _failures(gpu, e)) for e in flags]
        if any(not failures for _, failures in results):
            continue
        for expected, failures in results:
            source = ", ".join(expected.sources) or "the file"
            lines.append(f"GPU {index} against --gpu-measurements ({source}): {_text(failures)}")
    return lines


def _reference_lines(
    gpus: Sequence[VerifiedGpuReport], ref: PublishedReference
) -> tuple[bool, list[str]]:
    npub = encode_npub(PublicKey.from_hex(ref.publisher))
    who = f"{npub} (release {ref.values.release})"
    lines = []
    vouches = True
    for index, gpu in enumerate(gpus):
        entries = [(g, g.expected()) for g in ref.values.gpu]
        if any(not _failures(gpu, e) for _, e in entries):
            continue
        vouches = False
        same = [(g, e) for g, e in entries if _same_versions(gpu, e)]
        if not same:
            lines.append(f"GPU {index}: {who} states no GPU measurements for {_versions(gpu)}")
        for entry, expected in same:
            lines.append(
                f"GPU {index} against {npub} (release {ref.values.release}, {entry.architecture}): "
                f"{_text(_failures(gpu, expected))}"
            )
    return vouches, lines


def match_gpus(
    gpus: Sequence[VerifiedGpuReport],
    flags: Sequence[ExpectedGpuMeasurements],
    references: Sequence[PublishedReference],
) -> GpuMatch:
    """Compare every GPU report with the flag's expectations and each reference's entries.

    ``references`` are the caller's usable ones (trusted publishers, this TEE kind). With no GPU
    report nothing matches (a GPU job's evidence without one is refused earlier, by kind).
    """
    if not gpus:
        return GpuMatch(describe_gpus(gpus), False, (), (), ("the evidence carries no GPU report",))
    by_flag = bool(flags) and all(any(not _failures(g, e) for e in flags) for g in gpus)
    mismatches = [] if by_flag else _flag_lines(gpus, flags)
    vouching = []
    for ref in references:
        vouches, lines = _reference_lines(gpus, ref)
        if vouches:
            vouching.append(ref)
        mismatches += lines
    return GpuMatch(
        value=describe_gpus(gpus),
        by_flag=by_flag,
        publishers=tuple(sorted({r.publisher for r in vouching})),
        releases=tuple(sorted({r.values.release for r in vouching})),
        mismatches=tuple(mismatches),
    )
