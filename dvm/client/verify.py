"""The requester's verification of a container's kind-7100 attestation (DESIGN §3.5).

Pure: the event, the parsed request, the container key named by the provider's feedback, the
policy, the trusted roots and ``now`` go in; a :class:`Verification` comes out, or
:class:`~dvm.client.errors.AttestationRefused` listing **every** failed check (nothing may be
sent to the container then).

Checks, all run, all reported:

- the event parses as a cdvm/1 attestation (:func:`dvm.cdvm.kind7100.parse_attestation`: signer ==
  ``claims.pubkey``, ``e`` == ``claims.job``, ``provider`` tag == ``claims.provider``);
- it is signed by the container key C the provider's ``processing`` feedback named;
- its ``e`` tag is our job, its ``p`` tag is the key we talk from (``reply_to``), its ``tee`` tag
  is the TEE we asked for, it has not expired, ``claims.model.name`` is the model we asked for;
- the evidence bundle parses and :func:`attestation.verification.verify_evidence` passes: the
  trust gate (simulated evidence only under an explicitly trusted root), chain, signature, VEK
  extensions, policy, the REPORT_DATA binding, and ``claims.job`` / ``nonce`` / ``provider`` /
  ``pubkey`` equal to our request and to C;
- the kind of evidence is the kind of TEE we asked for (``simulated`` is never accepted for a
  ``sev-snp`` request, and ``sev-snp+nvidia-h100`` needs GPU evidence);
- for ``sev-snp`` and ``sev-snp+nvidia-h100`` jobs (Confidential Containers, DESIGN §3.4):
  ``HOST_DATA`` is the digest of **this job's initdata**, rebuilt here with
  :func:`expected_initdata` -- the same :func:`attestation.initdata.build_initdata` call the
  Kubernetes launcher (``dvm/node/k8s_pod.py``) and the node's own check
  (``dvm/node/relay_status.py``) make, from our job id, the provider we addressed, the image in
  ``claims.runtime.image`` (a digest reference, else refused) and the GPU flag of the TEE kind. It
  goes to :func:`~attestation.verification.verify_evidence` as ``Expected.host_data``; a bundle
  that carries its initdata document must be byte-identical to it. Since the document's agent
  policy pins that image digest and forbids exec/attach/log reading, a report of another job,
  provider or image, or of a pod launched with a looser policy, is refused. With
  ``trusted_images`` the image must be one of them; without, the image is accepted and listed in
  the warnings (``image not pinned: ...``). Simulated jobs have no initdata and no image check.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from attestation.errors import AttestationError, PolicyViolation
from attestation.evidence import SIMULATED_LABEL, Bundle, parse_bundle
from attestation.initdata import (
    build_initdata,
    check_image_reference,
    expected_host_data,
    verify_initdata,
)
from attestation.snp.abi import parse_report
from attestation.snp.validate import Policy
from attestation.verification import EvidenceRejected, Expected, Trust, verify_evidence
from dvm.cdvm.kind7100 import Claims, parse_attestation
from dvm.nostr.errors import CodecError
from dvm.nostr.event import Event
from dvm.nostr.nip90 import JobRequest, TeeKind

from .errors import AttestationRefused

__all__ = ["CONFIDENTIAL_CONTAINER_TEES", "Verification", "expected_initdata", "verify_attestation"]

#: TEE kinds that run under Confidential Containers, where HOST_DATA = digest of the initdata.
CONFIDENTIAL_CONTAINER_TEES = frozenset({TeeKind.SEV_SNP.value, TeeKind.SEV_SNP_NVIDIA_H100.value})


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


def expected_initdata(request: JobRequest, *, image: str) -> bytes:
    """The initdata the Kubernetes launcher puts on the pod of ``request`` running ``image``.

    The one construction shared with the launcher: job id, the provider the request addresses,
    the image digest reference, and ``gpu`` when the request asks for an NVIDIA GPU TEE. Raises
    :class:`~attestation.errors.ParseError` if ``image`` is not a digest reference.
    """
    return build_initdata(
        job_id=request.id, provider=request.provider, image=image, gpu=_gpu(request)
    )


def _gpu(request: JobRequest) -> bool:
    return request.tee == TeeKind.SEV_SNP_NVIDIA_H100.value


@dataclass(frozen=True, slots=True)
class _LaunchCheck:
    """What the image and initdata checks of a Confidential Containers job found."""

    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    checks: tuple[str, ...]
    initdata: bytes | None  # this job's initdata, None when it cannot be built


def _launch_check(request: JobRequest, image: str, trusted_images: Sequence[str]) -> _LaunchCheck:
    reasons: list[str] = []
    notes: list[str] = []
    checks: list[str] = []
    if trusted_images and image not in trusted_images:
        reasons.append(
            f"claims.runtime.image {image[:200]!r} is not one of the trusted images "
            f"({len(trusted_images)} given with --trust-image)"
        )
    elif trusted_images:
        checks.append(f"image {image} is one of the trusted images")
    else:
        notes.append(f"image not pinned: {image[:200]} (pin it with --trust-image)")
    try:
        check_image_reference(image)
    except AttestationError:
        reasons.append(
            f"claims.runtime.image {image[:200]!r} is not a digest reference "
            "registry/name@sha256:<64 hex>: this job's initdata (HOST_DATA) cannot be rebuilt"
        )
        return _LaunchCheck(tuple(reasons), tuple(notes), tuple(checks), None)
    checks.append(
        "HOST_DATA = SHA-256 of this job's initdata (job, provider, image digest, agent policy "
        "pinning the image and refusing exec/attach/log reading)"
    )
    return _LaunchCheck(
        tuple(reasons), tuple(notes), tuple(checks), expected_initdata(request, image=image)
    )


def _initdata_reasons(
    bundle: Bundle, request: JobRequest, image: str, initdata: bytes
) -> list[str]:
    """HOST_DATA of the report, and the bundle's initdata if it carries one, against ours."""
    reasons: list[str] = []
    host_data = parse_report(bundle.cpu.report, product=bundle.cpu.product).host_data
    if not hmac.compare_digest(host_data, expected_host_data(initdata)):
        reasons.append(
            f"HOST_DATA is not the digest of this job's initdata (job {request.id[:16]}…, "
            f"provider {request.provider[:16]}…, image {image[:200]}): the pod was launched "
            "for another job, provider or image, or under another agent policy"
        )
    if bundle.initdata is not None:
        try:
            verify_initdata(
                bundle.initdata,
                job_id=request.id,
                provider=request.provider,
                image=image,
                gpu=_gpu(request),
            )
        except AttestationError as exc:
            reasons.append(f"the bundle's initdata is not this job's: {exc}")
    return reasons


def verify_attestation(
    event: Event,
    *,
    request: JobRequest,
    container: str,
    policy: Policy,
    trust: Trust,
    now: datetime,
    trusted_images: Sequence[str] = (),
) -> Verification:
    """Verify ``event`` for ``request`` and the container key ``container``; see the module.

    ``trusted_images`` (digest references) pins ``claims.runtime.image`` of Confidential
    Containers jobs; empty accepts any image with an ``image not pinned`` warning.
    """
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
    image = att.claims.runtime.image
    launch = (
        _launch_check(request, image, trusted_images)
        if request.tee in CONFIDENTIAL_CONTAINER_TEES
        else _LaunchCheck((), (), (), None)
    )
    reasons += launch.reasons
    try:
        bundle = parse_bundle(event.content)
    except AttestationError as exc:
        reasons.append(f"the evidence does not parse: {exc}")
        raise refuse() from None
    mismatch = _tee_mismatch(request.tee, bundle.simulated, len(bundle.gpus))
    if mismatch is not None:
        reasons.append(mismatch)
    expected = Expected(
        job=request.id,
        nonce=request.nonce,
        provider=request.provider,
        container_pubkey=container,
        host_data=None if launch.initdata is None else expected_host_data(launch.initdata),
    )
    try:
        if launch.initdata is not None:
            reasons += _initdata_reasons(bundle, request, image, launch.initdata)
        verified = verify_evidence(bundle, policy, now=now, trust=trust, expected=expected)
    except AttestationError as exc:
        reasons += _reasons_of(exc)
        raise refuse() from None
    if reasons:
        raise refuse()
    notes = [*launch.notes, *verified.warnings]
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
    checks += launch.checks
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
        warnings=tuple(notes),
    )
