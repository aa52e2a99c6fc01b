"""The job state machine of the container runtime: events in, actions out (DESIGN §3.4-§3.9).

Contract: **pure**. No I/O, no clock, no randomness, and no plaintext: events carry ids,
reasons and flags, never the requester's input or the model's output (the shell keeps those
and pairs them with the actions it gets back). :meth:`JobMachine.handle` takes one event and
returns the actions the shell must perform, in order. An event that makes no sense in the
current state is ignored (no action): the shell races timers, relays and worker threads, and
a late event must never crash the job. Once :class:`Destroy` has been returned the machine is
``DESTROYED`` and every later event is ignored, so exactly one ``Destroy`` is ever emitted.

States (docs/container.md draws the diagram)::

    CREATED --SpecParsed--> CREATED (starts the deadline, the key and the model load)
    CREATED --KeyMade--> KEYED (evidence and subscription run concurrently)
    KEYED --EvidenceObtained+Subscribed--> (PublishAttestation) --AttestationPublished--> ATTESTED
    ATTESTED --first message--> AWAITING_INPUT <--> RUNNING (one model run at a time)
    AWAITING_INPUT|RUNNING --end / one-shot answer--> DELIVERED (the result is being published)
    DELIVERED --ResultPublished--> DESTROYED (exit 0)
    any --timeout / failure--> DESTROYED (documented exit code)

Ordering guarantees the shell relies on (and the tests check): the subscription to C's gift
wraps is open before the attestation is published; no model runs before the model is ready;
at most one run at a time; output sequence numbers count 0, 1, ... per input; the result is
published at most once and only exit code 0 follows it.

Standard NIP-17 peers (``plain`` on the channel events; docs/standard-clients.md): an answer
goes in the style of the input it answers -- for a plain input, no partial is sent and the
final output is one readable message (``SendOutput(plain=True)``). Errors, the timeout notice
and the end follow the style of the peer's last message: a plain peer gets readable errors,
no ``ready`` message (it never asked for one), and :class:`SendEnded` before the result is
published (``/end`` or a one-shot answer).
"""

from __future__ import annotations

from collections import deque

from dvm.cdvm.channel import ChannelError

from .events import (
    Action,
    AttestationPublished,
    CancelRun,
    CancelTimer,
    Destroy,
    EmitStatus,
    EndReceived,
    Event,
    EvidenceFailed,
    EvidenceObtained,
    Failed,
    GetEvidence,
    InputReceived,
    InputRefused,
    KeyMade,
    LoadModel,
    MakeKey,
    ModelFailed,
    ModelReady,
    OutputBatch,
    PublishAttestation,
    PublishFailed,
    PublishResult,
    ResultPublished,
    RunFailed,
    RunModel,
    SendEnded,
    SendError,
    SendOutput,
    SendReady,
    SpecParsed,
    SpecRejected,
    StartTimer,
    State,
    Subscribe,
    Subscribed,
    Timer,
    TimerFired,
)
from .launch import DestroyReason, ExitCode, StatusKind

__all__ = [
    "Action",
    "AttestationPublished",
    "CancelRun",
    "CancelTimer",
    "Destroy",
    "EmitStatus",
    "EndReceived",
    "Event",
    "EvidenceFailed",
    "EvidenceObtained",
    "Failed",
    "GetEvidence",
    "InputReceived",
    "InputRefused",
    "JobMachine",
    "KeyMade",
    "LoadModel",
    "MakeKey",
    "ModelFailed",
    "ModelReady",
    "OutputBatch",
    "PublishAttestation",
    "PublishFailed",
    "PublishResult",
    "ResultPublished",
    "RunFailed",
    "RunModel",
    "SendEnded",
    "SendError",
    "SendOutput",
    "SendReady",
    "SpecParsed",
    "SpecRejected",
    "StartTimer",
    "State",
    "Subscribe",
    "Subscribed",
    "Timer",
    "TimerFired",
]


_TIMEOUTS = {
    Timer.ATTESTATION: (DestroyReason.ATTESTATION_TIMEOUT, ExitCode.ATTESTATION_TIMEOUT),
    Timer.IDLE: (DestroyReason.IDLE_TIMEOUT, ExitCode.IDLE_TIMEOUT),
    Timer.DEADLINE: (DestroyReason.DEADLINE, ExitCode.DEADLINE),
}
# States in which the requester is talking to us: a failure is worth telling them about.
_IN_CHANNEL = frozenset({State.AWAITING_INPUT, State.RUNNING})


class JobMachine:
    """One job's lifecycle. Start in ``CREATED``; feed events to :meth:`handle`."""

    def __init__(self) -> None:
        self.state = State.CREATED
        self.exit_code: ExitCode | None = None
        self.destroy_reason: DestroyReason | None = None
        self._oneshot = False
        self._started = False
        self._evidence = False
        self._subscribed = False
        self._publishing = False
        self._model_ready = False
        self._used = False  # the requester sent an authenticated message
        self._ready_sent = False
        self._pending: deque[str] = deque()
        self._running: str | None = None
        self._seq = 0
        self._answers = 0
        self._timers: set[Timer] = set()
        self._pending_end = False  # end arrived while the attestation was being published
        self._deliver_reason = DestroyReason.END
        self._plain_peer = False  # the peer's last message was a plain NIP-17 one
        self._plain_inputs: set[str] = set()

    # --- introspection (for the shell and the tests) ----------------------------------------

    @property
    def running(self) -> str | None:
        return self._running

    @property
    def answers(self) -> int:
        """Final answers delivered so far."""
        return self._answers

    @property
    def timers(self) -> frozenset[Timer]:
        return frozenset(self._timers)

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(self._pending)

    # --- the transition function ------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        if self.state is State.DESTROYED:
            return []
        match event:
            case TimerFired(timer=timer):
                return self._timer(timer)
            case Failed():
                return self._destroy(DestroyReason.ERROR, ExitCode.FAILURE)
            case SpecRejected() if self.state is State.CREATED and not self._started:
                return self._destroy(DestroyReason.ERROR, ExitCode.BAD_SPEC)
            case SpecParsed(oneshot=oneshot) if self.state is State.CREATED and not self._started:
                self._started = True
                self._oneshot = oneshot
                return [*self._start(Timer.DEADLINE), MakeKey(), LoadModel()]
            case KeyMade() if self.state is State.CREATED and self._started:
                self.state = State.KEYED
                return [GetEvidence(), Subscribe()]
            case EvidenceObtained() if self.state is State.KEYED and not self._evidence:
                self._evidence = True
                return self._maybe_publish()
            case Subscribed() if self.state is State.KEYED and not self._subscribed:
                self._subscribed = True
                return self._maybe_publish()
            case EvidenceFailed():
                return self._destroy(DestroyReason.ERROR, ExitCode.EVIDENCE)
            case PublishFailed():
                return self._destroy(DestroyReason.ERROR, ExitCode.RELAY)
            case ModelFailed():
                return self._destroy(
                    DestroyReason.ERROR, ExitCode.MODEL, tell=ChannelError.MODEL_FAILED
                )
            case AttestationPublished() if self._publishing:
                return self._attested()
            case ModelReady() if not self._model_ready and self._started:
                self._model_ready = True
                return self._on_model_ready()
            case InputReceived(input_id=input_id, plain=plain) if self._listening():
                self._plain_peer = plain
                if plain:
                    self._plain_inputs.add(input_id)
                return self._input(input_id)
            case InputRefused(reason=reason, plain=plain) if self._listening():
                self._plain_peer = plain
                return [*self._use(), SendError(reason, plain=plain)]
            case EndReceived(plain=plain) if self._listening():
                self._plain_peer = plain
                return self._end()
            case OutputBatch(input_id=input_id, final=final) if input_id == self._running:
                return self._output(input_id, final=final)
            case RunFailed(input_id=input_id, reason=reason) if input_id == self._running:
                self._running = None
                plain = input_id in self._plain_inputs
                self._plain_inputs.discard(input_id)
                return [SendError(reason, plain=plain), *self._next()]
            case ResultPublished() if self.state is State.DELIVERED:
                return [
                    EmitStatus(StatusKind.DELIVERED),
                    *self._destroy(self._deliver_reason, ExitCode.OK),
                ]
        return []

    # --- helpers ----------------------------------------------------------------------------

    def _start(self, timer: Timer) -> list[Action]:
        if timer in self._timers:
            return []
        self._timers.add(timer)
        return [StartTimer(timer)]

    def _cancel(self, timer: Timer) -> list[Action]:
        if timer not in self._timers:
            return []
        self._timers.discard(timer)
        return [CancelTimer(timer)]

    def _destroy(
        self, reason: DestroyReason, code: ExitCode, *, tell: ChannelError | None = None
    ) -> list[Action]:
        actions: list[Action] = []
        if tell is not None and self.state in _IN_CHANNEL:
            actions.append(SendError(tell, plain=self._plain_peer))
        if self._running is not None:
            actions.append(CancelRun(self._running))
            self._running = None
        for timer in sorted(self._timers):
            actions.append(CancelTimer(timer))
        self._timers.clear()
        self._pending.clear()
        self._plain_inputs.clear()
        self.state = State.DESTROYED
        self.exit_code = code
        self.destroy_reason = reason
        actions.append(Destroy(reason, code))
        return actions

    def _timer(self, timer: Timer) -> list[Action]:
        if timer not in self._timers:
            return []  # cancelled, or never started: a stale fire
        self._timers.discard(timer)
        reason, code = _TIMEOUTS[timer]
        return self._destroy(reason, code, tell=ChannelError.TIMEOUT)

    def _maybe_publish(self) -> list[Action]:
        if self._evidence and self._subscribed and not self._publishing:
            self._publishing = True
            return [PublishAttestation()]
        return []

    def _listening(self) -> bool:
        # Messages can arrive while the attestation is being published: the requester saw it on
        # a fast relay before our publish returned. The subscription is open, so accept them.
        return self._subscribed and self.state in (
            State.KEYED,
            State.ATTESTED,
            State.AWAITING_INPUT,
            State.RUNNING,
        )

    def _attested(self) -> list[Action]:
        self._publishing = False
        actions: list[Action] = [EmitStatus(StatusKind.ATTESTED)]
        if self._used:
            self.state = State.AWAITING_INPUT
            actions += self._greet()
            if self._pending_end:
                return actions + self._end()
            return actions + self._next()
        self.state = State.ATTESTED
        actions += self._start(Timer.ATTESTATION)
        return actions + self._greet()

    def _greet(self) -> list[Action]:
        if self._model_ready and not self._ready_sent:
            self._ready_sent = True
            if self._plain_peer:  # a standard client asked for no ready message
                return [EmitStatus(StatusKind.READY)]
            return [EmitStatus(StatusKind.READY), SendReady()]
        return []

    def _on_model_ready(self) -> list[Action]:
        if self.state is State.ATTESTED:
            return self._greet()
        if self.state is State.AWAITING_INPUT:
            return [*self._greet(), *self._next()]
        return []  # before attestation: announced by _attested (the channel then exists)

    def _use(self) -> list[Action]:
        """The requester used the attestation: from now on the idle clock applies."""
        if self._used:
            return []
        self._used = True
        if self.state is State.ATTESTED:
            self.state = State.AWAITING_INPUT
            return [*self._cancel(Timer.ATTESTATION), *self._start(Timer.IDLE)]
        return []

    def _input(self, input_id: str) -> list[Action]:
        actions = self._use()
        if self._oneshot and (self._pending or self._running is not None or self._answers):
            return actions  # a one-shot job answers its first input only
        self._pending.append(input_id)
        if self.state is State.AWAITING_INPUT:
            actions += self._next()
        return actions

    def _end(self) -> list[Action]:
        actions = self._use()
        if self.state is State.KEYED:
            self._pending_end = True  # deliver once attested
            return actions
        return actions + self._deliver(DestroyReason.END)

    def _deliver(self, reason: DestroyReason) -> list[Action]:
        self._deliver_reason = reason
        actions: list[Action] = []
        if self._running is not None:
            actions.append(CancelRun(self._running))
            self._running = None
        self._pending.clear()
        self._plain_inputs.clear()
        for timer in sorted(self._timers - {Timer.DEADLINE}):
            actions += self._cancel(timer)
        self.state = State.DELIVERED
        if self._plain_peer:
            actions.append(SendEnded())
        actions.append(PublishResult())
        return actions

    def _next(self) -> list[Action]:
        """Start the next queued input, or wait for one (idle clock)."""
        if self._running is not None:
            return []
        self.state = State.AWAITING_INPUT
        if not self._pending:
            return self._start(Timer.IDLE)
        if not self._model_ready:
            # The requester is waiting on us (the model still loads): not idle. The deadline
            # still bounds the wait.
            return self._cancel(Timer.IDLE)
        self._running = self._pending.popleft()
        self._seq = 0
        self.state = State.RUNNING
        return [*self._cancel(Timer.IDLE), RunModel(self._running)]

    def _output(self, input_id: str, *, final: bool) -> list[Action]:
        if input_id in self._plain_inputs:
            if not final:
                return []  # a standard client shows each message as a bubble: no partials
            self._plain_inputs.discard(input_id)
            actions: list[Action] = [SendOutput(input_id, 0, True, plain=True)]
        else:
            actions = [SendOutput(input_id, self._seq, final)]
            self._seq += 1
        if not final:
            return actions
        self._running = None
        self._answers += 1
        if self._oneshot:
            return actions + self._deliver(DestroyReason.ONESHOT)
        return actions + self._next()
