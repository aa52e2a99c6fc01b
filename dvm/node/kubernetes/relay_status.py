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
:class:`~container.launch.StatusLine` (C, the event id) for the first event that passes, then
ends. The subscription is closed when the iterator ends or is closed. At most
``max_verifications`` events per job reach the (costlier) evidence verification; after that the
source gives up on the job with an error log (a flood of well-formed impostors can delay the
job's ``processing`` feedback, never redirect it).

:func:`check_attestation` (pure: ``now``, the trust roots, the policy and the chain cache are
parameters) returns C or raises :class:`~dvm.node.errors.AttestationIgnored` listing every
failed check. It is the one cdvm/1 job check, :mod:`dvm.cdvm.jobcheck` (the requester's too),
with what the node knows: the job, this provider P, the request's nonce, reply-to key (``p``),
TEE kind and model, the model sha256 this node launched and the image the launcher ran. The
claims stage runs first; only an event that passes it reaches the (costlier) evidence stage:
the bundle verified against ``trust`` and ``policy``, bound to the signer C, of the requested
TEE kind, with the **HOST_DATA of this job's initdata** (:func:`expected_job_host_data`), so a
genuine report of another pod, job or provider never passes.

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
from attestation.initdata import expected_host_data
from attestation.snp.validate import DEFAULT_POLICY, Policy
from attestation.verification import Trust
from container.launch import StatusKind, StatusLine
from dvm.cdvm.jobcheck import ExpectedJob, check_claims, check_evidence, job_initdata
from dvm.cdvm.kind7100 import ATTESTATION_KIND
from dvm.nostr.event import Event
from dvm.nostr.filters import Filter
from dvm.relay import RelayPool

from ..errors import AttestationIgnored
from ..launcher import LaunchRequest

__all__ = [
    "DEFAULT_MAX_VERIFICATIONS",
    "RelayStatusSource",
    "check_attestation",
    "expected_job_host_data",
]

_log = logging.getLogger(__name__)

#: Evidence verifications per job before the source gives up on it.
DEFAULT_MAX_VERIFICATIONS = 32


def _expected(launch: LaunchRequest, image: str) -> ExpectedJob:
    request = launch.request
    return ExpectedJob(
        job_id=launch.job_id,
        provider=launch.provider,
        nonce=request.nonce,
        recipient=request.reply_to,
        tee=request.tee,
        model_name=launch.model.name,
        model_sha256=launch.model.sha256,
        image=image,
    )


def expected_job_host_data(launch: LaunchRequest, *, image: str) -> bytes:
    """HOST_DATA of the initdata the launcher put on this job's pod."""
    initdata = job_initdata(
        job_id=launch.job_id, provider=launch.provider, image=image, tee=launch.request.tee
    )
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
    expected = _expected(launch, image)
    claimed = check_claims(event, expected, now=int(now.timestamp()))
    att = claimed.attestation
    if att is None or claimed.reasons:
        raise AttestationIgnored(event.id, list(claimed.reasons))
    evidence = check_evidence(att, expected, trust=trust, policy=policy, now=now, cache=cache)
    if not evidence.passed:
        reasons = [*evidence.reasons, *(f"evidence: {e}" for e in evidence.errors)]
        raise AttestationIgnored(event.id, reasons, evidence_checked=True)
    return att.container


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
