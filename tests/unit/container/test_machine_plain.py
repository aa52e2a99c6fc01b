"""The job machine and standard NIP-17 peers (``plain``): one message per answer, an end notice.

A plain peer's answer is never streamed (no partial ``SendOutput``), arrives as one
``SendOutput(plain=True)``, and ``/end`` or a one-shot answer is followed by ``SendEnded``
before the result; errors and the timeout notice are plain. A cdvm peer's job is unchanged.
"""

from __future__ import annotations

from container.events import (
    CancelTimer,
    Destroy,
    EmitStatus,
    EndReceived,
    InputReceived,
    InputRefused,
    ModelReady,
    OutputBatch,
    PublishResult,
    RunFailed,
    RunModel,
    SendEnded,
    SendError,
    SendOutput,
    SendReady,
    StartTimer,
    State,
    Timer,
    TimerFired,
)
from container.launch import DestroyReason, ExitCode, StatusKind
from container.machine import JobMachine
from dvm.cdvm.channel import ChannelError
from tests.unit.container.test_machine import A, B, attested, feed


def test_a_plain_input_is_answered_once_whole_with_no_partials() -> None:
    machine = attested()
    assert feed(machine, InputReceived(A, plain=True))[-1] == RunModel(A)
    assert machine.handle(OutputBatch(A, final=False)) == []
    assert machine.handle(OutputBatch(A, final=False)) == []
    assert machine.handle(OutputBatch(A, final=True)) == [
        SendOutput(A, 0, True, plain=True),
        StartTimer(Timer.IDLE),
    ]
    assert machine.answers == 1
    assert machine.state is State.AWAITING_INPUT


def test_a_cdvm_input_still_streams() -> None:
    machine = attested()
    feed(machine, InputReceived(A))
    assert machine.handle(OutputBatch(A, final=False)) == [SendOutput(A, 0, False)]
    assert machine.handle(OutputBatch(A, final=True))[0] == SendOutput(A, 1, True)


def test_each_answer_follows_the_style_of_its_own_input() -> None:
    machine = attested()
    feed(machine, InputReceived(A, plain=True), InputReceived(B))
    assert machine.handle(OutputBatch(A, final=True))[:2] == [
        SendOutput(A, 0, True, plain=True),
        RunModel(B),
    ]
    assert machine.handle(OutputBatch(B, final=False)) == [SendOutput(B, 0, False)]


def test_plain_end_sends_the_end_notice_before_the_result() -> None:
    machine = attested()
    feed(machine, InputReceived(A, plain=True), OutputBatch(A, final=True))
    actions = machine.handle(EndReceived(plain=True))
    assert actions == [CancelTimer(Timer.IDLE), SendEnded(), PublishResult()]
    assert machine.state is State.DELIVERED


def test_cdvm_end_sends_no_end_notice() -> None:
    machine = attested()
    feed(machine, InputReceived(A), OutputBatch(A, final=True))
    assert SendEnded() not in machine.handle(EndReceived())


def test_a_plain_one_shot_answer_then_the_end_notice() -> None:
    machine = attested(oneshot=True)
    feed(machine, InputReceived(A, plain=True))
    actions = machine.handle(OutputBatch(A, final=True))
    assert actions[0] == SendOutput(A, 0, True, plain=True)
    assert actions[-2:] == [SendEnded(), PublishResult()]


def test_a_plain_peer_gets_plain_errors_and_a_plain_timeout_notice() -> None:
    machine = attested()
    assert feed(machine, InputRefused(ChannelError.TOO_LARGE, plain=True))[-1] == SendError(
        ChannelError.TOO_LARGE, plain=True
    )
    feed(machine, InputReceived(A, plain=True))
    assert machine.handle(RunFailed(A, ChannelError.BAD_INPUT))[0] == SendError(
        ChannelError.BAD_INPUT, plain=True
    )
    actions = machine.handle(TimerFired(Timer.IDLE))
    assert actions[0] == SendError(ChannelError.TIMEOUT, plain=True)
    assert actions[-1] == Destroy(DestroyReason.IDLE_TIMEOUT, ExitCode.IDLE_TIMEOUT)


def test_the_style_of_the_last_message_decides_errors_and_the_end() -> None:
    machine = attested()
    feed(machine, InputReceived(A, plain=True), OutputBatch(A, final=True))
    assert SendEnded() not in machine.handle(EndReceived(plain=False))


def test_a_plain_peer_that_wrote_before_the_model_was_ready_gets_no_ready_message() -> None:
    machine = attested(model_ready=False)
    feed(machine, InputReceived(A, plain=True))
    actions = machine.handle(ModelReady())
    assert EmitStatus(StatusKind.READY) in actions
    assert SendReady() not in actions
    assert RunModel(A) in actions


def test_a_cdvm_peer_still_gets_the_ready_message() -> None:
    machine = attested(model_ready=False)
    feed(machine, InputReceived(A))
    assert SendReady() in machine.handle(ModelReady())


def test_a_fresh_machine_is_not_plain() -> None:
    machine = JobMachine()
    assert machine.handle(EndReceived(plain=True)) == []  # not listening yet: ignored
