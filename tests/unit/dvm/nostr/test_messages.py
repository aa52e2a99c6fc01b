from __future__ import annotations

import contextlib
import json
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvm.nostr.errors import MessageError
from dvm.nostr.event import UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.messages import (
    ClientAuth,
    ClientClose,
    ClientCount,
    ClientEvent,
    ClientReq,
    Reason,
    ReasonPrefix,
    RelayAuth,
    RelayClosed,
    RelayCount,
    RelayEose,
    RelayEvent,
    RelayNotice,
    RelayOk,
    parse_client_message,
    parse_relay_message,
)
from tests.strategies import hostile_json, hostile_value, json_frames

KEY = SecretKey(bytes.fromhex("11" * 32))
EVENT = UnsignedEvent(KEY.public_key.hex(), 1_700_000_000, 1, (("t", "x"),), "hi").sign(
    KEY, aux_rand=bytes(32)
)


@pytest.mark.parametrize(
    ("text", "prefix", "message"),
    [
        ("invalid: event too large", ReasonPrefix.INVALID, "event too large"),
        (
            "auth-required: we only serve members",
            ReasonPrefix.AUTH_REQUIRED,
            "we only serve members",
        ),
        ("rate-limited: slow down", ReasonPrefix.RATE_LIMITED, "slow down"),
        ("duplicate:", ReasonPrefix.DUPLICATE, ""),
        ("rejected: too many subscriptions", None, "rejected: too many subscriptions"),
        ("plain words", None, "plain words"),
        ("", None, ""),
    ],
)
def test_reason_prefix(text: str, prefix: ReasonPrefix | None, message: str) -> None:
    reason = Reason.parse(text)
    assert reason.prefix is prefix
    assert reason.message == message
    assert reason.text == text


def test_every_prefix_of_nip01_is_typed() -> None:
    names = {"duplicate", "pow", "blocked", "rate-limited", "invalid", "restricted"}
    names |= {"auth-required", "error", "mute", "unsupported"}
    assert {p.value for p in ReasonPrefix} == names


RELAY_MESSAGES = [
    RelayEvent("sub", EVENT),
    RelayOk(EVENT.id, False, Reason.parse("blocked: no")),
    RelayOk("", False, Reason.parse("restricted: permission denied")),
    RelayEose("sub"),
    RelayClosed("sub", Reason.parse("auth-required: log in")),
    RelayNotice("hello"),
    RelayAuth("challenge-123"),
    RelayCount("sub", 42),
]


@pytest.mark.parametrize("message", RELAY_MESSAGES, ids=lambda m: type(m).__name__)
def test_relay_message_round_trip(message: object) -> None:
    assert parse_relay_message(message.to_json()) == message  # type: ignore[attr-defined]


CLIENT_MESSAGES = [
    ClientEvent(EVENT),
    ClientReq("s1", (Filter(kinds=(1,), since=5), Filter(tags=(Filter.tag("p", ["a"]),)))),
    ClientClose("s1"),
    ClientAuth(EVENT),
    ClientCount("c", (Filter(authors=(EVENT.pubkey,)),)),
]


@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=lambda m: type(m).__name__)
def test_client_message_round_trip(message: object) -> None:
    assert parse_client_message(message.to_json()) == message  # type: ignore[attr-defined]


def test_received_event_is_verified() -> None:
    tampered = EVENT.to_dict() | {"content": "changed"}
    with pytest.raises(MessageError, match="does not verify"):
        parse_relay_message(json.dumps(["EVENT", "sub", tampered]))
    bad_sig = EVENT.to_dict() | {"sig": secrets.token_hex(64)}
    with pytest.raises(MessageError):
        parse_relay_message(json.dumps(["EVENT", "sub", bad_sig]))


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "[]",
        "{}",
        '["OK"]',
        '["OK", "abc", true, ""]',
        f'["OK", "{"a" * 64}", "true", ""]',
        '["EOSE", 1]',
        '["NOTICE"]',
        '["WHAT", 1]',
        '["COUNT", "s", {"count": -1}]',
        '["CLOSED", "s"]',
        "[1, 2]",
    ],
)
def test_malformed_relay_frames(frame: str) -> None:
    with pytest.raises(MessageError):
        parse_relay_message(frame)


@pytest.mark.parametrize(
    "frame",
    ['["REQ", "s"]', '["REQ", "s", 1]', '["REQ", "s", {"kinds": ["1"]}]', '["CLOSE"]', '["EVENT"]'],
)
def test_malformed_client_frames(frame: str) -> None:
    with pytest.raises(MessageError):
        parse_client_message(frame)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.builds(
        lambda head, rest: json.dumps([head, *rest]),
        st.sampled_from(
            ["EVENT", "OK", "EOSE", "CLOSED", "NOTICE", "AUTH", "COUNT", "REQ", "CLOSE"]
        ),
        st.lists(json_values, max_size=4),
    ),
)


@given(frames)
def test_garbage_relay_frames_raise_only_message_error(frame: str | bytes) -> None:
    with contextlib.suppress(MessageError):
        parse_relay_message(frame)


@given(frames)
def test_garbage_client_frames_raise_only_message_error(frame: str | bytes) -> None:
    with contextlib.suppress(MessageError):
        parse_client_message(frame)


# --- issue 10: hostile JSON text, and hostile events inside EVENT frames --------------------

_TYPES = ["EVENT", "OK", "EOSE", "CLOSED", "NOTICE", "AUTH", "COUNT", "REQ", "CLOSE"]


def _event_frame(field: str, value: str) -> str:
    body = {k: v for k, v in EVENT.to_dict().items() if k != field}
    return '["EVENT","s",' + json.dumps(body, separators=(",", ":"))[:-1] + f',"{field}":{value}}}]'


@pytest.mark.parametrize(
    "frame",
    [
        _event_frame("content", '"\\ud800"'),
        _event_frame("tags", '[["t","\\udfff"]]'),
        _event_frame("created_at", "9" * 5000),
        _event_frame("kind", "NaN"),
        _event_frame("tags", "[" * 20000 + "]" * 20000),
        '["NOTICE","\\ud800"]',
        '["OK","' + "ab" * 32 + '",true,"\\ud800"]',
        '["COUNT","s",{"count":' + "9" * 5000 + "}]",
        '["COUNT","s",{"count":1e400}]',
        '["EOSE","s","\\udc00"]',
        b'["NOTICE","\xff"]',
        '["NOTICE","a","NOTICE","b"]',
        '{"NOTICE":1,"NOTICE":2}',
    ],
)
def test_hostile_relay_frames_raise_message_error_without_quoting_them(frame: str | bytes) -> None:
    with pytest.raises(MessageError) as caught:
        parse_relay_message(frame)
    assert "\\u" not in str(caught.value)
    assert "99999" not in str(caught.value)


@given(st.one_of(hostile_json(), json_frames(_TYPES)))
def test_hostile_frames_raise_only_message_error(frame: str | bytes) -> None:
    with contextlib.suppress(MessageError):
        parse_relay_message(frame)
    with contextlib.suppress(MessageError):
        parse_client_message(frame)


@given(
    st.sampled_from(["content", "tags", "created_at", "kind", "pubkey", "id", "sig"]), hostile_value
)
def test_hostile_event_fields_in_frames_raise_only_message_error(field: str, value: str) -> None:
    frame = _event_frame(field, value)
    with contextlib.suppress(MessageError):
        parse_relay_message(frame)
    with contextlib.suppress(MessageError):
        parse_client_message('["EVENT",' + frame[len('["EVENT","s",') :])
