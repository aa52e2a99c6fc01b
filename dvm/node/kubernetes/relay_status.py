"""Status lines from the relays: the container's kind-7100 attestation, checked by the node.

DESIGN §3.3-§3.5 and §4; docs/launch.md §2 (the ``attested`` line); docs/protocol.md (kind 7100).

Why: under Confidential Containers the agent policy refuses ``ReadStreamRequest``, so the node
cannot read a job pod's stdout and never sees the ``attested`` status line. What the container
does publish is its kind-7100 attestation (signed by its one-time key C, ``["e", job]``). The
node watches for it and, once it is satisfied the event is its own container's, names C in
``processing`` feedback. The requester checks everything again (and more: measurement,
reference values); the node's check exists so that **nobody but the job's container can make
the node name a key** (an impostor answering the job first, DESIGN §1).

Contract. :class:`RelayStatusSource` is a :class:`~dvm.node.kubernetes.launcher.StatusSource`:
``status_lines(launch)`` subscribes (on the node's pool) to kind 7100 with ``#e`` = the job id,
runs :func:`check_attestation` on each event, logs every event it ignores with the reasons (ids
and keys only: these events are public), and yields exactly one ``attested``
:class:`~dvm.node.launcher.StatusLine` (C, the event id) for the first event that passes, then
ends. The subscription is closed when the iterator ends or is closed. At most
``max_verifications`` events per job reach the (costlier) evidence verification; after that the
source gives up on the job with an error log (a flood of well-formed impostors can delay the
job's ``processing`` feedback, never redirect it).

:func:`check_attestation` (pure: ``now``, the trust roots, the policy and the chain cache are
parameters) returns C or raises :class:`~dvm.node.errors.AttestationIgnored` listing every
failed check:

* the event parses as a cdvm/1 attestation (:func:`dvm.cdvm.kind7100.parse_attestation`: signer ==
  ``claims.pubkey``, ``e`` == ``claims.job``, ``provider`` tag == ``claims.provider``);
* it names this job, this provider P, the request's nonce, the request's reply-to key (``p``),
  the request's TEE kind, the model (name and sha256) this node launched, and the image the
  launcher ran (``claims.runtime.image``); it has not expired;
* only then, the evidence bundle parses and
  :func:`attestation.verification.verify_evidence` passes against ``trust`` and ``policy`` with
  the job, nonce, provider, container key, model sha256 and the **HOST_DATA of this job's
  initdata** (:func:`attestation.initdata.build_initdata` of the job id, P, the image and the GPU
  flag; :func:`~attestation.initdata.expected_host_data`), so a genuine report of another pod,
  job or provider never passes.

``trust`` defaults to the pinned AMD roots only (:class:`attestation.verification.Trust`):
simulated evidence is then refused by the trust gate. Tests pass a trust that adds a simulated
root; ``cdvm serve`` never does.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable

from attestation.chain_cache import ChainCache
from attestation.errors import AttestationError
from attestation.evidence import parse_bundle
from attestation.initdata import build_initdata, expected_host_data
from attestation.snp.validate import DEFAULT_POLICY, Policy
from attestation.verification import EvidenceRejected, Expected, Trust, verify_evidence
from dvm.cdvm.kind7100 import ATTESTATION_KIND, parse_attestation
from dvm.nostr.errors import CodecError
from dvm.nostr.event import Event
from dvm.nostr.filters import Filter
from dvm.nostr.nip90 import TeeKind
from dvm.relay import RelayPool

from ..errors import AttestationIgnored
from ..launcher import LaunchRequest, StatusKind, StatusLine

__all__ = [
    "DEFAULT_MAX_VERIFICATIONS",
    "RelayStatusSource",
    "check_attestation",
    "expected_job_host_data",
]

_log = logging.getLogger(__name__)

#: Evidence verifications per job before the source gives up on it.
DEFAULT_MAX_VERIFICATIONS = 32


def _short(value: str) -> str:
    return value[:16] + "…" if len(value) > 16 else value


def _cheap_checks(
    event: Event, launch: LaunchRequest, *, image: str, now: int
) -> tuple[list[str], str]:
    """Structure and claims against the request (no cryptography beyond the event's own)."""
    try:
        att = parse_attestation(event)
    except CodecError as exc:
        return [f"the event does not parse as a cdvm/1 attestation: {exc}"], ""
    request = launch.request
    claims = att.claims
    pairs = (
        ("job (e tag)", att.job_id, launch.job_id),
        ("provider", att.provider, launch.provider),
        ("claims.nonce", claims.nonce, request.nonce),
        ("recipient (p tag)", att.recipient, request.reply_to),
        ("tee tag", att.tee, request.tee),
        ("claims.model.name", claims.model.name, launch.model.name),
        ("claims.model.sha256", claims.model.sha256, launch.model.sha256),
        ("claims.runtime.image", claims.runtime.image, image),
    )
    reasons = [
        f"{what} is {_short(seen)!r}, expected {_short(wanted)!r}"
        for what, seen, wanted in pairs
        if seen != wanted
    ]
    if att.expiration <= now:
        reasons.append(f"it expired at {att.expiration}")
    return reasons, att.container


def _evidence_reasons(exc: AttestationError) -> list[str]:
    if isinstance(exc, EvidenceRejected):
        return [f"evidence: {type(e).__name__}: {e}" for e in exc.errors]
    return [f"evidence: {type(exc).__name__}: {exc}"]


def expected_job_host_data(launch: LaunchRequest, *, image: str) -> bytes:
    """HOST_DATA of the initdata the launcher put on this job's pod."""
    gpu = launch.request.tee == TeeKind.SEV_SNP_NVIDIA_H100
    initdata = build_initdata(job_id=launch.job_id, provider=launch.provider, image=image, gpu=gpu)
    return expected_host_data(initdata)


def check_attestation(
    event: Event,
    launch: LaunchRequest,
    *,
    image: str,
    trust: Trust,
    policy: Policy = DEFAULT_POLICY,
    now: dt.datetime,
    cache: ChainCache | None = None,
) -> str:
    """Return the container key C of ``event`` if it is this job's container; see the module.

    Raises :class:`AttestationIgnored` (every failed check listed) otherwise; never anything
    else for any event (the evidence parsers raise only ``AttestationError``).
    """
    reasons, container = _cheap_checks(event, launch, image=image, now=int(now.timestamp()))
    if reasons:
        raise AttestationIgnored(event.id, reasons)
    expected = Expected(
        job=launch.job_id,
        nonce=launch.request.nonce,
        provider=launch.provider,
        container_pubkey=container,
        model_sha256=launch.model.sha256,
        host_data=expected_job_host_data(launch, image=image),
    )
    try:
        bundle = parse_bundle(event.content)
        verify_evidence(bundle, policy, now=now, trust=trust, expected=expected, cache=cache)
    except AttestationError as exc:
        raise AttestationIgnored(event.id, _evidence_reasons(exc), evidence_checked=True) from None
    return container


class RelayStatusSource:
    """The ``attested`` status line of Kubernetes jobs, from their kind-7100 event (see module)."""

    def __init__(
        self,
        pool: RelayPool,
        *,
        image: str,
        trust: Trust | None = None,
        policy: Policy = DEFAULT_POLICY,
        clock: Callable[[], float] = time.time,
        max_verifications: int = DEFAULT_MAX_VERIFICATIONS,
    ) -> None:
        self._pool = pool
        self._image = image
        self._trust = trust if trust is not None else Trust()
        self._policy = policy
        self._clock = clock
        self._max_verifications = max_verifications
        # One per event loop (ChainCache is not thread-safe): checks run on the loop.
        self._cache = ChainCache()

    def _check(self, event: Event, launch: LaunchRequest) -> str:
        return check_attestation(
            event,
            launch,
            image=self._image,
            trust=self._trust,
            policy=self._policy,
            now=dt.datetime.fromtimestamp(self._clock(), dt.UTC),
            cache=self._cache,
        )

    async def status_lines(self, launch: LaunchRequest) -> AsyncIterator[StatusLine]:
        job_id = launch.job_id
        sub = await self._pool.subscribe(
            [Filter(kinds=(ATTESTATION_KIND,), tags=(Filter.tag("e", [job_id]),))]
        )
        verifications = 0
        try:
            async for event in sub:
                if event.kind != ATTESTATION_KIND or job_id not in event.tag_values("e"):
                    continue  # a relay that ignores the filter
                try:
                    container = self._check(event, launch)
                except AttestationIgnored as exc:
                    _log.warning(
                        "job %s: ignoring kind-7100 event %s signed by %s: %s",
                        job_id,
                        event.id,
                        event.pubkey,
                        "; ".join(exc.reasons),
                    )
                    if exc.evidence_checked:
                        verifications += 1
                    if verifications >= self._max_verifications:
                        _log.error(
                            "job %s: %d attestations failed verification; no longer watching",
                            job_id,
                            verifications,
                        )
                        return
                    continue
                _log.info(
                    "job %s: attestation %s verified; container %s", job_id, event.id, container
                )
                yield StatusLine(StatusKind.ATTESTED, container=container, attestation=event.id)
                return
        finally:
            await sub.close()
