"""The provider node: announce, take requests, launch one container per job, report, shut down.

DESIGN §3.1-§3.3 and §3.9; docs/node.md (lifecycle, ledger states, feedback mapping).

Lifecycle of :meth:`ProviderNode.run`:

1. open the relay pool (signed with the node key P), or use the one given to the constructor
   (``cdvm serve`` opens it first under Kubernetes, where the launcher's status source
   subscribes on the same pool; the node then leaves closing it to its owner);
2. collect orphans: the launcher kills what a previous run left (every job the ledger holds
   ``received``/``launching``/``running`` whose container is still ours; under Kubernetes
   every pod labelled with this node, recorded or not); those jobs are marked ``failed`` and
   get ``error`` feedback;
3. publish the kind-10002 relay list and the kind-31990 announcement;
4. subscribe to job requests (kinds 5000-5999) ``#p``-tagged to P since ``now -
   node.since_lookback_s``, so requests sent while the node restarted are still seen (the
   ledger keeps them from launching twice);
5. per request: the cheap checks (:func:`~dvm.node.intake.precheck`: size, kind, expiry,
   allow-list, proof of work) before anything is written; then the ledger lookup (a request
   already there is dropped), :func:`~dvm.node.intake.admit`, and either a ``refused`` row or a
   claim and the job task. A refusal gets ``error`` feedback only within the refusal-feedback
   rates (:meth:`~dvm.node.admission.Admission.may_answer`), from at most
   :data:`MAX_BACKGROUND` publishing tasks; every refusal counts towards the load that raises
   the proof of work required;
6. per job task: :func:`dvm.node.job.run_job` (the scheduler's per-job boundary, the one broad
   ``except``; ``processing``, launch, ``["container", C]``, final feedback; NIP-09
   cancellation; feedback to the request's ``relays`` too); this node is its
   :class:`~dvm.node.job.JobHost`;
7. on ``stop``: close the intake subscription, give running jobs up to ``limits.grace_s`` to
   finish, kill the rest (their feedback is ``error`` ``timeout``), publish the NIP-09
   deletion of the announcement, close the pool;
8. all along, the ledger is pruned of final rows older than ``limits.ledger_retention_s``
   (at start, then every ``min(PRUNE_INTERVAL_S, retention / 4)``).

Feedback is signed by P; its content is a short human-readable reason (limits, counts, names
of fields), never job data. Log lines carry job ids, kinds, states and sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine

from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip90 import (
    JOB_REQUEST_KINDS,
    ErrorReason,
    FeedbackStatus,
    build_job_feedback,
)
from dvm.relay import RelayError, RelayPool, Subscription

from .admission import Admission, Refusal
from .announce import build_announcement, build_relay_list, build_withdrawal
from .config import NodeConfig
from .intake import Accepted, admit, is_for_us, precheck
from .job import run_job
from .launcher import LaunchedJob, Launcher, LaunchRequest
from .ledger import JobLedger, JobState
from .side_relays import SideRelays

__all__ = ["MAX_BACKGROUND", "PRUNE_INTERVAL_S", "ProviderNode"]

_log = logging.getLogger(__name__)
#: refusal-feedback tasks in flight at once; a refusal beyond them is logged, not answered
MAX_BACKGROUND = 32
#: the longest wait between two ledger prunings
PRUNE_INTERVAL_S = 3600.0


class ProviderNode:
    """One provider daemon. Construct it, then ``await run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        secret_key: SecretKey,
        launcher: Launcher,
        ledger: JobLedger,
        runtime_version: str,
        runtime_image: str,
        pool: RelayPool | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._config = config
        self._key = secret_key
        self._pubkey = secret_key.public_key
        self._launcher = launcher
        self._ledger = ledger
        self._runtime_version = runtime_version
        self._runtime_image = runtime_image
        self._clock = clock
        self._random_bytes = random_bytes
        self._admission = Admission(config.limits, clock=monotonic)
        self._given_pool = pool
        self._pool: RelayPool | None = None
        self._jobs: dict[str, asyncio.Task[None]] = {}
        # Jobs that hold a capacity slot: from admission until their container is gone. A job's
        # task lives a little longer (it still publishes the final feedback), and a requester
        # that acts on that feedback must find the slot free.
        self._occupying: set[str] = set()
        self._launched: dict[str, LaunchedJob] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()

    @property
    def pubkey(self) -> PublicKey:
        return self._pubkey

    @property
    def running_jobs(self) -> int:
        return len(self._occupying)

    # --- publishing --------------------------------------------------------------------

    async def _publish(self, unsigned: UnsignedEvent, side: SideRelays | None = None) -> None:
        if self._pool is None:  # pragma: no cover - run() sets the pool first
            return
        event = unsigned.sign(self._key, aux_rand=self._random_bytes(32))
        if side is not None:
            side.publish(event)
        try:
            await self._pool.publish(event)
        except RelayError as exc:
            _log.warning("event %s kind %d not published: %s", event.id, event.kind, exc)

    async def feedback(
        self,
        request_id: str,
        requester: str,
        status: FeedbackStatus,
        *,
        reason: ErrorReason | None = None,
        container: str | None = None,
        destroyed: bool = False,
        content: str = "",
        side: SideRelays | None = None,
    ) -> None:
        unsigned = build_job_feedback(
            author=self._pubkey,
            request_id=request_id,
            requester=PublicKey.from_hex(requester),
            status=status,
            created_at=int(self._clock()),
            reason=reason,
            container=PublicKey.from_hex(container) if container else None,
            destroyed=destroyed,
            content=content,
        )
        _log.info(
            "job %s: feedback %s%s%s",
            request_id,
            status.value,
            f" {reason.value}" if reason else "",
            " destroyed" if destroyed else "",
        )
        await self._publish(unsigned, side)

    def _spawn(self, coro: Coroutine[object, object, None]) -> bool:
        """Run ``coro`` in the background unless :data:`MAX_BACKGROUND` tasks already run."""
        if len(self._background) >= MAX_BACKGROUND:
            coro.close()
            return False
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return True

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        async with contextlib.AsyncExitStack() as stack:
            pool = self._given_pool
            if pool is None:
                pool = await stack.enter_async_context(
                    RelayPool(
                        self._config.relays,
                        secret_key=self._key,
                        clock=self._clock,
                        random_bytes=self._random_bytes,
                    )
                )
            await self._serve(pool, stop)
        _log.info("node %s stopped", self._pubkey.hex())

    def prune_ledger(self) -> int:
        """Delete final ledger rows older than ``limits.ledger_retention_s``; how many."""
        pruned = self._ledger.prune(self._config.limits.ledger_retention_s)
        if pruned:
            _log.info("ledger: %d final rows older than the retention pruned", pruned)
        return pruned

    async def _prune_periodically(self) -> None:
        interval_s = min(PRUNE_INTERVAL_S, self._config.limits.ledger_retention_s / 4)
        while True:
            await asyncio.sleep(interval_s)  # a timer, not synchronisation
            self.prune_ledger()

    async def _serve(self, pool: RelayPool, stop: asyncio.Event) -> None:
        config = self._config
        self._pool = pool
        try:
            await self._collect_orphans()
            self.prune_ledger()
            now = int(self._clock())
            author = self._pubkey.hex()
            await self._publish(build_relay_list(config, author_hex=author, created_at=now))
            await self._publish(build_announcement(config, author_hex=author, created_at=now))
            sub = await pool.subscribe(
                [
                    Filter(
                        kinds=tuple(JOB_REQUEST_KINDS),
                        tags=(Filter.tag("p", [author]),),
                        since=max(0, now - config.since_lookback_s),
                    )
                ]
            )
            intake = asyncio.create_task(self._intake(sub))
            pruner = asyncio.create_task(self._prune_periodically())
            _log.info(
                "node %s serving kinds %s on %d relays", author, config.kinds, len(config.relays)
            )
            self.ready.set()
            try:
                await stop.wait()
            finally:
                for task in (intake, pruner):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await sub.close()
                await self._drain()
                withdrawal = build_withdrawal(
                    config, author_hex=author, created_at=int(self._clock())
                )
                await self._publish(withdrawal)
        finally:
            self._pool = None

    async def _drain(self) -> None:
        """Let running jobs finish within the grace period, then kill what is left."""
        if self._jobs:
            _log.info(
                "shutdown: waiting up to %g s for %d job(s)",
                self._config.limits.grace_s,
                len(self._jobs),
            )
            await asyncio.wait(set(self._jobs.values()), timeout=self._config.limits.grace_s)
        for job_id, launched in list(self._launched.items()):
            _log.warning("shutdown: killing the container of job %s", job_id)
            await launched.kill()
        if self._jobs:
            await asyncio.wait(set(self._jobs.values()))
        if self._background:
            await asyncio.wait(set(self._background))

    async def _collect_orphans(self) -> None:
        records = self._ledger.unfinished()
        handles = {r.request_id: r.handle for r in records if r.handle}
        # Always asked, even with nothing in the ledger: the Kubernetes launcher also deletes
        # pods a previous run created but never recorded (it died between create and ledger).
        killed = set(await self._launcher.collect_orphans(handles))
        for record in records:
            self._ledger.transition(record.request_id, JobState.FAILED, reason="node-restart")
            _log.warning(
                "job %s: left %s by a previous run%s; failed",
                record.request_id,
                record.state.value,
                " (container killed)" if record.request_id in killed else "",
            )
            await self.feedback(
                record.request_id,
                record.requester,
                FeedbackStatus.ERROR,
                reason=ErrorReason.LAUNCH_FAILED,
                container=record.container,
                content="the provider restarted during this job; its container was stopped",
            )

    # --- intake ------------------------------------------------------------------------

    async def _intake(self, sub: Subscription) -> None:
        async for event in sub:
            self.on_event(event)

    def on_event(self, event: Event) -> None:
        """Handle one verified event of the intake subscription (module docstring, step 5).

        Unsigned or malformed events never get here: the relay pool only yields events whose
        id and signature verified, and logs what it drops.
        """
        if not is_for_us(event, self._pubkey.hex()):
            _log.debug("event %s kind %d is not a job request for us", event.id, event.kind)
            return
        config, admission, now = self._config, self._admission, int(self._clock())
        refusal = precheck(event, config=config, admission=admission, now=now)
        if refusal is not None:  # no ledger row: a flood of junk writes nothing
            self._refuse(event, refusal)
            return
        if self._ledger.get(event.id) is not None:
            _log.info("job %s: already in the ledger, not launched again", event.id)
            return
        decision = admit(
            event, config=config, admission=admission, running_jobs=len(self._occupying), now=now
        )
        if isinstance(decision, Refusal):
            self._ledger.record_refused(
                event.id, requester=event.pubkey, kind=event.kind, reason=decision.reason.value
            )
            self._refuse(event, decision)
            return
        if not self._ledger.claim(event.id, requester=event.pubkey, kind=event.kind):
            return  # pragma: no cover - looked up just above, on the same loop
        self._ledger.transition(event.id, JobState.LAUNCHING)
        self._occupying.add(event.id)
        self._jobs[event.id] = asyncio.create_task(self._job_task(decision))

    def _refuse(self, event: Event, refusal: Refusal) -> None:
        """Count the refusal towards the load; answer it if the feedback rates allow."""
        self._admission.note_refusal()
        if not self._admission.may_answer(event.pubkey):
            _log.debug(
                "job %s: refused (%s), not answered (feedback rate)", event.id, refusal.reason
            )
            return
        answered = self._spawn(
            self.feedback(
                event.id,
                event.pubkey,
                FeedbackStatus.ERROR,
                reason=refusal.reason,
                content=refusal.message,
            )
        )
        if answered:
            _log.info("job %s: refused (%s)", event.id, refusal.reason.value)
        else:
            _log.debug("job %s: refused (%s), not answered (busy)", event.id, refusal.reason)

    # --- one job (dvm.node.job; this node is its JobHost) -----------------------------------

    @property
    def ledger(self) -> JobLedger:
        return self._ledger

    @property
    def launcher(self) -> Launcher:
        return self._launcher

    @property
    def pool(self) -> RelayPool:
        if self._pool is None:  # pragma: no cover - _serve sets it before any job starts
            raise RuntimeError("the node is not serving")
        return self._pool

    @property
    def own_relays(self) -> tuple[str, ...]:
        return self._config.relays

    @property
    def secret_key(self) -> SecretKey:
        return self._key

    def track(self, job_id: str, launched: LaunchedJob) -> None:
        self._launched[job_id] = launched

    def release_slot(self, job_id: str) -> None:
        self._occupying.discard(job_id)

    async def _job_task(self, accepted: Accepted) -> None:
        job_id = accepted.request.id
        try:
            await run_job(self, accepted, self._launch_request(accepted))
        finally:
            self._jobs.pop(job_id, None)
            self._launched.pop(job_id, None)

    def _launch_request(self, accepted: Accepted) -> LaunchRequest:
        limits = self._config.limits
        return LaunchRequest(
            request=accepted.request,
            provider=self._pubkey.hex(),
            relays=self._config.relays,
            model=accepted.model.spec(),
            limits=limits.job_limits(),
            grace_s=limits.grace_s,
            runtime_version=self._runtime_version,
            runtime_image=self._runtime_image,
        )
