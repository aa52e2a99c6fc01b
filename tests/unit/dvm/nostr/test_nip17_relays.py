"""NIP-17 kind 10050 (DM relay list): build, parse, refusals; garbage raises only CodecError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvm.nostr.errors import CodecError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip17_relays import (
    MAX_RELAYS,
    MAX_URL_CHARS,
    RELAY_LIST_KIND,
    build_relay_list,
    parse_relay_list,
)

KEY = SecretKey(b"\x33" * 32)


def signed(unsigned: UnsignedEvent) -> Event:
    return unsigned.sign(KEY, aux_rand=b"\x00" * 32)


def test_known_answer_shape_and_round_trip() -> None:
    unsigned = build_relay_list(
        KEY.public_key, ["wss://a.example", "wss://a.example", "ws://b"], created_at=5
    )
    assert unsigned.kind == RELAY_LIST_KIND == 10050
    assert unsigned.content == ""
    assert unsigned.tags == (("relay", "wss://a.example"), ("relay", "ws://b"))  # no duplicate
    assert parse_relay_list(signed(unsigned)) == ("wss://a.example", "ws://b")


def test_expiration_tag_is_nip40_and_ignored_by_the_parser() -> None:
    unsigned = build_relay_list(KEY.public_key, ["wss://a"], created_at=5, expiration=99)
    assert unsigned.tags[-1] == ("expiration", "99")
    assert parse_relay_list(signed(unsigned)) == ("wss://a",)


@pytest.mark.parametrize(
    "relays",
    [[], ["https://a"], ["wss://" + "a" * MAX_URL_CHARS], [" wss://a"], ["wss://a\n"]],
)
def test_build_refuses(relays: list[str]) -> None:
    with pytest.raises(CodecError):
        build_relay_list(KEY.public_key, relays, created_at=0)


def test_build_refuses_too_many() -> None:
    with pytest.raises(CodecError):
        build_relay_list(
            KEY.public_key, [f"wss://r{i}" for i in range(MAX_RELAYS + 1)], created_at=0
        )


@pytest.mark.parametrize(
    ("kind", "tags"),
    [
        (10002, (("relay", "wss://a"),)),  # another kind
        (10050, ()),  # no relay
        (10050, (("relay",),)),  # no value
        (10050, (("relay", "http://a"),)),  # not a websocket URL
        (10050, tuple(("relay", f"wss://r{i}") for i in range(MAX_RELAYS + 1))),
    ],
)
def test_parse_refuses(kind: int, tags: tuple[tuple[str, ...], ...]) -> None:
    event = signed(UnsignedEvent(KEY.public_key.hex(), 1, kind, tags, ""))
    with pytest.raises(CodecError):
        parse_relay_list(event)


@given(st.lists(st.lists(st.text(max_size=40), min_size=1, max_size=4), max_size=8))
def test_garbage_tags_raise_only_codec_errors(tags: list[list[str]]) -> None:
    event = signed(
        UnsignedEvent(KEY.public_key.hex(), 1, RELAY_LIST_KIND, tuple(map(tuple, tags)), "")
    )
    with contextlib.suppress(CodecError):
        urls = parse_relay_list(event)
        assert all(url.startswith(("ws://", "wss://")) for url in urls)
