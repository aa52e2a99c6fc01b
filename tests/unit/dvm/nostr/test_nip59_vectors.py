"""NIP-59 known answer: the worked example of the NIP unwraps end to end with our code.

Vector: tests/vectors/nip59.example.json (nostr-protocol/nips 59.md, "An Example").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dvm.nostr import nip44
from dvm.nostr.errors import UnwrapError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip59 import unwrap

VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).parents[3] / "vectors" / "nip59.example.json").read_text("utf-8")
)
AUTHOR = SecretKey.from_hex(VECTOR["author_private_key"])
RECIPIENT = SecretKey.from_hex(VECTOR["recipient_private_key"])
WRAPPER = SecretKey.from_hex(VECTOR["ephemeral_wrapper_private_key"])


def test_the_example_unwraps_to_its_rumor() -> None:
    wrap = Event.from_dict(VECTOR["gift_wrap"])
    opened = unwrap(wrap, RECIPIENT, expected_sender=AUTHOR.public_key)
    assert opened.rumor == UnsignedEvent.from_dict(VECTOR["rumor"])
    assert opened.rumor.id == VECTOR["rumor"]["id"]
    assert opened.rumor.content == "Are you going to the party tonight?"
    assert opened.sender == AUTHOR.public_key
    assert opened.seal_id == VECTOR["seal"]["id"]
    assert opened.wrap_id == VECTOR["gift_wrap"]["id"]
    assert opened.wrap_kind == 1059


def test_the_example_keys_are_the_example_pubkeys() -> None:
    assert AUTHOR.public_key.hex() == VECTOR["seal"]["pubkey"] == VECTOR["rumor"]["pubkey"]
    assert WRAPPER.public_key.hex() == VECTOR["gift_wrap"]["pubkey"]
    assert RECIPIENT.public_key.hex() == VECTOR["gift_wrap"]["tags"][0][1]


def test_each_layer_decrypts_to_the_next() -> None:
    wrap_key = nip44.get_conversation_key(RECIPIENT, WRAPPER.public_key)
    seal = Event.from_json(nip44.decrypt(VECTOR["gift_wrap"]["content"], wrap_key))
    assert seal.to_dict() == VECTOR["seal"]
    seal_key = nip44.get_conversation_key(RECIPIENT, AUTHOR.public_key)
    rumor = json.loads(nip44.decrypt(seal.content, seal_key))
    assert rumor == VECTOR["rumor"]


def test_the_example_does_not_open_for_another_key() -> None:
    wrap = Event.from_dict(VECTOR["gift_wrap"])
    with pytest.raises(UnwrapError, match="not addressed to this key"):
        unwrap(wrap, AUTHOR)


def test_the_example_refuses_another_expected_sender() -> None:
    wrap = Event.from_dict(VECTOR["gift_wrap"])
    with pytest.raises(UnwrapError, match="not the expected sender"):
        unwrap(wrap, RECIPIENT, expected_sender=WRAPPER.public_key)
