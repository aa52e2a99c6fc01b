"""One job's task: launch, report, watch for cancellation, final feedback (DESIGN §3.3-§3.9).

docs/node.md §3 (lifecycle, step 6) and §6 (feedback). The scheduler's per-job boundary, the one
broad ``except`` of the node, is :func:`run_job`.

Contract: :func:`run_job` runs one accepted request to its end on a :class:`JobHost` (the
:class:`~dvm.node.node.ProviderNode`): ``processing`` feedback, launch, ``processing`` +
``["container", C]`` on the ``attested`` status line, then the final feedback of
:func:`~dvm.node.launcher.feedback_for_exit`, or ``error`` with the
:class:`~dvm.node.errors.LaunchError`'s reason when the launch cannot start. Meanwhile it

* watches for a **NIP-09 deletion** of the request by its author (a subscription to kind 5,
  ``authors`` = U, ``#e`` = the job, opened before the launch so a deletion sent meanwhile is
  seen; other authors are ignored: NIP-09 honours only the author): the container is killed
  (destroyed like any other) and the final feedback is ``error`` ``cancelled``, naming the
  deletion; the ledger row ends ``failed`` with reason ``cancelled``;
* also sends every feedback of the job to the request's ``relays`` that
  :func:`~dvm.node.feedback_relays.select_feedback_relays` admits
  (:class:`~dvm.node.side_relays.SideRelays`, opened for the job and closed at its end).

The job's slot is released (``host.release_slot``) as soon as its container is gone (or never
started), before the final feedback is published: a requester acting on that feedback must
find the slot free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from container.launch import StatusKind
from dvm.nostr.errors import NostrError
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip09 import DELETION_KIND, parse_deletion
from dvm.nostr.nip90 import ErrorReason, FeedbackStatus, JobRequest
from dvm.relay import RelayPool

from .errors import LaunchError, LedgerError
from .feedback_relays import select_feedback_relays
from .intake import Accepted
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

__all__ = ["JobHost", "final_feedback", "run_job"]

_log = logging.getLogger(__name__)
_STATUS_DRAIN_S = 5.0
_MAX_CONTENT_CHARS = 500


class JobHost(Protocol):
    """What a job needs from its node."""

    @property
    def ledger(self) -> JobLedger: ...

    @property
    def launcher(self) -> Launcher: ...

    @property
    def pool(self) -> RelayPool: ...

    @property
    def own_relays(self) -> tuple[str, ...]: ...

    @property
    def secret_key(self) -> SecretKey: ...

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
    ) -> None: ...

    def track(self, job_id: str, launched: LaunchedJob) -> None:
        """The container of ``job_id`` runs (the node kills it on shutdown)."""

    def release_slot(self, job_id: str) -> None:
        """The container of ``job_id`` is gone (or never started): its slot is free."""


class _Cancellation:
    """A job's NIP-09 cancellation: the deletion that asked for it, and what to kill."""

    def __init__(self) -> None:
        self.deletion_id: str | None = None
        self.launched: LaunchedJob | None = None


def final_feedback(info: ExitInfo, deletion_id: str | None) -> FinalFeedback:
    """:func:`feedback_for_exit`, or ``error`` ``cancelled`` when the requester deleted the job."""
    if deletion_id is None:
        return feedback_for_exit(info)
    gone = "container destroyed" if info.destroyed else "container killed"
    message = f"cancelled by the requester (NIP-09 deletion {deletion_id}); {gone}"
    return FinalFeedback(FeedbackStatus.ERROR, ErrorReason.CANCELLED, info.destroyed, message)


async def run_job(host: JobHost, accepted: Accepted, launch: LaunchRequest) -> None:
    """The scheduler's per-job boundary (see the module docstring)."""
    request = accepted.request
    side_urls = select_feedback_relays(request.relays, host.own_relays)
    side = SideRelays(side_urls, secret_key=host.secret_key) if side_urls else None
    try:
        cancel = _Cancellation()
        deletions = await _watch_deletions(host.pool, request, cancel)
        try:
            await _run(host, launch, side, cancel)
        finally:
            deletions.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deletions
    except Exception as exc:  # noqa: BLE001 - the scheduler's per-job boundary
        _log.error("job %s: failed in the node (%s: %s)", request.id, type(exc).__name__, exc)
        with contextlib.suppress(LedgerError):
            host.ledger.transition(request.id, JobState.FAILED, reason="node-error")
        await host.feedback(
            request.id,
            request.requester,
            FeedbackStatus.ERROR,
            reason=ErrorReason.LAUNCH_FAILED,
            content="the provider node failed to run this job",
            side=side,
        )
    finally:
        host.release_slot(request.id)
        if side is not None:
            await side.close()


async def _run(
    host: JobHost, launch: LaunchRequest, side: SideRelays | None, cancel: _Cancellation
) -> None:
    request = launch.request
    job_id, requester = request.id, request.requester
    await host.feedback(
        job_id, requester, FeedbackStatus.PROCESSING, content="launching", side=side
    )
    try:
        launched = await host.launcher.launch(launch)
    except LaunchError as exc:
        host.release_slot(job_id)  # nothing runs: free the slot before telling anyone
        _log.error("job %s: launch failed (%s): %s", job_id, exc.reason.value, exc)
        host.ledger.transition(job_id, JobState.FAILED, reason=exc.reason.value)
        await host.feedback(
            job_id,
            requester,
            FeedbackStatus.ERROR,
            reason=exc.reason,
            content=str(exc)[:_MAX_CONTENT_CHARS] or "the container could not be started",
            side=side,
        )
        return
    host.track(job_id, launched)
    cancel.launched = launched
    host.ledger.transition(job_id, JobState.RUNNING, handle=launched.handle)
    if cancel.deletion_id is not None:  # deleted while the container was starting
        await launched.kill()
    container: list[str] = []
    watcher = asyncio.create_task(_watch_status(host, request, launched, container, side))
    info = await launched.wait()
    host.release_slot(job_id)  # the container is gone: its slot is free
    try:
        await asyncio.wait_for(watcher, timeout=_STATUS_DRAIN_S)
    except TimeoutError:
        _log.warning("job %s: status stream still open after exit", job_id)
    final = final_feedback(info, cancel.deletion_id)
    state = JobState.FINISHED if final.status is FeedbackStatus.SUCCESS else JobState.FAILED
    reason = final.reason.value if final.reason else None
    host.ledger.transition(job_id, state, reason=reason)
    await host.feedback(
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
    pool: RelayPool, request: JobRequest, cancel: _Cancellation
) -> asyncio.Task[None]:
    """Subscribe to NIP-09 deletions of ``request`` by its author; kill the job on one."""
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
                    continue  # a relay that ignores the filter; NIP-09: the author only
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
    host: JobHost,
    request: JobRequest,
    launched: LaunchedJob,
    container: list[str],
    side: SideRelays | None,
) -> None:
    job_id = request.id
    async for line in launched.status_lines():
        _log.info("job %s: status %s", job_id, line.kind.value)
        if line.kind is StatusKind.ATTESTED and line.container and not container:
            container.append(line.container)
            host.ledger.set_container(job_id, line.container)
            await host.feedback(
                job_id,
                request.requester,
                FeedbackStatus.PROCESSING,
                container=line.container,
                content="container attested",
                side=side,
            )
