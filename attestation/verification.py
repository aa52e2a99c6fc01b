"""Verify an evidence bundle the way a requester must before sending anything (DESIGN §3.5).

Spec: DESIGN.md §3 step 5; AMD 56860/57230 through :mod:`attestation.snp`; DSP0274 through
:mod:`attestation.nvidia`; the binding of :mod:`attestation.binding`; trust rules and item
formats in ``docs/attestation.md``.

Contract (pure: ``now``, the trust roots and the cache are parameters; nothing is fetched):

1. **Trust gate.** A ``sev-snp`` item's ARK must be a pinned AMD root; a ``simulated`` item's
   ARK must be one of :attr:`Trust.simulated_roots`, which are empty unless the caller adds
   one on purpose. Otherwise :class:`~attestation.errors.UntrustedRoot` is raised at once:
   without a trusted root nothing else the evidence says means anything.
2. **Every other check runs and every failure is listed** in one :class:`EvidenceRejected`:
   the AMD chain at ``now`` (and its revocation when :attr:`Trust.crl` asks for it; see
   :mod:`attestation.snp.crl`), the report signature, the VEK extensions, the policy
   (:func:`attestation.snp.validate.validate`, only once the report is authentic), HOST_DATA =
   SHA-256(initdata), the binding (REPORT_DATA = hex of SHA-256(domain || C || claims),
   :mod:`attestation.binding`), each GPU report's chain, signature, nonce (= that digest)
   and stated mode
   (:func:`attestation.nvidia.verify.validate_cc_mode`), each GPU's measurement blocks against
   :attr:`Expected.gpu_measurements` when given (every failing block listed), and the claims
   against :class:`Expected` (job, nonce, provider, container key, model, initdata, HOST_DATA).
3. Simulated evidence goes through the same code as hardware (the same chain, signature,
   extension and policy functions, with the simulated ARK as the only pinned root) and every
   result, message and error about it carries :data:`SIMULATED_LABEL`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from attestation.binding import gpu_nonce, host_data_for_initdata, verify_binding
from attestation.chain_cache import ChainCache
from attestation.errors import (
    AttestationError,
    BindingMismatch,
    ChainError,
    ExtensionMismatch,
    ParseError,
    PolicyViolation,
    SignatureInvalid,
    UntrustedRoot,
)
from attestation.evidence import SIMULATED_LABEL, Bundle, EvidenceType, SnpItem
from attestation.nvidia.reference import ExpectedGpuMeasurements, validate_gpu_measurements
from attestation.nvidia.spdm import parse_gpu_report
from attestation.nvidia.verify import VerifiedGpuReport, verify_gpu_report
from attestation.snp.abi import Product, Report, SigningKey, parse_report
from attestation.snp.crl import CRL_OFF, CrlPolicy, CrlResult, CrlStatus, check_revocation
from attestation.snp.trust import DEFAULT_TRUSTED_ARKS, bundled_chain
from attestation.snp.validate import DEFAULT_POLICY, Policy, validate, warnings
from attestation.snp.vek import load_certificate, load_certificates, parse_vek_extensions
from attestation.snp.verify import VerifiedReport, check_vek_extensions, verify_report_signature

__all__ = [
    "EvidenceRejected",
    "Expected",
    "Trust",
    "VerifiedEvidence",
    "item_product",
    "snp_item_from_certs",
    "verify_evidence",
    "verify_snp_item",
]

_VEK_CN = {SigningKey.VCEK: "SEV-VCEK", SigningKey.VLEK: "SEV-VLEK"}


def _fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


@dataclass(frozen=True, slots=True)
class Trust:
    """The roots a verifier accepts. ``simulated_roots`` (PEM or DER ARKs) is empty by default:
    simulated evidence is refused unless the caller trusts its root explicitly."""

    amd_arks: Mapping[Product, frozenset[str]] = field(default_factory=lambda: DEFAULT_TRUSTED_ARKS)
    simulated_roots: tuple[bytes, ...] = ()
    nvidia_roots: tuple[x509.Certificate, ...] | None = None
    #: Revocation of sev-snp chains (AMD's CRL); off by default, and results then say so.
    crl: CrlPolicy = CRL_OFF
    #: SHA-256 (hex) of each trusted simulated ARK's DER, computed once.
    simulated_fingerprints: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        fingerprints = frozenset(
            _fingerprint(load_certificate(r).public_bytes(serialization.Encoding.DER))
            for r in self.simulated_roots
        )
        object.__setattr__(self, "simulated_fingerprints", fingerprints)


@dataclass(frozen=True, slots=True)
class Expected:
    """What the requester knows from its own request and from P's feedback.

    ``job``, ``nonce`` and ``provider`` have no default: pass ``None`` only on purpose (the
    result then warns that the value was not compared). The rest is optional pinning;
    ``gpu_measurements`` (from RIMs the requester chose) applies to every GPU of the bundle.
    """

    job: str | None
    nonce: str | None
    provider: str | None
    container_pubkey: str | None = None
    model_sha256: str | None = None
    initdata: bytes | None = None
    host_data: bytes | None = None
    gpu_measurements: ExpectedGpuMeasurements | None = None


class EvidenceRejected(AttestationError):  # noqa: N818 - reads as the condition it reports
    """Evidence that failed one or more checks; ``errors`` lists every one."""

    def __init__(self, errors: Sequence[AttestationError], *, simulated: bool) -> None:
        self.errors: tuple[AttestationError, ...] = tuple(errors)
        self.simulated = simulated
        head = f"{SIMULATED_LABEL}: " if simulated else ""
        super().__init__(head + "; ".join(str(e) for e in self.errors))


@dataclass(frozen=True, slots=True)
class VerifiedEvidence:
    """Evidence whose every check passed. ``label`` is set for simulated evidence."""

    claims: dict[str, Any]
    tee: str
    snp: VerifiedReport
    gpus: tuple[VerifiedGpuReport, ...]
    initdata: bytes | None
    simulated: bool
    warnings: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str | None:
        return SIMULATED_LABEL if self.simulated else None

    @property
    def container_pubkey(self) -> str:
        return str(self.claims["pubkey"])


def _gate(item: SnpItem, ark: x509.Certificate, trust: Trust) -> None:
    fingerprint = _fingerprint(item.ark)
    amd = frozenset().union(*trust.amd_arks.values())
    if item.simulated and fingerprint not in trust.simulated_fingerprints:
        raise UntrustedRoot(
            f"{SIMULATED_LABEL}: simulated evidence (ARK {_cn(ark.subject)!r} sha256 "
            f"{fingerprint}) is refused unless its root is trusted explicitly "
            "(Trust.simulated_roots, or cdvm attest verify --trust-simulated ROOT.pem)"
        )
    if not item.simulated and fingerprint not in amd:
        kind = "a simulated root" if "SIMULATED" in _cn(ark.subject) else "no pinned AMD root"
        raise UntrustedRoot(
            f"sev-snp evidence chains to {kind} (ARK {_cn(ark.subject)!r} sha256 {fingerprint})"
        )


def _resolve(item: SnpItem, vek: x509.Certificate) -> tuple[Product, Report]:
    report = parse_report(item.report, product=item.product)
    if report.product is not None:
        return report.product, report
    issuer = _cn(vek.issuer).split("-")[-1]
    for product in Product:
        if product.value == issuer:
            return product, parse_report(item.report, product=product)
    raise ChainError(
        f"cannot tell the product of a v{report.version} report: VEK issuer "
        f"{_cn(vek.issuer)!r}; give the item a product"
    )


def item_product(item: SnpItem) -> Product:
    """The product of the item's report: its CPUID (v3+), the item's hint, or the VEK's issuer."""
    return _resolve(item, load_certificate(item.vek))[0]


def _snp_checks(
    item: SnpItem, policy: Policy, *, now: datetime, trust: Trust, cache: ChainCache
) -> tuple[VerifiedReport | None, list[AttestationError]]:
    """Authenticity (each part on its own) then, if authentic, policy; every error listed."""
    vek, ask, ark = (cache.certificate(d) for d in (item.vek, item.ask, item.ark))
    _gate(item, ark, trust)
    product, report = _resolve(item, vek)
    signer = report.key_info.signing_key
    errors: list[AttestationError] = []
    if signer == SigningKey.NONE:
        errors.append(SignatureInvalid("report says it is unsigned (KEY_INFO.SIGNING_KEY)"))
    elif _cn(vek.subject) != _VEK_CN[signer]:
        errors.append(
            ExtensionMismatch(
                f"KEY_INFO says {signer} signed the report; the VEK is {_cn(vek.subject)!r}"
            )
        )
    sim_pins = dict.fromkeys(Product, trust.simulated_fingerprints)
    pins = sim_pins if item.simulated else trust.amd_arks
    ark_sha256 = ""
    revocation = CrlResult(CrlStatus.NOT_APPLICABLE)  # no CRL exists for a simulated root
    try:
        ark_sha256 = cache.verify_chain(vek, ask, ark, product=product, now=now, trusted_arks=pins)
        if not item.simulated and not errors:
            revocation = check_revocation(
                vek, ask, ark, product=product, signer=signer, now=now, policy=trust.crl
            )
    except AttestationError as exc:
        errors.append(exc)
    try:
        verify_report_signature(item.report, report, vek)
    except AttestationError as exc:
        errors.append(exc)
    ext = parse_vek_extensions(vek)
    try:
        if signer != SigningKey.NONE:
            check_vek_extensions(report, ext, product=product, signer=signer)
    except AttestationError as exc:
        errors.append(exc)
    if errors:
        return None, errors
    verified = VerifiedReport(report, product, signer, ext, ark_sha256, now, revocation)
    try:
        validate(verified, policy)
    except AttestationError as exc:
        errors.append(exc)
    return verified, errors


def verify_snp_item(
    item: SnpItem,
    policy: Policy = DEFAULT_POLICY,
    *,
    now: datetime,
    trust: Trust,
    cache: ChainCache | None = None,
) -> VerifiedReport:
    """One SNP report with its certificates: trust gate, authenticity and policy.

    Raises :class:`~attestation.errors.UntrustedRoot` (gate) or :class:`EvidenceRejected`
    listing every failure. Nothing here looks at REPORT_DATA: a raw report binds nothing.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    verified, errors = _snp_checks(
        item, policy, now=now, trust=trust, cache=ChainCache() if cache is None else cache
    )
    if errors or verified is None:
        raise EvidenceRejected(errors, simulated=item.simulated)
    return verified


def snp_item_from_certs(
    report: bytes, certs: Sequence[bytes], *, trust: Trust, product: Product | None = None
) -> SnpItem:
    """An :class:`SnpItem` from a raw report and loose certificates (DER or PEM, any order).

    The VEK is the certificate named SEV-VCEK/SEV-VLEK; the ARK is the self-issued one; the ASK
    the other. Without ASK and ARK the bundled AMD chain of the product is used. The item is
    ``simulated`` when the ARK is a trusted simulated root or says SIMULATED in its name.
    """
    unique = {c.fingerprint(hashes.SHA256()): c for blob in certs for c in load_certificates(blob)}
    loaded = list(unique.values())  # the same certificate given twice counts once
    veks = [c for c in loaded if _cn(c.subject) in _VEK_CN.values()]
    if len(veks) != 1:
        raise ParseError(f"expected one VCEK or VLEK certificate, found {len(veks)}")
    rest = [c for c in loaded if c is not veks[0]]
    arks = [c for c in rest if c.issuer == c.subject]
    asks = [c for c in rest if c.issuer != c.subject]
    if not rest:
        parsed = parse_report(report, product=product)
        issuer = _cn(veks[0].issuer).split("-")[-1]
        named = next((p for p in Product if p.value == issuer), None)
        resolved = parsed.product or named
        if resolved is None:
            raise ParseError("cannot tell the product to find the AMD chain: give it, or the ASK")
        ask, ark = bundled_chain(resolved, parsed.key_info.signing_key)
        asks, arks = [ask], [ark]
    if len(arks) != 1 or len(asks) != 1:
        raise ParseError(f"expected one ASK and one ARK, found {len(asks)} and {len(arks)}")
    der = serialization.Encoding.DER
    ark_der = arks[0].public_bytes(der)
    simulated = _fingerprint(ark_der) in trust.simulated_fingerprints or (
        "SIMULATED" in _cn(arks[0].subject)
    )
    return SnpItem(
        type=EvidenceType.SIMULATED if simulated else EvidenceType.SEV_SNP,
        report=bytes(report),
        vek=veks[0].public_bytes(der),
        ask=asks[0].public_bytes(der),
        ark=ark_der,
        product=product,
    )


def _claim_errors(bundle: Bundle, expected: Expected) -> tuple[list[AttestationError], list[str]]:
    claims = bundle.claims
    errors: list[AttestationError] = []
    notes: list[str] = []
    pairs = [
        ("job", claims["job"], expected.job),
        ("nonce", claims["nonce"], expected.nonce),
        ("provider", claims["provider"], expected.provider),
        ("pubkey", claims["pubkey"], expected.container_pubkey),
        ("model.sha256", claims["model"]["sha256"], expected.model_sha256),
    ]
    for name, seen, wanted in pairs:
        if wanted is None:
            notes.append(f"claims.{name} not compared with the request (nothing expected)")
        elif not hmac.compare_digest(str(seen).encode(), wanted.encode()):
            errors.append(BindingMismatch(f"claims.{name} is {seen}, expected {wanted}"))
    if expected.initdata is not None and bundle.initdata != expected.initdata:
        errors.append(BindingMismatch("initdata differs from the expected initdata"))
    return errors, notes


def _host_data_errors(
    host_data: bytes, bundle: Bundle, expected: Expected
) -> list[AttestationError]:
    errors: list[AttestationError] = []
    if bundle.initdata is not None and host_data != host_data_for_initdata(bundle.initdata):
        errors.append(
            BindingMismatch(f"HOST_DATA {host_data.hex()} is not SHA-256 of the bundle's initdata")
        )
    if expected.host_data is not None and host_data != expected.host_data:
        errors.append(
            BindingMismatch(f"HOST_DATA {host_data.hex()}, expected {expected.host_data.hex()}")
        )
    return errors


def verify_evidence(
    bundle: Bundle,
    policy: Policy = DEFAULT_POLICY,
    *,
    now: datetime,
    trust: Trust,
    expected: Expected,
    cache: ChainCache | None = None,
) -> VerifiedEvidence:
    """Verify ``bundle`` (see the module docstring); return what it proves or raise."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    verified, errors = _snp_checks(
        bundle.cpu, policy, now=now, trust=trust, cache=ChainCache() if cache is None else cache
    )
    report = parse_report(bundle.cpu.report, product=bundle.cpu.product)
    claims = bundle.claims
    try:
        verify_binding(report.report_data, bytes.fromhex(claims["pubkey"]), claims)
    except AttestationError as exc:
        errors.append(exc)
    errors += _host_data_errors(report.host_data, bundle, expected)
    claim_errors, notes = _claim_errors(bundle, expected)
    errors += claim_errors
    gpus: list[VerifiedGpuReport] = []
    for index, item in enumerate(bundle.gpus):
        try:
            gpu = verify_gpu_report(
                parse_gpu_report(item.report),
                [load_certificate(c) for c in item.certs],
                expected_nonce=gpu_nonce(report.report_data),
                now=now,
                trusted_roots=trust.nvidia_roots,
            )
            if expected.gpu_measurements is not None:
                validate_gpu_measurements(gpu, expected.gpu_measurements)
            gpus.append(gpu)
        except PolicyViolation as exc:
            prefix = f"nvidia-gpu item {index}: "
            errors.append(
                PolicyViolation([replace(f, field=prefix + f.field) for f in exc.failures])
            )
        except AttestationError as exc:
            errors.append(type(exc)(f"nvidia-gpu item {index}: {exc}"))
    if errors or verified is None:
        raise EvidenceRejected(errors, simulated=bundle.simulated)
    # REPORT_DATA is always checked here (the binding); HOST_DATA whenever initdata is present
    # or the caller expected a value, so the policy's "not pinned" note would be false.
    host_data_checked = bundle.initdata is not None or expected.host_data is not None
    checked = ("REPORT_DATA", "HOST_DATA") if host_data_checked else ("REPORT_DATA",)
    notes += [w for w in warnings(policy) if not w.startswith(checked)]
    if bundle.initdata is None and expected.host_data is None:
        notes.append("no initdata: HOST_DATA (the launch configuration) is not checked")
    if verified.revocation.note:
        notes.append(verified.revocation.note)
    if gpus and expected.gpu_measurements is None:
        notes.append(
            "GPU measurements not compared: no reference values name RIMs, so the GPU's"
            " confidential-computing mode (on / devtools / off) is not established"
        )
    if bundle.simulated:
        notes.insert(0, f"{SIMULATED_LABEL}: the evidence comes from a locally minted key")
    return VerifiedEvidence(
        claims=claims,
        tee=bundle.tee,
        snp=verified,
        gpus=tuple(gpus),
        initdata=bundle.initdata,
        simulated=bundle.simulated,
        warnings=tuple(notes),
    )
