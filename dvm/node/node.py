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
6. per job task (the scheduler's per-job boundary, the one broad ``except``): ``processing``
   feedback, launch, ``processing`` + ``["container", C]`` on the ``attested`` status line, then
   on exit ``success`` + ``["destroyed","true"]`` or ``error`` with the reason of
   docs/launch.md §3; a launch that cannot start gets ``error`` with the
   :class:`~dvm.node.errors.LaunchError`'s ``reason`` (``launch-failed``, ``capacity``,
   ``unsupported-tee``) and its message. Meanwhile it watches for a NIP-09 deletion of the
   request by its author: the container is killed and the final feedback is ``error``
   ``cancelled``. Its feedback also goes to the request's ``relays`` that
   :func:`~dvm.node.feedback_relays.select_feedback_relays` admits (:mod:`dvm.node.side_relays`);
8. the ledger is pruned of final rows older than ``limits.ledger_retention_s`` at start and
   every :data:`PRUNE_INTERVAL_S` (at most);
7. on ``stop``: close the intake subscription, give running jobs up to ``limits.grace_s`` to
   finish, kill the rest (their feedback is ``error`` ``timeout``), publish the NIP-09
   deletion of the announcement, close the pool.

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

from container.launch import StatusKind
from dvm.nostr.errors import NostrError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip09 import DELETION_KIND, parse_deletion
from dvm.nostr.nip90 import (
    JOB_REQUEST_KINDS,
    ErrorReason,
    FeedbackStatus,
    JobRequest,
    build_job_feedback,
)
from dvm.relay import RelayError, RelayPool, Subscription

from .admission import Admission, Refusal
from .announce import build_announcement, build_relay_list, build_withdrawal
from .config import NodeConfig
from .errors import LaunchError, LedgerError
from .feedback_relays import select_feedback_relays
from .intake import Accepted, admit, is_for_us, precheck
from .launcher import (
    ExitInfo,
    FinalFeedback,
    LaunchedJob,
    Launcher,
    LaunchRequest,
    feedback_for_exit,
)
from .ledger import JobLedger, JobState
from .side_relays import SideRelays

__all__ = ["MAX_BACKGROUND", "PRUNE_INTERVAL_S", "ProviderNode"]

_log = logging.getLogger(__name__)
_STATUS_DRAIN_S = 5.0
_MAX_CONTENT_CHARS = 500
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

    async def _feedback(
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
            await self._feedback(
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
        self._jobs[event.id] = asyncio.create_task(self._job_boundary(decision))

    def _refuse(self, event: Event, refusal: Refusal) -> None:
        """Count the refusal towards the load; answer it if the feedback rates allow."""
        self._admission.note_refusal()
        if not self._admission.may_answer(event.pubkey):
            _log.debug(
                "job %s: refused (%s), not answered (feedback rate)", event.id, refusal.reason
            )
            return
        answered = self._spawn(
            self._feedback(
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

    # --- one job -----------------------------------------------------------------------

    async def _job_boundary(self, accepted: Accepted) -> None:
        request = accepted.request
        side_urls = select_feedback_relays(request.relays, self._config.relays)
        side = (
            SideRelays(
                side_urls,
                secret_key=self._key,
                clock=self._clock,
                random_bytes=self._random_bytes,
            )
            if side_urls
            else None
        )
        try:
            await self._job(accepted, side)
        except Exception as exc:  # noqa: BLE001 - the scheduler's per-job boundary
            _log.error("job %s: failed in the node (%s: %s)", request.id, type(exc).__name__, exc)
            with contextlib.suppress(LedgerError):
                self._ledger.transition(request.id, JobState.FAILED, reason="node-error")
            await self._feedback(
                request.id,
                request.requester,
                FeedbackStatus.ERROR,
                reason=ErrorReason.LAUNCH_FAILED,
                content="the provider node failed to run this job",
                side=side,
            )
        finally:
            self._occupying.discard(request.id)
            self._jobs.pop(request.id, None)
            self._launched.pop(request.id, None)
            if side is not None:
                await side.close()

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

    async def _job(self, accepted: Accepted, side: SideRelays | None) -> None:
        cancel = _Cancellation()
        deletions = await self._watch_deletions(accepted.request, cancel)
        try:
            await self._run_job(accepted, side, cancel)
        finally:
            deletions.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deletions

    async def _run_job(
        self, accepted: Accepted, side: SideRelays | None, cancel: _Cancellation
    ) -> None:
        request = accepted.request
        job_id, requester = request.id, request.requester
        await self._feedback(
            job_id, requester, FeedbackStatus.PROCESSING, content="launching", side=side
        )
        try:
            launched = await self._launcher.launch(self._launch_request(accepted))
        except LaunchError as exc:
            self._occupying.discard(job_id)  # nothing runs: free the slot before telling anyone
            _log.error("job %s: launch failed (%s): %s", job_id, exc.reason.value, exc)
            self._ledger.transition(job_id, JobState.FAILED, reason=exc.reason.value)
            await self._feedback(
                job_id,
                requester,
                FeedbackStatus.ERROR,
                reason=exc.reason,
                content=str(exc)[:_MAX_CONTENT_CHARS] or "the container could not be started",
                side=side,
            )
            return
        self._launched[job_id] = launched
        cancel.launched = launched
        self._ledger.transition(job_id, JobState.RUNNING, handle=launched.handle)
        if cancel.deletion_id is not None:  # deleted while the container was starting
            await launched.kill()
        container: list[str] = []
        watcher = asyncio.create_task(
            self._watch_status(job_id, requester, launched, container, side)
        )
        info = await launched.wait()
        self._occupying.discard(job_id)  # the container is gone: its slot is free
        try:
            await asyncio.wait_for(watcher, timeout=_STATUS_DRAIN_S)
        except TimeoutError:
            _log.warning("job %s: status stream still open after exit", job_id)
        final = _final_feedback(info, cancel)
        state = JobState.FINISHED if final.status is FeedbackStatus.SUCCESS else JobState.FAILED
        reason = final.reason.value if final.reason else None
        self._ledger.transition(job_id, state, reason=reason)
        await self._feedback(
            job_id,
            requester,
            final.status,
            reason=final.reason,
            container=container[0] if container else None,
            destroyed=final.destroyed,
            content=final.message or "container destroyed",
            side=side,
        )

    async def _watch_deletions(
        self, request: JobRequest, cancel: _Cancellation
    ) -> asyncio.Task[None]:
        """Subscribe to NIP-09 deletions of ``request`` by its author; kill the job on one."""
        pool = self._pool
        assert pool is not None  # _serve sets it before any job starts
        sub = await pool.subscribe(
            [
                Filter(
                    kinds=(DELETION_KIND,),
                    authors=(request.requester,),
                    tags=(Filter.tag("e", [request.id]),),
                )
            ],
            queue_maxsize=16,
            dedup_capacity=64,
        )

        async def watch() -> None:
            try:
                async for event in sub:
                    if event.pubkey != request.requester:
                        continue  # a relay that ignores the filter; NIP-09: author only
                    try:
                        deletion = parse_deletion(event)
                    except NostrError:
                        continue
                    if request.id not in deletion.event_ids:
                        continue
                    _log.info("job %s: cancelled by deletion %s", request.id, event.id)
                    cancel.deletion_id = event.id
                    if cancel.launched is not None:
                        await cancel.launched.kill()
                    return
            finally:
                await sub.close()

        return asyncio.create_task(watch())

    async def _watch_status(
        self,
        job_id: str,
        requester: str,
        launched: LaunchedJob,
        container: list[str],
        side: SideRelays | None,
    ) -> None:
        async for line in launched.status_lines():
            _log.info("job %s: status %s", job_id, line.kind.value)
            if line.kind is StatusKind.ATTESTED and line.container and not container:
                container.append(line.container)
                self._ledger.set_container(job_id, line.container)
                await self._feedback(
                    job_id,
                    requester,
                    FeedbackStatus.PROCESSING,
                    container=line.container,
                    content="container attested",
                    side=side,
                )


class _Cancellation:
    """A job's NIP-09 cancellation: the deletion that asked for it, and what to kill."""

    def __init__(self) -> None:
        self.deletion_id: str | None = None
        self.launched: LaunchedJob | None = None


def _final_feedback(info: ExitInfo, cancel: _Cancellation) -> FinalFeedback:
    """:func:`feedback_for_exit`, or ``error`` ``cancelled`` when the requester deleted the job."""
    if cancel.deletion_id is None:
        return feedback_for_exit(info)
    gone = "container destroyed" if info.destroyed else "container killed"
    message = f"cancelled by the requester (NIP-09 deletion {cancel.deletion_id}); {gone}"
    return FinalFeedback(FeedbackStatus.ERROR, ErrorReason.CANCELLED, info.destroyed, message)
