"""Authenticity of an SEV-SNP report: AMD chain, report signature, VEK extensions vs report.

Specs: AMD 56860 (SEV-SNP ABI; "ATTESTATION_REPORT", signature over bytes [0, 0x2A0) with
ECDSA P-384/SHA-384, r and s 72-byte little-endian), AMD 57230 (VCEK/VLEK certificates and KDS;
every AMD certificate is signed with RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48).
Design follows google/go-sev-guest ``verify/``.

Contract: :func:`verify_report` returns a :class:`VerifiedReport` or raises the precise
:class:`~attestation.errors.VerificationError` subclass:

- :class:`~attestation.errors.UntrustedRoot`  the ARK's SHA-256 is not pinned for the product;
- :class:`~attestation.errors.ChainError`     a certificate signature, issuer name, key type or
  validity (at the injected ``now``) fails, or no chain is known for the product;
- :class:`~attestation.errors.SignatureInvalid` the report signature does not verify under the
  VEK, or the report says it is unsigned;
- :class:`~attestation.errors.ExtensionMismatch` the VEK's SPLs, hwID, productName or type
  disagree with the report;
- :class:`~attestation.errors.Revoked`, :class:`~attestation.errors.CrlInvalid`,
  :class:`~attestation.errors.CrlUnavailable` the revocation check the caller asked for
  (``crl=``, :mod:`attestation.snp.crl`; off by default, and the result says so).

Malformed bytes raise :class:`~attestation.errors.ParseError`; a missing VEK that cannot be
fetched raises :class:`~attestation.errors.FetchError`. Nothing here reads a clock, a file
outside the package or the network: ``now``, ``trusted_arks``, ``fetch`` and ``crl`` are
parameters.
Policy (debug, TCB floors, measurement) is :mod:`attestation.snp.validate`'s job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from attestation.errors import (
    ChainError,
    ExtensionMismatch,
    FetchError,
    SignatureInvalid,
    UntrustedRoot,
)

from .abi import SIGNED_SIZE_BYTES, Product, Report, SigningKey, parse_report
from .crl import CRL_OFF, NOT_CHECKED, CrlPolicy, CrlResult, check_revocation
from .kds import vcek_url
from .trust import DEFAULT_TRUSTED_ARKS, bundled_chain
from .vek import VekExtensions, load_certificate, load_certificates, parse_vek_extensions

__all__ = [
    "VerifiedReport",
    "check_vek_extensions",
    "verify_chain",
    "verify_report",
    "verify_report_signature",
]

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_VEK_CN = {SigningKey.VCEK: "SEV-VCEK", SigningKey.VLEK: "SEV-VLEK"}


@dataclass(frozen=True, slots=True)
class VerifiedReport:
    """A report whose chain, signature and VEK extensions verified at ``verified_at``;
    ``revocation`` says whether the chain was checked against AMD's CRL."""

    report: Report
    product: Product
    signer: SigningKey
    vek: VekExtensions
    ark_sha256: str
    verified_at: datetime
    revocation: CrlResult = NOT_CHECKED

    @property
    def csp_id(self) -> str | None:
        """The VLEK's cloud-provider id (None for a VCEK)."""
        return self.vek.csp_id


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _check_signed_by(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    if cert.issuer != issuer.subject:
        raise ChainError(f"{what} issuer {_cn(cert.issuer)!r} is not {_cn(issuer.subject)!r}")
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        raise ChainError(f"{what} is not signed with RSASSA-PSS")
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ChainError(f"{what}: issuer {_cn(issuer.subject)!r} has no RSA key")
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except InvalidSignature:
        raise ChainError(
            f"{what} signature does not verify under {_cn(issuer.subject)!r}"
        ) from None


def _check_validity(cert: x509.Certificate, what: str, now: datetime) -> None:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        raise ChainError(f"{what} is not valid before {start.isoformat()} (now {now.isoformat()})")
    if now > end:
        raise ChainError(f"{what} expired on {end.isoformat()} (now {now.isoformat()})")


def verify_chain(
    vek: x509.Certificate,
    ask: x509.Certificate,
    ark: x509.Certificate,
    *,
    product: Product,
    now: datetime,
    trusted_arks: Mapping[Product, frozenset[str]] = DEFAULT_TRUSTED_ARKS,
) -> str:
    """Check ARK pinned + self-signed, ASK/ASVK by ARK, VEK by ASK/ASVK, all valid at ``now``.

    Returns the ARK's SHA-256 fingerprint (hex).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    fingerprint = hashlib.sha256(ark.public_bytes(serialization.Encoding.DER)).hexdigest()
    if fingerprint not in trusted_arks.get(product, frozenset()):
        raise UntrustedRoot(
            f"ARK {_cn(ark.subject)!r} sha256 {fingerprint} is not pinned for {product}"
        )
    _check_signed_by(ark, ark, "ARK self-signature")
    _check_signed_by(ask, ark, f"ASK {_cn(ask.subject)!r}")
    _check_signed_by(vek, ask, f"VEK {_cn(vek.subject)!r}")
    _check_validity(ark, "ARK", now)
    _check_validity(ask, f"ASK {_cn(ask.subject)!r}", now)
    _check_validity(vek, f"VEK {_cn(vek.subject)!r}", now)
    return fingerprint


def verify_report_signature(report_bytes: bytes, report: Report, vek: x509.Certificate) -> None:
    """ECDSA P-384/SHA-384 over bytes [0, 0x2A0) under the VEK's public key."""
    key = vek.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise ChainError("VEK public key is not ECDSA P-384")
    der = encode_dss_signature(report.signature.r, report.signature.s)
    try:
        key.verify(der, bytes(report_bytes[:SIGNED_SIZE_BYTES]), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise SignatureInvalid("report signature does not verify under the VEK") from None


def check_vek_extensions(
    report: Report, ext: VekExtensions, *, product: Product, signer: SigningKey
) -> None:
    """Every SPL equals REPORTED_TCB, productName names ``product``, hwID equals CHIP_ID (VCEK;
    8 bytes on Turin), cspID is present (VLEK). All disagreements are listed in one error."""
    problems: list[str] = []
    for name, value in report.reported_tcb.components().items():
        seen = ext.spl.get(name)
        if seen != value:
            problems.append(f"{name}: VEK says {seen}, REPORTED_TCB says {value}")
    family = (ext.product_name or "").split("-")[0]
    if family != product.value:
        problems.append(f"productName: VEK says {ext.product_name!r}, expected {product.value}")
    if signer == SigningKey.VCEK:
        wanted = report.chip_id[:8] if product == Product.TURIN else report.chip_id
        if ext.hw_id is None:
            problems.append("hwID: the VCEK has none")
        elif ext.hw_id != wanted:
            masked = " (KEY_INFO.MASK_CHIP_KEY is set)" if report.key_info.mask_chip_key else ""
            problems.append(f"hwID: VEK says {ext.hw_id.hex()}, CHIP_ID is {wanted.hex()}{masked}")
    elif not ext.csp_id:
        problems.append("cspID: the VLEK names no cloud provider")
    if problems:
        raise ExtensionMismatch("; ".join(problems))


def _product_of(report: Report, vek: x509.Certificate) -> Product:
    if report.product is not None:
        return report.product
    issuer = _cn(vek.issuer).split("-")[-1]
    for product in Product:
        if product.value == issuer:
            return product
    raise ChainError(f"cannot tell the product: VEK issuer {_cn(vek.issuer)!r}; pass product=")


def _as_chain(chain: bytes | tuple[bytes, bytes]) -> tuple[x509.Certificate, x509.Certificate]:
    if isinstance(chain, tuple):
        return load_certificate(chain[0]), load_certificate(chain[1])
    certs = load_certificates(chain)
    if len(certs) != 2:
        raise ChainError(f"chain must hold the ASK (or ASVK) then the ARK, got {len(certs)} certs")
    return certs[0], certs[1]


def verify_report(
    report_bytes: bytes,
    *,
    now: datetime,
    vek: bytes | None = None,
    chain: bytes | tuple[bytes, bytes] | None = None,
    product: Product | None = None,
    trusted_arks: Mapping[Product, frozenset[str]] = DEFAULT_TRUSTED_ARKS,
    fetch: Callable[[str], bytes] | None = None,
    crl: CrlPolicy = CRL_OFF,
) -> VerifiedReport:
    """Parse and verify one 1184-byte report.

    ``vek``: the VCEK/VLEK (DER or one PEM). When None, the VCEK is fetched from AMD KDS with
    ``fetch`` (see :mod:`attestation.snp.kds`; wrap it in a cache). ``chain``: ASK/ASVK then ARK
    (a PEM bundle or a pair); None uses the bundled AMD chain for the product. ``product``: a
    hint for v2 reports (v3+ carry CPUID); otherwise the VEK issuer decides. ``crl``: the
    revocation check (:class:`~attestation.snp.crl.CrlPolicy`; default off).
    """
    report = parse_report(report_bytes, product=product)
    signer = report.key_info.signing_key
    if signer == SigningKey.NONE:
        raise SignatureInvalid("report says it is unsigned (KEY_INFO.SIGNING_KEY = none)")
    if vek is None:
        if fetch is None or report.product is None or signer != SigningKey.VCEK:
            raise FetchError(
                "no VEK given and none can be fetched "
                "(that needs a fetcher, a known product and a VCEK-signed report)"
            )
        vek = fetch(vcek_url(report.product, report.chip_id, report.reported_tcb))
    vek_cert = load_certificate(vek)
    resolved = _product_of(report, vek_cert)
    if report.product is None:
        report = parse_report(report_bytes, product=resolved)
    cn = _cn(vek_cert.subject)
    if cn != _VEK_CN[signer]:
        raise ExtensionMismatch(
            f"KEY_INFO says {signer} signed the report but the certificate is {cn!r}"
        )
    ask, ark = bundled_chain(resolved, signer) if chain is None else _as_chain(chain)
    fingerprint = verify_chain(
        vek_cert, ask, ark, product=resolved, now=now, trusted_arks=trusted_arks
    )
    revocation = check_revocation(
        vek_cert, ask, ark, product=resolved, signer=signer, now=now, policy=crl
    )
    verify_report_signature(report_bytes, report, vek_cert)
    ext = parse_vek_extensions(vek_cert)
    check_vek_extensions(report, ext, product=resolved, signer=signer)
    return VerifiedReport(
        report=report,
        product=resolved,
        signer=signer,
        vek=ext,
        ark_sha256=fingerprint,
        verified_at=now,
        revocation=revocation,
    )
