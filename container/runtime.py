"""The asyncio shell around the job state machine: the only I/O of the container runtime.

Spec: DESIGN §3.4-§3.9, docs/launch.md (spec, status lines, exit codes, PSP socket),
docs/container.md (this runtime).

Contract: :meth:`JobRuntime.run` (started by :func:`container.job.run_job`) returns the exit
code and never raises. It feeds :class:`~container.machine.JobMachine` with events (from the
spec, worker threads, the relay pool, timers) and performs the actions it returns. Status
lines (:func:`container.launch.build_status_line`) go to ``status`` (stdout), one per line,
and nothing else does; logs go to ``logging`` with ids, kinds and sizes only. The per-job
boundary: any unexpected exception -- in the main loop or in a task it started -- becomes
:class:`~container.events.Failed` (destroy, exit 1). Whatever ends the job, teardown runs:
the pool is closed, the key C is wiped, buffers are cleared, the scratch directory (a fresh
tempdir under ``$TMPDIR``, which is also ``$TMPDIR`` and Python's ``tempfile`` default while
the job runs) is deleted. CPython cannot guarantee that wiped secrets leave no copy in freed
memory; the real guarantee is the destroyed confidential VM.

Why this module is over the ~400-line guide: it is the one object that performs every action
of the machine, and those actions share four things that must never leave it (the relay pool,
the one-time key C, the loaded runner and the scratch directory) plus one teardown that must
see all of them. Splitting it would hand the key and the pool to a second object, which is the
kind of copy this container exists to avoid; the pure parts already live elsewhere
(:mod:`container.machine`, :mod:`container.inbox`, :mod:`container.outbox`,
:mod:`container.plain`, :mod:`container.streaming`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO

from dvm.cdvm.channel import ChannelError, OutputState, build_error, build_output, build_ready
from dvm.cdvm.chunks import DEFAULT_CHUNK_BUDGET_BYTES, chunk_budget_bytes
from dvm.cdvm.kind7100 import Claims, ModelClaim, RuntimeClaim, report_data
from dvm.nostr.errors import NostrError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip59 import GIFT_WRAP_KINDS, WRAP_KIND_EPHEMERAL
from dvm.nostr.nip90 import JobRequest
from dvm.relay import RelayError, RelayPool, Subscription, publish_wrap

from . import events as ev
from .errors import EvidenceError, JobError, ModelError, RunError
from .evidence import EvidenceProvider
from .inbox import Accepted, Ended, Ignored, Inbox, Pending, Refused
from .launch import ExitCode, JobSpec, StatusKind, StatusLine, build_status_line
from .machine import JobMachine
from .outbox import result_content, sign_attestation, sign_result, wrap_for
from .plain import ENDED_TEXT, READY_TEXT, plain_messages, sign_relay_list
from .runner import GenerationParams, Runner
from .streaming import stream_run

__all__ = ["JobRuntime", "RunnerLoader", "StatusWriter"]

_log = logging.getLogger(__name__)

RunnerLoader = Callable[[JobSpec, GenerationParams], Runner]
_EOSE_WAIT_S = 5.0
_CLOSE_WAIT_S = 5.0
_ERROR_TEXT = {
    ChannelError.BAD_INPUT: "the input could not be used",
    ChannelError.TOO_LARGE: "the input is larger than this job accepts",
    ChannelError.MODEL_FAILED: "the model failed",
    ChannelError.TIMEOUT: "the job timed out and is being destroyed",
    ChannelError.INTERNAL: "internal error",
}


class StatusWriter:
    """docs/launch.md §2: one status line per line on stdout, flushed at once."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, line: StatusLine) -> None:
        self._stream.write(build_status_line(line) + "\n")
        self._stream.flush()


class JobRuntime:
    """One job, from the parsed spec to destruction. Use :func:`run_job`."""

    def __init__(
        self,
        spec: JobSpec,
        request: JobRequest,
        params: GenerationParams,
        *,
        status: StatusWriter,
        provider: EvidenceProvider,
        load: RunnerLoader,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._spec = spec
        self._request = request
        self._params = params
        self._status = status
        self._provider = provider
        self._load = load
        self._random_bytes = random_bytes
        self._clock = clock
        self._machine = JobMachine()
        self._events: asyncio.Queue[ev.Event] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: dict[ev.Timer, asyncio.TimerHandle] = {}
        self._peer = PublicKey.from_hex(request.reply_to)
        self._key: SecretKey | None = None
        self._pool: RelayPool | None = None
        self._inbox: Inbox | None = None
        self._runner: Runner | None = None
        self._evidence: list[dict[str, Any]] = []
        self._claims: Claims | None = None
        self._attestation_id = ""
        self._result_id = ""
        self._reply_kind = WRAP_KIND_EPHEMERAL
        self._inputs: dict[str, str] = {}  # plaintext of queued inputs, by input id
        self._batches: dict[str, deque[str]] = {}  # output text awaiting its SendOutput
        self._finals: dict[str, str] = {}  # whole answer of a run, until its final output
        self._answers: list[str] = []  # final answers, for the result
        self._cancels: dict[str, threading.Event] = {}
        self._error_detail: dict[ChannelError, str] = {}
        self._scratch: Path | None = None

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> int:
        self._scratch = Path(tempfile.mkdtemp(prefix="cdvm-job-"))
        previous_tempdir, previous_env = tempfile.tempdir, os.environ.get("TMPDIR")
        # Anything a library spills (onnxruntime writes $TMPDIR/.ses) is wiped with the scratch.
        tempfile.tempdir = os.environ["TMPDIR"] = str(self._scratch)
        oneshot = self._request.param("mode") == "oneshot"
        _log.info("job %s: started (kind %d)", self._request.id, self._request.kind)
        try:
            await self._handle(ev.SpecParsed(oneshot=oneshot))
            while self._machine.state is not ev.State.DESTROYED:
                await self._handle(await self._events.get())
        except Exception as exc:  # noqa: BLE001 - the container's per-job boundary (STYLE)
            _log.error("job %s: internal failure (%s)", self._request.id, type(exc).__name__)
            await self._handle(ev.Failed())
        finally:
            await self._teardown()
            tempfile.tempdir = previous_tempdir
            if previous_env is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = previous_env
        code = self._machine.exit_code
        return int(code if code is not None else ExitCode.FAILURE)

    def _post(self, event: ev.Event) -> None:
        self._events.put_nowait(event)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # the per-job boundary, for work started by the loop
            _log.error("job %s: task failed (%s)", self._request.id, type(exc).__name__)
            self._post(ev.Failed())

    async def _handle(self, event: ev.Event) -> None:
        for action in self._machine.handle(event):
            await self._perform(action)

    async def _perform(self, action: ev.Action) -> None:
        match action:
            case ev.StartTimer(timer=timer):
                delay_s = self._timer_s(timer)
                loop = asyncio.get_running_loop()
                self._timers[timer] = loop.call_later(delay_s, self._post, ev.TimerFired(timer))
            case ev.CancelTimer(timer=timer):
                handle = self._timers.pop(timer, None)
                if handle is not None:
                    handle.cancel()
            case ev.MakeKey():
                self._key = SecretKey.generate(self._random_bytes)  # memory only, never written
                self._post(ev.KeyMade())
            case ev.LoadModel():
                self._spawn(self._load_model())
            case ev.GetEvidence():
                self._spawn(self._get_evidence())
            case ev.Subscribe():
                self._spawn(self._subscribe())
            case ev.PublishAttestation():
                self._spawn(self._publish_attestation())
            case ev.EmitStatus(status=status):
                self._emit(status)
            case ev.SendReady():
                ready = build_ready(
                    self._c_pub, self._peer, self._job, created_at=self._now(), text=READY_TEXT
                )
                await self._send([ready])
            case ev.RunModel(input_id=input_id):
                self._spawn(self._run_input(input_id))
            case ev.CancelRun(input_id=input_id):
                cancel = self._cancels.get(input_id)
                if cancel is not None:
                    cancel.set()
            case ev.SendOutput(input_id=input_id, seq=seq, final=final, plain=plain):
                await self._send_output(input_id, seq, final=final, plain=plain)
            case ev.SendError(reason=reason, plain=plain):
                text = self._error_detail.pop(reason, _ERROR_TEXT[reason])
                if plain:  # a standard NIP-17 client: readable, no cdvm tag
                    await self._say(text)
                    return
                rumor = build_error(
                    self._c_pub, self._peer, self._job, reason, text, created_at=self._now()
                )
                await self._send([rumor])
            case ev.SendEnded():
                await self._say(ENDED_TEXT)
            case ev.PublishResult():
                self._spawn(self._publish_result())
            case ev.Destroy(reason=reason, exit_code=code):
                _log.info("job %s: destroying (%s, exit %d)", self._request.id, reason, code)
                self._status.write(StatusLine(StatusKind.DESTROYING, reason=reason))

    # --- helpers -----------------------------------------------------------------------------

    @property
    def _job(self) -> str:
        return self._request.id

    @property
    def _c_pub(self) -> PublicKey:
        if self._key is None:  # pragma: no cover - the machine makes the key first
            raise JobError("no container key yet")
        return self._key.public_key

    def _c_key(self) -> SecretKey:
        if self._key is None:  # pragma: no cover - the machine makes the key first
            raise JobError("no container key yet")
        return self._key

    def _now(self) -> int:
        return int(self._clock())

    def _timer_s(self, timer: ev.Timer) -> float:
        limits = self._spec.limits
        return {
            ev.Timer.ATTESTATION: limits.attestation_timeout_s,
            ev.Timer.IDLE: limits.idle_timeout_s,
            ev.Timer.DEADLINE: limits.deadline_s,
        }[timer]

    def _emit(self, kind: StatusKind) -> None:
        match kind:
            case StatusKind.ATTESTED:
                line = StatusLine(
                    kind, container=self._c_pub.hex(), attestation=self._attestation_id
                )
            case StatusKind.READY:
                line = StatusLine(kind)
            case StatusKind.DELIVERED:
                line = StatusLine(kind, result=self._result_id)
            case StatusKind.DESTROYING:  # pragma: no cover - the machine sends Destroy instead
                raise JobError("destroying is written with Destroy")
        self._status.write(line)

    def _budget_bytes(self) -> int:
        if self._pool is None:
            return DEFAULT_CHUNK_BUDGET_BYTES
        budget = DEFAULT_CHUNK_BUDGET_BYTES
        for url in self._pool.relay_urls:
            limit = self._pool.limits(url).max_message_length
            if limit is not None:
                with contextlib.suppress(NostrError):
                    budget = min(budget, chunk_budget_bytes(limit))
        return budget

    async def _publish(self, event: Event) -> None:
        if self._pool is None:
            raise RelayError("no relay pool")
        await self._pool.publish(event)

    async def _send(self, rumors: list[UnsignedEvent]) -> None:
        def build(rumor: UnsignedEvent, kind: int) -> Event:
            (wrapped,) = wrap_for(
                [rumor],
                self._c_key(),
                self._peer,
                kind=kind,
                now=self._now(),
                random_bytes=self._random_bytes,
            )
            return wrapped

        pool = self._pool
        if pool is None:  # pragma: no cover - the machine sends only once subscribed
            self._post(ev.PublishFailed())
            return
        try:
            for rumor in rumors:
                # A 21059 wrap refused (khatru's mute:, strfry's expiry) goes again as 1059.
                await publish_wrap(pool, functools.partial(build, rumor), kind=self._reply_kind)
        except RelayError as exc:
            _log.warning(
                "job %s: a channel message was not published (%s)", self._job, type(exc).__name__
            )
            self._post(ev.PublishFailed())

    async def _say(self, text: str, reply_to: str | None = None) -> None:
        """``text`` as plain kind-14 messages (a standard NIP-17 peer, container/plain.py)."""
        rumors = plain_messages(
            self._c_pub,
            self._peer,
            text,
            created_at=self._now(),
            reply_to=reply_to,
            budget_bytes=self._budget_bytes(),
        )
        if self._inbox is not None:  # the peer's client may reply to them (NIP-17 e tag)
            self._inbox.note_sent(r.id for r in rumors)
        await self._send(rumors)

    async def _send_output(self, input_id: str, seq: int, *, final: bool, plain: bool) -> None:
        if plain:  # the whole answer in one message: the partial batches were never sent
            self._batches.pop(input_id, None)
            self._answers.append(self._finals.pop(input_id))
            await self._say(self._answers[-1], reply_to=input_id)
            return
        text = self._batches[input_id].popleft()
        if final:
            self._answers.append(self._finals.pop(input_id))
            self._batches.pop(input_id, None)
        rumors = build_output(
            self._c_pub,
            self._peer,
            self._job,
            text,
            answers=input_id,
            seq=seq,
            state=OutputState.FINAL if final else OutputState.PARTIAL,
            created_at=self._now(),
            budget_bytes=self._budget_bytes(),
        )
        await self._send(rumors)

    # --- work started by actions -------------------------------------------------------------

    async def _load_model(self) -> None:
        try:
            self._runner = await asyncio.to_thread(self._load, self._spec, self._params)
        except ModelError as exc:
            _log.error("job %s: model %s: %s", self._job, self._spec.model.name, exc)
            self._post(ev.ModelFailed())
            return
        _log.info("job %s: model %s checked and loaded", self._job, self._spec.model.name)
        self._post(ev.ModelReady())

    async def _get_evidence(self) -> None:
        spec = self._spec
        self._claims = Claims(
            pubkey=self._c_pub.hex(),
            job=self._job,
            nonce=self._request.nonce,
            provider=spec.provider,
            model=ModelClaim(spec.model.name, spec.model.sha256),
            runtime=RuntimeClaim(spec.runtime_version, spec.runtime_image),
        )
        try:
            self._evidence = await asyncio.to_thread(
                self._provider.get_evidence, report_data(self._claims)
            )
        except EvidenceError as exc:
            _log.error("job %s: no evidence: %s", self._job, exc)
            self._post(ev.EvidenceFailed())
            return
        _log.info("job %s: %d evidence items", self._job, len(self._evidence))
        self._post(ev.EvidenceObtained())

    async def _subscribe(self) -> None:
        key = self._c_key()
        self._inbox = Inbox(
            key=key,
            expected_sender=self._peer,
            job=self._job,
            max_input_bytes=self._spec.limits.max_input_bytes,
        )
        try:
            self._pool = RelayPool(
                self._spec.relays,
                secret_key=key,
                random_bytes=self._random_bytes,
                unix_sockets=self._spec.relay_sockets,  # a private network namespace's doors
            )
            await self._pool.start()
            wraps = Filter(
                kinds=tuple(sorted(GIFT_WRAP_KINDS)),
                tags=(Filter.tag("p", [key.public_key.hex()]),),
            )
            sub = await self._pool.subscribe([wraps])
        except (RelayError, ValueError) as exc:
            _log.error("job %s: cannot subscribe (%s)", self._job, type(exc).__name__)
            self._post(ev.PublishFailed())
            return
        # EOSE means the relay has our REQ: a wrap sent after the attestation reaches us.
        await sub.wait_eose(timeout_s=_EOSE_WAIT_S)
        self._spawn(self._read(sub))
        self._post(ev.Subscribed())

    async def _read(self, sub: Subscription) -> None:
        async for wrap in sub:
            if self._inbox is None:  # pragma: no cover - cleared only at teardown
                return
            received = self._inbox.receive(wrap, now=self._now())
            if isinstance(received, Ignored):
                _log.info(
                    "job %s: ignored gift wrap %s kind %d: %s",
                    self._job,
                    wrap.id,
                    wrap.kind,
                    received.why,
                )
                continue
            self._reply_kind = received.wrap_kind  # answer in the kind the requester last used
            _log.info(
                "job %s: %s from gift wrap %s kind %d",
                self._job,
                type(received).__name__.lower(),
                wrap.id,
                wrap.kind,
            )
            match received:
                case Accepted(input_id=input_id, text=text, plain=plain):
                    self._inputs[input_id] = text
                    self._post(ev.InputReceived(input_id, plain=plain))
                case Ended(plain=plain):
                    self._post(ev.EndReceived(plain=plain))
                case Refused(reason=reason, plain=plain):
                    self._post(ev.InputRefused(reason, plain=plain))
                case Pending():
                    pass

    async def _publish_attestation(self) -> None:
        if self._claims is None:  # pragma: no cover - evidence comes first
            raise JobError("no claims")
        now = self._now()
        expiration = now + int(self._spec.limits.deadline_s) + 60
        event = sign_attestation(
            self._c_key(),
            claims=self._claims,
            recipient=self._peer,
            tee=self._spec.tee,
            evidence=self._evidence,
            expiration=expiration,
            now=now,
            random_bytes=self._random_bytes,
        )
        try:
            await self._publish(event)
        except RelayError as exc:
            _log.error("job %s: attestation %s not accepted: %s", self._job, event.id, exc)
            self._post(ev.PublishFailed())
            return
        # The job goes on at once (the node names C as soon as it sees the attested line); the
        # DM relay list follows, off the path to a verified attestation.
        self._attestation_id = event.id
        self._post(ev.AttestationPublished())
        try:  # NIP-17: standard clients send only to C's kind-10050 relays; cdvm needs none
            await self._publish(
                sign_relay_list(
                    self._c_key(),
                    self._spec.relays,
                    expiration=expiration,
                    now=now,
                    random_bytes=self._random_bytes,
                )
            )
        except (RelayError, NostrError) as exc:
            _log.warning("job %s: no DM relay list (%s)", self._job, type(exc).__name__)

    async def _run_input(self, input_id: str) -> None:
        if self._runner is None:  # pragma: no cover - the machine runs only once the model is ready
            raise JobError("no model")
        cancel = threading.Event()
        self._cancels[input_id] = cancel
        self._batches[input_id] = deque()
        try:
            final_text, answer = await stream_run(
                self._runner,
                self._inputs.pop(input_id, ""),
                cancel=cancel,
                on_partial=lambda text: self._batch(input_id, text, final=False),
            )
        except RunError as exc:
            self._error_detail[exc.reason] = str(exc)
            self._post(ev.RunFailed(input_id, exc.reason))
            return
        finally:
            self._cancels.pop(input_id, None)
        self._finals[input_id] = answer
        self._batch(input_id, final_text, final=True)

    def _batch(self, input_id: str, text: str, *, final: bool) -> None:
        self._batches.setdefault(input_id, deque()).append(text)
        self._post(ev.OutputBatch(input_id, final))

    async def _publish_result(self) -> None:
        oneshot = self._request.param("mode") == "oneshot"
        event = sign_result(
            self._c_key(),
            self._request,
            result_content(self._answers, oneshot=oneshot),
            now=self._now(),
            random_bytes=self._random_bytes,
        )
        try:
            await self._publish(event)
        except RelayError as exc:
            _log.error("job %s: result %s not accepted: %s", self._job, event.id, exc)
            self._post(ev.PublishFailed())
            return
        self._result_id = event.id
        self._post(ev.ResultPublished())

    # --- destruction -------------------------------------------------------------------------

    async def _teardown(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for cancel in self._cancels.values():
            cancel.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            try:
                async with asyncio.timeout(_CLOSE_WAIT_S):
                    await self._pool.close()
            except TimeoutError:
                _log.warning("job %s: relay pool did not close in time", self._job)
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        if self._inbox is not None:
            self._inbox.clear()
        self._inputs.clear()
        self._batches.clear()
        self._finals.clear()
        self._answers.clear()
        if self._key is not None:
            self._key.wipe()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        _log.info("job %s: destroyed", self._job)
