"""A confidential job from the requester's side: the asyncio shell around the job machine.

Spec: DESIGN §3.2-§3.9, ``docs/launch.md`` §6, ``docs/client.md`` (the API, with an example).

Every decision -- which events count, when the container is verified, when a wait is over, which
error a failure is -- belongs to :class:`~dvm.client.machine.RequesterMachine` (pure). This shell
makes the keys (U is the caller's ``identity``, else a fresh throwaway one; by default a **fresh
session key S** per job), feeds the machine, and performs its actions through
:class:`~dvm.client.transport.JobTransport` (the pool, or the one given as ``pool=``; subscribe
before publishing; gift wraps; deadlines) and :func:`dvm.client.verify.verify_attestation`
(``now`` from ``clock``). Each public call reads the subscription only until its milestone and
returns or raises what the machine says; nothing is sent to the container before its attestation
verified. Fresh keys are wiped on :meth:`~JobSession.close` (best effort: CPython cannot
guarantee erasure). Logs carry ids, kinds and sizes only.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from dvm.nostr.errors import NostrError
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip90 import JobRequest
from dvm.relay import RelayError, RelayPool

from . import events as ev
from .errors import AttestationRefused, ClientError
from .machine import RequesterMachine
from .options import JobMode, JobOptions
from .outcome import JobOutcome, describe_verification, outcome_to_json
from .transport import JobTransport
from .verify import Verification, verify_attestation

__all__ = ["Chat", "JobOutcome", "JobSession", "describe_verification", "outcome_to_json", "submit"]

_log = logging.getLogger(__name__)
_M = TypeVar("_M", ev.Ready, ev.Answered, ev.Finished)


class JobSession:
    """One job (see the module docstring). Use as ``async with``; :meth:`start` on entry."""

    def __init__(
        self,
        options: JobOptions,
        *,
        mode: JobMode,
        identity: SecretKey | None = None,
        pool: RelayPool | None = None,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.options = options
        self.mode = mode
        self._clock = clock
        self._random_bytes = random_bytes
        self._own_identity = identity is None
        self._identity = identity or SecretKey.generate(random_bytes)
        self._session = (
            SecretKey.generate(random_bytes) if options.fresh_session else self._identity
        )
        self._machine = RequesterMachine(
            options, mode=mode, identity=self._identity, session=self._session
        )
        self._transport = JobTransport(
            options.relays,
            session=self._session,
            auth_keys=(self._identity,),  # U signs the request: NIP-42 as U too (issue 10)
            wrap_kind=options.wrap_kind,
            pool=pool,
            clock=clock,
            random_bytes=random_bytes,
        )

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> JobSession:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        machine = self._machine
        try:
            if machine.verification is not None and not machine.ended and self._transport.is_open:
                await self._step(ev.SendEnd(self._now()))  # destroy it now, not at its timeout
        except (ClientError, RelayError, NostrError):
            _log.info("job %s: could not send the end message on exit", self.job_id)
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the subscription and our own pool (not a given one); wipe fresh keys."""
        await self._transport.close()
        if self._session is not self._identity:
            self._session.wipe()  # best effort: CPython cannot guarantee erasure
        if self._own_identity:
            self._identity.wipe()

    @property
    def job_id(self) -> str:
        return self._machine.job_id

    @property
    def request(self) -> JobRequest:
        if self._machine.request is None:
            raise ClientError("the job has not been published yet")
        return self._machine.request

    @property
    def session_key(self) -> PublicKey:
        """The key the container talks to (S, or U when ``fresh_session`` is off)."""
        return self._session.public_key

    @property
    def requester(self) -> PublicKey:
        return self._identity.public_key

    @property
    def verification(self) -> Verification:
        if self._machine.verification is None:
            raise ClientError("the container has not been verified yet")
        return self._machine.verification

    @property
    def ignored(self) -> dict[str, int]:
        """Events ignored so far, by reason (impostor feedback or attestations, bad wraps...)."""
        return self._machine.ignored

    # --- the public steps ---------------------------------------------------------------

    async def start(self) -> Verification:
        """Publish the request and return the verified attestation (or raise)."""
        start = ev.Start(self._now(), self._random_bytes(32), self._random_bytes(32))
        return (await self._until(start, ev.Ready)).verification

    async def send(self, text: str) -> str:
        """Send one input to the verified container and wait for its whole answer."""
        event = ev.SendInput(text, self._now(), self._transport.budget_bytes())
        return (await self._until(event, ev.Answered)).text

    async def end(self) -> JobOutcome:
        """End the chat (``["cdvm", "end"]``) and wait for the result and the destruction."""
        await self._step(ev.SendEnd(self._now()))
        return await self.finish()

    async def finish(self) -> JobOutcome:
        """Wait for the result and P's final feedback (``success`` + destroyed, or ``error``)."""
        return (await self._until(ev.AwaitOutcome(), ev.Finished)).outcome

    # --- performing the machine's actions -----------------------------------------------

    def _now(self) -> int:
        return int(self._clock())

    async def _until(self, event: ev.MachineEvent, want: type[_M]) -> _M:
        """Feed ``event``, then the subscription and the timers, until a milestone."""
        milestone = await self._step(event)
        while milestone is None:
            milestone = await self._step(await self._transport.next_event())
        if not isinstance(milestone, want):  # pragma: no cover - the machine's contract
            raise ClientError(f"job {self.job_id}: {type(milestone).__name__} out of turn")
        return milestone

    async def _step(self, event: ev.MachineEvent) -> ev.Ready | ev.Answered | ev.Finished | None:
        """Feed ``event`` and the follow-ups of its actions; raise a :class:`ev.Fail`."""
        queue: deque[ev.MachineEvent] = deque([event])
        while queue:
            for action in self._machine.handle(queue.popleft()):
                if isinstance(action, ev.Fail):
                    raise action.error
                if isinstance(action, ev.Ready | ev.Answered | ev.Finished):
                    return action
                follow_up = await self._perform(action)
                if follow_up is not None:
                    queue.append(follow_up)
        return None

    async def _perform(self, action: ev.Action) -> ev.MachineEvent | None:
        """Do ``action``; the event that reports how it went, if the machine waits for one."""
        match action:
            case ev.Verify():
                return self._verify(action)
            case ev.Report(step=step, detail=detail):
                self.options.progress(step, detail)
            case (
                ev.Subscribe() | ev.Publish() | ev.SendRumors() | ev.StartTimer() | ev.CancelTimer()
            ):
                return await self._transport.perform(action)
        return None

    def _verify(self, action: ev.Verify) -> ev.VerificationPassed | ev.VerificationRefused:
        opts = self.options
        try:
            verification = verify_attestation(
                action.attestation,
                request=action.request,
                container=action.container,
                policy=opts.policy,
                trust=opts.trust,
                now=datetime.fromtimestamp(self._clock(), UTC),
                trusted_images=opts.trusted_images,
                pins=opts.pins,
                crl=opts.crl,
            )
        except AttestationRefused as refused:
            return ev.VerificationRefused(refused)
        return ev.VerificationPassed(verification)


class Chat(JobSession):
    """An interactive job: ``async with Chat(options) as chat: await chat.send(...)``."""

    def __init__(
        self,
        options: JobOptions,
        *,
        identity: SecretKey | None = None,
        pool: RelayPool | None = None,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        super().__init__(
            options,
            mode=JobMode.CHAT,
            identity=identity,
            pool=pool,
            clock=clock,
            random_bytes=random_bytes,
        )


async def submit(
    options: JobOptions,
    text: str,
    *,
    identity: SecretKey | None = None,
    pool: RelayPool | None = None,
    clock: Callable[[], float] = time.time,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> JobOutcome:
    """A one-shot job: verify the container, send ``text``, return the answer and how it ended."""
    async with JobSession(
        options,
        mode=JobMode.ONESHOT,
        identity=identity,
        pool=pool,
        clock=clock,
        random_bytes=random_bytes,
    ) as job:
        await job.send(text)
        return await job.finish()
