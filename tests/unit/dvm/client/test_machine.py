"""dvm.client.machine: the requester's job state machine, driven without a relay.

Real signed events (feedback from P, C's attestations, gift wraps, results) go in; actions come
out. Every step, every refusal (ignored events, counted by reason), every failure and timeout,
late and duplicate events, and hypothesis sequences: the machine never raises, never sends
before the verification, and ends each list with at most one milestone.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.cdvm.channel import (
    ChannelError,
    OutputState,
    build_error,
    build_input,
    build_output,
    build_ready,
)
from dvm.cdvm.kind7100 import ATTESTATION_KIND, Claims, ModelClaim, RuntimeClaim
from dvm.client import (
    AttestationRefused,
    ClientError,
    ClientTimeout,
    JobFailed,
    JobMode,
    JobOptions,
    NotPublished,
    Step,
    Timeouts,
    Verification,
)
from dvm.client.events import (
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
from dvm.client.machine import RESULT_GRACE_S, RequesterMachine
from dvm.client.outcome import describe_verification
from dvm.client.record import MAX_EARLY_EVENTS
from dvm.nostr import nip44
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip17 import gift_wraps
from dvm.nostr.nip59 import GIFT_WRAP_KIND, WRAP_KIND_EPHEMERAL
from dvm.nostr.nip90 import (
    ErrorReason,
    FeedbackStatus,
    JobRequest,
    build_job_feedback,
    build_job_request,
    build_job_result,
    parse_job_request,
)

NOW = 1_760_000_000
RELAY = "ws://relay.test"
P = SecretKey.from_hex("01" * 32)  # provider
U = SecretKey.from_hex("02" * 32)  # requester
S = SecretKey.from_hex("03" * 32)  # session
C = SecretKey.from_hex("04" * 32)  # container
X = SecretKey.from_hex("05" * 32)  # a stranger
C2 = SecretKey.from_hex("06" * 32)  # a second container
TIMEOUTS = Timeouts(attestation_s=10, answer_s=20, destroyed_s=30)
START = Start(NOW, bytes(range(32)), bytes(32))
_COUNTER = iter(range(1 << 30))


def _rand(n: int) -> bytes:
    """Deterministic, distinct 'random' bytes (tests only)."""
    return next(_COUNTER).to_bytes(8, "big").rjust(n, b"\x07")[:n]


def _options(**kw: object) -> JobOptions:
    base: dict[str, object] = {
        "provider": P.public_key,
        "relays": (RELAY,),
        "model": "echo",
        "tee": "simulated",
        "timeouts": TIMEOUTS,
    }
    base.update(kw)
    return JobOptions(**base)  # type: ignore[arg-type]


def _machine(mode: JobMode = JobMode.CHAT, **kw: object) -> RequesterMachine:
    return RequesterMachine(_options(**kw), mode=mode, identity=U, session=S)


def _state(m: RequesterMachine) -> State:
    """The state, read through a call (mypy would narrow the attribute across handle())."""
    return m.state


def _request(m: RequesterMachine) -> JobRequest:
    assert m.request is not None
    return m.request


# --- events as a relay would bring them -------------------------------------------------------


def _feedback(
    m: RequesterMachine,
    status: FeedbackStatus = FeedbackStatus.PROCESSING,
    *,
    container: SecretKey | None = C,
    author: SecretKey = P,
    job: str | None = None,
    destroyed: bool = False,
) -> Event:
    reason = ErrorReason.LAUNCH_FAILED if status is FeedbackStatus.ERROR else None
    return build_job_feedback(
        author=author.public_key,
        request_id=job or _request(m).id,
        requester=U.public_key,
        status=status,
        created_at=NOW,
        reason=reason,
        container=container.public_key if container is not None else None,
        destroyed=destroyed,
        content="the model failed" if reason else "",
    ).sign(author, aux_rand=_rand(32))


def _attestation(m: RequesterMachine, signer: SecretKey = C) -> Event:
    tags = (("e", _request(m).id),)
    return UnsignedEvent(signer.public_key.hex(), NOW, ATTESTATION_KIND, tags, "{}").sign(
        signer, aux_rand=_rand(32)
    )


def _wrap(rumor: UnsignedEvent, sender: SecretKey = C, kind: int = WRAP_KIND_EPHEMERAL) -> Event:
    [(_, wrap)] = gift_wraps(
        rumor, sender, [S.public_key], random_bytes=_rand, now=NOW, include_sender=False, kind=kind
    )
    return wrap


def _output(
    m: RequesterMachine, input_id: str, text: str, seq: int = 0, *, final: bool = True
) -> Event:
    state = OutputState.FINAL if final else OutputState.PARTIAL
    [rumor] = build_output(
        C.public_key,
        S.public_key,
        _request(m).id,
        text,
        answers=input_id,
        seq=seq,
        state=state,
        created_at=NOW,
    )
    return _wrap(rumor)


def _channel_error(m: RequesterMachine) -> Event:
    rumor = build_error(
        C.public_key, S.public_key, _request(m).id, ChannelError.MODEL_FAILED, "oom", created_at=NOW
    )
    return _wrap(rumor)


def _ready_message(m: RequesterMachine) -> Event:
    return _wrap(build_ready(C.public_key, S.public_key, _request(m).id, created_at=NOW))


def _result(
    m: RequesterMachine,
    text: str = "the result",
    *,
    author: SecretKey = C,
    to: SecretKey = S,  # the request's result key by default (docs/protocol.md §6)
    request: JobRequest | None = None,
) -> Event:
    conv = nip44.get_conversation_key(author, to.public_key)
    ciphertext = nip44.encrypt(text, conv, nonce=_rand(32))
    return build_job_result(
        request or _request(m), author=author.public_key, ciphertext=ciphertext, created_at=NOW
    ).sign(author, aux_rand=_rand(32))


def _verification(m: RequesterMachine) -> Verification:
    request = _request(m)
    claims = Claims(
        pubkey=C.public_key.hex(),
        job=request.id,
        nonce=request.nonce,
        provider=P.public_key.hex(),
        model=ModelClaim("echo", "ab" * 32),
        runtime=RuntimeClaim("0.1.0", "fake"),
    )
    return Verification(
        job_id=request.id,
        container=C.public_key.hex(),
        attestation_id="aa" * 32,
        tee="simulated",
        simulated=True,
        claims=claims,
        measurement="00" * 48,
        checks=("signed by C",),
        warnings=(),
    )


def _other_request() -> JobRequest:
    unsigned = build_job_request(
        requester=U.public_key,
        provider=P.public_key,
        tee="simulated",
        nonce=bytes(32),
        created_at=NOW,
        params=(("model", "echo"),),
    )
    return parse_job_request(unsigned.sign(U, aux_rand=bytes(32)))


# --- driving -----------------------------------------------------------------------------------


def _published(mode: JobMode = JobMode.CHAT, **kw: object) -> RequesterMachine:
    m = _machine(mode, **kw)
    m.handle(START)
    m.handle(Published((RELAY,)))
    return m


def _ready(mode: JobMode = JobMode.CHAT, **kw: object) -> RequesterMachine:
    m = _published(mode, **kw)
    m.handle(Received(_feedback(m)))
    m.handle(Received(_attestation(m)))
    m.handle(VerificationPassed(_verification(m)))
    assert _state(m) is State.READY
    return m


def _sent(m: RequesterMachine, text: str = "hello") -> str:
    """Send ``text``; the input id the container answers."""
    [send] = m.handle(SendInput(text, NOW, 27648))
    assert isinstance(send, SendRumors)
    m.handle(RumorsSent())
    assert _state(m) is State.AWAITING_ANSWER
    return send.rumors[0].id


def _failed(actions: list[Action]) -> BaseException:
    assert actions, "expected a Fail"
    last = actions[-1]
    assert isinstance(last, Fail), actions
    return last.error


# --- 1-2: the request --------------------------------------------------------------------------


def test_start_builds_the_request_and_subscribes_before_publishing() -> None:
    m = _machine()
    subscribe, publish = m.handle(START)
    assert isinstance(subscribe, Subscribe)
    assert isinstance(publish, Publish)
    request = _request(m)
    assert publish.event.id == request.id == m.job_id
    assert request.event.pubkey == U.public_key.hex()
    assert request.nonce == bytes(range(32)).hex()
    assert request.session == S.public_key.hex()
    assert request.param("model") == "echo"
    assert request.param("mode") == "chat"
    assert ("expiration", str(NOW + 3600)) in request.event.tags
    by_job, by_session = subscribe.filters
    assert set(by_job.kinds or ()) == {7000, ATTESTATION_KIND, 6050}
    assert by_job.tags == (("e", (request.id,)),)
    assert by_session.tags == (("p", (S.public_key.hex(),)),)
    assert set(by_session.kinds or ()) == {GIFT_WRAP_KIND, WRAP_KIND_EPHEMERAL}
    assert _state(m) is State.PUBLISHING


def test_without_a_fresh_session_the_request_names_no_session() -> None:
    m = RequesterMachine(_options(fresh_session=False), mode=JobMode.ONESHOT, identity=U, session=U)
    m.handle(START)
    assert _request(m).session is None
    assert _request(m).param("mode") == "oneshot"


def test_start_twice_and_an_unbuildable_request_fail() -> None:
    m = _machine()
    assert m.job_id == "(unpublished)"
    m.handle(START)
    assert "already started" in str(_failed(m.handle(START)))
    bad = _machine()
    error = _failed(bad.handle(Start(NOW, b"short", bytes(32))))
    assert type(error) is ClientError
    assert "cannot be built" in str(error)
    assert _state(bad) is State.FAILED
    assert bad.handle(Published((RELAY,))) == []


def test_published_reports_and_starts_the_attestation_timer() -> None:
    m = _machine()
    m.handle(START)
    report, timer = m.handle(Published((RELAY,)))
    assert report == Report(
        Step.PUBLISHED,
        f"job {m.job_id} (kind 5050, model 'echo', tee simulated, chat) "
        "accepted by 1 of 1 relay(s)",
    )
    assert timer == StartTimer(Timer.ATTESTATION, 10)
    assert m.timers == {Timer.ATTESTATION}
    assert m.handle(Published((RELAY,))) == []  # a duplicate is stale


def test_no_relay_accepting_the_request_fails_with_not_published() -> None:
    m = _machine()
    m.handle(START)
    error = _failed(m.handle(PublishRefused("no relay accepted")))
    assert isinstance(error, NotPublished)
    assert m.job_id in str(error)
    assert _state(m) is State.FAILED
    assert m.handle(Received(_feedback(m))) == []  # over: late events are ignored


# --- 3-4: the container and its attestation ----------------------------------------------------


def test_the_providers_feedback_names_the_container_then_its_attestation_is_verified() -> None:
    m = _published()
    assert m.handle(Received(_feedback(m))) == [
        Report(Step.LAUNCHED, f"container {C.public_key.hex()} (provider feedback 'processing')")
    ]
    attestation = _attestation(m)
    cancel, verify = m.handle(Received(attestation))
    assert cancel == CancelTimer(Timer.ATTESTATION)
    assert verify == Verify(attestation, _request(m), C.public_key.hex())
    assert _state(m) is State.VERIFYING
    verification = _verification(m)
    assert m.handle(VerificationPassed(verification)) == [
        Report(Step.VERIFIED, describe_verification(verification)),
        Ready(verification),
    ]
    assert m.verification == verification
    assert _state(m) is State.READY
    assert m.timers == frozenset()


def test_an_attestation_before_the_feedback_is_kept_until_the_container_is_named() -> None:
    m = _published()
    attestation = _attestation(m)
    assert m.handle(Received(attestation)) == []
    actions = m.handle(Received(_feedback(m)))
    assert [type(a) for a in actions] == [Report, CancelTimer, Verify]
    assert actions[-1] == Verify(attestation, _request(m), C.public_key.hex())


def test_events_that_beat_the_publish_confirmation_count_at_once() -> None:
    m = _machine()
    m.handle(START)
    m.handle(Received(_feedback(m)))
    attestation = _attestation(m)
    assert m.handle(Received(attestation)) == []  # still publishing: no wait is running
    report, verify = m.handle(Published((RELAY,)))  # no attestation timer to start or cancel
    assert report.step is Step.PUBLISHED  # type: ignore[union-attr]
    assert verify == Verify(attestation, _request(m), C.public_key.hex())
    assert m.timers == frozenset()


def test_impostor_feedback_and_attestations_are_ignored_and_counted() -> None:
    m = _published()
    early_impostor = _attestation(m, X)
    m.handle(Received(early_impostor))
    assert m.handle(Received(_feedback(m, author=X, container=X))) == []
    assert m.handle(Received(_feedback(m, job="ee" * 32))) == []
    malformed = UnsignedEvent(P.public_key.hex(), NOW, 7000, (("e", m.job_id),), "").sign(
        P, aux_rand=bytes(32)
    )
    assert m.handle(Received(malformed)) == []
    launched = m.handle(Received(_feedback(m)))
    assert [type(a) for a in launched] == [Report]  # the impostor's attestation is not verified
    assert m.handle(Received(_attestation(m, X))) == []
    assert m.handle(Received(_feedback(m, container=C2))) == []  # a second container
    assert _state(m) is State.AWAITING_ATTESTATION
    assert m.ignored == {
        "feedback not signed by the provider": 1,
        "feedback for another job": 1,
        "malformed feedback": 1,
        "attestation not signed by the container": 2,
        "feedback naming a second container": 1,
    }


def test_only_the_first_attestation_of_the_container_is_verified() -> None:
    m = _published()
    m.handle(Received(_feedback(m)))
    first = _attestation(m)
    assert m.handle(Received(first))[-1] == Verify(first, _request(m), C.public_key.hex())
    assert m.handle(Received(_attestation(m))) == []  # while verifying
    m.handle(VerificationPassed(_verification(m)))
    assert m.handle(Received(_attestation(m))) == []  # after
    assert m.ignored == {"attestation after the one verified": 2}
    assert m.handle(VerificationPassed(_verification(m))) == []  # stale


def test_a_refused_verification_fails_and_nothing_can_be_sent() -> None:
    m = _published()
    m.handle(Received(_feedback(m)))
    m.handle(Received(_attestation(m)))
    refused = AttestationRefused(m.job_id, ["claims.nonce differs"], container=C.public_key.hex())
    assert m.handle(VerificationRefused(refused)) == [Fail(refused)]
    assert _state(m) is State.FAILED
    assert m.verification is None
    for event in (SendInput("x", NOW, 1000), SendEnd(NOW), AwaitOutcome()):
        error = _failed(m.handle(event))
        assert str(error) == "the container has not been verified yet"
    assert m.handle(VerificationRefused(refused)) == []


@pytest.mark.parametrize("early", [False, True], ids=["after-launch", "before-launch"])
def test_an_error_before_the_verification_fails_the_job(early: bool) -> None:
    m = _published()
    if early:  # a channel error wrapped before P named C: replayed once it did
        m.handle(Received(_channel_error(m)))
        actions = m.handle(Received(_feedback(m)))
        reason = "container: model-failed"
    else:
        m.handle(Received(_feedback(m)))
        actions = m.handle(Received(_feedback(m, FeedbackStatus.ERROR, container=None)))
        reason = "launch-failed"
    error = _failed(actions)
    assert isinstance(error, JobFailed)
    assert error.reason == reason
    assert CancelTimer(Timer.ATTESTATION) in actions
    assert _state(m) is State.FAILED


def test_no_attestation_in_time_is_a_timeout_of_that_step() -> None:
    m = _published()
    assert m.handle(TimerFired(Timer.ANSWER)) == []  # not running: stale
    error = _failed(m.handle(TimerFired(Timer.ATTESTATION)))
    assert isinstance(error, ClientTimeout)
    assert (error.step, error.timeout_s) == ("attestation", 10)
    assert _state(m) is State.FAILED
    assert m.handle(TimerFired(Timer.ATTESTATION)) == []


def test_events_before_the_start_and_of_other_kinds_are_ignored() -> None:
    m = _machine()
    note = UnsignedEvent(X.public_key.hex(), NOW, 1, (), "hi").sign(X, aux_rand=bytes(32))
    assert m.handle(Received(note)) == []
    assert m.ignored == {}
    m.handle(START)
    assert m.handle(Received(note)) == []
    assert m.ignored == {"event of kind 1": 1}


def test_early_events_are_bounded() -> None:
    m = _published()
    wrap = _output(m, "cd" * 32, "x")
    result = _result(m)
    attestation = _attestation(m, X)
    for _ in range(MAX_EARLY_EVENTS + 1):
        m.handle(Received(wrap))
        m.handle(Received(result))
        m.handle(Received(attestation))
    [(reason, count)] = m.ignored.items()
    assert "buffered before the container was named" in reason
    assert count == 3
    m.handle(Received(_feedback(m)))
    ignored = m.ignored
    assert ignored["wrap: replay"] == MAX_EARLY_EVENTS - 1  # one wrap, replayed
    assert ignored["second result"] == MAX_EARLY_EVENTS - 1
    assert ignored["attestation not signed by the container"] == MAX_EARLY_EVENTS


def test_a_subscription_that_ends_fails_the_wait() -> None:
    m = _published()
    error = _failed(m.handle(SubscriptionEnded()))
    assert "every relay closed the subscription" in str(error)
    assert _state(m) is State.FAILED
    ready = _ready()
    assert ready.handle(SubscriptionEnded()) == []  # not waiting: nothing to fail


# --- 5: the channel ----------------------------------------------------------------------------


def test_a_chat_input_is_sent_and_its_answer_put_back_in_order() -> None:
    m = _ready()
    [send] = m.handle(SendInput("hello", NOW, 27648))
    assert isinstance(send, SendRumors)
    assert send.recipient == C.public_key
    assert send.purpose is Purpose.INPUT
    assert _state(m) is State.SENDING
    assert _failed(m.handle(SendInput("again", NOW, 27648))).args[0].endswith("(sending)")
    report, timer = m.handle(RumorsSent())
    assert report == Report(
        Step.INPUT_SENT, "5 bytes in 1 gift-wrapped message(s) (kind 21059) to the container"
    )
    assert timer == StartTimer(Timer.ANSWER, 20)
    input_id = send.rumors[0].id
    assert m.handle(Received(_output(m, input_id, "world", 1))) == []
    final_first = _output(m, input_id, "hello ", 0, final=False)
    assert m.handle(Received(_ready_message(m))) == []
    assert m.handle(Received(final_first)) == [
        CancelTimer(Timer.ANSWER),
        Report(Step.ANSWER, "11 bytes"),
        Answered("hello world"),
    ]
    assert m.handle(Received(final_first)) == []  # a replay
    assert m.ignored == {"wrap: replay": 1}
    assert m.answers == ("hello world",)
    assert _state(m) is State.READY
    assert not m.ended
    second = _sent(m, "two")
    assert m.handle(Received(_output(m, second, "2")))[-1] == Answered("2")
    assert m.answers == ("hello world", "2")


def test_an_input_is_chunked_to_the_budget_and_an_empty_one_is_refused() -> None:
    m = _ready()
    [send] = m.handle(SendInput("x" * 5000, NOW, 1200))
    assert isinstance(send, SendRumors)
    assert len(send.rumors) > 1
    m.handle(PublishRefused("none"))
    error = _failed(m.handle(SendInput("", NOW, 1200)))
    assert type(error) is ClientError
    assert "cannot be sent" in str(error)
    assert _state(m) is State.READY


def test_no_relay_accepting_an_input_fails_the_send_only() -> None:
    m = _ready()
    m.handle(SendInput("x", NOW, 27648))
    error = _failed(m.handle(PublishRefused("rate-limited")))
    assert isinstance(error, NotPublished)
    assert _state(m) is State.READY
    assert isinstance(m.handle(SendInput("x", NOW, 27648))[0], SendRumors)


def test_no_answer_in_time_is_a_timeout_and_the_chat_goes_on() -> None:
    m = _ready()
    _sent(m)
    error = _failed(m.handle(TimerFired(Timer.ANSWER)))
    assert isinstance(error, ClientTimeout)
    assert (error.step, error.timeout_s) == ("answer", 20)
    assert _state(m) is State.READY
    later = _sent(m, "again")
    assert m.handle(Received(_output(m, later, "ok")))[-1] == Answered("ok")


@pytest.mark.parametrize("source", ["provider", "container"])
def test_a_failure_ends_the_wait_for_an_answer_and_sticks(source: str) -> None:
    m = _ready()
    _sent(m)
    bad = (
        _feedback(m, FeedbackStatus.ERROR, container=None)
        if source == "provider"
        else _channel_error(m)
    )
    actions = m.handle(Received(bad))
    assert actions[0] == CancelTimer(Timer.ANSWER)
    error = _failed(actions)
    assert isinstance(error, JobFailed)
    assert error.reason == ("launch-failed" if source == "provider" else "container: model-failed")
    assert _state(m) is State.READY
    m.handle(SendInput("again", NOW, 27648))
    report, fail = m.handle(RumorsSent())  # sticky: the next wait fails at once
    assert report.step is Step.INPUT_SENT  # type: ignore[union-attr]
    assert isinstance(fail, Fail)
    assert m.timers == frozenset()


def test_a_one_shot_answer_may_be_the_result_and_ends_the_job() -> None:
    m = _ready(JobMode.ONESHOT)
    _sent(m)
    actions = m.handle(Received(_result(m, "from the result")))
    assert actions[-1] == Answered("from the result")
    assert m.ended
    assert "has ended" in str(_failed(m.handle(SendInput("more", NOW, 27648))))
    assert m.handle(SendEnd(NOW)) == []  # the container ends a one-shot job itself


def test_a_result_does_not_answer_a_chat_input() -> None:
    m = _ready()
    _sent(m)
    assert m.handle(Received(_result(m))) == []
    assert _state(m) is State.AWAITING_ANSWER


def test_the_end_is_sent_once_and_only_after_verification() -> None:
    m = _published()
    assert "not been verified" in str(_failed(m.handle(SendEnd(NOW))))
    m = _ready()
    [cancel_none_send] = m.handle(SendEnd(NOW))
    assert isinstance(cancel_none_send, SendRumors)
    assert cancel_none_send.purpose is Purpose.END
    assert cancel_none_send.rumors[0].tags[-1] == ("cdvm", "end")
    assert m.ended
    assert _state(m) is State.ENDING
    assert m.handle(RumorsSent()) == []
    assert _state(m) is State.READY
    assert m.handle(SendEnd(NOW)) == []
    assert m.handle(RumorsSent()) == []  # stale


def test_the_end_may_interrupt_a_wait_for_an_answer() -> None:
    m = _ready()
    _sent(m)
    cancel, send = m.handle(SendEnd(NOW))
    assert cancel == CancelTimer(Timer.ANSWER)
    assert isinstance(send, SendRumors)
    error = _failed(m.handle(PublishRefused("down")))
    assert isinstance(error, NotPublished)
    assert _state(m) is State.READY
    assert m.ended


# --- 6: result and destruction -----------------------------------------------------------------


def _finishing(mode: JobMode = JobMode.CHAT) -> RequesterMachine:
    m = _ready(mode)
    m.handle(SendEnd(NOW))
    m.handle(RumorsSent())
    assert m.handle(AwaitOutcome()) == [StartTimer(Timer.DESTRUCTION, 30)]
    assert _state(m) is State.FINISHING
    return m


def test_the_outcome_waits_for_the_destruction_and_the_result() -> None:
    m = _finishing()
    assert m.handle(Received(_result(m, '["a"]'))) == []  # the result alone is not the end
    success = _feedback(m, FeedbackStatus.SUCCESS, container=None, destroyed=True)
    *before, report, finished = m.handle(Received(success))
    assert before == [CancelTimer(Timer.DESTRUCTION)]
    assert report == Report(Step.DESTROYED, "provider reports success with ['destroyed', 'true']")
    assert isinstance(finished, Finished)
    outcome = finished.outcome
    assert outcome.ok
    assert outcome.result == '["a"]'
    assert outcome.result_id is not None
    assert outcome.container == C.public_key.hex()
    assert outcome.verification == m.verification
    assert _state(m) is State.DONE
    assert m.handle(AwaitOutcome()) == [Finished(outcome)]  # again: no second report
    assert m.handle(Received(_feedback(m, FeedbackStatus.ERROR, container=None))) == []


def test_the_result_gets_a_grace_after_the_final_feedback() -> None:
    m = _finishing()
    success = _feedback(m, FeedbackStatus.SUCCESS, container=None, destroyed=True)
    assert m.handle(Received(success)) == [
        CancelTimer(Timer.DESTRUCTION),
        StartTimer(Timer.RESULT, RESULT_GRACE_S),
    ]
    assert _state(m) is State.AWAITING_RESULT
    assert m.handle(Received(_ready_message(m))) == []
    *_, finished = m.handle(Received(_result(m)))
    assert isinstance(finished, Finished)
    assert finished.outcome.result == "the result"


@pytest.mark.parametrize("keep_readable", [False, True])
def test_the_result_opens_only_with_the_key_the_request_named(keep_readable: bool) -> None:
    m = _ready(JobMode.ONESHOT, result_to_requester=keep_readable)
    tags = [list(t) for t in _request(m).event.tags]
    assert (["result-to", U.public_key.hex()] in tags) is keep_readable
    assert ["session", S.public_key.hex()] in tags
    _sent(m)
    named, other = (U, S) if keep_readable else (S, U)
    assert m.handle(Received(_result(m, "to the other key", to=other))) == []
    assert m.ignored == {"result that does not decrypt": 1}
    assert m.handle(Received(_result(m, "to the named key", to=named)))[-1] == Answered(
        "to the named key"
    )


def test_no_result_within_the_grace_is_reported_not_raised() -> None:
    m = _finishing()
    m.handle(Received(_feedback(m, FeedbackStatus.SUCCESS, container=None, destroyed=True)))
    *_, finished = m.handle(TimerFired(Timer.RESULT))
    assert isinstance(finished, Finished)
    assert finished.outcome.result is None
    assert finished.outcome.destroyed


@pytest.mark.parametrize("with_result", [False, True])
def test_a_missing_destruction_is_reported_not_hidden(with_result: bool) -> None:
    m = _finishing()
    if with_result:
        m.handle(Received(_result(m)))
        [finished] = m.handle(TimerFired(Timer.DESTRUCTION))
    else:
        assert m.handle(TimerFired(Timer.DESTRUCTION)) == [StartTimer(Timer.RESULT, RESULT_GRACE_S)]
        [finished] = m.handle(TimerFired(Timer.RESULT))
    assert isinstance(finished, Finished)
    assert finished.outcome.status is None
    assert not finished.outcome.destroyed
    assert not finished.outcome.ok


def test_an_error_after_the_answers_is_reported_in_the_outcome() -> None:
    m = _finishing()
    error_fb = _feedback(m, FeedbackStatus.ERROR, container=None, destroyed=True)
    *_, report, finished = m.handle(Received(error_fb))
    assert report == Report(
        Step.DESTROYED, "provider reports error with ['destroyed', 'true'] (launch-failed)"
    )
    assert isinstance(finished, Finished)
    assert finished.outcome.status is FeedbackStatus.ERROR
    assert finished.outcome.reason == "launch-failed"


def test_an_error_while_waiting_for_the_result_ends_the_wait() -> None:
    m = _finishing()
    m.handle(TimerFired(Timer.DESTRUCTION))
    *_, finished = m.handle(Received(_channel_error(m)))
    assert isinstance(finished, Finished)
    assert finished.outcome.status is None


def test_a_known_failure_finishes_at_once() -> None:
    m = _ready()
    _sent(m)
    m.handle(Received(_channel_error(m)))
    [finished] = m.handle(AwaitOutcome())
    assert isinstance(finished, Finished)
    assert m.ended


def test_a_subscription_ending_while_finishing_fails_and_can_be_retried() -> None:
    m = _finishing()
    cancel, fail = m.handle(SubscriptionEnded())
    assert cancel == CancelTimer(Timer.DESTRUCTION)
    assert isinstance(fail, Fail)
    assert _state(m) is State.READY
    assert m.handle(AwaitOutcome()) == [StartTimer(Timer.DESTRUCTION, 30)]
    assert "not been verified" in str(_failed(_published().handle(AwaitOutcome())))


def test_results_that_do_not_count_are_ignored_by_reason() -> None:
    m = _ready(JobMode.ONESHOT)
    _sent(m)
    for bad in (
        _result(m, author=X),
        _result(m, to=X),
        _result(m, request=_other_request()),
        UnsignedEvent(C.public_key.hex(), NOW, 6050, (), "x").sign(C, aux_rand=bytes(32)),
    ):
        assert m.handle(Received(bad)) == []
    assert m.ignored == {
        "result not signed by the container": 1,
        "result that does not decrypt": 1,
        "result for another job": 1,
        "malformed result": 1,
    }
    assert m.handle(Received(_result(m, "first")))[-1] == Answered("first")
    m.handle(Received(_result(m, "second")))
    assert m.ignored["second result"] == 1


def test_wraps_from_strangers_are_dropped_by_the_reader() -> None:
    m = _ready()
    input_id = _sent(m)
    [rumor] = build_output(
        X.public_key,
        S.public_key,
        m.job_id,
        "forged",
        answers=input_id,
        seq=0,
        state=OutputState.FINAL,
        created_at=NOW,
    )
    assert m.handle(Received(_wrap(rumor, X))) == []
    assert m.ignored == {"wrap: unwrap": 1}
    assert _state(m) is State.AWAITING_ANSWER


# --- hypothesis: any sequence of events --------------------------------------------------------


def _pool(m: RequesterMachine) -> list[MachineEvent]:
    """Every kind of event a job can see, honest and hostile, for this machine's request."""
    request = _request(m)
    [rumor] = build_input(S.public_key, C.public_key, request.id, "x", created_at=NOW)
    input_id = rumor.id  # what SendInput("x", NOW, ...) sends
    verification = _verification(m)
    return [
        Published((RELAY,)),
        PublishRefused("no"),
        RumorsSent(),
        Received(_feedback(m)),
        Received(_feedback(m, container=C2)),
        Received(_feedback(m, author=X, container=X)),
        Received(_feedback(m, FeedbackStatus.ERROR, container=None)),
        Received(_feedback(m, FeedbackStatus.SUCCESS, container=None, destroyed=True)),
        Received(_attestation(m)),
        Received(_attestation(m, X)),
        Received(_output(m, input_id, "out")),
        Received(_channel_error(m)),
        Received(_ready_message(m)),
        Received(_result(m)),
        Received(_result(m, author=X)),
        VerificationPassed(verification),
        VerificationRefused(AttestationRefused(request.id, ["no"], container=None)),
        SendInput("x", NOW, 27648),
        SendInput("", NOW, 27648),
        SendEnd(NOW),
        AwaitOutcome(),
        SubscriptionEnded(),
        START,
        *(TimerFired(timer) for timer in Timer),
    ]


def _pool_for(mode: JobMode) -> tuple[str, list[MachineEvent]]:
    m = _machine(mode)
    m.handle(START)
    return m.job_id, _pool(m)


_POOLS = {mode: _pool_for(mode) for mode in JobMode}
_POOL_SIZE = len(_POOLS[JobMode.CHAT][1])
_MILESTONES = (Ready, Answered, Finished, Fail)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(range(_POOL_SIZE)), max_size=40),
    st.sampled_from(list(JobMode)),
    st.booleans(),
)
def test_any_sequence_of_events_keeps_the_guarantees(
    picks: list[int], mode: JobMode, from_ready: bool
) -> None:
    m = _ready(mode) if from_ready else _machine(mode)
    if not from_ready:
        m.handle(START)
    job_id, pool = _POOLS[mode]
    assert m.job_id == job_id  # same keys, same Start: the same request as the pool's events
    finished = 0
    for pick in picks:
        event = pool[pick]
        verified = m.verification is not None  # before this event
        actions = m.handle(event)  # never raises
        for index, action in enumerate(actions):
            if isinstance(action, SendRumors):
                assert verified, "sent before the verification"
            if isinstance(action, _MILESTONES):
                assert index == len(actions) - 1, actions
                assert not any(isinstance(a, Publish | SendRumors | Verify) for a in actions)
            if isinstance(action, Fail):
                assert isinstance(action.error, ClientError)
            if isinstance(action, Finished):
                finished += 1
        reports = [a.step for a in actions if isinstance(a, Report)]
        assert reports.count(Step.DESTROYED) <= 1
        if m.state in (State.AWAITING_ATTESTATION, State.AWAITING_ANSWER, State.FINISHING):
            assert m.timers, f"waiting in {m.state} without a timer"
        if m.state is State.AWAITING_RESULT:
            assert m.timers == {Timer.RESULT}
        if m.state in (State.DONE, State.FAILED, State.READY):
            assert not m.timers
    if m.state is State.DONE:
        assert finished >= 1
