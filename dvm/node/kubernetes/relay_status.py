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
ends. The subscription is closed when the iterator ends or is closed.

**It never gives up on a job** (an impostor flood can delay the ``processing`` feedback, never
stop or redirect it), and the work an impostor can cause is bounded:

* each event id is examined once (:class:`~dvm.relay.subscription.RecentIds` of
  :data:`SEEN_IDS` ids), so a re-delivered impostor costs a set lookup;
* the cheapest refusal comes first: every event goes through the claims stage (parsing and
  string comparisons) as it arrives; only one that passes reaches the evidence stage;
* evidence verifications of one job draw from a token bucket (``verify_burst`` checks, then
  ``verify_per_s``): when it is empty the source waits for a token, so a flood of impostors
  that pass the claims (they are built from public data) costs the node at most that rate of
  signature checks per job. While it waits, events queue in the subscription (bounded; the
  oldest are dropped): if any were dropped, the source re-subscribes once its queue is empty,
  and the relays send the stored events again (already-examined ids are skipped), so the
  genuine event is examined in the end. If the relays close the subscription (``CLOSED``, or
  no free subscription slot), it asks again every :data:`RESUBSCRIBE_AFTER_S`; only the pool's
  closing (the node stopping) or the caller's ends the watch without a line.
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

import asyncio
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
from dvm.relay import PoolClosedError, RecentIds, RelayPool

from ..admission import TokenBucket
from ..errors import AttestationIgnored
from ..launcher import LaunchRequest

__all__ = [
    "DEFAULT_VERIFY_BURST",
    "DEFAULT_VERIFY_PER_S",
    "RESUBSCRIBE_AFTER_S",
    "SEEN_IDS",
    "RelayStatusSource",
    "check_attestation",
    "expected_job_host_data",
]

_log = logging.getLogger(__name__)

#: Evidence verifications per job: a burst of 16, then 4 per second.
DEFAULT_VERIFY_BURST = 16
DEFAULT_VERIFY_PER_S = 4.0
#: Event ids remembered per job (examined once each).
SEEN_IDS = 4096
#: After the relays closed the subscription (CLOSED, or no subscription slot), ask again after.
RESUBSCRIBE_AFTER_S = 5.0


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
        monotonic: Callable[[], float] = time.monotonic,
        verify_burst: int = DEFAULT_VERIFY_BURST,
        verify_per_s: float = DEFAULT_VERIFY_PER_S,
    ) -> None:
        self._pool = pool
        self._image = image
        self._trust = trust if trust is not None else Trust()
        self._policy = policy
        self._clock = clock
        self._monotonic = monotonic
        self._verify_burst = verify_burst
        self._verify_per_s = verify_per_s
        # One per event loop (ChainCache is not thread-safe): checks run on the loop.
        self._cache = ChainCache()

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)

    async def status_lines(self, launch: LaunchRequest) -> AsyncIterator[StatusLine]:
        job_id = launch.job_id
        expected = _expected(launch, self._image)
        seen = RecentIds(SEEN_IDS)
        bucket = TokenBucket(self._verify_burst, self._verify_per_s, now=self._monotonic())
        filters = [Filter(kinds=(ATTESTATION_KIND,), tags=(Filter.tag("e", [job_id]),))]
        while True:
            try:
                sub = await self._pool.subscribe(filters)
            except PoolClosedError:
                return
            try:
                async for event in sub:
                    if event.kind != ATTESTATION_KIND or job_id not in event.tag_values("e"):
                        continue  # a relay that ignores the filter
                    if not seen.add(event.id):
                        continue  # examined already (re-delivered after a re-subscription)
                    container = await self._examine(event, expected, bucket)
                    if container is not None:
                        _log.info(
                            "job %s: attestation %s verified; container %s",
                            job_id,
                            event.id,
                            container,
                        )
                        yield StatusLine(
                            StatusKind.ATTESTED, container=container, attestation=event.id
                        )
                        return
                    if sub.dropped_count and not sub.queued:
                        break  # events were dropped while we verified: ask the relays again
                else:
                    if not sub.closed_reasons:
                        return  # the pool (or our caller) closed it: the job is over
                    _log.warning(
                        "job %s: the relays closed the kind-7100 subscription (%s); "
                        "re-subscribing in %g s",
                        job_id,
                        "; ".join(f"{u}: {r.text[:200]}" for u, r in sub.closed_reasons.items()),
                        RESUBSCRIBE_AFTER_S,
                    )
                    await asyncio.sleep(RESUBSCRIBE_AFTER_S)  # a retry timer, not synchronisation
                    continue
                _log.info(
                    "job %s: %d kind-7100 events dropped while verifying; re-subscribing",
                    job_id,
                    sub.dropped_count,
                )
            finally:
                await sub.close()

    async def _examine(
        self, event: Event, expected: ExpectedJob, bucket: TokenBucket
    ) -> str | None:
        """C if ``event`` is this job's container's attestation; None (logged) otherwise."""
        job_id = expected.job_id
        claimed = check_claims(event, expected, now=int(self._clock()))
        att = claimed.attestation
        if att is None or claimed.reasons:
            self._ignored(job_id, AttestationIgnored(event.id, list(claimed.reasons)), event)
            return None
        while not bucket.take(self._monotonic()):
            # Rate limiting, not synchronisation: the bound on verification work per job.
            await asyncio.sleep(bucket.wait_s(self._monotonic()))
        evidence = check_evidence(
            att,
            expected,
            trust=self._trust,
            policy=self._policy,
            now=self._now(),
            cache=self._cache,
        )
        if not evidence.passed:
            reasons = [*evidence.reasons, *(f"evidence: {e}" for e in evidence.errors)]
            self._ignored(
                job_id, AttestationIgnored(event.id, reasons, evidence_checked=True), event
            )
            return None
        return att.container

    @staticmethod
    def _ignored(job_id: str, exc: AttestationIgnored, event: Event) -> None:
        _log.warning(
            "job %s: ignoring kind-7100 event %s signed by %s: %s",
            job_id,
            event.id,
            event.pubkey,
            "; ".join(exc.reasons),
        )
