"""AMD SEV-SNP evidence: parse (abi), verify (chain, signature, VEK extensions), validate (policy),
get (device), fetch (kds). Split after google/go-sev-guest; see docs/attestation-snp.md.

Typical use::

    verified = verify_report(report_bytes, vek=vek_der, now=datetime.now(UTC))
    validate(verified, load_policy(policy_toml))
"""

from __future__ import annotations

from .abi import (
    CertKind,
    CertTableEntry,
    Cpuid,
    FirmwareVersion,
    GuestPolicy,
    KeyInfo,
    PlatformInfo,
    Product,
    Report,
    Signature,
    SigningKey,
    TcbVersion,
    parse_cert_table,
    parse_report,
    serialize_cert_table,
    serialize_report,
)
from .kds import Fetcher, cached, cert_chain_url, fetch_https, vcek_url
from .trust import DEFAULT_TRUSTED_ARKS, bundled_chain
from .validate import DEFAULT_POLICY, Policy, TcbFloor, load_policy, validate, warnings
from .vek import VekExtensions, load_certificate, load_certificates, parse_vek_extensions
from .verify import (
    VerifiedReport,
    check_vek_extensions,
    verify_chain,
    verify_report,
    verify_report_signature,
)

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_TRUSTED_ARKS",
    "CertKind",
    "CertTableEntry",
    "Cpuid",
    "Fetcher",
    "FirmwareVersion",
    "GuestPolicy",
    "KeyInfo",
    "PlatformInfo",
    "Policy",
    "Product",
    "Report",
    "Signature",
    "SigningKey",
    "TcbFloor",
    "TcbVersion",
    "VekExtensions",
    "VerifiedReport",
    "bundled_chain",
    "cached",
    "cert_chain_url",
    "check_vek_extensions",
    "fetch_https",
    "load_certificate",
    "load_certificates",
    "load_policy",
    "parse_cert_table",
    "parse_report",
    "parse_vek_extensions",
    "serialize_cert_table",
    "serialize_report",
    "validate",
    "vcek_url",
    "verify_chain",
    "verify_report",
    "verify_report_signature",
    "warnings",
]
