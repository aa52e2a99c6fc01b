"""Parse the CoCo attestation agent's SEV-SNP evidence JSON back into the raw report.

What the agent returns (docs/protocol.md "Binding", where each source is cited): the body of
``GET /aa/evidence`` is the JSON of guest-components' ``SnpEvidence``
(``attestation-agent/attester/src/snp/mod.rs``): ``{"attestation_report": <the virtee/sev
crate's serde rendering of AttestationReport>, "cert_chain": [<CertTableEntry>...] | null}``,
and newer attesters may add ``"svsm_manifest"``. The sev crate (v6 line, the one guest-components
pins; ``src/firmware/guest/types/snp.rs``) renders the report field by field:

* integers (``version``, ``guest_svn``, ``vmpl``, ``sig_algo``) and the bitfield newtypes
  (``policy``, ``plat_info``, ``key_info``) as JSON numbers;
* byte arrays (``Array<u8, N>``: ``family_id`` ... ``chip_id``) as JSON arrays of N numbers;
* ``TcbVersion`` as ``{"fmc": n|null, "bootloader", "tee", "snp", "microcode"}``;
* ``Version`` (``current``, ``committed``) as ``{"major", "minor", "build"}``;
* ``cpuid_fam_id``/``cpuid_mod_id``/``cpuid_step`` as numbers, or null on a v2 report;
* ``signature`` as ``{"r": [72], "s": [72]}`` (little-endian, zero-padded);
* no reserved bytes (``write_bytes`` writes zeros there).

Contract: :func:`parse_agent_evidence` rebuilds the 1184 bytes exactly as the crate's
``AttestationReport::write_bytes`` lays them out (AMD SEV-SNP ABI 56860, Table 23; TCB_VERSION in
the Turin layout when CPUID family is 0x1A or later, else the legacy one) and the certificate
table entries; every malformed part raises :class:`~attestation.errors.ParseError`. The result
is only a candidate: the report's signature, verified afterwards over these bytes, is what makes
it authentic, so any loss in the rendering (a field this crate version does not carry, such as
a v5 report's mitigation vectors when absent) makes verification fail, never pass. Renderings of
other crate versions (the older ``_author_key_en``/``current_build`` layout) are refused.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attestation.errors import ParseError

from .abi import REPORT_SIZE_BYTES
from .certtable import CertKind, CertTableEntry

__all__ = ["AgentEvidence", "parse_agent_evidence", "parse_agent_report"]

_TURIN_FAMILY = 0x1A
_SIG_COMPONENT_BYTES = 72
_SIGNATURE_OFFSET = 0x2A0
# The agent's names for the GHCB certificate GUIDs (sev crate ``CertType``); other entries
# (``CRL``, ``Empty``, ``{"OTHER": guid}``) carry nothing the verifier uses and are skipped.
_CERT_KINDS = {
    "ARK": CertKind.ARK,
    "ASK": CertKind.ASK,
    "VCEK": CertKind.VCEK,
    "VLEK": CertKind.VLEK,
}
_ARRAYS = (  # (field, offset, size) for the byte arrays, in report order
    ("family_id", 0x10, 16),
    ("image_id", 0x20, 16),
    ("report_data", 0x50, 64),
    ("measurement", 0x90, 48),
    ("host_data", 0xC0, 32),
    ("id_key_digest", 0xE0, 48),
    ("author_key_digest", 0x110, 48),
    ("report_id", 0x140, 32),
    ("report_id_ma", 0x160, 32),
    ("chip_id", 0x1A0, 64),
)
_TCBS = (
    ("current_tcb", 0x38),
    ("reported_tcb", 0x180),
    ("committed_tcb", 0x1E0),
    ("launch_tcb", 0x1F0),
)
_LEGACY_KEYS = frozenset({"_author_key_en", "current_build", "_reserved_0"})


@dataclass(frozen=True, slots=True)
class AgentEvidence:
    """The raw report rebuilt from the agent's JSON, and the certificates it sent."""

    report: bytes
    certificates: tuple[CertTableEntry, ...]


def _int(value: object, name: str, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ParseError(f"agent evidence: {name} is not a {bits}-bit unsigned integer")
    return value


def _byte_list(value: object, name: str, size: int | None = None) -> bytes:
    if not isinstance(value, list):
        raise ParseError(f"agent evidence: {name} is not an array of bytes")
    out = bytes(_int(b, name, 8) for b in value)
    if size is not None and len(out) != size:
        raise ParseError(f"agent evidence: {name} has {len(out)} bytes, wanted {size}")
    return out


def _object(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ParseError(f"agent evidence: {name} is not an object")
    return value


def _tcb(value: object, name: str, *, turin: bool) -> bytes:
    tcb = _object(value, name)
    parts = {
        k: _int(tcb.get(k), f"{name}.{k}", 8) for k in ("bootloader", "tee", "snp", "microcode")
    }
    fmc = tcb.get("fmc")
    fmc = 0 if fmc is None else _int(fmc, f"{name}.fmc", 8)
    if turin:
        return bytes(
            [fmc, parts["bootloader"], parts["tee"], parts["snp"], 0, 0, 0, parts["microcode"]]
        )
    if fmc:
        raise ParseError(f"agent evidence: {name}.fmc is set on a pre-Turin report")
    return bytes([parts["bootloader"], parts["tee"], 0, 0, 0, 0, parts["snp"], parts["microcode"]])


def _version(value: object, name: str) -> bytes:
    version = _object(value, name)
    return bytes(_int(version.get(k), f"{name}.{k}", 8) for k in ("build", "minor", "major"))


def parse_agent_report(rendering: object) -> bytes:
    """The 1184 raw bytes of the sev crate's JSON rendering of an AttestationReport."""
    fields = _object(rendering, "attestation_report")
    if _LEGACY_KEYS & fields.keys():
        raise ParseError("agent evidence: an older sev crate rendering (not supported)")
    out = bytearray(REPORT_SIZE_BYTES)
    version = _int(fields.get("version"), "version", 32)
    cpuid = [fields.get(k) for k in ("cpuid_fam_id", "cpuid_mod_id", "cpuid_step")]
    if version >= 3:
        family, model, stepping = (_int(v, "cpuid", 8) for v in cpuid)
        out[0x188:0x18B] = bytes([family, model, stepping])
    elif any(v is not None for v in cpuid):
        raise ParseError("agent evidence: a v2 report with CPUID fields")
    turin = version >= 3 and out[0x188] >= _TURIN_FAMILY
    struct.pack_into("<II", out, 0x00, version, _int(fields.get("guest_svn"), "guest_svn", 32))
    struct.pack_into("<Q", out, 0x08, _int(fields.get("policy"), "policy", 64))
    struct.pack_into(
        "<II",
        out,
        0x30,
        _int(fields.get("vmpl"), "vmpl", 32),
        _int(fields.get("sig_algo"), "sig_algo", 32),
    )
    struct.pack_into("<Q", out, 0x40, _int(fields.get("plat_info"), "plat_info", 64))
    struct.pack_into("<I", out, 0x48, _int(fields.get("key_info"), "key_info", 32))
    for name, offset, size in _ARRAYS:
        out[offset : offset + size] = _byte_list(fields.get(name), name, size)
    for name, offset in _TCBS:
        out[offset : offset + 8] = _tcb(fields.get(name), name, turin=turin)
    out[0x1E8:0x1EB] = _version(fields.get("current"), "current")
    out[0x1EC:0x1EF] = _version(fields.get("committed"), "committed")
    for name, offset in (("launch_mit_vector", 0x1F8), ("current_mit_vector", 0x200)):
        if fields.get(name) is not None:
            struct.pack_into("<Q", out, offset, _int(fields[name], name, 64))
    signature = _object(fields.get("signature"), "signature")
    out[_SIGNATURE_OFFSET : _SIGNATURE_OFFSET + _SIG_COMPONENT_BYTES] = _byte_list(
        signature.get("r"), "signature.r", _SIG_COMPONENT_BYTES
    )
    s_offset = _SIGNATURE_OFFSET + _SIG_COMPONENT_BYTES
    out[s_offset : s_offset + _SIG_COMPONENT_BYTES] = _byte_list(
        signature.get("s"), "signature.s", _SIG_COMPONENT_BYTES
    )
    return bytes(out)


def _certificates(chain: object) -> tuple[CertTableEntry, ...]:
    if chain is None:
        return ()
    if not isinstance(chain, list):
        raise ParseError("agent evidence: cert_chain is not a list")
    entries = []
    for item in chain:
        entry = _object(item, "cert_chain entry")
        kind = entry.get("cert_type")
        if isinstance(kind, str) and kind in _CERT_KINDS:
            guid = uuid.UUID(_CERT_KINDS[kind].value)
            entries.append(CertTableEntry(guid=guid, data=_byte_list(entry.get("data"), kind)))
        elif not (kind in ("CRL", "Empty") or isinstance(kind, dict)):
            raise ParseError(f"agent evidence: unknown cert_type {str(kind)[:16]!r}")
    return tuple(entries)


def parse_agent_evidence(evidence: object) -> AgentEvidence:
    """The raw report and certificates of the agent's parsed ``SnpEvidence`` JSON object."""
    body = _object(evidence, "evidence")
    if "attestation_report" not in body:
        raise ParseError("agent evidence: no attestation_report (not SEV-SNP evidence?)")
    return AgentEvidence(
        report=parse_agent_report(body["attestation_report"]),
        certificates=_certificates(body.get("cert_chain")),
    )
