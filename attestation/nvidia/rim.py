"""NVIDIA Reference Integrity Manifests (RIMs): parse, compare with a report, validate by policy.

Specs: ISO/IEC 19770-2:2015 SWID tags with the TCG "Reference Integrity Manifest (RIM)
Information Model" 1.01 attributes
(https://trustedcomputinggroup.org/resource/tcg-reference-integrity-manifest-rim-information-model/);
NVIDIA's use of them as read from NVIDIA/nvtrust ``local_gpu_verifier`` (not copied): each
``Payload/Resource`` is one golden measurement with ``index`` (0-based), ``active``
(``True``/``False``), ``alternatives`` = n and attributes ``Hash0..Hash{n-1}`` (hex SHA-384 in the
``http://www.w3.org/2001/04/xmlenc#sha384`` namespace), and ``size`` (48).

Contract:

* :func:`parse_rim` is structural only and raises :class:`~attestation.errors.ParseError` and
  nothing else. The XML is hardened: UTF-8 only, at most 4 MiB, and any DOCTYPE or ENTITY
  declaration is refused outright before ``xml.etree`` sees the text (so no entity expansion
  and no external entities), which is what ``defusedxml`` would do, without the dependency.
* :func:`compare_measurements` lines up every *active* golden value of the driver RIM and the
  VBIOS RIM with the report's SPDM block ``rim_index + 1`` (RIM indices are 0-based, SPDM
  block indices 1-based, as in nvtrust), and says per index: matched, mismatched, missing (no
  such block), conflict (active in both RIMs) or skipped (index 35 when the report's NVDEC0
  status is "disabled", 0x55, as nvtrust does).
* :func:`validate_measurements` applies a :class:`RimPolicy` and raises one
  :class:`~attestation.errors.PolicyViolation` listing every failure.
* For reference values (RIMs the requester chose, reduced to expected SPDM blocks) the
  verifier uses :mod:`attestation.nvidia.reference` (``expected_from_rims``), which applies the
  same index and NVDEC0 rules.

**Not done: the RIMs' XMLDSig signatures are not verified** (that needs XML canonicalization
1.1, which neither the standard library nor ``cryptography`` provides). A comparison therefore
says ``rim_signature_checked=False``; golden values must come from a RIM the caller obtained
and authenticated out of band (e.g. pinned in reference values). ``signer_chain_der`` is
extracted so a future XMLDSig verifier can chain it to the bundled CoRIM root.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from xml.etree import ElementTree

from attestation.errors import Failure, ParseError, PolicyViolation
from attestation.nvidia.opaque import Nvdec0Status
from attestation.nvidia.verify import VerifiedGpuReport

__all__ = [
    "MAX_RIM_SIZE_BYTES",
    "NVDEC0_DISABLED",
    "GoldenMeasurement",
    "MeasurementResult",
    "MeasurementStatus",
    "Rim",
    "RimComparison",
    "RimPolicy",
    "compare_measurements",
    "parse_rim",
    "validate_measurements",
]

MAX_RIM_SIZE_BYTES = 4 * 1024 * 1024
MAX_ALTERNATIVES = 64
NVDEC0_DISABLED = b"\x55"
_NVDEC0_MEASUREMENT_INDEX = 35
_SHA384_SIZE_BYTES = 48
_SWID = "{http://standards.iso.org/iso/19770/-2/2015/schema.xsd}"
_SHA384 = "{http://www.w3.org/2001/04/xmlenc#sha384}"
_DSIG = "{http://www.w3.org/2000/09/xmldsig#}"
_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_HASH_ATTRIBUTE = re.compile(re.escape(_SHA384) + r"Hash(\d+)")


@dataclass(frozen=True, slots=True)
class GoldenMeasurement:
    """One RIM ``Resource``: the accepted values for one measurement index."""

    index: int
    name: str
    active: bool
    size_bytes: int
    alternatives: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Rim:
    """A parsed (not signature-checked) NVIDIA RIM."""

    tag_id: str
    product: str
    colloquial_version: str
    measurements: tuple[GoldenMeasurement, ...]
    signer_chain_der: tuple[bytes, ...]


class MeasurementStatus(StrEnum):
    MATCHED = "matched"
    MISMATCHED = "mismatched"
    MISSING = "missing"
    CONFLICT = "conflict"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class MeasurementResult:
    """The outcome for one active golden index (``block_index`` = ``rim_index`` + 1)."""

    rim_index: int
    status: MeasurementStatus
    source: str
    seen: bytes | None
    wanted: tuple[bytes, ...]

    @property
    def block_index(self) -> int:
        return self.rim_index + 1


@dataclass(frozen=True, slots=True)
class RimComparison:
    """Every active golden index with its status, and the versions on both sides."""

    results: tuple[MeasurementResult, ...]
    driver_version_rim: str
    driver_version_report: str | None
    vbios_version_rim: str
    vbios_version_report: str | None
    rim_signature_checked: bool = False

    def _indices(self, status: MeasurementStatus) -> tuple[int, ...]:
        return tuple(r.rim_index for r in self.results if r.status is status)

    @property
    def matched(self) -> tuple[int, ...]:
        return self._indices(MeasurementStatus.MATCHED)

    @property
    def mismatched(self) -> tuple[int, ...]:
        return self._indices(MeasurementStatus.MISMATCHED)

    @property
    def missing(self) -> tuple[int, ...]:
        return self._indices(MeasurementStatus.MISSING)

    @property
    def conflicts(self) -> tuple[int, ...]:
        return self._indices(MeasurementStatus.CONFLICT)

    @property
    def skipped(self) -> tuple[int, ...]:
        return self._indices(MeasurementStatus.SKIPPED)


@dataclass(frozen=True, slots=True)
class RimPolicy:
    """What :func:`validate_measurements` demands. Defaults are the strict ones.

    ``require_rim_signature`` cannot be met until RIM XMLDSig verification exists; it is off by
    default and, when on, always fails, saying so.
    """

    allow_missing: bool = False
    require_version_match: bool = True
    require_rim_signature: bool = False


def _harden_and_parse(data: bytes) -> ElementTree.Element:
    if len(data) > MAX_RIM_SIZE_BYTES:
        raise ParseError(f"RIM is {len(data)} bytes, limit {MAX_RIM_SIZE_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("RIM is not UTF-8") from None
    if _DECLARATION.search(text):
        raise ParseError("RIM contains a DOCTYPE or ENTITY declaration; refused")
    # Entities can only be declared inside a DOCTYPE, and the text checked above is exactly
    # what expat sees: fed a str, ElementTree forces UTF-8 whatever the XML declaration says.
    parser = ElementTree.XMLParser()  # noqa: S314 - DOCTYPE/ENTITY refused just above
    try:
        parser.feed(text)
        return parser.close()
    except ElementTree.ParseError as exc:
        raise ParseError(f"RIM is not well-formed XML: {exc}") from None


def _one(parent: ElementTree.Element, tag: str) -> ElementTree.Element:
    found = parent.findall(_SWID + tag)
    if len(found) != 1:
        raise ParseError(f"RIM has {len(found)} {tag} elements, wanted 1")
    return found[0]


def _attr(element: ElementTree.Element, name: str) -> str:
    value = element.get(name)
    if value is None or not value:
        raise ParseError(f"RIM {element.tag.rpartition('}')[2]} lacks attribute {name!r}")
    return value


def _decimal(element: ElementTree.Element, name: str) -> int:
    value = _attr(element, name)
    if not (value.isascii() and value.isdigit()) or len(value) > 6:
        raise ParseError(f"RIM attribute {name}={value!r} is not a small decimal")
    return int(value)


def _measurement(resource: ElementTree.Element) -> GoldenMeasurement:
    if resource.tag != _SWID + "Resource" or resource.get("type") != "Measurement":
        raise ParseError(f"RIM Payload child {resource.tag!r} is not a Measurement Resource")
    index = _decimal(resource, "index")
    active_text = _attr(resource, "active")
    if active_text not in ("True", "False"):
        raise ParseError(f"RIM measurement {index}: active={active_text!r}, wanted True/False")
    count = _decimal(resource, "alternatives")
    size = _decimal(resource, "size")
    if not 1 <= count <= MAX_ALTERNATIVES or size != _SHA384_SIZE_BYTES:
        raise ParseError(f"RIM measurement {index}: {count} alternatives of {size} bytes")
    numbers = sorted(int(m[1]) for a in resource.attrib if (m := _HASH_ATTRIBUTE.fullmatch(a)))
    if numbers != list(range(count)):
        raise ParseError(
            f"RIM measurement {index}: Hash attributes {numbers}, wanted 0..{count - 1}"
        )
    values: list[bytes] = []
    for number in range(count):
        text = resource.attrib[f"{_SHA384}Hash{number}"]
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise ParseError(f"RIM measurement {index}: Hash{number} is not hex") from None
        if len(value) != size:
            raise ParseError(f"RIM measurement {index}: Hash{number} is {len(value)} bytes")
        values.append(value)
    return GoldenMeasurement(
        index=index,
        name=resource.get("name", ""),
        active=active_text == "True",
        size_bytes=size,
        alternatives=tuple(values),
    )


def _signer_chain(root: ElementTree.Element) -> tuple[bytes, ...]:
    chain: list[bytes] = []
    for cert in root.iterfind(
        f"{_DSIG}Signature/{_DSIG}KeyInfo/{_DSIG}X509Data/{_DSIG}X509Certificate"
    ):
        try:
            chain.append(base64.b64decode("".join((cert.text or "").split()), validate=True))
        except binascii.Error:
            raise ParseError("RIM X509Certificate is not base64") from None
    return tuple(chain)


def parse_rim(data: bytes) -> Rim:
    """Parse one NVIDIA SWID/TCG RIM (see the module docstring for what is checked)."""
    root = _harden_and_parse(data)
    if root.tag != _SWID + "SoftwareIdentity":
        raise ParseError(f"RIM root is {root.tag!r}, wanted SWID SoftwareIdentity")
    meta = _one(root, "Meta")
    measurements = tuple(_measurement(child) for child in _one(root, "Payload"))
    indices = [m.index for m in measurements]
    if len(set(indices)) != len(indices):
        raise ParseError("RIM assigns one measurement index twice")
    if not measurements:
        raise ParseError("RIM has no measurements")
    return Rim(
        tag_id=_attr(root, "tagId"),
        product=meta.get("product", ""),
        colloquial_version=_attr(meta, "colloquialVersion").lower(),
        measurements=measurements,
        signer_chain_der=_signer_chain(root),
    )


def _golden(driver_rim: Rim, vbios_rim: Rim) -> Iterator[tuple[str, GoldenMeasurement, bool]]:
    vbios_active = {m.index for m in vbios_rim.measurements if m.active}
    driver_active = {m.index for m in driver_rim.measurements if m.active}
    for source, rim, other in (
        ("driver", driver_rim, vbios_active),
        ("vbios", vbios_rim, driver_active),
    ):
        for golden in rim.measurements:
            if golden.active:
                yield source, golden, golden.index in other


def compare_measurements(
    report: VerifiedGpuReport, *, driver_rim: Rim, vbios_rim: Rim
) -> RimComparison:
    """Compare every active golden measurement of both RIMs with the verified report."""
    nvdec0_disabled = report.opaque_data.nvdec0_status is Nvdec0Status.DISABLED
    results: list[MeasurementResult] = []
    for source, golden, conflict in _golden(driver_rim, vbios_rim):
        block = report.block(golden.index + 1)
        seen = None if block is None else block.value
        if conflict:
            status = MeasurementStatus.CONFLICT
        elif golden.index == _NVDEC0_MEASUREMENT_INDEX and nvdec0_disabled:
            status = MeasurementStatus.SKIPPED
        elif seen is None:
            status = MeasurementStatus.MISSING
        elif seen in golden.alternatives:
            status = MeasurementStatus.MATCHED
        else:
            status = MeasurementStatus.MISMATCHED
        results.append(MeasurementResult(golden.index, status, source, seen, golden.alternatives))
    results.sort(key=lambda r: (r.rim_index, r.source))
    return RimComparison(
        results=tuple(results),
        driver_version_rim=driver_rim.colloquial_version,
        driver_version_report=report.driver_version,
        vbios_version_rim=vbios_rim.colloquial_version,
        vbios_version_report=report.vbios_version,
    )


def _failure(result: MeasurementResult) -> Failure:
    wanted = " or ".join(v.hex() for v in result.wanted)
    if result.status is MeasurementStatus.CONFLICT:
        wanted = "active in one RIM only"
    return Failure(
        field=f"measurement[{result.rim_index}] (SPDM block {result.block_index}, {result.source})",
        seen=result.status.value if result.seen is None else result.seen.hex(),
        wanted=wanted,
    )


def validate_measurements(comparison: RimComparison, policy: RimPolicy | None = None) -> None:
    """Raise one PolicyViolation listing every measurement/version failure under ``policy``."""
    policy = policy or RimPolicy()
    failing = {MeasurementStatus.MISMATCHED, MeasurementStatus.CONFLICT}
    if not policy.allow_missing:
        failing.add(MeasurementStatus.MISSING)
    failures = [_failure(r) for r in comparison.results if r.status in failing]
    if policy.require_version_match:
        for what, in_rim, in_report in (
            ("driver_version", comparison.driver_version_rim, comparison.driver_version_report),
            ("vbios_version", comparison.vbios_version_rim, comparison.vbios_version_report),
        ):
            if in_report is None or in_report.lower() != in_rim:
                failures.append(Failure(what, str(in_report), in_rim))
    if policy.require_rim_signature and not comparison.rim_signature_checked:
        failures.append(Failure("rim_signature_checked", "false", "true"))
    if failures:
        raise PolicyViolation(failures)
