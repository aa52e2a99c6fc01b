"""What the container says to a standard NIP-17 peer, and its kind-10050 DM relay list."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from container.plain import (
    EMPTY_ANSWER_TEXT,
    ENDED_TEXT,
    READY_TEXT,
    plain_messages,
    sign_relay_list,
)
from dvm.cdvm.channel import MessageKind, build_ready, parse_channel_rumor
from dvm.nostr.errors import CodecError
from dvm.nostr.event import Event
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip17 import parse_chat_rumor
from dvm.nostr.nip17_relays import RELAY_LIST_KIND, parse_relay_list

_counter = itertools.count(1)
CONTAINER = SecretKey(hashlib.sha256(b"container").digest())
PEER = SecretKey(hashlib.sha256(b"peer").digest()).public_key
INPUT = "ab" * 32


def det_bytes(size: int) -> bytes:
    return hashlib.sha512(next(_counter).to_bytes(8, "big")).digest()[:size]


def test_an_answer_is_one_readable_kind_14_reply_to_its_input() -> None:
    (rumor,) = plain_messages(
        CONTAINER.public_key, PEER, "the answer", created_at=7, reply_to=INPUT
    )
    assert rumor.kind == 14
    assert rumor.pubkey == CONTAINER.public_key.hex()
    assert rumor.created_at == 7
    assert rumor.tags == (("p", PEER.hex()), ("e", INPUT))
    assert rumor.content == "the answer"
    message = parse_chat_rumor(rumor)  # a valid NIP-17 message: a reply to the input
    assert message.reply_to == INPUT
    assert message.receivers == (PEER.hex(),)


def test_a_message_without_reply_carries_only_the_p_tag() -> None:
    (rumor,) = plain_messages(CONTAINER.public_key, PEER, ENDED_TEXT, created_at=7)
    assert rumor.tags == (("p", PEER.hex()),)
    assert "destroyed" in rumor.content


def test_an_empty_answer_is_never_an_empty_message() -> None:
    (rumor,) = plain_messages(CONTAINER.public_key, PEER, "", created_at=7)
    assert rumor.content == EMPTY_ANSWER_TEXT
    assert rumor.content.strip()


def test_an_answer_over_the_budget_is_consecutive_plain_messages_without_chunk_tags() -> None:
    text = "x" * 250
    rumors = plain_messages(CONTAINER.public_key, PEER, text, created_at=7, budget_bytes=100)
    assert len(rumors) == 3
    assert "".join(r.content for r in rumors) == text
    assert all(r.tags == (("p", PEER.hex()),) for r in rumors)


def test_the_ready_text_is_readable_and_the_cdvm_reader_ignores_it() -> None:
    rumor = build_ready(CONTAINER.public_key, PEER, INPUT, created_at=1, text=READY_TEXT)
    assert rumor.content == READY_TEXT
    assert "/end" in READY_TEXT
    # The cdvm parser still reads it as ready (its content is not part of the protocol).
    parsed = parse_channel_rumor(rumor, job=INPUT, recipient=PEER)
    assert parsed.kind is MessageKind.READY


def test_the_relay_list_is_a_signed_kind_10050_naming_the_relays_and_expiring() -> None:
    relays = ("wss://relay.example", "ws://127.0.0.1:7000")
    event = sign_relay_list(CONTAINER, relays, expiration=1000, now=10, random_bytes=det_bytes)
    assert event.kind == RELAY_LIST_KIND
    assert event.pubkey == CONTAINER.public_key.hex()
    assert event.created_at == 10
    assert event.content == ""
    assert event.tags == (
        ("relay", "wss://relay.example"),
        ("relay", "ws://127.0.0.1:7000"),
        ("expiration", "1000"),
    )
    assert parse_relay_list(Event.from_json(event.to_json())) == relays  # id and sig check


def test_a_spec_relay_that_is_not_a_websocket_url_makes_no_relay_list() -> None:
    with pytest.raises(CodecError):
        sign_relay_list(CONTAINER, ("http://x",), expiration=1, now=0, random_bytes=det_bytes)
