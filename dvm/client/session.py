"""A confidential job from the requester's side: request, verify, chat, result, destruction.

Spec: DESIGN §3.2-§3.9, ``docs/launch.md`` §6, ``docs/client.md`` (the API, with an example).

:class:`JobSession` runs one job over a :class:`~dvm.relay.RelayPool`:

1. makes the keys: the requester key U (the caller's ``identity``, else a fresh throwaway one)
   and, by default, a **fresh session key S** for this job only (``["session", S]``);
2. builds and signs the request (:func:`dvm.nostr.nip90.build_job_request`: ``p`` provider,
   ``param`` model and mode and the caller's params, ``tee``, a fresh 32-byte ``nonce``,
   ``session``, ``relays``, ``expiration``);
3. subscribes **before publishing** to the job's feedback (7000), attestation (7100) and result
   (request kind + 1000) by ``#e``, and to gift wraps (1059/21059) addressed to S by ``#p``;
4. waits for the provider's ``processing`` feedback naming ``["container", C]`` -- feedback
   signed by anyone but the provider P is ignored -- and for the kind-7100 event signed by C
   (attestations signed by any other key are ignored), and verifies it
   (:func:`dvm.client.verify.verify_attestation`); any failure raises
   :class:`~dvm.client.errors.AttestationRefused` and **nothing is sent**;
5. sends inputs as channel rumors (:func:`dvm.cdvm.channel.build_input`), sealed by S and
   gift-wrapped to C (21059 by default, 1059 optional), and collects the outputs until
   ``final`` (:class:`dvm.client.inbox.Inbox`: only C's seals, no replays, chunks checked);
6. at the end (one-shot answer, or :meth:`JobSession.end`), fetches the NIP-90 result and
   decrypts it (NIP-44 under conv(U, C) as docs/protocol.md §6 says; conv(S, C) is accepted too)
   and waits for P's ``success`` with ``["destroyed", "true"]`` (or an ``error``).

Every wait has a timeout (:class:`~dvm.client.options.Timeouts`); an ``error`` feedback from P
or a channel error from C ends the job with :class:`~dvm.client.errors.JobFailed`. Progress is
reported step by step to ``options.progress``. Logs carry ids, kinds and sizes only.
Clock and randomness are injectable (``clock``, ``random_bytes``) for tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from dvm.nostr import nip44
from dvm.cdvm.kind7100 import ATTESTATION_KIND
from dvm.cdvm.channel import ChannelMessage, MessageKind, build_end, build_input
from dvm.cdvm.chunks import DEFAULT_CHUNK_BUDGET_BYTES, chunk_budget_bytes
from dvm.nostr.errors import NostrError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip17 import gift_wraps
from dvm.nostr.nip59 import GIFT_WRAP_KIND, WRAP_KIND_EPHEMERAL
from dvm.nostr.nip90 import (
    FEEDBACK_KIND,
    RESULT_KIND_OFFSET,
    FeedbackStatus,
    JobFeedback,
    JobRequest,
    build_job_request,
    parse_job_feedback,
    parse_job_request,
    parse_job_result,
)
from dvm.relay import PublishError, RelayError, RelayPool, Subscription

from .errors import ClientError, ClientTimeout, JobFailed, NotPublished
from .inbox import Answers, Inbox
from .options import JobMode, JobOptions, Step
from .verify import Verification, verify_attestation

__all__ = [
    "Chat",
    "JobOutcome",
    "JobSession",
    "describe_verification",
    "outcome_to_json",
    "submit",
]

_log = logging.getLogger(__name__)
_EOSE_WAIT_S = 5.0
_RESULT_GRACE_S = 3.0
_MAX_EARLY_WRAPS = 256


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How a job ended. ``answers`` are the channel answers in order (one for a one-shot job);
    ``result`` is the decrypted NIP-90 result content (None if it never arrived)."""

    job_id: str
    container: str
    verification: Verification
    answers: tuple[str, ...]
    result: str | None
    result_id: str | None
    status: FeedbackStatus | None
    reason: str | None
    destroyed: bool

    @property
    def answer(self) -> str:
        """The last answer (the only one of a one-shot job)."""
        return self.answers[-1] if self.answers else ""

    @property
    def ok(self) -> bool:
        return self.status is FeedbackStatus.SUCCESS and self.destroyed


class JobSession:
    """One job (see the module docstring). Use as ``async with``; :meth:`start` on entry."""

    def __init__(
        self,
        options: JobOptions,
        *,
        mode: JobMode,
        identity: SecretKey | None = None,
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
        self._pool: RelayPool | None = None
        self._sub: Subscription | None = None
        self._request: JobRequest | None = None
        self._container: PublicKey | None = None
        self._attestations: list[Event] = []
        self._early_wraps: list[Event] = []
        self._early_results: list[Event] = []
        self._inbox: Inbox | None = None
        self._answers = Answers()
        self._answer_list: list[str] = []
        self._error_feedback: JobFeedback | None = None
        self._final_feedback: JobFeedback | None = None
        self._channel_error: ChannelMessage | None = None
        self._result: tuple[str, str] | None = None
        self._ignored: dict[str, int] = {}
        self._verification: Verification | None = None
        self._ended = False

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> JobSession:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self._verification is not None and not self._ended and self._pool is not None:
                await self._send_end()  # destroy the container now rather than at its timeout
        except (ClientError, RelayError, NostrError):
            _log.info("job %s: could not send the end message on exit", self.job_id)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._session is not self._identity:
            self._session.wipe()  # best effort: CPython cannot guarantee erasure
        if self._own_identity:
            self._identity.wipe()

    @property
    def job_id(self) -> str:
        return self._request.id if self._request is not None else "(unpublished)"

    @property
    def request(self) -> JobRequest:
        if self._request is None:
            raise ClientError("the job has not been published yet")
        return self._request

    @property
    def session_key(self) -> PublicKey:
        """The key the container talks to (S, or U when ``fresh_session`` is off)."""
        return self._session.public_key

    @property
    def requester(self) -> PublicKey:
        return self._identity.public_key

    @property
    def verification(self) -> Verification:
        if self._verification is None:
            raise ClientError("the container has not been verified yet")
        return self._verification

    @property
    def ignored(self) -> dict[str, int]:
        """Events ignored so far, by reason (impostor feedback or attestations, bad wraps...)."""
        counts = dict(self._ignored)
        if self._inbox is not None:
            counts |= {f"wrap: {k}": v for k, v in self._inbox.dropped.items()}
        return counts

    def _now(self) -> int:
        return int(self._clock())

    def _ignore(self, reason: str) -> None:
        self._ignored[reason] = self._ignored.get(reason, 0) + 1

    # --- 1-4: publish and verify --------------------------------------------------------

    async def start(self) -> Verification:
        opts = self.options
        now = self._now()
        unsigned = build_job_request(
            requester=self._identity.public_key,
            provider=opts.provider,
            tee=opts.tee,
            nonce=self._random_bytes(32),
            created_at=now,
            kind=opts.kind,
            params=opts.request_params(self.mode),
            session=self._session.public_key if opts.fresh_session else None,
            relays=opts.relays,
            expiration=now + opts.expiration_s,
        )
        event = unsigned.sign(self._identity, aux_rand=self._random_bytes(32))
        self._request = parse_job_request(event)
        self._pool = RelayPool(
            opts.relays,
            secret_key=self._session,
            clock=self._clock,
            random_bytes=self._random_bytes,
        )
        await self._pool.start()
        job = event.id
        self._sub = await self._pool.subscribe(
            [
                Filter(
                    kinds=(FEEDBACK_KIND, ATTESTATION_KIND, opts.kind + RESULT_KIND_OFFSET),
                    tags=(Filter.tag("e", [job]),),
                ),
                Filter(
                    kinds=(GIFT_WRAP_KIND, WRAP_KIND_EPHEMERAL),
                    tags=(Filter.tag("p", [self._session.public_key.hex()]),),
                ),
            ]
        )
        await self._sub.wait_eose(timeout_s=_EOSE_WAIT_S)
        result = await self._publish(event)
        opts.progress(
            Step.PUBLISHED,
            f"job {job} (kind {event.kind}, model {opts.model!r}, tee {opts.tee}, "
            f"{self.mode.value}) accepted by {len(result)} of {len(opts.relays)} relay(s)",
        )
        await self._pump_until(self._attestation_ready, opts.timeouts.attestation_s, "attestation")
        container = self._need_container()
        attestation = self._attestation_ready()
        if attestation is None:  # pragma: no cover - _pump_until returned because it is set
            raise ClientError(f"job {job}: no attestation")
        verification = verify_attestation(
            attestation,
            request=self._request,
            container=container.hex(),
            policy=opts.policy,
            trust=opts.trust,
            now=datetime.fromtimestamp(self._clock(), UTC),
            trusted_images=opts.trusted_images,
        )
        self._verification = verification
        opts.progress(Step.VERIFIED, describe_verification(verification))
        return verification

    def _need_pool(self) -> RelayPool:
        if self._pool is None:
            raise ClientError("the job's relay pool is not open")
        return self._pool

    def _need_container(self) -> PublicKey:
        if self._container is None:
            raise ClientError(f"job {self.job_id}: no container is known yet")
        return self._container

    async def _publish(self, event: Event) -> tuple[str, ...]:
        try:
            return (await self._need_pool().publish(event)).accepted_by
        except PublishError as exc:
            raise NotPublished(f"job {self.job_id}: {exc}") from None

    def _attestation_ready(self) -> Event | None:
        if self._container is None:
            return None
        for event in self._attestations:
            if event.pubkey == self._container.hex():
                return event
        return None

    # --- the event pump -----------------------------------------------------------------

    async def _pump_until(self, done: Callable[[], object], timeout_s: float, step: str) -> None:
        sub = self._sub
        if sub is None:
            raise ClientError("the job has no subscription")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self._raise_if_failed()
            if done():
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ClientTimeout(self.job_id, step, timeout_s)
            try:
                event = await asyncio.wait_for(anext(sub), remaining)
            except TimeoutError:
                raise ClientTimeout(self.job_id, step, timeout_s) from None
            except StopAsyncIteration:
                raise ClientError(
                    f"job {self.job_id}: every relay closed the subscription"
                ) from None
            self._handle(event)

    def _raise_if_failed(self) -> None:
        if self._error_feedback is not None:
            fb = self._error_feedback
            raise JobFailed(self.job_id, str(fb.reason), fb.content[:200])
        if self._channel_error is not None:
            msg = self._channel_error
            raise JobFailed(self.job_id, f"container: {msg.reason}", msg.content[:200])

    def _handle(self, event: Event) -> None:
        kind = event.kind
        if kind == FEEDBACK_KIND:
            self._on_feedback(event)
        elif kind == ATTESTATION_KIND:
            self._attestations.append(event)
        elif kind in (GIFT_WRAP_KIND, WRAP_KIND_EPHEMERAL):
            self._on_wrap(event)
        elif kind == self.options.kind + RESULT_KIND_OFFSET:
            self._on_result(event)

    def _on_feedback(self, event: Event) -> None:
        if event.pubkey != self.options.provider.hex():
            self._ignore("feedback not signed by the provider")
            return
        try:
            fb = parse_job_feedback(event)
        except NostrError:
            self._ignore("malformed feedback")
            return
        if fb.request_id != self.job_id:
            self._ignore("feedback for another job")
            return
        if fb.container is not None and self._container is None:
            self._container = PublicKey.from_hex(fb.container)
            self._inbox = Inbox(self._session, self._container, self.job_id)
            self.options.progress(
                Step.LAUNCHED, f"container {fb.container} (provider feedback {fb.status.value!r})"
            )
            early, self._early_wraps = self._early_wraps, []
            for wrap in early:
                self._on_wrap(wrap)
            results, self._early_results = self._early_results, []
            for result in results:
                self._on_result(result)
        elif fb.container is not None and fb.container != self._container_hex():
            self._ignore("feedback naming a second container")
        if fb.status is FeedbackStatus.ERROR:
            self._error_feedback = fb
            self._final_feedback = fb
        elif fb.status is FeedbackStatus.SUCCESS:
            self._final_feedback = fb

    def _container_hex(self) -> str:
        return self._container.hex() if self._container is not None else ""

    def _on_wrap(self, event: Event) -> None:
        if self._inbox is None:
            if len(self._early_wraps) < _MAX_EARLY_WRAPS:
                self._early_wraps.append(event)
            return
        message = self._inbox.add(event)
        if message is None:
            return
        if message.kind is MessageKind.OUTPUT:
            self._answers.add(message)
        elif message.kind is MessageKind.ERROR:
            self._channel_error = message

    def _on_result(self, event: Event) -> None:
        if self._container is None:
            if len(self._early_results) < _MAX_EARLY_WRAPS:
                self._early_results.append(event)
            return
        if event.pubkey != self._container.hex():
            self._ignore("result not signed by the container")
            return
        try:
            result = parse_job_result(event)
        except NostrError:
            self._ignore("malformed result")
            return
        if result.request_id != self.job_id:
            self._ignore("result for another job")
            return
        for key in (self._identity, self._session):
            conv = nip44.get_conversation_key(key, self._container)
            try:
                text = nip44.decrypt(event.content, conv)
            except NostrError:
                continue
            finally:
                conv.wipe()
            self._result = (event.id, text)
            return
        self._ignore("result that does not decrypt")

    # --- 5: the channel -----------------------------------------------------------------

    def _budget_bytes(self) -> int:
        pool = self._need_pool()
        limits = [pool.limits(url).max_message_length for url in pool.relay_urls]
        known = [limit for limit in limits if limit is not None]
        if not known:
            return DEFAULT_CHUNK_BUDGET_BYTES
        return min(DEFAULT_CHUNK_BUDGET_BYTES, chunk_budget_bytes(min(known)))

    async def _send_rumors(self, rumors: list[UnsignedEvent]) -> None:
        container = self._need_container()
        for rumor in rumors:
            wraps = gift_wraps(
                rumor,
                self._session,
                [container],
                random_bytes=self._random_bytes,
                now=self._now(),
                include_sender=False,
                kind=self.options.wrap_kind,
            )
            for _, wrap in wraps:
                await self._publish(wrap)

    async def send(self, text: str) -> str:
        """Send one input to the verified container and wait for its whole answer."""
        verification = self.verification  # raises unless verified: never send before that
        if self._ended:
            raise ClientError(f"job {self.job_id} has ended")
        container = self._need_container()
        rumors = build_input(
            self._session.public_key,
            container,
            verification.job_id,
            text,
            created_at=self._now(),
            budget_bytes=self._budget_bytes(),
        )
        input_id = rumors[0].id
        await self._send_rumors(rumors)
        self.options.progress(
            Step.INPUT_SENT,
            f"{len(text.encode('utf-8'))} bytes in {len(rumors)} gift-wrapped message(s) "
            f"(kind {self.options.wrap_kind}) to the container",
        )
        oneshot = self.mode is JobMode.ONESHOT

        def answered() -> bool:
            return self._answers.complete(input_id) is not None or (
                oneshot and self._result is not None
            )

        await self._pump_until(answered, self.options.timeouts.answer_s, "answer")
        answer = self._answers.complete(input_id)
        if answer is None and self._result is not None:
            answer = self._result[1]
        if answer is None:  # pragma: no cover - answered() returned True
            raise ClientError(f"job {self.job_id}: no answer")
        self._answer_list.append(answer)
        self.options.progress(Step.ANSWER, f"{len(answer.encode('utf-8'))} bytes")
        if oneshot:
            self._ended = True
        return answer

    async def _send_end(self) -> None:
        container = self._need_container()
        self._ended = True
        await self._send_rumors(
            [build_end(self._session.public_key, container, self.job_id, created_at=self._now())]
        )

    # --- 6: result and destruction ------------------------------------------------------

    async def end(self) -> JobOutcome:
        """End the chat (``["cdvm", "end"]``) and wait for the result and the destruction."""
        self.verification  # noqa: B018 - raises unless verified
        if not self._ended:
            await self._send_end()
        return await self.finish()

    async def finish(self) -> JobOutcome:
        """Wait for the result and P's final feedback (``success`` + destroyed, or ``error``)."""
        verification = self.verification
        self._ended = True
        timeouts = self.options.timeouts
        try:
            await self._pump_until(
                lambda: self._final_feedback is not None, timeouts.destroyed_s, "destruction"
            )
        except JobFailed:
            pass  # an error after the answers is reported in the outcome
        except ClientTimeout:
            _log.info("job %s: no final feedback within %s s", self.job_id, timeouts.destroyed_s)
        if self._result is None:
            try:
                await self._pump_until(lambda: self._result is not None, _RESULT_GRACE_S, "result")
            except (ClientTimeout, JobFailed):
                _log.info("job %s: no result event", self.job_id)
        final = self._final_feedback
        outcome = JobOutcome(
            job_id=self.job_id,
            container=verification.container,
            verification=verification,
            answers=tuple(self._answer_list),
            result=self._result[1] if self._result is not None else None,
            result_id=self._result[0] if self._result is not None else None,
            status=final.status if final is not None else None,
            reason=str(final.reason) if final is not None and final.reason is not None else None,
            destroyed=final is not None and final.destroyed,
        )
        if outcome.destroyed:
            self.options.progress(
                Step.DESTROYED,
                f"provider reports {outcome.status} with ['destroyed', 'true']"
                + (f" ({outcome.reason})" if outcome.reason else ""),
            )
        return outcome


class Chat(JobSession):
    """An interactive job: ``async with Chat(options) as chat: await chat.send(...)``."""

    def __init__(
        self,
        options: JobOptions,
        *,
        identity: SecretKey | None = None,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        super().__init__(
            options, mode=JobMode.CHAT, identity=identity, clock=clock, random_bytes=random_bytes
        )


async def submit(
    options: JobOptions,
    text: str,
    *,
    identity: SecretKey | None = None,
    clock: Callable[[], float] = time.time,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> JobOutcome:
    """A one-shot job: verify the container, send ``text``, return the answer and how it ended."""
    async with JobSession(
        options, mode=JobMode.ONESHOT, identity=identity, clock=clock, random_bytes=random_bytes
    ) as job:
        await job.send(text)
        return await job.finish()


def describe_verification(verification: Verification) -> str:
    """A human summary of a verification: what was checked and what was not."""
    head = f"{verification.label}: " if verification.label else ""
    lines = [
        (
            f"{head}{verification.tee} evidence for container {verification.container} "
            f"(attestation {verification.attestation_id})"
        ),
        f"  measurement {verification.measurement}",
        f"  model {verification.claims.model.name} sha256 {verification.claims.model.sha256}",
    ]
    lines += [f"  checked: {c}" for c in verification.checks]
    lines += [f"  note: {w}" for w in verification.warnings]
    return "\n".join(lines)


def outcome_to_json(outcome: JobOutcome) -> str:
    """The CLI's ``--json`` document (no secrets; the answers are the caller's own data)."""
    v = outcome.verification
    return json.dumps(
        {
            "job": outcome.job_id,
            "container": outcome.container,
            "answer": outcome.answer,
            "answers": list(outcome.answers),
            "result": outcome.result,
            "status": outcome.status.value if outcome.status is not None else None,
            "reason": outcome.reason,
            "destroyed": outcome.destroyed,
            "verified": {
                "tee": v.tee,
                "simulated": v.simulated,
                "label": v.label,
                "attestation": v.attestation_id,
                "measurement": v.measurement,
                "claims": v.claims.to_dict(),
                "checks": list(v.checks),
                "warnings": list(v.warnings),
            },
        },
        ensure_ascii=False,
    )
