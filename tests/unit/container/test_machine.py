"""The job state machine: every transition, and random event sequences (hypothesis)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from container.events import (
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
from container.launch import REASON_EXIT_CODES, DestroyReason, ExitCode, StatusKind
from container.machine import JobMachine
from dvm.cdvm.channel import ChannelError

A, B, C = "a" * 64, "b" * 64, "c" * 64
DOCUMENTED = REASON_EXIT_CODES  # the pairs docs/launch.md §2-§3 allow


def feed(machine: JobMachine, *events: Event) -> list[Action]:
    actions: list[Action] = []
    for event in events:
        actions += machine.handle(event)
    return actions


def attested(*, oneshot: bool = False, model_ready: bool = True) -> JobMachine:
    machine = JobMachine()
    feed(machine, SpecParsed(oneshot=oneshot), KeyMade(), EvidenceObtained(), Subscribed())
    if model_ready:
        feed(machine, ModelReady())
    feed(machine, AttestationPublished())
    assert machine.state is State.ATTESTED
    return machine


def test_startup_asks_for_key_model_evidence_and_subscription() -> None:
    machine = JobMachine()
    assert machine.state is State.CREATED
    assert machine.handle(SpecParsed(oneshot=False)) == [
        StartTimer(Timer.DEADLINE),
        MakeKey(),
        LoadModel(),
    ]
    assert machine.handle(KeyMade()) == [GetEvidence(), Subscribe()]
    assert machine.state is State.KEYED


@pytest.mark.parametrize(
    "order", [(EvidenceObtained(), Subscribed()), (Subscribed(), EvidenceObtained())]
)
def test_attestation_is_published_only_after_evidence_and_subscription(
    order: tuple[Event, Event],
) -> None:
    machine = JobMachine()
    feed(machine, SpecParsed(oneshot=False), KeyMade())
    assert machine.handle(order[0]) == []
    assert machine.handle(order[1]) == [PublishAttestation()]
    actions = machine.handle(AttestationPublished())
    assert actions == [EmitStatus(StatusKind.ATTESTED), StartTimer(Timer.ATTESTATION)]
    assert machine.state is State.ATTESTED


def test_ready_is_announced_once_attested_whenever_the_model_loads() -> None:
    early = attested(model_ready=True)
    assert early.timers == {Timer.DEADLINE, Timer.ATTESTATION}
    late = attested(model_ready=False)
    assert late.handle(ModelReady()) == [EmitStatus(StatusKind.READY), SendReady()]
    assert late.handle(ModelReady()) == []


def test_first_input_uses_the_attestation_and_runs() -> None:
    machine = attested()
    actions = machine.handle(InputReceived(A))
    assert CancelTimer(Timer.ATTESTATION) in actions
    assert actions[-1] == RunModel(A)
    assert machine.state is State.RUNNING
    assert Timer.ATTESTATION not in machine.timers
    assert Timer.IDLE not in machine.timers


def test_outputs_are_numbered_and_the_next_input_runs_after_the_final() -> None:
    machine = attested()
    feed(machine, InputReceived(A), InputReceived(B))
    assert machine.pending == (B,)
    assert machine.handle(OutputBatch(A, final=False)) == [SendOutput(A, 0, False)]
    assert machine.handle(OutputBatch(B, final=False)) == []  # not running: ignored
    assert machine.handle(OutputBatch(A, final=True)) == [SendOutput(A, 1, True), RunModel(B)]
    assert machine.handle(OutputBatch(B, final=True)) == [
        SendOutput(B, 0, True),
        StartTimer(Timer.IDLE),
    ]
    assert machine.state is State.AWAITING_INPUT
    assert machine.answers == 2


def test_inputs_wait_for_the_model_without_the_idle_clock() -> None:
    machine = attested(model_ready=False)
    actions = machine.handle(InputReceived(A))
    assert RunModel(A) not in actions
    assert Timer.IDLE not in machine.timers
    assert machine.state is State.AWAITING_INPUT
    assert machine.handle(ModelReady()) == [EmitStatus(StatusKind.READY), SendReady(), RunModel(A)]


def test_end_publishes_the_result_then_destroys_with_exit_0() -> None:
    machine = attested()
    feed(machine, InputReceived(A), OutputBatch(A, final=True))
    actions = machine.handle(EndReceived())
    assert actions == [CancelTimer(Timer.IDLE), PublishResult()]
    assert machine.state is State.DELIVERED
    assert machine.handle(InputReceived(B)) == []  # too late
    actions = machine.handle(ResultPublished())
    assert actions == [
        EmitStatus(StatusKind.DELIVERED),
        CancelTimer(Timer.DEADLINE),
        Destroy(DestroyReason.END, ExitCode.OK),
    ]
    assert machine.state is State.DESTROYED
    assert machine.exit_code is ExitCode.OK


def test_end_while_running_cancels_the_run() -> None:
    machine = attested()
    feed(machine, InputReceived(A))
    actions = machine.handle(EndReceived())
    assert actions == [CancelRun(A), PublishResult()]
    assert machine.handle(OutputBatch(A, final=True)) == []


def test_oneshot_delivers_after_the_first_answer_and_ignores_more_inputs() -> None:
    machine = attested(oneshot=True)
    feed(machine, InputReceived(A))
    assert machine.handle(InputReceived(B)) == []
    actions = machine.handle(OutputBatch(A, final=True))
    assert actions == [SendOutput(A, 0, True), PublishResult()]
    assert feed(machine, ResultPublished())[-1] == Destroy(DestroyReason.ONESHOT, ExitCode.OK)


def test_oneshot_after_a_failed_run_accepts_another_input() -> None:
    machine = attested(oneshot=True)
    feed(machine, InputReceived(A))
    assert machine.handle(RunFailed(A, ChannelError.BAD_INPUT)) == [
        SendError(ChannelError.BAD_INPUT),
        StartTimer(Timer.IDLE),
    ]
    assert machine.handle(InputReceived(B))[-1] == RunModel(B)


def test_refused_input_is_answered_and_counts_as_use() -> None:
    machine = attested()
    actions = machine.handle(InputRefused(ChannelError.TOO_LARGE))
    assert actions[-1] == SendError(ChannelError.TOO_LARGE)
    assert machine.state is State.AWAITING_INPUT
    assert Timer.IDLE in machine.timers


def test_messages_racing_the_attestation_publish_are_kept() -> None:
    machine = JobMachine()
    feed(machine, SpecParsed(oneshot=False), KeyMade(), EvidenceObtained(), Subscribed())
    assert machine.handle(InputReceived(A)) == []
    actions = feed(machine, ModelReady(), AttestationPublished())
    assert actions[:3] == [
        EmitStatus(StatusKind.ATTESTED),
        EmitStatus(StatusKind.READY),
        SendReady(),
    ]
    assert actions[-1] == RunModel(A)
    assert StartTimer(Timer.ATTESTATION) not in actions


def test_end_racing_the_attestation_publish_delivers_once_attested() -> None:
    machine = JobMachine()
    feed(machine, SpecParsed(oneshot=False), KeyMade(), EvidenceObtained(), Subscribed())
    assert machine.handle(EndReceived()) == []
    assert machine.handle(AttestationPublished())[-1] == PublishResult()


def test_no_message_is_accepted_before_the_subscription() -> None:
    machine = JobMachine()
    feed(machine, SpecParsed(oneshot=False), KeyMade())
    assert machine.handle(InputReceived(A)) == []
    assert machine.handle(EndReceived()) == []


@pytest.mark.parametrize(
    ("timer", "reason", "code"),
    [
        (Timer.ATTESTATION, DestroyReason.ATTESTATION_TIMEOUT, ExitCode.ATTESTATION_TIMEOUT),
        (Timer.DEADLINE, DestroyReason.DEADLINE, ExitCode.DEADLINE),
    ],
)
def test_timeouts_after_attestation(timer: Timer, reason: DestroyReason, code: ExitCode) -> None:
    machine = attested()
    actions = machine.handle(TimerFired(timer))
    assert actions[-1] == Destroy(reason, code)
    assert SendError(ChannelError.TIMEOUT) not in actions  # nobody is talking to us yet


def test_idle_timeout_tells_the_requester() -> None:
    machine = attested()
    feed(machine, InputReceived(A), OutputBatch(A, final=True))
    actions = machine.handle(TimerFired(Timer.IDLE))
    assert actions[0] == SendError(ChannelError.TIMEOUT)
    assert actions[-1] == Destroy(DestroyReason.IDLE_TIMEOUT, ExitCode.IDLE_TIMEOUT)


def test_deadline_while_running_cancels_the_run() -> None:
    machine = attested()
    feed(machine, InputReceived(A))
    actions = machine.handle(TimerFired(Timer.DEADLINE))
    assert actions[:2] == [SendError(ChannelError.TIMEOUT), CancelRun(A)]
    assert actions[-1] == Destroy(DestroyReason.DEADLINE, ExitCode.DEADLINE)


def test_stale_timers_are_ignored() -> None:
    machine = attested()
    feed(machine, InputReceived(A))  # cancels the attestation timer
    assert machine.handle(TimerFired(Timer.ATTESTATION)) == []
    assert machine.handle(TimerFired(Timer.IDLE)) == []


@pytest.mark.parametrize(
    ("events", "code"),
    [
        ((SpecRejected(),), ExitCode.BAD_SPEC),
        ((SpecParsed(oneshot=False), ModelFailed()), ExitCode.MODEL),
        ((SpecParsed(oneshot=False), KeyMade(), EvidenceFailed()), ExitCode.EVIDENCE),
        ((SpecParsed(oneshot=False), KeyMade(), PublishFailed()), ExitCode.RELAY),
        ((Failed(),), ExitCode.FAILURE),
    ],
)
def test_failures_have_their_exit_codes(events: tuple[Event, ...], code: ExitCode) -> None:
    machine = JobMachine()
    actions = feed(machine, *events)
    assert actions[-1] == Destroy(DestroyReason.ERROR, code)
    assert machine.state is State.DESTROYED
    assert machine.handle(Failed()) == []  # nothing after destruction


def test_model_failure_after_attestation_tells_the_requester() -> None:
    machine = attested(model_ready=False)
    feed(machine, InputReceived(A))
    actions = machine.handle(ModelFailed())
    assert actions[0] == SendError(ChannelError.MODEL_FAILED)
    assert actions[-1] == Destroy(DestroyReason.ERROR, ExitCode.MODEL)


def test_result_publish_failure_is_a_relay_failure() -> None:
    machine = attested()
    feed(machine, EndReceived())
    assert machine.handle(PublishFailed())[-1] == Destroy(DestroyReason.ERROR, ExitCode.RELAY)


def test_spec_events_count_once() -> None:
    machine = JobMachine()
    feed(machine, SpecParsed(oneshot=False))
    assert machine.handle(SpecParsed(oneshot=True)) == []
    assert machine.handle(SpecRejected()) == []


# --- every (state, event) pair, and random sequences ------------------------------------------

IDS = st.sampled_from([A, B, C])
EVENTS: st.SearchStrategy[Event] = st.one_of(
    st.builds(SpecParsed, oneshot=st.booleans()),
    st.just(SpecRejected()),
    st.just(KeyMade()),
    st.just(EvidenceObtained()),
    st.just(EvidenceFailed()),
    st.just(Subscribed()),
    st.just(AttestationPublished()),
    st.just(PublishFailed()),
    st.just(ModelReady()),
    st.just(ModelFailed()),
    st.builds(InputReceived, IDS, st.booleans()),  # plain: a standard NIP-17 peer
    st.builds(InputRefused, st.sampled_from(list(ChannelError)), st.booleans()),
    st.builds(EndReceived, st.booleans()),
    st.builds(OutputBatch, IDS, st.booleans()),
    st.builds(RunFailed, IDS, st.sampled_from(list(ChannelError))),
    st.just(ResultPublished()),
    st.builds(TimerFired, st.sampled_from(list(Timer))),
    st.just(Failed()),
)
# Sequences that mostly follow the happy path reach the deep states more often.
HAPPY: list[Event] = [
    SpecParsed(oneshot=False),
    KeyMade(),
    EvidenceObtained(),
    Subscribed(),
    ModelReady(),
    AttestationPublished(),
]


def check_run(machine: JobMachine, events: list[Event]) -> None:
    """Feed ``events`` and check every ordering and bookkeeping invariant on the way."""
    subscribed = model_ready = published = False
    destroys: list[Destroy] = []
    running: str | None = None
    seqs: dict[str, int] = defaultdict(int)
    result_published_events = 0
    results = 0
    for event in events:
        was_destroyed = machine.state is State.DESTROYED
        before = machine.state
        actions = machine.handle(event)
        if was_destroyed:
            assert actions == []
        assert isinstance(machine.state, State)
        if isinstance(event, ResultPublished) and before is State.DELIVERED:
            result_published_events += 1
        for action in actions:
            assert not destroys, "no action after Destroy"
            match action:
                case Subscribe():
                    subscribed = True
                case PublishAttestation():
                    assert subscribed, "attestation published before the subscription"
                    published = True
                case RunModel(input_id=input_id):
                    assert running is None, "two runs at once"
                    assert model_ready or isinstance(event, ModelReady)
                    running = input_id
                    seqs[input_id] = 0
                case SendOutput(input_id=input_id, seq=seq, final=final, plain=plain):
                    assert input_id == running
                    assert seq == seqs[input_id]
                    assert final or not plain, "a plain peer never gets a partial"
                    seqs[input_id] += 1
                    if final:
                        running = None
                case CancelRun(input_id=input_id):
                    assert input_id == running
                    running = None
                case SendError():
                    if isinstance(event, RunFailed):
                        running = None
                case PublishResult():
                    results += 1
                    assert published
                case SendEnded():
                    assert actions[actions.index(action) + 1] == PublishResult()
                case Destroy() as destroy:
                    destroys.append(destroy)
        if isinstance(event, ModelReady):
            model_ready = True
        if machine.state is not State.RUNNING and machine.state is not State.DESTROYED:
            assert machine.running is None
    assert results <= 1
    assert len(destroys) <= 1
    if destroys:
        destroy = destroys[0]
        assert machine.state is State.DESTROYED
        assert destroy.exit_code in DOCUMENTED[destroy.reason]
        assert machine.exit_code is destroy.exit_code
        if destroy.exit_code is ExitCode.OK:
            assert result_published_events == 1
        assert machine.timers == frozenset()


@settings(max_examples=400, deadline=None)
@given(st.lists(EVENTS, max_size=40), st.booleans())
def test_random_sequences_keep_every_invariant(events: list[Event], happy_start: bool) -> None:
    machine = JobMachine()
    check_run(machine, (HAPPY if happy_start else []) + events)


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENTS, max_size=40), st.booleans())
def test_every_sequence_ends_destroyed_once_the_deadline_fires(
    events: list[Event], happy_start: bool
) -> None:
    machine = JobMachine()
    # The deadline timer starts with the spec and only destruction cancels it, so after the
    # deadline fires the job is over, whatever happened before.
    sequence = [SpecParsed(oneshot=False), *(HAPPY if happy_start else []), *events]
    check_run(machine, [*sequence, TimerFired(Timer.DEADLINE)])
    assert machine.state is State.DESTROYED
    assert machine.exit_code is not None
    assert machine.destroy_reason is not None
    assert machine.exit_code in DOCUMENTED[machine.destroy_reason]


STATE_PATHS: dict[State, list[Event]] = {
    State.CREATED: [SpecParsed(oneshot=False)],
    State.KEYED: [SpecParsed(oneshot=False), KeyMade()],
    State.ATTESTED: HAPPY,
    State.AWAITING_INPUT: [*HAPPY, InputRefused(ChannelError.BAD_INPUT)],
    State.RUNNING: [*HAPPY, InputReceived(A)],
    State.DELIVERED: [*HAPPY, EndReceived()],
    State.DESTROYED: [Failed()],
}


@pytest.mark.parametrize("state", list(State))
@given(event=EVENTS)
@settings(max_examples=60, deadline=None)
def test_every_event_is_handled_in_every_state(state: State, event: Event) -> None:
    machine = JobMachine()
    feed(machine, *STATE_PATHS[state])
    assert machine.state is state
    actions = machine.handle(event)
    assert all(isinstance(a, Action.__args__) for a in actions)  # type: ignore[attr-defined]
    assert isinstance(machine.state, State)
