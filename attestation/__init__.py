"""Evidence for SEV-SNP and NVIDIA GPUs: parse, verify, validate, get (DESIGN §3.4-§3.5, §4).

Imports nothing from ``dvm`` or ``container``. The public surface is listed in ``__all__``:
the evidence bundle of a kind-7100 attestation (:mod:`attestation.evidence`), its verification
(:mod:`attestation.verification`), the key binding (:mod:`attestation.binding`) and the error
tree (:mod:`attestation.errors`). Vendor details live in :mod:`attestation.snp`,
:mod:`attestation.nvidia`; the simulated TEE in :mod:`attestation.simulated`.
"""

from __future__ import annotations

from attestation.binding import (
    binding_digest,
    canonical_claims_json,
    gpu_nonce,
    host_data_for_initdata,
    report_data,
    verify_binding,
)
from attestation.chain_cache import ChainCache
from attestation.errors import (
    AttestationError,
    BindingMismatch,
    ChainError,
    DeviceError,
    ExtensionMismatch,
    Failure,
    FetchError,
    ParseError,
    PolicyViolation,
    SignatureInvalid,
    UntrustedRoot,
    VerificationError,
)
from attestation.evidence import (
    SIMULATED_LABEL,
    Bundle,
    EvidenceType,
    GpuItem,
    SnpItem,
    build_bundle,
    parse_bundle,
)
from attestation.verification import (
    EvidenceRejected,
    Expected,
    Trust,
    VerifiedEvidence,
    item_product,
    snp_item_from_certs,
    verify_evidence,
    verify_snp_item,
)

__all__ = [
    "SIMULATED_LABEL",
    "AttestationError",
    "BindingMismatch",
    "Bundle",
    "ChainCache",
    "ChainError",
    "DeviceError",
    "EvidenceRejected",
    "EvidenceType",
    "Expected",
    "ExtensionMismatch",
    "Failure",
    "FetchError",
    "GpuItem",
    "ParseError",
    "PolicyViolation",
    "SignatureInvalid",
    "SnpItem",
    "Trust",
    "UntrustedRoot",
    "VerificationError",
    "VerifiedEvidence",
    "binding_digest",
    "build_bundle",
    "canonical_claims_json",
    "gpu_nonce",
    "host_data_for_initdata",
    "item_product",
    "parse_bundle",
    "report_data",
    "snp_item_from_certs",
    "verify_binding",
    "verify_evidence",
    "verify_snp_item",
]
