"""NIP-01 events against an independent implementation (rust-nostr's Python binding).

Events we sign verify there; events it signs verify here, field for field.
"""

from __future__ import annotations

import json

import nostr_sdk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.nostr.errors import EventError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey

contents = st.text(max_size=300)
tags = st.lists(st.lists(st.text(min_size=1, max_size=16), min_size=2, max_size=4), max_size=4)


@settings(max_examples=60, deadline=None)
@given(content=contents, tags=tags, kind=st.integers(0, 65535), seed=st.integers(1, 2**200))
def test_ours_verify_in_nostr_sdk(
    content: str, tags: list[list[str]], kind: int, seed: int
) -> None:
    key = SecretKey(seed.to_bytes(32, "big"))
    ours = UnsignedEvent(key.public_key.hex(), 1_700_000_000, kind, tags, content).sign(
        key, aux_rand=seed.to_bytes(32, "big")
    )
    theirs = nostr_sdk.Event.from_json(ours.to_json())
    assert theirs.verify()
    assert theirs.id().to_hex() == ours.id
    assert theirs.author().to_hex() == ours.pubkey
    assert theirs.content() == content
    assert [t.to_vec() for t in theirs.tags()] == tags


@settings(max_examples=60, deadline=None)
@given(content=contents, tags=tags, kind=st.integers(0, 65535))
def test_theirs_verify_here(content: str, tags: list[list[str]], kind: int) -> None:
    keys = nostr_sdk.Keys.generate()
    builder = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(kind), content)
        .tags([nostr_sdk.Tag.parse(t) for t in tags])
        .custom_created_at(nostr_sdk.Timestamp.from_secs(1_700_000_000))
    )
    theirs = builder.finalize(keys)
    ours = Event.from_json(theirs.as_json())
    assert ours.id == theirs.id().to_hex()
    assert ours.pubkey == keys.public_key().to_hex()
    assert ours.content == content
    assert [list(t) for t in ours.tags] == [t.to_vec() for t in theirs.tags()]
    assert json.loads(ours.to_json()) == json.loads(theirs.as_json())


def test_tampered_theirs_is_refused_here() -> None:
    keys = nostr_sdk.Keys.generate()
    theirs = nostr_sdk.EventBuilder(nostr_sdk.Kind(1), "pay 1 sat").finalize(keys)
    data = json.loads(theirs.as_json())
    data["content"] = "pay 9 sat"
    with pytest.raises(EventError, match="does not match"):
        Event.from_dict(data)
