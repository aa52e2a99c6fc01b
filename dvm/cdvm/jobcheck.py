"""cdvm/1: does this kind-7100 event attest this job? The one check (DESIGN §3.4-§3.5, §4).

Both sides ask it. The node asks before it names the container key C in ``processing`` feedback
(:mod:`dvm.node.kubernetes.relay_status`: nobody but the job's container may make the node name
a key); the requester asks before it sends anything to C (:mod:`dvm.client.verify`, which adds
its own pins: trusted images, measurements). What each side knows goes into an
:class:`ExpectedJob`; the check is written once, here.

Two stages, so that a caller can stop before the costly one:

1. :func:`check_claims` (parsing and string comparisons only): the event parses as a cdvm/1
   attestation (:func:`dvm.cdvm.kind7100.parse_attestation`: signer == ``claims.pubkey``, ``e``
   == ``claims.job``, ``provider`` tag == ``claims.provider``); it is signed by the container
   key the provider named (when the caller knows one); it names this job, this provider, the
   request's nonce, the request's reply-to key (``p``), the request's TEE kind and model name,
   and, when the caller knows them, the model sha256 and the image that ran; it has not expired
   (NIP-40, :func:`dvm.nostr.nip40.is_expired`).
2. :func:`check_evidence`: the evidence bundle parses and
   :func:`attestation.verification.verify_evidence` passes (the trust gate, chain, signature,
   VEK extensions, policy, the REPORT_DATA binding, and ``claims`` equal to the job, nonce,
   provider, container key and model sha256 expected); and for Confidential Containers jobs the
   report's HOST_DATA is the digest of **this job's initdata** (:func:`job_initdata`: job id,
   provider, the image's digest reference and the GPU flag of the TEE kind, the same document
   the Kubernetes launcher puts on the pod), and a bundle that carries its initdata carries
   exactly that document. It also says whether the evidence is of the requested TEE kind
   (:func:`dvm.cdvm.tee.evidence_kind_mismatch`), apart: the requester refuses on it; the node
   does not, because it asks only whether the event is its job's container (which the trust
   gate and the bindings decide; production trust never admits simulated evidence anyway).

Pure: ``now`` (unix seconds for the claims, an aware ``datetime`` for certificate validity),
the trust roots, the policy and the chain cache are parameters. Every failure is collected, not
just the first: a check returns its reasons (public data only: ids, keys, kinds, image names),
the caller decides whether to refuse, ignore or log.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from attestation.chain_cache import ChainCache
from attestation.errors import AttestationError, PolicyViolation
from attestation.evidence import Bundle, parse_bundle
from attestation.initdata import expected_host_data
from attestation.snp.abi import parse_report
from attestation.snp.validate import Policy
from attestation.verification import (
    EvidenceRejected,
    Expected,
    Trust,
    VerifiedEvidence,
    verify_evidence,
)
from dvm.nostr.errors import CodecError
from dvm.nostr.event import Event
from dvm.nostr.nip40 import is_expired

from .kind7100 import Attestation, parse_attestation
from .pod_contract import build_initdata, check_image_reference, verify_job_initdata
from .tee import evidence_kind_mismatch, is_gpu_job, runs_in_confidential_containers

__all__ = [
    "ClaimsCheck",
    "EvidenceCheck",
    "ExpectedJob",
    "check_claims",
    "check_evidence",
    "describe_error",
    "job_initdata",
]


@dataclass(frozen=True, slots=True)
class ExpectedJob:
    """What the attestation of one job must say, as the checking side knows it.

    ``container``: the key C the provider's feedback named (the requester; the node learns C
    from the event). ``model_sha256`` and ``image``: the model file and image digest the node
    launched (the requester knows neither: it pins images with its own list).
    """

    job_id: str
    provider: str
    nonce: str
    recipient: str
    tee: str
    model_name: str | None
    container: str | None = None
    model_sha256: str | None = None
    image: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimsCheck:
    """What :func:`check_claims` found; ``attestation`` is None when the event does not parse."""

    attestation: Attestation | None
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EvidenceCheck:
    """What :func:`check_evidence` found.

    ``reasons`` are this module's findings (image reference, HOST_DATA, initdata); ``errors``
    are the evidence verifier's, one line each (:func:`describe_error`); ``kind_mismatch`` says
    why the evidence is not of the requested TEE kind (None: it is), and is not in ``passed``.
    ``verified`` is set only when the verifier passed. ``initdata`` is this job's document when
    the job runs under Confidential Containers and it could be rebuilt (HOST_DATA was compared).
    """

    verified: VerifiedEvidence | None
    reasons: tuple[str, ...]
    errors: tuple[str, ...]
    initdata: bytes | None
    kind_mismatch: str | None = None

    @property
    def passed(self) -> bool:
        return self.verified is not None and not self.reasons and not self.errors


def job_initdata(*, job_id: str, provider: str, image: str, tee: str) -> bytes:
    """The initdata the Kubernetes launcher puts on the pod of this job (GPU flag from ``tee``).

    Raises :class:`~attestation.errors.ParseError` if ``image`` is not a digest reference.
    """
    return build_initdata(job_id=job_id, provider=provider, image=image, gpu=is_gpu_job(tee))


def describe_error(exc: AttestationError) -> list[str]:
    """One line per failed evidence check (policy failures one by one)."""
    if isinstance(exc, EvidenceRejected):
        return [line for e in exc.errors for line in describe_error(e)]
    if isinstance(exc, PolicyViolation):
        return [f"policy: {f}" for f in exc.failures] or [f"policy: {exc}"]
    return [f"{type(exc).__name__}: {exc}"]


def _short(value: str | None) -> str | None:
    if value is None:
        return None
    return value[:16] + "…" if len(value) > 16 else value


def check_claims(event: Event, expected: ExpectedJob, *, now: int) -> ClaimsCheck:
    """Stage 1 (cheap): the event's structure and claims against the job; ``now`` in unix s."""
    reasons: list[str] = []
    if expected.container is not None and event.pubkey != expected.container:
        reasons.append(
            f"attestation {event.id[:16]}… is signed by {event.pubkey[:16]}…, not by the "
            f"container {expected.container[:16]}… the provider named"
        )
    try:
        att = parse_attestation(event)
    except CodecError as exc:
        reasons.append(f"the event does not parse as a cdvm/1 attestation: {exc}")
        return ClaimsCheck(None, tuple(reasons))
    claims = att.claims
    pairs: list[tuple[str, str, str | None]] = [
        ("job (e tag)", att.job_id, expected.job_id),
        ("provider", att.provider, expected.provider),
        ("claims.nonce", claims.nonce, expected.nonce),
        ("recipient (p tag)", att.recipient, expected.recipient),
        ("tee tag", att.tee, expected.tee),
        ("claims.model.name", claims.model.name, expected.model_name),
    ]
    if expected.model_sha256 is not None:
        pairs.append(("claims.model.sha256", claims.model.sha256, expected.model_sha256))
    if expected.image is not None:
        pairs.append(("claims.runtime.image", claims.runtime.image, expected.image))
    for what, seen, wanted in pairs:
        if seen != wanted:
            line = f"{what} is {_short(seen)!r}, expected {_short(wanted)!r}"
            if what.startswith("recipient"):
                line += ": the attestation is addressed to another key"
            reasons.append(line)
    if is_expired(att.expiration, now=now):
        reasons.append(f"it expired at {att.expiration} (NIP-40)")
    return ClaimsCheck(att, tuple(reasons))


def _initdata_reasons(
    bundle: Bundle, expected: ExpectedJob, image: str, initdata: bytes
) -> list[str]:
    """HOST_DATA of the report, and the bundle's initdata if it carries one, against ours."""
    reasons: list[str] = []
    host_data = parse_report(bundle.cpu.report, product=bundle.cpu.product).host_data
    if not hmac.compare_digest(host_data, expected_host_data(initdata)):
        reasons.append(
            f"HOST_DATA is not the digest of this job's initdata (job {expected.job_id[:16]}…, "
            f"provider {expected.provider[:16]}…, image {image[:200]}): the pod was launched "
            "for another job, provider or image, or under another agent policy"
        )
    if bundle.initdata is not None:
        try:
            verify_job_initdata(
                bundle.initdata,
                job_id=expected.job_id,
                provider=expected.provider,
                image=image,
                gpu=is_gpu_job(expected.tee),
            )
        except AttestationError as exc:
            reasons.append(f"the bundle's initdata is not this job's: {exc}")
    return reasons


def check_evidence(
    att: Attestation,
    expected: ExpectedJob,
    *,
    trust: Trust,
    policy: Policy,
    now: datetime,
    cache: ChainCache | None = None,
) -> EvidenceCheck:
    """Stage 2: the evidence of ``att`` verified for this job (see the module docstring).

    The image of the initdata is ``expected.image`` when the caller ran it, else the image the
    claims name (the requester pins that one against its own list).
    """
    reasons: list[str] = []
    image = expected.image if expected.image is not None else att.claims.runtime.image
    initdata: bytes | None = None
    if runs_in_confidential_containers(expected.tee):
        try:
            check_image_reference(image)
        except AttestationError:
            reasons.append(
                f"claims.runtime.image {image[:200]!r} is not a digest reference "
                "registry/name@sha256:<64 hex>: this job's initdata (HOST_DATA) cannot be rebuilt"
            )
        else:
            initdata = job_initdata(
                job_id=expected.job_id, provider=expected.provider, image=image, tee=expected.tee
            )
    try:
        bundle = parse_bundle(att.event.content)
    except AttestationError as exc:
        return EvidenceCheck(None, tuple(reasons), tuple(describe_error(exc)), initdata)
    mismatch = evidence_kind_mismatch(
        expected.tee, simulated=bundle.simulated, gpus=len(bundle.gpus)
    )
    pinned = Expected(
        job=expected.job_id,
        nonce=expected.nonce,
        provider=expected.provider,
        container_pubkey=expected.container if expected.container is not None else att.container,
        model_sha256=expected.model_sha256,
        host_data=None if initdata is None else expected_host_data(initdata),
    )
    try:
        if initdata is not None:
            reasons += _initdata_reasons(bundle, expected, image, initdata)
        verified = verify_evidence(
            bundle, policy, now=now, trust=trust, expected=pinned, cache=cache
        )
    except AttestationError as exc:
        return EvidenceCheck(None, tuple(reasons), tuple(describe_error(exc)), initdata, mismatch)
    return EvidenceCheck(verified, tuple(reasons), (), initdata, mismatch)
