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
5. per request: claim it in the ledger (a duplicate is dropped), :func:`~dvm.node.intake.screen`
   it, and either publish ``error`` feedback with the reason or start the job task;
6. per job task (the scheduler's per-job boundary, the one broad ``except``): ``processing``
   feedback, launch, ``processing`` + ``["container", C]`` on the ``attested`` status line, then
   on exit ``success`` + ``["destroyed","true"]`` or ``error`` with the reason of
   docs/launch.md §3; a launch that cannot start gets ``error`` with the
   :class:`~dvm.node.errors.LaunchError`'s ``reason`` (``launch-failed``, ``capacity``,
   ``unsupported-tee``) and its message;
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
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip90 import JOB_REQUEST_KINDS, ErrorReason, FeedbackStatus, build_job_feedback
from dvm.relay import RelayError, RelayPool, Subscription

from .admission import Admission, Refusal
from .announce import build_announcement, build_relay_list, build_withdrawal
from .config import NodeConfig
from .errors import LaunchError, LedgerError
from .intake import Accepted, is_for_us, screen
from .launcher import LaunchedJob, Launcher, LaunchRequest, feedback_for_exit
from .ledger import JobLedger, JobState

__all__ = ["ProviderNode"]

_log = logging.getLogger(__name__)
_STATUS_DRAIN_S = 5.0
_MAX_CONTENT_CHARS = 500


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

    async def _publish(self, unsigned: UnsignedEvent) -> None:
        if self._pool is None:  # pragma: no cover - run() sets the pool first
            return
        event = unsigned.sign(self._key, aux_rand=self._random_bytes(32))
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
        await self._publish(unsigned)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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

    async def _serve(self, pool: RelayPool, stop: asyncio.Event) -> None:
        config = self._config
        self._pool = pool
        try:
            await self._collect_orphans()
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
            _log.info(
                "node %s serving kinds %s on %d relays", author, config.kinds, len(config.relays)
            )
            self.ready.set()
            try:
                await stop.wait()
            finally:
                intake.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await intake
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
        """Handle one verified event of the intake subscription.

        Unsigned or malformed events never get here: the relay pool only yields events whose
        id and signature verified, and logs what it drops.
        """
        if not is_for_us(event, self._pubkey.hex()):
            _log.debug("event %s kind %d is not a job request for us", event.id, event.kind)
            return
        if not self._ledger.claim(event.id, requester=event.pubkey, kind=event.kind):
            _log.info("job %s: already in the ledger, not launched again", event.id)
            return
        decision = screen(
            event,
            config=self._config,
            admission=self._admission,
            running_jobs=len(self._occupying),
            now=int(self._clock()),
        )
        if isinstance(decision, Refusal):
            self._ledger.transition(event.id, JobState.REFUSED, reason=decision.reason.value)
            _log.info("job %s: refused (%s)", event.id, decision.reason.value)
            self._spawn(
                self._feedback(
                    event.id,
                    event.pubkey,
                    FeedbackStatus.ERROR,
                    reason=decision.reason,
                    content=decision.message,
                )
            )
            return
        self._ledger.transition(event.id, JobState.LAUNCHING)
        self._occupying.add(event.id)
        self._jobs[event.id] = asyncio.create_task(self._job_boundary(decision))

    # --- one job -----------------------------------------------------------------------

    async def _job_boundary(self, accepted: Accepted) -> None:
        request = accepted.request
        try:
            await self._job(accepted)
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
            )
        finally:
            self._occupying.discard(request.id)
            self._jobs.pop(request.id, None)
            self._launched.pop(request.id, None)

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

    async def _job(self, accepted: Accepted) -> None:
        request = accepted.request
        job_id, requester = request.id, request.requester
        await self._feedback(job_id, requester, FeedbackStatus.PROCESSING, content="launching")
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
            )
            return
        self._launched[job_id] = launched
        self._ledger.transition(job_id, JobState.RUNNING, handle=launched.handle)
        container: list[str] = []
        watcher = asyncio.create_task(self._watch_status(job_id, requester, launched, container))
        info = await launched.wait()
        self._occupying.discard(job_id)  # the container is gone: its slot is free
        try:
            await asyncio.wait_for(watcher, timeout=_STATUS_DRAIN_S)
        except TimeoutError:
            _log.warning("job %s: status stream still open after exit", job_id)
        final = feedback_for_exit(info)
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
        )

    async def _watch_status(
        self, job_id: str, requester: str, launched: LaunchedJob, container: list[str]
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
                )
