"""The requester's verification of a container's kind-7100 attestation (DESIGN §3.5).

Pure: the event, the parsed request, the container key named by the provider's feedback, the
policy, the trusted roots and ``now`` go in; a :class:`Verification` comes out, or
:class:`~dvm.client.errors.AttestationRefused` listing **every** failed check (nothing may be
sent to the container then).

Checks, all run, all reported: the one cdvm/1 job check, :mod:`dvm.cdvm.jobcheck` (the node's
too), with what the requester knows -- our request (job id, nonce, the provider we addressed,
the key we talk from, TEE kind, model name) and the container key C the provider's
``processing`` feedback named:

- the event parses as a cdvm/1 attestation, is signed by C, names our job, provider, nonce,
  reply-to key, TEE kind and model, and has not expired;
- the evidence bundle parses and :func:`attestation.verification.verify_evidence` passes: the
  trust gate (simulated evidence only under an explicitly trusted root), chain, signature, VEK
  extensions, policy, the REPORT_DATA binding, and ``claims.job`` / ``nonce`` / ``provider`` /
  ``pubkey`` equal to our request and to C; the evidence is of the TEE kind we asked for;
- for ``sev-snp`` and ``sev-snp+nvidia-h100`` jobs (Confidential Containers, DESIGN §3.4):
  ``HOST_DATA`` is the digest of **this job's initdata** (:func:`expected_initdata`, the same
  document the Kubernetes launcher puts on the pod), from our job id, the provider we addressed,
  the image in ``claims.runtime.image`` (a digest reference, else refused) and the GPU flag of
  the TEE kind; a bundle that carries its initdata document must be byte-identical to it. Since
  the document's agent policy pins that image digest and forbids exec/attach/log reading, a
  report of another job, provider or image, or of a pod launched with a looser policy, is
  refused.

The requester's own pins, checked here once the evidence verified (:mod:`dvm.client.pins`, fail
closed, every TEE kind): the measurement, the image (Confidential Containers jobs; simulated jobs
run none), the model sha256 and, for ``sev-snp+nvidia-h100`` jobs, the GPU measurement blocks of
every verified GPU report (:mod:`dvm.client.gpu_pins`; a mismatch is listed block by block) must
each be pinned -- by ``pins`` (explicit values, or reference
values from trusted publishers, K of them) or ``trusted_images`` -- and the reported TCB must meet
the minimum of every reference that vouched for the measurement. An unpinned value refuses the
job (the reason names the flag and ``cdvm trust add``) unless its kind is in
``pins.accept_unpinned`` (then an ``UNPINNED`` warning). Which flag or publisher pinned each
value is in :attr:`Verification.checks` and :attr:`Verification.pins`.

Revocation (issue 9, docs/attestation-snp.md "Revocation"): the library default is off; the
client turns it on. ``crl=None`` means :func:`default_crl_policy` of the request's TEE kind:
for every hardware kind, ``require`` a current AMD CRL signed by the ARK, fetched from AMD KDS
through the on-disk cache (:func:`default_crl_fetcher`); the ASK and the VCEK must not be listed.
A CRL that cannot be had (:class:`~attestation.errors.CrlUnavailable`), an invalid one or a
listed key (:class:`~attestation.errors.Revoked`) refuses the job, with a line saying what the
user can do. The caller may give CRL files instead (then nothing is fetched) or accept an
unavailable CRL (``accept-unavailable``: the job goes on, the warnings say "revocation not
checked"). Simulated evidence has no CRL: its result says "not applicable".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from attestation.evidence import SIMULATED_LABEL
from attestation.snp.abi import SigningKey
from attestation.snp.crl import CRL_OFF, CrlMode, CrlPolicy, CrlStatus
from attestation.snp.kds import DEFAULT_CACHE_DIR, Fetcher, cached, fetch_https
from attestation.snp.validate import Policy
from attestation.verification import Trust
from dvm.cdvm.jobcheck import ExpectedJob, check_claims, check_evidence, job_initdata
from dvm.cdvm.kind7100 import Claims
from dvm.cdvm.tee import CONFIDENTIAL_CONTAINER_TEES, runs_in_confidential_containers
from dvm.nostr.event import Event
from dvm.nostr.nip90 import JobRequest, TeeKind

from .errors import AttestationRefused
from .pins import Observed, PinKind, PinReport, Pins, ValuePin, match_pins

__all__ = [
    "CONFIDENTIAL_CONTAINER_TEES",
    "Verification",
    "default_crl_fetcher",
    "default_crl_policy",
    "expected_initdata",
    "verify_attestation",
]


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
    #: how each value was pinned (by flag, by which publishers), or accepted unpinned
    pins: tuple[ValuePin, ...] = ()

    @property
    def label(self) -> str | None:
        """``SIMULATED: not confidential`` for simulated evidence, else None."""
        return SIMULATED_LABEL if self.simulated else None


def expected_initdata(request: JobRequest, *, image: str) -> bytes:
    """The initdata the Kubernetes launcher puts on the pod of ``request`` running ``image``.

    :func:`dvm.cdvm.jobcheck.job_initdata` of the job id, the provider the request addresses,
    the image digest reference and the request's TEE kind. Raises
    :class:`~attestation.errors.ParseError` if ``image`` is not a digest reference.
    """
    return job_initdata(job_id=request.id, provider=request.provider, image=image, tee=request.tee)


# Verifier notes the pins answer: the measurement and the model sha256 are always pinned here
# (or accepted unpinned, which has its own note), and a reference's minimum TCB floors the
# reported TCB.
_ANSWERED_BY_PINS = ("measurement not pinned", "claims.model.sha256 not compared")
_ANSWERED_BY_FLOOR = ("no TCB floor", "no floor on REPORTED_TCB")
# The verifier's "GPU measurements not compared" is false once the pins compared them.
_ANSWERED_BY_GPU_PIN = ("GPU measurements not compared",)


def default_crl_fetcher() -> Fetcher:
    """AMD KDS over HTTPS through ``~/.cache/cdvm/kds`` (a CRL is reused until its nextUpdate)."""
    return cached(fetch_https, DEFAULT_CACHE_DIR.expanduser())


def default_crl_policy(tee: str) -> CrlPolicy:
    """The client's revocation policy when the caller chose none: ``require`` through
    :func:`default_crl_fetcher` for every TEE kind but ``simulated`` (fail closed: a kind
    nobody knows is treated as hardware); off for ``simulated``, whose root has no CRL."""
    if tee == TeeKind.SIMULATED.value:
        return CRL_OFF
    return CrlPolicy(CrlMode.REQUIRE, default_crl_fetcher())


# What the user can do about each revocation refusal (the verifier's line says what happened).
_REVOCATION_REMEDY = {
    "CrlUnavailable: ": (
        "revocation: AMD's CRL could not be had, so a revoked ASK/VCEK cannot be excluded; "
        "nothing was sent. Fetch the CRL named above where AMD KDS is reachable and pass it "
        "with --crl FILE, or accept this job unchecked with --crl-accept-unavailable"
    ),
    "CrlInvalid: ": (
        "revocation: the CRL is not AMD's current one for this ARK (issuer, signature or "
        "thisUpdate..nextUpdate); nothing was sent. Get a fresh CRL from AMD KDS (--crl FILE)"
    ),
    "Revoked: ": (
        "revocation: AMD revoked a key of this host's certificate chain; nothing was sent. "
        "Do not use this provider's host: its platform keys are no longer vouched for by AMD"
    ),
}


def _revocation_remedies(lines: Sequence[str]) -> list[str]:
    return [
        remedy
        for prefix, remedy in _REVOCATION_REMEDY.items()
        if any(line.startswith(prefix) for line in lines)
    ]


def _policy_notes(notes: Sequence[str], pinned: PinReport) -> tuple[str, ...]:
    answered = _ANSWERED_BY_PINS + (_ANSWERED_BY_FLOOR if pinned.tcb_floor_checked else ())
    gpu = pinned.pin(PinKind.GPU)
    if gpu is not None and gpu.pinned:
        answered += _ANSWERED_BY_GPU_PIN
    return tuple(n for n in notes if not n.startswith(answered))


def verify_attestation(
    event: Event,
    *,
    request: JobRequest,
    container: str,
    policy: Policy,
    trust: Trust,
    now: datetime,
    trusted_images: Sequence[str] = (),
    pins: Pins | None = None,
    crl: CrlPolicy | None = None,
) -> Verification:
    """Verify ``event`` for ``request`` and the container key ``container``; see the module.

    ``pins`` (default: none, which refuses every job) are the requester's pins;
    ``trusted_images`` (digest references) are added to its images. ``crl`` is the revocation
    policy (default: :func:`default_crl_policy` of the request's TEE kind, which fetches);
    it replaces ``trust.crl``.
    """
    chosen = pins or Pins()
    revocation = default_crl_policy(request.tee) if crl is None else crl
    trust = dataclasses.replace(trust, crl=revocation)
    expected = ExpectedJob(
        job_id=request.id,
        provider=request.provider,
        nonce=request.nonce,
        recipient=request.reply_to,
        tee=request.tee,
        model_name=request.model,
        container=container,
    )
    claimed = check_claims(event, expected, now=int(now.timestamp()))
    reasons = list(claimed.reasons)
    att = claimed.attestation
    if att is None:
        raise AttestationRefused(request.id, reasons, container=container)
    evidence = check_evidence(att, expected, trust=trust, policy=policy, now=now)
    if evidence.kind_mismatch is not None:
        reasons.append(evidence.kind_mismatch)
    reasons += [*evidence.reasons, *evidence.errors, *_revocation_remedies(evidence.errors)]
    verified = evidence.verified
    if reasons or verified is None:
        raise AttestationRefused(request.id, reasons, container=container)
    snp = verified.snp
    observed = Observed(
        tee=request.tee,
        measurement=snp.report.measurement.hex(),
        product=snp.product,
        reported_tcb=snp.report.reported_tcb,
        model_sha256=att.claims.model.sha256,
        image=att.claims.runtime.image if runs_in_confidential_containers(request.tee) else None,
        gpus=verified.gpus,
    )
    pinned = match_pins(
        dataclasses.replace(chosen, images=chosen.images | frozenset(trusted_images)), observed
    )
    if pinned.reasons:
        raise AttestationRefused(request.id, pinned.reasons, container=container)
    root = (
        f"the explicitly trusted simulated root (ARK sha256 {snp.ark_sha256[:16]}…)"
        if verified.simulated
        else f"the pinned AMD {snp.product.value} root (ARK sha256 {snp.ark_sha256[:16]}…)"
    )
    checks = [
        "signed by the container key C named in the provider's feedback",
        f"certificate chain {snp.signer.value} -> ASK -> ARK up to {root}",
        "report signature, VEK extensions (TCB, chip id) and policy (no debug, no migration agent)",
        "REPORT_DATA = hex SHA-256(domain || C || claims): the report binds C to the claims",
        "claims.job, claims.nonce and claims.provider equal our request; claims.pubkey equals C",
        f"TEE kind {verified.tee} as requested, model {att.claims.model.name!r} as requested",
    ]
    revoked = snp.revocation
    if revoked.status == CrlStatus.NOT_REVOKED:
        until = revoked.next_update.isoformat() if revoked.next_update else "?"
        ca = "ASVK" if snp.signer == SigningKey.VLEK else "ASK"
        checks.append(
            f"revocation: {ca} and {snp.signer.value} not listed on AMD's CRL ({revoked.source}, "
            f"signed by the ARK, current until {until})"
        )
    checks += pinned.checks
    if evidence.initdata is not None:
        checks.append(
            "HOST_DATA = SHA-256 of this job's initdata (job, provider, image digest, agent "
            "policy pinning the image and refusing exec/attach/log reading)"
        )
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
        warnings=(*pinned.notes, *_policy_notes(verified.warnings, pinned)),
        pins=pinned.values,
    )
