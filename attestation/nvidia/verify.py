"""Verify an NVIDIA H100 SPDM attestation report: certificate chain, signature, nonce.

Specs: DMTF DSP0274 (SPDM) 1.1 §10.11 and §15 (signature over the transcript;
https://www.dmtf.org/dsp/DSP0274); RFC 5280 path validation (done by ``cryptography``'s
``x509.verification``); the chain layout NVIDIA's ``local_gpu_verifier`` (NVIDIA/nvtrust) expects.

Contract (pure: the clock ``now`` and the trusted roots are parameters; no I/O):

1. **Chain.** ``cert_chain`` is leaf first (GH100 A01 GSP FMC LF <- GSP BROM <- Provisioner
   ICA <- GH100 Identity <- NVIDIA Device Identity CA). Its last certificate must *be* a trusted
   root (same SHA-256 fingerprint) or be issued by one; every certificate, the root included, must
   be valid at ``now``; the whole path must pass RFC 5280 validation with the supplied order
   (no extra, missing or reordered certificates); the leaf must not be a CA and must hold a
   P-384 key. Otherwise :class:`~attestation.errors.ChainError`.
2. **Signature.** The 96-byte raw ``r || s`` (big-endian) must be a valid ECDSA P-384 signature
   by the leaf key over SHA-384(request || response-without-signature). Otherwise
   :class:`~attestation.errors.SignatureInvalid`.
3. **Nonce.** The request nonce (which the signature covers) must equal ``expected_nonce``
   (constant-time compare). Otherwise :class:`~attestation.errors.BindingMismatch`.
4. **Mode** (:func:`validate_cc_mode`). The signed opaque data must not state a mode other than
   confidential computing: FEATURE_FLAG (TLV 36) PPCIE, protected PCIe, is CC *off* on the GPU
   and is refused with :class:`~attestation.errors.PolicyViolation` (field ``FEATURE_FLAG``);
   an unknown value never gets here (the parser refuses it). SPT and MPT are CC modes; no
   FEATURE_FLAG (every Hopper report seen so far, NVIDIA's sample included) means the evidence
   does **not state** the mode, and the result says so (``cc_mode`` = ``NOT_STATED``).

Why no "CC on / devtools / off" check: no TLV carries it. NVIDIA's own local verifier reads it
from the driver through NVML ``nvmlSystemGetConfComputeState`` (``ccFeature``,
``devToolsMode``): an unsigned local answer a remote verifier never sees and a hostile host
controls. What the signed evidence offers instead is its measurements: NVIDIA's verifier only
claims ``secboot``/``dbgstat: disabled`` when every golden RIM value matches, and devtools or
CC-off firmware configuration measures differently. So the mode is established by comparing the
blocks with reference values (:mod:`attestation.nvidia.reference`), never by this module alone.

Authenticity is checked before the nonce, so forged or altered evidence is always reported as
what it is. What the report's measurements *mean* is :mod:`attestation.nvidia.reference`'s and
:mod:`attestation.nvidia.rim`'s job.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store

from attestation.errors import (
    BindingMismatch,
    ChainError,
    Failure,
    ParseError,
    PolicyViolation,
    SignatureInvalid,
)
from attestation.nvidia.roots import device_identity_ca
from attestation.nvidia.spdm import (
    NONCE_SIZE_BYTES,
    SIGNATURE_SIZE_BYTES,
    FeatureFlag,
    GpuAttestationReport,
    MeasurementBlock,
    MeasurementsResponse,
    OpaqueData,
    OpaqueField,
    OpaqueFieldType,
    parse_gpu_report,
)

__all__ = [
    "GpuModeClaim",
    "VerifiedGpuReport",
    "parse_cert_chain",
    "validate_cc_mode",
    "verify_cert_chain",
    "verify_gpu_evidence",
    "verify_gpu_report",
]

_COORDINATE_SIZE_BYTES = SIGNATURE_SIZE_BYTES // 2


class GpuModeClaim(StrEnum):
    """What a report's signed opaque data states about the GPU's confidential-computing mode."""

    SINGLE_GPU_CC = "SPT"  # FEATURE_FLAG 0: CC, single-GPU passthrough
    MULTI_GPU_CC = "MPT"  # FEATURE_FLAG 1: CC, multi-GPU passthrough
    NOT_STATED = "not stated"  # no FEATURE_FLAG: legacy opaque data (Hopper as sampled)


_MODE_CLAIMS = {
    FeatureFlag.SPT: GpuModeClaim.SINGLE_GPU_CC,
    FeatureFlag.MPT: GpuModeClaim.MULTI_GPU_CC,
}


@dataclass(frozen=True, slots=True)
class VerifiedGpuReport:
    """What an authentic, fresh GPU report says. Only :func:`verify_gpu_report` makes one.

    ``cc_mode`` is what the evidence *states*; ``NOT_STATED`` is not "on": see the module
    docstring for why only a comparison with reference values establishes the mode.
    """

    blocks: tuple[MeasurementBlock, ...]
    driver_version: str | None
    vbios_version: str | None
    nonce: bytes
    responder_nonce: bytes
    operation: int
    opaque_fields: tuple[OpaqueField, ...]
    leaf_subject: str
    root_fingerprint_sha256: bytes
    opaque_data: OpaqueData
    cc_mode: GpuModeClaim

    def block(self, index: int) -> MeasurementBlock | None:
        """The measurement block with this SPDM index (1-based), or None."""
        return next((b for b in self.blocks if b.index == index), None)

    def opaque(self, field_type: OpaqueFieldType) -> bytes | None:
        """The raw value of the opaque field of this type, or None."""
        return self.opaque_data.get(field_type)


def parse_cert_chain(pem: bytes) -> tuple[x509.Certificate, ...]:
    """Parse concatenated PEM certificates (NVML's ``attestationCertChain``), leaf first."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
        # `cryptography` decodes names and extensions lazily; decode them now so a malformed
        # certificate fails here as a ParseError (a name attribute whose ASN.1 type contradicts
        # its OID raises TypeError), not later inside the chain checks.
        for cert in certs:
            _ = (cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), cert.extensions)
    except (ValueError, TypeError, x509.DuplicateExtension) as exc:
        raise ParseError(f"certificate chain is not PEM certificates ({len(pem)} bytes)") from exc
    return tuple(certs)


def _fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def _anchor(
    last: x509.Certificate, trusted_roots: Sequence[x509.Certificate]
) -> tuple[x509.Certificate, bool]:
    """The trusted root the chain ends at, and whether the chain already includes it."""
    for root in trusted_roots:
        if _fingerprint(root) == _fingerprint(last):
            return root, True
    for root in trusted_roots:
        if root.subject == last.issuer:
            return root, False
    pins = ", ".join(_fingerprint(r).hex() for r in trusted_roots) or "none"
    raise ChainError(
        f"chain ends at {last.subject.rfc4514_string()!r} issued by "
        f"{last.issuer.rfc4514_string()!r}, not a pinned root (SHA-256 {pins})"
    )


def verify_cert_chain(
    cert_chain: Sequence[x509.Certificate],
    *,
    now: datetime,
    trusted_roots: Sequence[x509.Certificate] | None = None,
) -> x509.Certificate:
    """Check ``cert_chain`` (leaf first) up to a pinned root at ``now``; return the root.

    ``trusted_roots`` defaults to the bundled, fingerprint-pinned NVIDIA Device Identity CA.
    ``now`` must be timezone-aware. Raises :class:`ChainError` with the failing certificate.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    roots = (device_identity_ca(),) if trusted_roots is None else tuple(trusted_roots)
    if not cert_chain:
        raise ChainError("certificate chain is empty")
    root, included = _anchor(cert_chain[-1], roots)
    path = list(cert_chain) if included else [*cert_chain, root]
    for position, cert in enumerate(path):
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ChainError(
                f"certificate {position} ({cert.subject.rfc4514_string()!r}) is valid "
                f"{cert.not_valid_before_utc.isoformat()}..{cert.not_valid_after_utc.isoformat()},"
                f" not at {now.isoformat()}"
            )
    leaf = path[0]
    if len(path) < 2:
        raise ChainError("certificate chain holds only the root, no device leaf")
    try:
        is_ca = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    except ValueError as exc:  # a malformed extension only surfaces when first read
        raise ChainError(
            f"leaf {leaf.subject.rfc4514_string()!r} has a malformed extension"
        ) from exc
    if is_ca:
        raise ChainError(f"leaf {leaf.subject.rfc4514_string()!r} is a CA certificate")
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .time(now)
        .extension_policies(
            # CAs: RFC 5280 / CA/B profile (basicConstraints, keyUsage, AKI...). The device
            # leaf is no web certificate (no EKU, a TCG DICE extension), so it only needs to
            # be well-formed and correctly signed.
            ca_policy=ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, path[1:-1])
    except x509.verification.VerificationError as exc:
        raise ChainError(f"certificate path does not validate: {exc}") from exc
    if [_fingerprint(c) for c in verified.chain] != [_fingerprint(c) for c in path]:
        raise ChainError("certificate chain is not in leaf-to-root order without extras")
    return root


def _leaf_key(leaf: x509.Certificate) -> ec.EllipticCurvePublicKey:
    try:
        key = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ChainError(f"leaf {leaf.subject.rfc4514_string()!r} key is unreadable") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise ChainError(f"leaf {leaf.subject.rfc4514_string()!r} has no ECDSA P-384 key")
    return key


def validate_cc_mode(response: MeasurementsResponse) -> GpuModeClaim:
    """The mode the signed opaque data states; PolicyViolation if it states a non-CC mode."""
    flag = response.feature_flag
    if flag is None:
        return GpuModeClaim.NOT_STATED
    if flag is FeatureFlag.PPCIE:
        raise PolicyViolation(
            [
                Failure(
                    "FEATURE_FLAG",
                    "PPCIE (protected PCIe: confidential computing off on the GPU)",
                    "SPT or MPT (a confidential-computing mode)",
                )
            ]
        )
    return _MODE_CLAIMS[flag]


def verify_gpu_report(
    report: GpuAttestationReport,
    cert_chain: Sequence[x509.Certificate],
    *,
    expected_nonce: bytes,
    now: datetime,
    trusted_roots: Sequence[x509.Certificate] | None = None,
) -> VerifiedGpuReport:
    """Verify chain, signature, nonce and mode (see the module docstring); return the report."""
    root = verify_cert_chain(cert_chain, now=now, trusted_roots=trusted_roots)
    leaf = cert_chain[0]
    key = _leaf_key(leaf)
    signature = report.response.signature
    der = encode_dss_signature(
        int.from_bytes(signature[:_COORDINATE_SIZE_BYTES], "big"),
        int.from_bytes(signature[_COORDINATE_SIZE_BYTES:], "big"),
    )
    try:
        key.verify(der, report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise SignatureInvalid(
            f"SPDM MEASUREMENTS signature does not verify under {leaf.subject.rfc4514_string()!r}"
        ) from None
    nonce = report.request.nonce
    if nonce is None:  # parse_gpu_report never yields this; a hand-built report might
        raise BindingMismatch("GET_MEASUREMENTS request carries no nonce")
    if len(expected_nonce) != NONCE_SIZE_BYTES:
        raise BindingMismatch(f"expected nonce is {len(expected_nonce)} bytes, wanted 32")
    if not hmac.compare_digest(nonce, expected_nonce):
        raise BindingMismatch(
            f"GPU request nonce {nonce.hex()} is not the expected {expected_nonce.hex()}"
        )
    response = report.response
    mode = validate_cc_mode(response)
    return VerifiedGpuReport(
        blocks=response.blocks,
        driver_version=response.driver_version,
        vbios_version=response.vbios_version,
        nonce=nonce,
        responder_nonce=response.nonce,
        operation=report.request.operation,
        opaque_fields=response.opaque_fields,
        leaf_subject=leaf.subject.rfc4514_string(),
        root_fingerprint_sha256=_fingerprint(root),
        opaque_data=response.opaque_data,
        cc_mode=mode,
    )


def verify_gpu_evidence(
    report: bytes,
    cert_chain_pem: bytes,
    *,
    expected_nonce: bytes,
    now: datetime,
    trusted_roots: Sequence[x509.Certificate] | None = None,
) -> VerifiedGpuReport:
    """Parse raw evidence (report bytes, PEM chain) and :func:`verify_gpu_report` it."""
    return verify_gpu_report(
        parse_gpu_report(report),
        parse_cert_chain(cert_chain_pem),
        expected_nonce=expected_nonce,
        now=now,
        trusted_roots=trusted_roots,
    )
