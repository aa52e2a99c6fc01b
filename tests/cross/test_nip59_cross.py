"""NIP-59 / NIP-17 against an independent implementation (rust-nostr's Python binding).

Gift wraps we make unwrap in nostr-sdk; gift wraps (and NIP-17 private messages) nostr-sdk
makes unwrap here, rumor for rumor.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable

import nostr_sdk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.nostr.errors import UnwrapError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip17 import build_chat_rumor, gift_wraps, parse_chat_rumor
from dvm.nostr.nip59 import unwrap, wrap

NOW = 1_700_000_000


def _keys(secret: SecretKey) -> nostr_sdk.Keys:
    return nostr_sdk.Keys.parse(secret.reveal_hex())


def _pk(secret: SecretKey) -> nostr_sdk.PublicKey:
    return nostr_sdk.PublicKey.parse(secret.public_key.hex())


def _secret(seed: int) -> SecretKey:
    return SecretKey(hashlib.sha256(seed.to_bytes(8, "big")).digest())


def _rng(label: str) -> Callable[[int], bytes]:
    counter = iter(range(10**9))

    def random_bytes(size: int) -> bytes:
        n = next(counter)
        out = b""
        while len(out) < size:
            out += hashlib.sha256(f"{label}:{n}:{len(out)}".encode()).digest()
        return out[:size]

    return random_bytes


contents = st.text(min_size=0, max_size=300)
tags = st.lists(st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=3), max_size=3)


@settings(max_examples=30, deadline=None)
@given(content=contents, extra=tags, seed=st.integers(1, 2**32))
def test_ours_unwrap_in_nostr_sdk(content: str, extra: list[list[str]], seed: int) -> None:
    sender, recipient, wrapper = _secret(seed), _secret(seed + 1), _secret(seed + 2)
    rumor = UnsignedEvent(
        sender.public_key.hex(), NOW, 14, [["p", recipient.public_key.hex()], *extra], content
    )
    n = seed.to_bytes(32, "big")
    ours = wrap(
        rumor,
        sender,
        recipient.public_key,
        wrapper=wrapper,
        seal_created_at=NOW - 10,
        wrap_created_at=NOW - 20,
        seal_nonce=n,
        wrap_nonce=bytes(32),
        seal_aux_rand=n,
        wrap_aux_rand=n,
    )
    theirs = nostr_sdk.UnwrappedGift.from_gift_wrap(
        _keys(recipient), nostr_sdk.Event.from_json(ours.to_json())
    )
    assert theirs.sender().to_hex() == sender.public_key.hex()
    their_rumor = theirs.rumor()
    assert their_rumor.id().to_hex() == rumor.id
    assert their_rumor.content() == content
    assert [t.to_vec() for t in their_rumor.tags()] == [list(t) for t in rumor.tags]
    assert json.loads(their_rumor.as_json()) == rumor.to_dict()


@settings(max_examples=30, deadline=None)
@given(content=contents, extra=tags, seed=st.integers(1, 2**32))
def test_theirs_unwrap_here(content: str, extra: list[list[str]], seed: int) -> None:
    sender, recipient = _secret(seed), _secret(seed + 1)
    their_rumor = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(14), content)
        .tags([nostr_sdk.Tag.parse(t) for t in extra])
        .custom_created_at(nostr_sdk.Timestamp.from_secs(NOW))
        .finalize_unsigned(_pk(sender))
        .ensure_id()
    )
    theirs = nostr_sdk.nip59_make_gift_wrap(_keys(sender), _pk(recipient), their_rumor)
    opened = unwrap(Event.from_json(theirs.as_json()), recipient, expected_sender=sender.public_key)
    assert opened.sender == sender.public_key
    assert opened.wrap_kind == 1059
    assert opened.rumor.content == content
    assert opened.rumor.id == their_rumor.id().to_hex()
    assert [list(t) for t in opened.rumor.tags] == extra


def test_their_nip17_private_message_unwraps_here() -> None:
    sender, recipient = _secret(1), _secret(2)
    theirs = nostr_sdk.nip17_make_private_msg(_keys(sender), _pk(recipient), "Hola, que tal? 🦙")
    opened = unwrap(Event.from_json(theirs.as_json()), recipient, expected_sender=sender.public_key)
    message = parse_chat_rumor(opened.rumor)
    assert message.content == "Hola, que tal? 🦙"
    assert message.receivers == (recipient.public_key.hex(),)
    assert message.sender == sender.public_key.hex()


def test_their_wrap_with_an_expiration_tag_unwraps_here() -> None:
    sender, recipient = _secret(3), _secret(4)
    theirs = nostr_sdk.nip17_make_private_msg(
        _keys(sender), _pk(recipient), "bye", datetime.timedelta(days=3)
    )
    event = Event.from_json(theirs.as_json())
    assert event.tag_values("expiration")
    assert unwrap(event, recipient).rumor.content == "bye"


def test_our_nip17_messages_open_in_nostr_sdk() -> None:
    sender, bob, carol = _secret(5), _secret(6), _secret(7)
    rumor = build_chat_rumor(
        sender=sender.public_key,
        receivers=[bob.public_key, carol.public_key],
        content="to both",
        created_at=NOW,
        reply_to="ab" * 32,
    )
    wraps = gift_wraps(
        rumor, sender, [bob.public_key, carol.public_key], random_bytes=_rng("nip17"), now=NOW
    )
    for (target, event), key in zip(wraps, (bob, carol, sender), strict=True):
        assert target == key.public_key
        theirs = nostr_sdk.UnwrappedGift.from_gift_wrap(
            _keys(key), nostr_sdk.Event.from_json(event.to_json())
        )
        assert theirs.rumor().id().to_hex() == rumor.id
        assert theirs.sender().to_hex() == sender.public_key.hex()


def test_our_ephemeral_21059_wrap_is_unknown_to_nostr_sdk() -> None:
    # Why cdvm/1 also accepts and answers in 1059 (DESIGN §3.6): standard NIP-17 stacks such as
    # nostr-sdk only open kind 1059. Our 21059 wrap is otherwise identical and opens here.
    sender, recipient, wrapper = _secret(11), _secret(12), _secret(13)
    rumor = UnsignedEvent(sender.public_key.hex(), NOW, 14, [], "ephemeral")
    ours = wrap(
        rumor,
        sender,
        recipient.public_key,
        wrapper=wrapper,
        seal_created_at=NOW,
        wrap_created_at=NOW,
        seal_nonce=b"\x01" * 32,
        wrap_nonce=b"\x02" * 32,
        seal_aux_rand=bytes(32),
        wrap_aux_rand=bytes(32),
        kind=21059,
    )
    with pytest.raises(nostr_sdk.NostrSdkError, match="not a gift wrap"):
        nostr_sdk.UnwrappedGift.from_gift_wrap(
            _keys(recipient), nostr_sdk.Event.from_json(ours.to_json())
        )
    assert unwrap(ours, recipient).rumor == rumor


def test_a_wrap_of_theirs_for_someone_else_is_refused_here() -> None:
    sender, recipient, other = _secret(8), _secret(9), _secret(10)
    theirs = nostr_sdk.nip17_make_private_msg(_keys(sender), _pk(recipient), "not yours")
    with pytest.raises(UnwrapError, match="not addressed to this key"):
        unwrap(Event.from_json(theirs.as_json()), other)
