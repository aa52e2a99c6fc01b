"""NIP-90 cdvm/1 codecs: job request, result, feedback. Round trips, refusals, garbage."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.nostr.errors import CodecError, NostrError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip90 import (
    ErrorReason,
    FeedbackStatus,
    InputType,
    JobInput,
    TeeKind,
    build_job_feedback,
    build_job_request,
    build_job_result,
    parse_job_feedback,
    parse_job_request,
    parse_job_result,
)

USER = SecretKey(b"\x01" * 32)
PROVIDER = SecretKey(b"\x02" * 32)
CONTAINER = SecretKey(b"\x03" * 32)
SESSION = SecretKey(b"\x04" * 32)
NONCE = bytes(range(32))
AUX = bytes(32)
T = 1_700_000_000


def _request_event(**overrides: Any) -> Event:
    args: dict[str, Any] = {
        "requester": USER.public_key,
        "provider": PROVIDER.public_key,
        "tee": TeeKind.SEV_SNP,
        "nonce": NONCE,
        "created_at": T,
        "params": [("model", "gemma-3-270m"), ("mode", "oneshot")],
    }
    args.update(overrides)
    return build_job_request(**args).sign(USER, aux_rand=AUX)


def _signed(key: SecretKey, kind: int, tags: list[list[str]], content: str = "") -> Event:
    return UnsignedEvent(key.public_key.hex(), T, kind, tags, content).sign(key, aux_rand=AUX)


def _base_tags() -> list[list[str]]:
    return [
        ["p", PROVIDER.public_key.hex()],
        ["tee", "sev-snp"],
        ["nonce", NONCE.hex()],
        ["param", "model", "m"],
    ]


# --- job request -------------------------------------------------------------------------------


def test_request_round_trip_with_every_field() -> None:
    event = _request_event(
        session=SESSION.public_key,
        relays=["wss://a.example", "ws://127.0.0.1:7777"],
        expiration=T + 600,
        output="text/plain",
        bid_msat=21000,
        inputs=[JobInput("https://example.com/doc", InputType.URL)],
        kind=5051,
    )
    request = parse_job_request(Event.from_json(event.to_json()))
    assert request.id == event.id
    assert request.kind == 5051
    assert request.requester == USER.public_key.hex()
    assert request.provider == PROVIDER.public_key.hex()
    assert request.tee == "sev-snp"
    assert request.nonce == NONCE.hex()
    assert request.params == (("model", "gemma-3-270m"), ("mode", "oneshot"))
    assert request.model == "gemma-3-270m"
    assert request.param("mode") == "oneshot"
    assert request.param("absent") is None
    assert request.session == SESSION.public_key.hex()
    assert request.reply_to == SESSION.public_key.hex()
    assert request.result_to is None
    assert request.result_key == SESSION.public_key.hex()  # the result goes to S by default
    assert request.relays == ("wss://a.example", "ws://127.0.0.1:7777")
    assert request.expiration == T + 600
    assert request.output == "text/plain"
    assert request.bid_msat == 21000
    assert request.inputs == (JobInput("https://example.com/doc", InputType.URL),)


def test_request_reply_to_defaults_to_the_requester() -> None:
    request = parse_job_request(_request_event())
    assert request.session is None
    assert request.reply_to == USER.public_key.hex()
    assert request.result_key == USER.public_key.hex()
    assert request.relays == ()
    assert (request.expiration, request.output, request.bid_msat) == (None, None, None)


def test_request_result_to_keeps_the_result_readable_by_the_author() -> None:
    event = _request_event(session=SESSION.public_key, result_to_requester=True)
    assert ["result-to", USER.public_key.hex()] in [list(t) for t in event.tags]
    request = parse_job_request(Event.from_json(event.to_json()))
    assert request.reply_to == SESSION.public_key.hex()  # the channel still talks to S
    assert request.result_to == USER.public_key.hex()
    assert request.result_key == USER.public_key.hex()


@settings(max_examples=50, deadline=None)
@given(
    params=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=5),
    tee=st.sampled_from(list(TeeKind)) | st.text(min_size=1, max_size=20),
    kind=st.integers(5000, 5999),
    expiration=st.none() | st.integers(0, 2**62),
    bid=st.none() | st.integers(0, 2**62),
    nonce=st.binary(min_size=32, max_size=32),
)
def test_request_round_trips(
    params: dict[str, str],
    tee: str,
    kind: int,
    expiration: int | None,
    bid: int | None,
    nonce: bytes,
) -> None:
    event = _request_event(
        params=list(params.items()),
        tee=tee,
        kind=kind,
        expiration=expiration,
        bid_msat=bid,
        nonce=nonce,
    )
    request = parse_job_request(event)
    assert dict(request.params) == params
    assert (request.tee, request.kind, request.expiration, request.bid_msat) == (
        tee,
        kind,
        expiration,
        bid,
    )
    assert request.nonce == nonce.hex()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.remove(t[0]), "exactly one 'p' tag \\(provider\\), found 0"),
        (lambda t: t.append(["p", USER.public_key.hex()]), "found 2"),
        (lambda t: t.__setitem__(0, ["p", "zz" * 32]), "not a valid public key"),
        (lambda t: t.remove(t[1]), "missing 'tee' tag"),
        (lambda t: t.append(["tee", "simulated"]), "more than one 'tee' tag"),
        (lambda t: t.__setitem__(1, ["tee", ""]), "'tee' tag is empty"),
        (lambda t: t.remove(t[2]), "exactly one cdvm 'nonce' tag, found 0"),
        (lambda t: t.append(["nonce", "ab" * 32]), "exactly one cdvm 'nonce' tag, found 2"),
        (lambda t: t.__setitem__(2, ["nonce", "AB" * 32]), "64 lowercase hex"),
        (lambda t: t.__setitem__(2, ["nonce", "ab" * 31]), "64 lowercase hex"),
        (lambda t: t.__setitem__(2, ["nonce", "ab" * 32, "1", "2"]), "64 lowercase hex"),
        (lambda t: t.append(["param", "model", "other"]), "given twice"),
        (lambda t: t.append(["param", "x"]), "\\['param', name, value\\]"),
        (lambda t: t.append(["param", "", "v"]), "empty name"),
        (lambda t: t.append(["encrypted"]), "'encrypted' params"),
        (lambda t: t.append(["i", "what is 2+2", "text"]), "no inline 'i' text"),
        (lambda t: t.append(["i", "x", "carrier-pigeon"]), "unknown input type"),
        (lambda t: t.append(["i", "x"]), "'i' tag must be"),
        (lambda t: t.append(["session", "00" * 32]), "'session' tag is not a valid public key"),
        (lambda t: t.append(["session", USER.public_key.hex(), "x"]), "'session' tag must have"),
        (lambda t: t.append(["result-to", SESSION.public_key.hex()]), "must name the request's"),
        (lambda t: t.append(["result-to", "00" * 32]), "'result-to' tag is not a valid public"),
        (lambda t: t.append(["result-to", USER.public_key.hex(), "x"]), "'result-to' tag must"),
        (
            lambda t: t.extend([["result-to", USER.public_key.hex()]] * 2),
            "more than one 'result-to'",
        ),
        (lambda t: t.append(["relays", "https://x"]), "ws:// or wss://"),
        (lambda t: t.extend([["relays", "wss://a"], ["relays", "wss://b"]]), "more than one"),
        (lambda t: t.append(["expiration", "-1"]), "'expiration' must be"),
        (lambda t: t.append(["expiration", "012"]), "'expiration' must be"),
        (lambda t: t.append(["bid", "1.5"]), "'bid' must be"),
        (lambda t: t.extend([["output", "a"], ["output", "b"]]), "more than one 'output'"),
    ],
)
def test_request_refusals(mutate: Any, message: str) -> None:
    tags = _base_tags()
    mutate(tags)
    with pytest.raises(CodecError, match=message):
        parse_job_request(_signed(USER, 5050, tags))


def test_request_refuses_content() -> None:
    with pytest.raises(CodecError, match="content must be empty"):
        parse_job_request(_signed(USER, 5050, _base_tags(), "BE2Y4xvS6HIY7TozIgbEl3sAHkdZoXyL"))


@pytest.mark.parametrize("kind", [4999, 6000, 7000, 1])
def test_request_refuses_other_kinds(kind: int) -> None:
    with pytest.raises(CodecError, match="not a job request"):
        parse_job_request(_signed(USER, kind, _base_tags()))


def test_request_ignores_unknown_tags() -> None:
    tags = [*_base_tags(), ["t", "ai"], ["alt", "a cdvm job"], ["client", "cdvm"]]
    assert parse_job_request(_signed(USER, 5050, tags)).model == "m"


def test_request_builder_refuses_what_the_parser_refuses() -> None:
    with pytest.raises(CodecError, match="given twice"):
        _request_event(params=[("model", "a"), ("model", "b")])
    with pytest.raises(CodecError, match="no inline 'i' text"):
        _request_event(inputs=[JobInput("secret prompt", InputType.TEXT)])
    with pytest.raises(CodecError, match="32 bytes"):
        _request_event(nonce=b"\x00" * 16)
    with pytest.raises(CodecError, match="outside 5000-5999"):
        _request_event(kind=6050)


def test_request_input_tag_shapes() -> None:
    full = JobInput("ab" * 32, InputType.EVENT, "wss://r", "source")
    bare = JobInput("ab" * 32, InputType.JOB)
    marked = JobInput("https://x", InputType.URL, marker="m")
    assert full.to_tag() == ("i", "ab" * 32, "event", "wss://r", "source")
    assert bare.to_tag() == ("i", "ab" * 32, "job")
    assert marked.to_tag() == ("i", "https://x", "url", "", "m")
    request = parse_job_request(_request_event(inputs=[full, bare, marked]))
    assert request.inputs == (full, bare, marked)


# --- job result --------------------------------------------------------------------------------


def _result_event(request_event: Event | None = None, **overrides: Any) -> Event:
    request = parse_job_request(request_event or _request_event())
    args: dict[str, Any] = {
        "author": CONTAINER.public_key,
        "ciphertext": "AgAAAA==",
        "created_at": T + 5,
    }
    args.update(overrides)
    return build_job_result(request, **args).sign(CONTAINER, aux_rand=AUX)


def test_result_round_trip() -> None:
    request_event = _request_event(kind=5050)
    event = _result_event(request_event, amount_msat=1000)
    assert event.kind == 6050
    assert event.first_tag("encrypted") == ("encrypted",)
    assert event.tag_values("i") == []
    result = parse_job_result(Event.from_json(event.to_json()))
    assert result.request_id == request_event.id
    assert result.request.event == request_event
    assert result.requester == USER.public_key.hex()
    assert result.content == "AgAAAA=="
    assert result.amount_msat == 1000
    assert json.loads(event.first_tag("request")[1]) == request_event.to_dict()


def _result_tags(request_event: Event) -> list[list[str]]:
    return [
        ["request", request_event.to_json()],
        ["e", request_event.id],
        ["p", USER.public_key.hex()],
        ["encrypted"],
    ]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t, r: t.remove(["encrypted"]), "must carry the 'encrypted' tag"),
        (lambda t, r: t.append(["i", "prompt", "text"]), "clear 'i' tags"),
        (lambda t, r: t.__setitem__(1, ["e", "00" * 32]), "not the job named by the 'e' tag"),
        (lambda t, r: t.__setitem__(2, ["p", SESSION.public_key.hex()]), "not the author"),
        (lambda t, r: t.__setitem__(0, ["request", "{}"]), "embedded request does not parse"),
        (lambda t, r: t.remove(t[0]), "missing 'request' tag"),
        (lambda t, r: t.remove(t[1]), "exactly one 'e' tag, found 0"),
        (lambda t, r: t.append(["amount", "x"]), "'amount' must be"),
    ],
)
def test_result_refusals(mutate: Any, message: str) -> None:
    request_event = _request_event()
    tags = _result_tags(request_event)
    mutate(tags, request_event)
    with pytest.raises(CodecError, match=message):
        parse_job_result(_signed(CONTAINER, 6050, tags, "AgAAAA=="))


def test_result_refuses_a_kind_that_does_not_answer_the_request() -> None:
    request_event = _request_event(kind=5050)
    with pytest.raises(CodecError, match="does not answer request kind 5050"):
        parse_job_result(_signed(CONTAINER, 6051, _result_tags(request_event), "AgAAAA=="))


def test_result_refuses_a_tampered_embedded_request() -> None:
    request_event = _request_event()
    body = request_event.to_dict()
    body["tags"][1] = ["tee", "simulated"]
    tags = _result_tags(request_event)
    tags[0] = ["request", json.dumps(body)]
    with pytest.raises(CodecError, match="embedded request does not parse"):
        parse_job_result(_signed(CONTAINER, 6050, tags, "AgAAAA=="))


def test_result_refuses_empty_content() -> None:
    with pytest.raises(CodecError, match="content is empty"):
        parse_job_result(_signed(CONTAINER, 6050, _result_tags(_request_event()), ""))
    with pytest.raises(CodecError, match="content is empty"):
        _result_event(ciphertext="")


# --- job feedback ------------------------------------------------------------------------------


def _feedback(**overrides: Any) -> Event:
    args: dict[str, Any] = {
        "author": PROVIDER.public_key,
        "request_id": "ab" * 32,
        "requester": USER.public_key,
        "status": FeedbackStatus.PROCESSING,
        "created_at": T,
    }
    args.update(overrides)
    return build_job_feedback(**args).sign(PROVIDER, aux_rand=AUX)


@pytest.mark.parametrize("status", [s for s in FeedbackStatus if s is not FeedbackStatus.ERROR])
def test_feedback_round_trip_per_status(status: FeedbackStatus) -> None:
    feedback = parse_job_feedback(_feedback(status=status, extra="note", content="hi"))
    assert (feedback.status, feedback.reason, feedback.extra) == (status, None, "note")
    assert feedback.request_id == "ab" * 32
    assert feedback.requester == USER.public_key.hex()
    assert feedback.provider == PROVIDER.public_key.hex()
    assert feedback.content == "hi"


@pytest.mark.parametrize("reason", list(ErrorReason))
def test_feedback_error_carries_a_machine_readable_reason(reason: ErrorReason) -> None:
    event = _feedback(status=FeedbackStatus.ERROR, reason=reason, content="human text")
    assert event.first_tag("status") == ("status", "error", reason.value)
    feedback = parse_job_feedback(event)
    assert (feedback.status, feedback.reason) == (FeedbackStatus.ERROR, reason)


def test_feedback_container_and_destroyed() -> None:
    processing = parse_job_feedback(_feedback(container=CONTAINER.public_key))
    assert processing.container == CONTAINER.public_key.hex()
    assert not processing.destroyed
    done = parse_job_feedback(
        _feedback(
            status=FeedbackStatus.SUCCESS,
            container=CONTAINER.public_key,
            destroyed=True,
            amount_msat=5,
        )
    )
    assert done.destroyed
    assert done.amount_msat == 5
    assert ("destroyed", "true") in done.event.tags


def test_feedback_builder_refusals() -> None:
    with pytest.raises(CodecError, match="reason goes with"):
        _feedback(status=FeedbackStatus.ERROR)
    with pytest.raises(CodecError, match="reason goes with"):
        _feedback(reason=ErrorReason.CAPACITY)
    with pytest.raises(CodecError, match="in place of extra text"):
        _feedback(status=FeedbackStatus.ERROR, reason=ErrorReason.TIMEOUT, extra="x")
    with pytest.raises(CodecError, match="status must be success or error"):
        _feedback(destroyed=True)


def _feedback_tags() -> list[list[str]]:
    return [["status", "processing"], ["e", "ab" * 32], ["p", USER.public_key.hex()]]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.remove(t[0]), "exactly one 'status' tag, found 0"),
        (lambda t: t.append(["status", "success"]), "exactly one 'status' tag, found 2"),
        (lambda t: t.__setitem__(0, ["status", "done"]), "unknown feedback status"),
        (lambda t: t.__setitem__(0, ["status", "error"]), "must name a known reason"),
        (lambda t: t.__setitem__(0, ["status", "error", "oops"]), "must name a known reason"),
        (lambda t: t.__setitem__(0, ["status", "success", "a", "b"]), "'status' tag must be"),
        (lambda t: t.__setitem__(1, ["e", "AB" * 32]), "64 lowercase hex"),
        (lambda t: t.remove(t[2]), "exactly one 'p' tag \\(requester\\), found 0"),
        (lambda t: t.append(["container", "nothex"]), "'container' tag is not a valid"),
        (lambda t: t.append(["destroyed", "yes"]), "\\['destroyed', 'true'\\]"),
        (lambda t: t.append(["destroyed", "true"]), "status must be success or error"),
        (lambda t: t.append(["amount"]), "'amount' tag must be"),
    ],
)
def test_feedback_refusals(mutate: Any, message: str) -> None:
    tags = _feedback_tags()
    mutate(tags)
    with pytest.raises(CodecError, match=message):
        parse_job_feedback(_signed(PROVIDER, 7000, tags))


def test_feedback_refuses_another_kind() -> None:
    with pytest.raises(CodecError, match="not job feedback"):
        parse_job_feedback(_signed(PROVIDER, 7001, _feedback_tags()))


# --- garbage -----------------------------------------------------------------------------------

_NAMES = st.sampled_from(
    [
        "p",
        "e",
        "tee",
        "nonce",
        "param",
        "session",
        "result-to",
        "relays",
        "expiration",
        "output",
        "bid",
        "i",
        "encrypted",
        "request",
        "status",
        "container",
        "destroyed",
        "amount",
        "x",
    ]
)
_VALUES = st.one_of(
    st.text(max_size=12),
    st.just(USER.public_key.hex()),
    st.just("ab" * 32),
    st.sampled_from(["error", "success", "processing", "timeout", "true", "text", "url", "1"]),
)
_GARBAGE_TAGS = st.lists(
    st.tuples(_NAMES, st.lists(_VALUES, max_size=4)).map(lambda t: [t[0], *t[1]]),
    max_size=10,
)


@settings(max_examples=150, deadline=None)
@given(tags=_GARBAGE_TAGS, content=st.text(max_size=20), kind=st.sampled_from([5050, 6050, 7000]))
def test_garbage_tags_raise_only_our_errors(tags: list[list[str]], content: str, kind: int) -> None:
    event = _signed(USER, kind, tags, content)
    for parse in (parse_job_request, parse_job_result, parse_job_feedback):
        with contextlib.suppress(NostrError):  # anything else fails the test
            parse(event)
