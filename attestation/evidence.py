"""The cdvm/1 evidence bundle: the content of a kind-7100 attestation (DESIGN §3.4-§3.5).

Spec: DESIGN.md §3 steps 4-5; ``docs/attestation.md`` (item formats, trust rules);
``dvm/nostr/cdvm.py`` (the event around the bundle). Content JSON::

    {"v": 1, "claims": {...}, "evidence": [item, ...], "initdata": <base64> | null}

Items (base64 is standard, padded, canonical; certificates are DER)::

    {"type": "sev-snp" | "simulated", "report": b64(1184 bytes), "vek": b64, "ask": b64,
     "ark": b64[, "product": "Milan" | "Genoa" | "Turin"]}
    {"type": "nvidia-gpu", "report": b64(SPDM request || response), "certs": [b64, ...]}

Exactly one ``sev-snp`` or ``simulated`` item (the CPU report, whose REPORT_DATA carries the
binding) and any number of ``nvidia-gpu`` items. Contract: :func:`parse_bundle` checks
structure only (JSON shape, base64, the report's ABI, that certificates parse, the claims'
shape as :class:`dvm.cdvm.kind7100.Claims` has it) and raises
:class:`~attestation.errors.ParseError` and nothing else; :func:`build_bundle` is its inverse.
Verification is :func:`attestation.verification.verify_evidence`'s job.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from attestation.binding import canonical_claims_json
from attestation.errors import ParseError
from attestation.nvidia.spdm import parse_gpu_report
from attestation.snp.abi import Product, parse_report
from attestation.snp.vek import load_certificate

__all__ = [
    "BUNDLE_VERSION",
    "SIMULATED_LABEL",
    "Bundle",
    "EvidenceType",
    "GpuItem",
    "SnpItem",
    "build_bundle",
    "parse_bundle",
]

BUNDLE_VERSION = 1
#: Printed with every output about simulated evidence, accepted or not.
SIMULATED_LABEL = "SIMULATED: not confidential"

# attestation imports nothing of dvm, so it cannot use dvm.nostr.hex64: this is its one copy.
_HEX64 = re.compile(r"[0-9a-f]{64}")
_BUNDLE_KEYS = frozenset({"v", "claims", "evidence", "initdata"})
_CLAIM_KEYS = frozenset({"pubkey", "job", "nonce", "provider", "model", "runtime"})
_SNP_KEYS = frozenset({"type", "report", "vek", "ask", "ark"})
_GPU_KEYS = frozenset({"type", "report", "certs"})


class EvidenceType(StrEnum):
    """The ``type`` of an evidence item; the one definition (``dvm.cdvm.kind7100`` imports it)."""

    SEV_SNP = "sev-snp"
    NVIDIA_GPU = "nvidia-gpu"
    SIMULATED = "simulated"


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ParseError(f"{what} must be non-empty base64 text")
    try:
        decoded = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ParseError(f"{what} is not base64") from None
    if _b64(decoded) != value:
        raise ParseError(f"{what} is not canonical base64")
    return decoded


@dataclass(frozen=True, slots=True)
class SnpItem:
    """A ``sev-snp`` or ``simulated`` item: the report, its VEK, ASK (or ASVK) and ARK (DER)."""

    type: EvidenceType
    report: bytes
    vek: bytes
    ask: bytes
    ark: bytes
    product: Product | None = None

    def __post_init__(self) -> None:
        if self.type not in (EvidenceType.SEV_SNP, EvidenceType.SIMULATED):
            raise ParseError(f"an SNP item cannot have type {self.type!r}")
        parse_report(self.report, product=self.product)
        for what in ("vek", "ask", "ark"):
            load_certificate(getattr(self, what))

    @property
    def simulated(self) -> bool:
        return self.type == EvidenceType.SIMULATED

    def to_json(self) -> dict[str, Any]:
        """The item as a JSON object (for ``dvm.cdvm.kind7100.build_attestation``)."""
        out: dict[str, Any] = {"type": self.type.value, "report": _b64(self.report)}
        out |= {"vek": _b64(self.vek), "ask": _b64(self.ask), "ark": _b64(self.ark)}
        if self.product is not None:
            out["product"] = self.product.value
        return out


@dataclass(frozen=True, slots=True)
class GpuItem:
    """An ``nvidia-gpu`` item: the SPDM request||response and the device chain, leaf first."""

    report: bytes
    certs: tuple[bytes, ...]
    type: EvidenceType = field(default=EvidenceType.NVIDIA_GPU, init=False)

    def __post_init__(self) -> None:
        parse_gpu_report(self.report)
        if not self.certs:
            raise ParseError("nvidia-gpu item: the certificate chain is empty")
        for cert in self.certs:
            load_certificate(cert)

    def to_json(self) -> dict[str, Any]:
        """The item as a JSON object (for ``dvm.cdvm.kind7100.build_attestation``)."""
        return {
            "type": self.type.value,
            "report": _b64(self.report),
            "certs": [_b64(c) for c in self.certs],
        }


@dataclass(frozen=True, slots=True)
class Bundle:
    """A parsed bundle: claims (kept as JSON text, so the value cannot change), items, initdata."""

    claims_json: str
    cpu: SnpItem
    gpus: tuple[GpuItem, ...] = ()
    initdata: bytes | None = None

    @property
    def claims(self) -> dict[str, Any]:
        """A fresh copy of the claims object."""
        value: dict[str, Any] = json.loads(self.claims_json)
        return value

    @property
    def simulated(self) -> bool:
        return self.cpu.simulated

    @property
    def tee(self) -> str:
        """``sev-snp`` or ``simulated``, with ``+nvidia-gpu`` when GPU evidence is present."""
        return self.cpu.type.value + ("+nvidia-gpu" if self.gpus else "")

    def to_json(self) -> str:
        """The content JSON (same layout as ``dvm.cdvm.kind7100.build_attestation``)."""
        body = {
            "v": BUNDLE_VERSION,
            "claims": self.claims,
            "evidence": [self.cpu.to_json(), *(g.to_json() for g in self.gpus)],
            "initdata": None if self.initdata is None else _b64(self.initdata),
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _hex64(value: object, what: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ParseError(f"{what} must be 64 lowercase hex characters")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ParseError(f"{what} must be a non-empty string")
    return value


def _exact(
    value: object, keys: frozenset[str], what: str, optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ParseError(f"{what} must be a JSON object")
    if not keys <= set(value) <= keys | optional:
        raise ParseError(f"{what} must have the keys {sorted(keys)} (optional: {sorted(optional)})")
    return value


def _check_claims(value: object) -> dict[str, Any]:
    claims = _exact(value, _CLAIM_KEYS, "claims")
    for name in ("pubkey", "job", "nonce", "provider"):
        _hex64(claims[name], f"claims.{name}")
    model = _exact(claims["model"], frozenset({"name", "sha256"}), "claims.model")
    _text(model["name"], "claims.model.name")
    _hex64(model["sha256"], "claims.model.sha256")
    runtime = _exact(claims["runtime"], frozenset({"version", "image"}), "claims.runtime")
    _text(runtime["version"], "claims.runtime.version")
    _text(runtime["image"], "claims.runtime.image")
    canonical_claims_json(claims)  # refuses text that is not valid Unicode (lone surrogates)
    return claims


def _item(value: object, index: int) -> SnpItem | GpuItem:
    where = f"evidence[{index}]"
    if not isinstance(value, dict):
        raise ParseError(f"{where} must be a JSON object")
    kind = value.get("type")
    if kind == EvidenceType.NVIDIA_GPU:
        body = _exact(value, _GPU_KEYS, where)
        certs = body["certs"]
        if not isinstance(certs, list):
            raise ParseError(f"{where}.certs must be a list")
        return GpuItem(
            report=_unb64(body["report"], f"{where}.report"),
            certs=tuple(_unb64(c, f"{where}.certs[{i}]") for i, c in enumerate(certs)),
        )
    if kind not in (EvidenceType.SEV_SNP, EvidenceType.SIMULATED):
        raise ParseError(f"{where} has an unknown or missing 'type'")
    body = _exact(value, _SNP_KEYS, where, optional=frozenset({"product"}))
    product = body.get("product")
    if product is not None and product not in {p.value for p in Product}:
        raise ParseError(f"{where}.product must be one of {[p.value for p in Product]}")
    return SnpItem(
        type=EvidenceType(kind),
        report=_unb64(body["report"], f"{where}.report"),
        vek=_unb64(body["vek"], f"{where}.vek"),
        ask=_unb64(body["ask"], f"{where}.ask"),
        ark=_unb64(body["ark"], f"{where}.ark"),
        product=None if product is None else Product(product),
    )


def _assemble(
    claims: Mapping[str, Any], items: Sequence[SnpItem | GpuItem], initdata: bytes | None
) -> Bundle:
    cpus = [i for i in items if isinstance(i, SnpItem)]
    if len(cpus) != 1:
        raise ParseError(
            f"evidence must hold exactly one sev-snp or simulated report, found {len(cpus)}"
        )
    gpus = tuple(i for i in items if isinstance(i, GpuItem))
    text = json.dumps(_check_claims(dict(claims)), ensure_ascii=False, separators=(",", ":"))
    return Bundle(text, cpus[0], gpus, initdata)


def build_bundle(
    *, claims: Mapping[str, Any], evidence: Sequence[SnpItem | GpuItem], initdata: bytes | None
) -> Bundle:
    """A bundle from its parts, checked as :func:`parse_bundle` would check it."""
    return _assemble(claims, evidence, initdata)


def _refuse_constant(name: str) -> Any:
    raise ParseError("NaN and Infinity are not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ParseError("an object in the evidence bundle repeats a key")
    return obj


def parse_bundle(content: str | bytes) -> Bundle:
    """Parse the content JSON of a kind-7100 event (structure only).

    Strict JSON, as ``dvm.nostr.strict_json`` reads it on the dvm side (attestation cannot
    import it; this is its small equivalent): ``NaN``/``Infinity`` and repeated keys are refused
    (two parsers must not read one text two ways); huge numbers, deep nesting and text that is
    not UTF-8 fail in the decoder; a lone surrogate in any string the bundle keeps fails its
    field check (base64, the claims' canonical JSON). ParseError and nothing else.
    """
    try:
        text = content.decode("utf-8") if isinstance(content, bytes) else content
        body = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ParseError("evidence bundle is not UTF-8 JSON") from None
    body = _exact(body, _BUNDLE_KEYS, "evidence bundle")
    if type(body["v"]) is not int or body["v"] != BUNDLE_VERSION:
        raise ParseError(f"evidence bundle version must be {BUNDLE_VERSION}")
    items = body["evidence"]
    if not isinstance(items, list) or not items:
        raise ParseError("evidence must be a non-empty list")
    initdata = body["initdata"]
    return _assemble(
        _check_claims(body["claims"]),
        [_item(v, i) for i, v in enumerate(items)],
        None if initdata is None else _unb64(initdata, "initdata"),
    )
