"""Errors of the attestation package.

One root; verifiers raise, they never return a bool to forget. Policy checks collect every
failure into one :class:`PolicyViolation`. Messages name the field, the value seen and the value
wanted; evidence is public, so values may be printed, but never key material of the caller::

    AttestationError
    ├── ParseError            bytes/JSON that are not the structure they claim (abi layer)
    ├── VerificationError     cryptographic authenticity failed (verify layer)
    │   ├── ChainError        a certificate chain does not lead to a pinned root, or is
    │   │   │                 expired / not yet valid at the injected ``now``
    │   │   └── CrlInvalid    an AMD CRL not signed by the ARK, not issued by it, or not
    │   │                     current at ``now`` (thisUpdate..nextUpdate)
    │   ├── Revoked           the ASK/ASVK or VEK serial is listed on the ARK's CRL
    │   ├── SignatureInvalid  the evidence signature does not verify under its key
    │   ├── ExtensionMismatch a VEK/device-certificate extension disagrees with the report
    │   ├── BindingMismatch   REPORT_DATA / GPU nonce / HOST_DATA not what the claims imply
    │   └── UntrustedRoot     simulated (or other) evidence whose root the caller did not trust
    ├── PolicyViolation       validate(): one or more policy failures, all listed
    ├── EvidenceRejected      verify_evidence(): every failure of a bundle, listed together
    │                         (defined in attestation/verification.py, beside its collector)
    ├── DeviceError           getting evidence from a device/endpoint failed (get layer)
    └── FetchError            fetching certificates (AMD KDS, NVIDIA) failed
        └── CrlUnavailable    no AMD CRL could be had (fetch failed, none given) while the
                              caller required one (docs/attestation-snp.md "Revocation")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "AttestationError",
    "BindingMismatch",
    "ChainError",
    "CrlInvalid",
    "CrlUnavailable",
    "DeviceError",
    "ExtensionMismatch",
    "Failure",
    "FetchError",
    "ParseError",
    "PolicyViolation",
    "Revoked",
    "SignatureInvalid",
    "UntrustedRoot",
    "VerificationError",
]


class AttestationError(Exception):
    """Root of every error raised by the attestation package."""


class ParseError(AttestationError):
    """Input that is not the structure it claims to be (length, offsets, must-be-zero, JSON)."""


class VerificationError(AttestationError):
    """Cryptographic authenticity failed."""


class ChainError(VerificationError):
    """A certificate chain that does not lead to a pinned root or is not valid at ``now``."""


class CrlInvalid(ChainError):  # noqa: N818 - reads as the condition it reports
    """An AMD CRL that is not the ARK's (issuer, signature) or is not current at ``now``."""


class Revoked(VerificationError):  # noqa: N818 - reads as the condition it reports
    """A certificate of the chain is listed on the ARK's CRL; the message names its serial,
    the revocation date and the CRL it was found on."""


class SignatureInvalid(VerificationError):  # noqa: N818 - reads as the condition it reports
    """A signature over the evidence that does not verify."""


class ExtensionMismatch(VerificationError):  # noqa: N818 - reads as the condition it reports
    """A certificate extension (SPL, hwID, productName, cspID) that disagrees with the report."""


class BindingMismatch(VerificationError):  # noqa: N818 - reads as the condition it reports
    """REPORT_DATA, the GPU nonce or HOST_DATA do not equal what the claims imply."""


class UntrustedRoot(VerificationError):  # noqa: N818 - reads as the condition it reports
    """Evidence whose root the caller has not explicitly trusted (e.g. the simulated TEE)."""


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed policy check: the field, the value seen and the value wanted."""

    field: str
    seen: str
    wanted: str

    def __str__(self) -> str:
        return f"{self.field}: saw {self.seen}, wanted {self.wanted}"


class PolicyViolation(AttestationError):  # noqa: N818 - reads as the condition it reports
    """Every policy failure of one validation, listed together."""

    def __init__(self, failures: Sequence[Failure]) -> None:
        self.failures: tuple[Failure, ...] = tuple(failures)
        super().__init__("; ".join(str(f) for f in self.failures) or "policy violation")


class DeviceError(AttestationError):
    """Getting evidence from configfs-tsm, /dev/sev-guest, the CoCo agent or a GPU failed."""


class FetchError(AttestationError):
    """Fetching certificates (AMD KDS, NVIDIA services) failed or returned garbage."""


class CrlUnavailable(FetchError):  # noqa: N818 - reads as the condition it reports
    """No AMD CRL could be obtained (the fetch failed, or no fetcher and no CRL file) while the
    caller required one. ``url`` is the CRL that was wanted; ``reason`` says why it is missing."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"AMD CRL unavailable: {url}: {reason}; revocation cannot be checked "
            "(give the CRL as a file, or accept this explicitly: crl mode accept-unavailable)"
        )
