"""Revocation of AMD chains: the ARK's CRL, parsed, verified and compared with the chain.

Spec: AMD 57230 "VCEK Certificate and KDS Interface Specification", chapter "KDS Interface":
``GET https://kdsintf.amd.com/{vcek,vlek}/v1/{product}/crl`` returns an X.509 v2 CRL (DER) that
the ARK signs with RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48 (the parameters of every AMD
certificate); that URL is the CRL distribution point of AMD's ASK and ASVK certificates.
RFC 5280 section 5 (CRL fields), 5.3.3 (certificateIssuer), 6.3.3 (use of a CRL).
go-sev-guest ``verify`` checks the same CRL against the ASK through its injected getter.

Contract:

- :func:`parse_crls` / :func:`parse_crl` turn DER or PEM into CRLs or raise
  :class:`~attestation.errors.ParseError` (only).
- :func:`verify_crl` raises :class:`~attestation.errors.CrlInvalid` unless the CRL's issuer
  is the ARK's subject, its signature verifies under the ARK's key with AMD's PSS parameters
  (checked here over the TBS bytes, not with ``cryptography``'s own check, so the parameters
  are AMD's and not the CRL's), it is complete (no delta CRL, no unknown critical extension)
  and ``thisUpdate <= now <= nextUpdate``.
- :func:`check_not_revoked` raises :class:`~attestation.errors.Revoked` when a given
  certificate's serial is listed (an entry naming another issuer in certificateIssuer does
  not count; any other listing does, whatever its scope extensions say: fail closed).
- :func:`check_revocation` applies a :class:`CrlPolicy` to one verified chain and returns a
  :class:`CrlResult`. The CRLs come from the policy's offline list when it has one, else from
  its fetcher (:mod:`attestation.snp.kds`; wrap it in ``cached``). A CRL that cannot be had is
  :class:`~attestation.errors.CrlUnavailable` in ``require`` mode and an ``unavailable``
  result in ``accept-unavailable`` mode; a CRL that is had but invalid is always refused.

Nothing here reads a clock or a file: ``now`` and the fetcher are parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from attestation.errors import CrlInvalid, CrlUnavailable, FetchError, ParseError, Revoked

from .abi import Product, SigningKey
from .kds import Fetcher, crl_url

__all__ = [
    "CRL_OFF",
    "NOT_CHECKED",
    "CrlMode",
    "CrlPolicy",
    "CrlResult",
    "CrlStatus",
    "check_not_revoked",
    "check_revocation",
    "parse_crl",
    "parse_crls",
    "verify_crl",
]

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_PEM_MARKER = b"-----BEGIN X509 CRL-----"
_ROLE = {SigningKey.VLEK: ("ASVK", "VLEK")}


class CrlMode(StrEnum):
    """What a verification does about revocation."""

    #: Not checked; the result says so ("revocation not checked").
    OFF = "off"
    #: A current CRL signed by the ARK must be had; without one the verification fails.
    REQUIRE = "require"
    #: As ``require``, except that a CRL that cannot be had is accepted and reported.
    ACCEPT_UNAVAILABLE = "accept-unavailable"


class CrlStatus(StrEnum):
    """What the check found."""

    NOT_REVOKED = "not-revoked"
    NOT_CHECKED = "not-checked"
    UNAVAILABLE = "unavailable"
    #: Simulated evidence: its root is minted locally and no CRL exists for it.
    NOT_APPLICABLE = "not-applicable"


@dataclass(frozen=True, slots=True)
class CrlPolicy:
    """How revocation is checked. ``crls``: CRLs the caller has (DER or PEM, e.g. read from a
    file); when any is given, only they are used. ``fetch``: otherwise the CRL is fetched from
    AMD KDS through it (use :func:`attestation.snp.kds.cached`). The default is ``off``."""

    mode: CrlMode = CrlMode.OFF
    fetch: Fetcher | None = None
    crls: tuple[bytes, ...] = ()
    #: ``crls`` parsed once, at construction (a malformed one is a ParseError there).
    parsed: tuple[x509.CertificateRevocationList, ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", CrlMode(self.mode))
        object.__setattr__(self, "parsed", tuple(c for b in self.crls for c in parse_crls(b)))


#: The library default: revocation is not checked (and the result says so).
CRL_OFF = CrlPolicy()


@dataclass(frozen=True, slots=True)
class CrlResult:
    """The outcome of :func:`check_revocation`. ``source``: the URL or "offline CRL";
    ``detail``: why a CRL was unavailable; ``next_update``: when the CRLs used go stale."""

    status: CrlStatus
    source: str = ""
    detail: str = ""
    next_update: datetime | None = None

    @property
    def note(self) -> str | None:
        """A line for "what was NOT checked", or None when nothing is left unchecked."""
        if self.status == CrlStatus.NOT_CHECKED:
            return "revocation not checked: AMD's CRL was not consulted (crl mode off)"
        if self.status == CrlStatus.UNAVAILABLE:
            return (
                f"revocation not checked: the AMD CRL {self.source} is unavailable "
                f"({self.detail}); accepted by the caller (crl mode accept-unavailable)"
            )
        return None


#: The result of a check that was not made (``off``).
NOT_CHECKED = CrlResult(CrlStatus.NOT_CHECKED)


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else name.rfc4514_string()


def _load_one(data: bytes, pem: bool) -> x509.CertificateRevocationList:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a CRL `cryptography` warns about is refused
        try:
            crl = x509.load_pem_x509_crl(data) if pem else x509.load_der_x509_crl(data)
            # Decode every lazily parsed field the checks read, so that malformed input fails
            # here as a ParseError and nowhere later.
            _ = (crl.issuer, crl.extensions, crl.signature_algorithm_oid, crl.signature)
            _ = (crl.last_update_utc, crl.next_update_utc, crl.tbs_certlist_bytes)
            for entry in crl:
                _ = (entry.serial_number, entry.revocation_date_utc, entry.extensions)
        except (
            ValueError,
            TypeError,
            UserWarning,
            x509.InvalidVersion,
            x509.UnsupportedGeneralNameType,
            x509.DuplicateExtension,
            UnsupportedAlgorithm,
        ) as exc:
            raise ParseError(f"not an X.509 CRL ({len(data)} bytes): {exc}") from None
    return crl


def parse_crls(data: bytes) -> tuple[x509.CertificateRevocationList, ...]:
    """Every CRL of a PEM file, or the one CRL of a DER blob, in order."""
    if not isinstance(data, bytes | bytearray):
        raise ParseError("a CRL must be bytes")
    data = bytes(data)
    if _PEM_MARKER not in data:
        return (_load_one(data, pem=False),)
    return tuple(_load_one(_PEM_MARKER + part, pem=True) for part in data.split(_PEM_MARKER)[1:])


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    """Exactly one CRL (DER or PEM)."""
    crls = parse_crls(data)
    if len(crls) != 1:
        raise ParseError(f"expected one CRL, found {len(crls)}")
    return crls[0]


def verify_crl(
    crl: x509.CertificateRevocationList, ark: x509.Certificate, *, now: datetime
) -> None:
    """The CRL is the ARK's, complete, and current at ``now`` (see the module docstring).

    ``ark`` must already be a verified, pinned root (:func:`attestation.snp.verify.verify_chain`).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    name = _cn(ark.subject)
    if crl.issuer != ark.subject:
        raise CrlInvalid(f"CRL issuer {_cn(crl.issuer)!r} is not the ARK {name!r}")
    if crl.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        raise CrlInvalid(f"the {name} CRL is not signed with RSASSA-PSS")
    key = ark.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CrlInvalid(f"the ARK {name!r} has no RSA key to check its CRL with")
    try:
        key.verify(crl.signature, crl.tbs_certlist_bytes, _PSS, hashes.SHA384())
    except InvalidSignature:
        raise CrlInvalid(f"the CRL's signature does not verify under the ARK {name!r}") from None
    for ext in crl.extensions:
        if isinstance(ext.value, x509.DeltaCRLIndicator):
            raise CrlInvalid(f"the {name} CRL is a delta CRL, not a complete one")
        if ext.critical and isinstance(ext.value, x509.UnrecognizedExtension):
            raise CrlInvalid(
                f"the {name} CRL has an unknown critical extension {ext.oid.dotted_string}"
            )
    this_update, next_update = crl.last_update_utc, crl.next_update_utc
    if next_update is None:
        raise CrlInvalid(f"the {name} CRL has no nextUpdate: its freshness cannot be judged")
    if now < this_update:
        raise CrlInvalid(
            f"the {name} CRL is not valid before {this_update.isoformat()} (now {now.isoformat()})"
        )
    if now > next_update:
        raise CrlInvalid(
            f"the {name} CRL is stale: its nextUpdate was {next_update.isoformat()} "
            f"(now {now.isoformat()}); get a current one"
        )


def _names_issuer(entry: x509.RevokedCertificate, issuer: x509.Name) -> bool:
    try:
        names = entry.extensions.get_extension_for_class(x509.CertificateIssuer).value
    except x509.ExtensionNotFound:
        return True
    return issuer in names.get_values_for_type(x509.DirectoryName)


def check_not_revoked(
    crl: x509.CertificateRevocationList,
    certs: Sequence[tuple[str, x509.Certificate]],
    *,
    source: str = "",
) -> None:
    """Raise :class:`~attestation.errors.Revoked` if any ``(role, cert)`` is listed on ``crl``."""
    for role, cert in certs:
        for entry in crl:
            if entry.serial_number != cert.serial_number or not _names_issuer(entry, cert.issuer):
                continue
            serial = cert.serial_number
            where = f" ({source})" if source else ""
            raise Revoked(
                f"{role} {_cn(cert.subject)!r} serial {serial} ({serial:#x}) is revoked: listed "
                f"on the {_cn(crl.issuer)} CRL{where} since {entry.revocation_date_utc.isoformat()}"
            )


def _no_fetcher(url: str) -> bytes:
    raise FetchError(f"no CRL was given and no fetcher to get {url}")


def check_revocation(
    vek: x509.Certificate,
    ask: x509.Certificate,
    ark: x509.Certificate,
    *,
    product: Product,
    signer: SigningKey,
    now: datetime,
    policy: CrlPolicy,
) -> CrlResult:
    """Apply ``policy`` to a chain whose signatures and ARK pin already verified.

    Raises :class:`~attestation.errors.Revoked`, :class:`~attestation.errors.CrlInvalid`,
    :class:`~attestation.errors.ParseError` (a fetched CRL that is not one) or, in ``require``
    mode, :class:`~attestation.errors.CrlUnavailable`.
    """
    if policy.mode == CrlMode.OFF:
        return NOT_CHECKED
    if policy.parsed:
        source = "offline CRL"
        crls = [c for c in policy.parsed if c.issuer == ark.subject]
        if not crls:
            given = ", ".join(sorted({repr(_cn(c.issuer)) for c in policy.parsed}))
            raise CrlInvalid(f"no CRL given is issued by the ARK {_cn(ark.subject)!r} ({given})")
    else:
        source = crl_url(product, signer)
        try:
            body = (policy.fetch or _no_fetcher)(source)
        except FetchError as exc:
            if policy.mode == CrlMode.REQUIRE:
                raise CrlUnavailable(source, str(exc)) from None
            return CrlResult(CrlStatus.UNAVAILABLE, source=source, detail=str(exc))
        crls = [parse_crl(body)]
    ask_role, vek_role = _ROLE.get(signer, ("ASK", "VCEK"))
    for crl in crls:
        verify_crl(crl, ark, now=now)
        check_not_revoked(crl, ((ask_role, ask), (vek_role, vek)), source=source)
    stale = min(c.next_update_utc or now for c in crls)  # never None once verified
    return CrlResult(CrlStatus.NOT_REVOKED, source=source, next_update=stale)
