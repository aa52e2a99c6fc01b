"""The requester's job state machine: events in, actions out (DESIGN §3.2-§3.9).

Contract: **pure**. No I/O, clock or randomness: ``now``, the request's ``nonce`` and
``aux_rand`` and the relays' chunk budget come in the events (:mod:`dvm.client.events`); what
must happen -- subscribe, publish, verify, send, report, time, return, raise -- leaves as actions
that the asyncio shell (:mod:`dvm.client.session`) performs in order. Secrets are only used
purely (signing the request with U; C's wraps and the result are opened by the
:class:`~dvm.client.record.JobRecord`); the keys are the shell's, which wipes them.
:meth:`RequesterMachine.handle` never raises: misuse comes back as :class:`Fail` with a
:class:`~dvm.client.errors.ClientError`, and an event that makes no sense in the current state is
ignored (a relay, a stranger or a late timer cannot crash the job).

States (docs/client.md draws the diagram)::

    CREATED --Start--> PUBLISHING (Subscribe, then Publish the signed request)
    PUBLISHING --Published--> AWAITING_ATTESTATION (attestation timer)
    AWAITING_ATTESTATION --P names C and C's 7100 is here--> VERIFYING (Verify)
    VERIFYING --VerificationPassed--> READY (Ready) | --VerificationRefused--> FAILED (Fail)
    READY --SendInput--> SENDING --RumorsSent--> AWAITING_ANSWER --whole answer--> READY
    READY|SENDING|AWAITING_ANSWER --SendEnd--> ENDING --RumorsSent--> READY (ended)
    READY --AwaitOutcome--> FINISHING --P's final feedback--> AWAITING_RESULT --result--> DONE
    a wait --timer, P's error, C's channel error, subscription gone--> Fail (FAILED or READY)

What counts and what is ignored is the :class:`~dvm.client.record.JobRecord`'s bookkeeping.
Guarantees (checked with hypothesis in ``tests/unit/dvm/client/test_machine.py``): no
:class:`SendRumors` before :class:`VerificationPassed`; a milestone (:class:`Ready`,
:class:`Answered`, :class:`Finished`, :class:`Fail`) ends its list; every wait has a timer; P's
``error`` or C's channel error is sticky (every later wait fails with
:class:`~dvm.client.errors.JobFailed`) except the final wait, which reports it in the outcome.
"""

from __future__ import annotations

from typing import cast

from dvm.cdvm.channel import build_end, build_input
from dvm.cdvm.kind7100 import ATTESTATION_KIND
from dvm.nostr.errors import NostrError
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip59 import GIFT_WRAP_KIND, WRAP_KIND_EPHEMERAL
from dvm.nostr.nip90 import (
    FEEDBACK_KIND,
    RESULT_KIND_OFFSET,
    JobRequest,
    build_job_request,
    parse_job_request,
)

from .errors import ClientError, ClientTimeout, NotPublished
from .events import (
    Action,
    Answered,
    AwaitOutcome,
    CancelTimer,
    Fail,
    Finished,
    MachineEvent,
    Publish,
    Published,
    PublishRefused,
    Purpose,
    Ready,
    Received,
    Report,
    RumorsSent,
    SendEnd,
    SendInput,
    SendRumors,
    Start,
    StartTimer,
    State,
    Subscribe,
    SubscriptionEnded,
    Timer,
    TimerFired,
    VerificationPassed,
    VerificationRefused,
    Verify,
)
from .options import JobMode, JobOptions, Step
from .outcome import JobOutcome, describe_verification
from .record import JobRecord
from .verify import Verification

__all__ = ["RESULT_GRACE_S", "RequesterMachine"]

RESULT_GRACE_S = 3.0  # after P's final feedback, how long the result may still take
_OVER = frozenset({State.CREATED, State.DONE, State.FAILED})
_PUBLISHING = frozenset({State.PUBLISHING, State.SENDING, State.ENDING})
_WAITING = frozenset(
    {State.AWAITING_ATTESTATION, State.AWAITING_ANSWER, State.FINISHING, State.AWAITING_RESULT}
)


class RequesterMachine:
    """One job of a requester (see the module docstring). Start in ``CREATED``.

    ``identity`` is U (signs the request); ``session`` is S (named in the request when
    ``options.fresh_session``; C's gift wraps and, by default, the result are opened with it;
    the result goes to U instead when ``options.result_to_requester``).
    The machine uses the keys but never wipes them: they are the shell's.
    """

    def __init__(
        self, options: JobOptions, *, mode: JobMode, identity: SecretKey, session: SecretKey
    ) -> None:
        self.options = options
        self.mode = mode
        self._identity = identity
        self._session = session
        self.state = State.CREATED
        self.request: JobRequest | None = None
        self.verification: Verification | None = None
        self.ended = False  # the end was sent, the one-shot answer came, or the outcome awaited
        self.record = JobRecord(
            provider=options.provider,
            result_kind=options.kind + RESULT_KIND_OFFSET,
            identity=identity,
            session=session,
        )
        self._answered: list[str] = []
        self._input_id = ""
        self._input_detail = ""
        self._timers: set[Timer] = set()

    # --- introspection (for the shell and the tests) ------------------------------------

    @property
    def job_id(self) -> str:
        return self.request.id if self.request is not None else "(unpublished)"

    @property
    def ignored(self) -> dict[str, int]:
        """Events ignored so far, by reason (:attr:`JobRecord.ignored`)."""
        return self.record.ignored

    @property
    def timers(self) -> frozenset[Timer]:
        return frozenset(self._timers)

    @property
    def answers(self) -> tuple[str, ...]:
        return tuple(self._answered)

    # --- the transition function --------------------------------------------------------

    def handle(self, event: MachineEvent) -> list[Action]:
        """The actions ``event`` calls for, in order (see the module docstring)."""
        match event:
            case Start():
                return self._start(event)
            case Published(accepted_by=accepted) if self.state is State.PUBLISHING:
                return self._published(accepted)
            case PublishRefused(reason=reason) if self.state in _PUBLISHING:
                return self._fail(NotPublished(f"job {self.job_id}: {reason}"))
            case Received(event=received, now=now) if self.state not in _OVER:
                launched = self.record.add(received, now=now)
                found: list[Action] = [] if launched is None else [Report(Step.LAUNCHED, launched)]
                return [*found, *self._settle()]
            case VerificationPassed(verification=verification) if self.state is State.VERIFYING:
                self.verification = verification
                self.state = State.READY
                return [
                    Report(Step.VERIFIED, describe_verification(verification)),
                    Ready(verification),
                ]
            case VerificationRefused(error=error) if self.state is State.VERIFYING:
                return self._fail(error)
            case SendInput():
                return self._send_input(event)
            case RumorsSent() if self.state is State.ENDING:
                self.state = State.READY
            case RumorsSent() if self.state is State.SENDING:
                self.state = State.AWAITING_ANSWER
                sent = Report(Step.INPUT_SENT, self._input_detail)
                return [sent, *self._wait(Timer.ANSWER, self.options.timeouts.answer_s)]
            case SendEnd(now=now):
                return self._send_end(now)
            case AwaitOutcome():
                return self._await_outcome()
            case TimerFired(timer=timer) if timer in self._timers:
                self._timers.discard(timer)
                return self._timeout(timer)
            case SubscriptionEnded() if self.state in _WAITING:
                return self._fail(
                    ClientError(f"job {self.job_id}: every relay closed the subscription")
                )
        return []

    # --- 1-2: the request ---------------------------------------------------------------

    def _start(self, event: Start) -> list[Action]:
        if self.state is not State.CREATED:
            return [Fail(ClientError(f"job {self.job_id} was already started"))]
        opts = self.options
        try:
            signed = build_job_request(
                requester=self._identity.public_key,
                provider=opts.provider,
                tee=opts.tee,
                nonce=event.nonce,
                created_at=event.now,
                kind=opts.kind,
                params=opts.request_params(self.mode),
                session=self._session.public_key if opts.fresh_session else None,
                result_to_requester=opts.result_to_requester,
                relays=opts.relays,
                expiration=event.now + opts.expiration_s,
            ).sign(self._identity, aux_rand=event.aux_rand)
            self.request = parse_job_request(signed)
            self.record.job_id = self.request.id
        except NostrError as exc:
            self.state = State.FAILED
            return [Fail(ClientError(f"the job request cannot be built: {exc}"))]
        self.state = State.PUBLISHING
        job = signed.id
        filters = (
            Filter(
                kinds=(FEEDBACK_KIND, ATTESTATION_KIND, opts.kind + RESULT_KIND_OFFSET),
                tags=(Filter.tag("e", [job]),),
            ),
            Filter(
                kinds=(GIFT_WRAP_KIND, WRAP_KIND_EPHEMERAL),
                tags=(Filter.tag("p", [self._session.public_key.hex()]),),
            ),
        )
        return [Subscribe(filters), Publish(signed)]

    def _published(self, accepted: tuple[str, ...]) -> list[Action]:
        opts = self.options
        self.state = State.AWAITING_ATTESTATION
        report = Report(
            Step.PUBLISHED,
            f"job {self.job_id} (kind {opts.kind}, model {opts.model!r}, tee {opts.tee}, "
            f"{self.mode.value}) accepted by {len(accepted)} of {len(opts.relays)} relay(s)",
        )
        return [report, *self._wait(Timer.ATTESTATION, opts.timeouts.attestation_s)]

    # --- 3-4: what the subscription brings ----------------------------------------------

    # --- waits --------------------------------------------------------------------------

    def _settle(self) -> list[Action]:
        """The end of the current wait, if what it waits for (or a failure) is here."""
        record = self.record
        failure = record.failure
        if self.state is State.AWAITING_ATTESTATION:
            attestation = record.attestation()
            if failure is not None:
                return self._fail(failure)
            if attestation is None:
                return []
            self.state = State.VERIFYING
            record.close_attestations()
            container = cast(PublicKey, record.container).hex()
            verify = Verify(attestation, cast(JobRequest, self.request), container)
            return [*self._cancel(Timer.ATTESTATION), verify]
        if self.state is State.AWAITING_ANSWER:
            if failure is not None:
                return self._fail(failure)
            answer = record.answers.complete(self._input_id)
            if answer is None and self.mode is JobMode.ONESHOT and record.result is not None:
                answer = record.result[1]
            if answer is None:
                return []
            return [*self._cancel(Timer.ANSWER), *self._deliver(answer)]
        if self.state is State.FINISHING:
            if failure is None and record.final is None:
                return []
            if failure is None and record.result is None:
                self.state = State.AWAITING_RESULT
                return [
                    *self._cancel(Timer.DESTRUCTION),
                    *self._start_timer(Timer.RESULT, RESULT_GRACE_S),
                ]
            return self._finish()  # an error after the answers is reported in the outcome
        if self.state is State.AWAITING_RESULT and (
            failure is not None or record.result is not None
        ):
            return self._finish()
        return []

    def _wait(self, timer: Timer, timeout_s: float) -> list[Action]:
        """Enter a wait: done at once if its condition already holds, else start its timer."""
        return self._settle() or self._start_timer(timer, timeout_s)

    def _start_timer(self, timer: Timer, timeout_s: float) -> list[Action]:
        self._timers.add(timer)
        return [StartTimer(timer, timeout_s)]

    def _cancel(self, timer: Timer) -> list[Action]:
        if timer not in self._timers:
            return []
        self._timers.discard(timer)
        return [CancelTimer(timer)]

    def _cancel_all(self) -> list[Action]:
        actions: list[Action] = [CancelTimer(timer) for timer in sorted(self._timers)]
        self._timers.clear()
        return actions

    def _timeout(self, timer: Timer) -> list[Action]:
        timeouts = self.options.timeouts
        if timer is Timer.ATTESTATION:
            return self._fail(ClientTimeout(self.job_id, timer.value, timeouts.attestation_s))
        if timer is Timer.ANSWER:
            return self._fail(ClientTimeout(self.job_id, timer.value, timeouts.answer_s))
        if timer is Timer.DESTRUCTION and self.record.result is None:
            self.state = State.AWAITING_RESULT  # no final feedback in time: reported, not raised
            return self._start_timer(Timer.RESULT, RESULT_GRACE_S)
        return self._finish()

    def _fail(self, error: ClientError) -> list[Action]:
        """End the current wait with ``error``; before verification the job is over."""
        actions = self._cancel_all()
        self.state = State.READY if self.verification is not None else State.FAILED
        return [*actions, Fail(error)]

    # --- 5: the channel -----------------------------------------------------------------

    def _refusal(self) -> ClientError | None:
        if self.verification is None:
            return ClientError("the container has not been verified yet")
        if self.ended:
            return ClientError(f"job {self.job_id} has ended")
        return None

    def _send_input(self, event: SendInput) -> list[Action]:
        refusal = self._refusal()
        if refusal is None and self.state is not State.READY:
            refusal = ClientError(f"job {self.job_id}: a send is in flight ({self.state})")
        if refusal is not None:
            return [Fail(refusal)]
        container = cast(PublicKey, self.record.container)
        try:
            rumors = build_input(
                self._session.public_key,
                container,
                self.job_id,
                event.text,
                created_at=event.now,
                budget_bytes=event.budget_bytes,
            )
        except NostrError as exc:
            return [Fail(ClientError(f"job {self.job_id}: the input cannot be sent: {exc}"))]
        self.state = State.SENDING
        self._input_id = rumors[0].id
        self._input_detail = (
            f"{len(event.text.encode('utf-8'))} bytes in {len(rumors)} gift-wrapped message(s) "
            f"(kind {self.options.wrap_kind}) to the container"
        )
        return [SendRumors(tuple(rumors), container, Purpose.INPUT)]

    def _deliver(self, answer: str) -> list[Action]:
        self._answered.append(answer)
        self.state = State.READY
        if self.mode is JobMode.ONESHOT:
            self.ended = True  # the container ends a one-shot job itself
        return [Report(Step.ANSWER, f"{len(answer.encode('utf-8'))} bytes"), Answered(answer)]

    def _send_end(self, now: int) -> list[Action]:
        refusal = self._refusal()
        if refusal is not None:
            return [] if self.verification is not None else [Fail(refusal)]
        container = cast(PublicKey, self.record.container)
        self.ended = True
        self.state = State.ENDING
        end = build_end(self._session.public_key, container, self.job_id, created_at=now)
        return [*self._cancel_all(), SendRumors((end,), container, Purpose.END)]

    # --- 6: result and destruction ------------------------------------------------------

    def _await_outcome(self) -> list[Action]:
        if self.verification is None:
            return [Fail(ClientError("the container has not been verified yet"))]
        if self.state is State.DONE:
            return [Finished(self._outcome())]
        self.ended = True
        self.state = State.FINISHING
        cancelled = self._cancel_all()
        return [*cancelled, *self._wait(Timer.DESTRUCTION, self.options.timeouts.destroyed_s)]

    def _outcome(self) -> JobOutcome:
        verification = cast(Verification, self.verification)
        final, result = self.record.final, self.record.result
        return JobOutcome(
            job_id=self.job_id,
            container=verification.container,
            verification=verification,
            answers=tuple(self._answered),
            result=result[1] if result is not None else None,
            result_id=result[0] if result is not None else None,
            status=final.status if final is not None else None,
            reason=str(final.reason) if final is not None and final.reason is not None else None,
            destroyed=final is not None and final.destroyed,
        )

    def _finish(self) -> list[Action]:
        actions = self._cancel_all()
        self.state = State.DONE
        outcome = self._outcome()
        if outcome.destroyed:
            detail = f"provider reports {outcome.status} with ['destroyed', 'true']"
            actions.append(
                Report(Step.DESTROYED, detail + (f" ({outcome.reason})" if outcome.reason else ""))
            )
        return [*actions, Finished(outcome)]
