"""The requester's verification of a container's kind-7100 attestation (DESIGN §3.5).

Pure: the event, the parsed request, the container key named by the provider's feedback, the
policy, the trusted roots and ``now`` go in; a :class:`Verification` comes out, or
:class:`~dvm.client.errors.AttestationRefused` listing **every** failed check (nothing may be
sent to the container then).

Checks, all run, all reported:

- the event parses as a cdvm/1 attestation (:func:`dvm.nostr.cdvm.parse_attestation`: signer ==
  ``claims.pubkey``, ``e`` == ``claims.job``, ``provider`` tag == ``claims.provider``);
- it is signed by the container key C the provider's ``processing`` feedback named;
- its ``e`` tag is our job, its ``p`` tag is the key we talk from (``reply_to``), its ``tee`` tag
  is the TEE we asked for, it has not expired, ``claims.model.name`` is the model we asked for;
- the evidence bundle parses and :func:`attestation.verification.verify_evidence` passes: the
  trust gate (simulated evidence only under an explicitly trusted root), chain, signature, VEK
  extensions, policy, the REPORT_DATA binding, and ``claims.job`` / ``nonce`` / ``provider`` /
  ``pubkey`` equal to our request and to C;
- the kind of evidence is the kind of TEE we asked for (``simulated`` is never accepted for a
  ``sev-snp`` request, and ``sev-snp+nvidia-h100`` needs GPU evidence).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from attestation.errors import AttestationError, PolicyViolation
from attestation.evidence import SIMULATED_LABEL, parse_bundle
from attestation.snp.validate import Policy
from attestation.verification import EvidenceRejected, Expected, Trust, verify_evidence
from dvm.nostr.cdvm import Claims, parse_attestation
from dvm.nostr.errors import CodecError
from dvm.nostr.event import Event
from dvm.nostr.nip90 import JobRequest, TeeKind

from .errors import AttestationRefused

__all__ = ["Verification", "verify_attestation"]


@dataclass(frozen=True, slots=True)
class Verification:
    """What a verified attestation proves, and what it does not (``warnings``)."""

    job_id: str
    container: str
    attestation_id: str
    tee: str
    simulated: bool
    claims: Claims
    measurement: str
    checks: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def label(self) -> str | None:
        """``SIMULATED: not confidential`` for simulated evidence, else None."""
        return SIMULATED_LABEL if self.simulated else None


def _reasons_of(exc: AttestationError) -> list[str]:
    if isinstance(exc, EvidenceRejected):
        return [r for e in exc.errors for r in _reasons_of(e)]
    if isinstance(exc, PolicyViolation):
        return [f"policy: {f}" for f in exc.failures] or [f"policy: {exc}"]
    return [f"{type(exc).__name__}: {exc}"]


def _tee_mismatch(requested: str, cpu_simulated: bool, gpus: int) -> str | None:
    seen = ("simulated" if cpu_simulated else "sev-snp") + (f" + {gpus} GPU(s)" if gpus else "")
    wanted = {
        TeeKind.SIMULATED.value: (True, False),
        TeeKind.SEV_SNP.value: (False, False),
        TeeKind.SEV_SNP_NVIDIA_H100.value: (False, True),
    }.get(requested)
    if wanted is None:
        return f"the request asked for an unknown TEE {requested!r}"
    if (cpu_simulated, gpus > 0) != wanted:
        return f"the evidence is {seen}, the request asked for {requested}"
    return None


def verify_attestation(
    event: Event,
    *,
    request: JobRequest,
    container: str,
    policy: Policy,
    trust: Trust,
    now: datetime,
) -> Verification:
    """Verify ``event`` for ``request`` and the container key ``container``; see the module."""
    reasons: list[str] = []

    def refuse() -> AttestationRefused:
        return AttestationRefused(request.id, reasons, container=container)

    if event.pubkey != container:
        reasons.append(
            f"attestation {event.id[:16]}… is signed by {event.pubkey[:16]}…, not by the "
            f"container {container[:16]}… the provider named"
        )
    try:
        att = parse_attestation(event)
    except CodecError as exc:
        reasons.append(f"the attestation event does not parse: {exc}")
        raise refuse() from None
    if att.job_id != request.id:
        reasons.append(f"the attestation names job {att.job_id}, not {request.id}")
    if att.recipient != request.reply_to:
        reasons.append(f"the attestation is addressed to {att.recipient}, not {request.reply_to}")
    if att.tee != request.tee:
        reasons.append(f"the attestation's tee tag is {att.tee!r}, the request asked {request.tee}")
    if att.expiration <= int(now.timestamp()):
        reasons.append(f"the attestation expired at {att.expiration}")
    if att.claims.model.name != request.model:
        reasons.append(f"claims.model.name is {att.claims.model.name!r}, not {request.model!r}")
    try:
        bundle = parse_bundle(event.content)
    except AttestationError as exc:
        reasons.append(f"the evidence does not parse: {exc}")
        raise refuse() from None
    mismatch = _tee_mismatch(request.tee, bundle.simulated, len(bundle.gpus))
    if mismatch is not None:
        reasons.append(mismatch)
    expected = Expected(
        job=request.id, nonce=request.nonce, provider=request.provider, container_pubkey=container
    )
    try:
        verified = verify_evidence(bundle, policy, now=now, trust=trust, expected=expected)
    except AttestationError as exc:
        reasons += _reasons_of(exc)
        raise refuse() from None
    if reasons:
        raise refuse()
    snp = verified.snp
    root = (
        f"the explicitly trusted simulated root (ARK sha256 {snp.ark_sha256[:16]}…)"
        if verified.simulated
        else f"the pinned AMD {snp.product.value} root (ARK sha256 {snp.ark_sha256[:16]}…)"
    )
    checks = [
        "signed by the container key C named in the provider's feedback",
        f"certificate chain {snp.signer.value} -> ASK -> ARK up to {root}",
        "report signature, VEK extensions (TCB, chip id) and policy (no debug, no migration agent)",
        "REPORT_DATA = C || SHA-256(claims): the report binds this container key to the claims",
        "claims.job, claims.nonce and claims.provider equal our request; claims.pubkey equals C",
        f"TEE kind {verified.tee} as requested, model {att.claims.model.name!r} as requested",
    ]
    if verified.gpus:
        checks.append(f"{len(verified.gpus)} GPU report(s): chain, signature, nonce")
    return Verification(
        job_id=request.id,
        container=container,
        attestation_id=event.id,
        tee=verified.tee,
        simulated=verified.simulated,
        claims=att.claims,
        measurement=snp.report.measurement.hex(),
        checks=tuple(checks),
        warnings=tuple(verified.warnings),
    )
