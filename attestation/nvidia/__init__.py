"""NVIDIA GPU (H100, Hopper) attestation: parse SPDM evidence, verify it, compare it with RIMs.

Layers, one verb each (go-sev-guest style): :mod:`~attestation.nvidia.spdm` parses bytes (its
opaque data through :mod:`~attestation.nvidia.opaque`), :mod:`~attestation.nvidia.verify`
checks the certificate chain, signature, nonce and the mode the evidence states,
:mod:`~attestation.nvidia.rim` parses reference manifests and compares them with a report,
:mod:`~attestation.nvidia.reference` validates measurements against expected blocks by policy,
:mod:`~attestation.nvidia.device` is the only module that touches a device (NVML, lazily).
Trusted roots are pinned in :mod:`~attestation.nvidia.roots`. See ``docs/attestation-nvidia.md``.
"""

from __future__ import annotations

from attestation.nvidia.device import GpuEvidence, GpuEvidenceSource, NvmlEvidenceSource
from attestation.nvidia.opaque import FeatureFlag, Nvdec0Status, OpaqueData, parse_opaque_data
from attestation.nvidia.reference import (
    ExpectedGpuMeasurements,
    expected_from_rims,
    parse_expected_measurements,
    validate_gpu_measurements,
)
from attestation.nvidia.rim import (
    GoldenMeasurement,
    MeasurementResult,
    MeasurementStatus,
    Rim,
    RimComparison,
    RimPolicy,
    compare_measurements,
    parse_rim,
    validate_measurements,
)
from attestation.nvidia.roots import (
    CORIM_SIGNING_ROOT_CA_SHA256,
    DEVICE_IDENTITY_CA_SHA256,
    corim_signing_root_ca,
    device_identity_ca,
)
from attestation.nvidia.spdm import (
    GpuAttestationReport,
    MeasurementBlock,
    MeasurementsRequest,
    MeasurementsResponse,
    OpaqueField,
    OpaqueFieldType,
    parse_gpu_report,
    parse_measurements_request,
    parse_measurements_response,
)
from attestation.nvidia.verify import (
    GpuModeClaim,
    VerifiedGpuReport,
    parse_cert_chain,
    validate_cc_mode,
    verify_cert_chain,
    verify_gpu_evidence,
    verify_gpu_report,
)

__all__ = [
    "CORIM_SIGNING_ROOT_CA_SHA256",
    "DEVICE_IDENTITY_CA_SHA256",
    "ExpectedGpuMeasurements",
    "FeatureFlag",
    "GoldenMeasurement",
    "GpuAttestationReport",
    "GpuEvidence",
    "GpuEvidenceSource",
    "GpuModeClaim",
    "MeasurementBlock",
    "MeasurementResult",
    "MeasurementStatus",
    "MeasurementsRequest",
    "MeasurementsResponse",
    "Nvdec0Status",
    "NvmlEvidenceSource",
    "OpaqueData",
    "OpaqueField",
    "OpaqueFieldType",
    "Rim",
    "RimComparison",
    "RimPolicy",
    "VerifiedGpuReport",
    "compare_measurements",
    "corim_signing_root_ca",
    "device_identity_ca",
    "expected_from_rims",
    "parse_cert_chain",
    "parse_expected_measurements",
    "parse_gpu_report",
    "parse_measurements_request",
    "parse_measurements_response",
    "parse_opaque_data",
    "parse_rim",
    "validate_cc_mode",
    "validate_gpu_measurements",
    "validate_measurements",
    "verify_cert_chain",
    "verify_gpu_evidence",
    "verify_gpu_report",
]
