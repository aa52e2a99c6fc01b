"""NIP-09 deletion requests: events and addresses (the 31990 announcement)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.nostr.errors import CodecError, NostrError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip09 import build_deletion, parse_address, parse_deletion
from dvm.nostr.nip89 import handler_address

NODE = SecretKey(b"\x05" * 32)
AUX = bytes(32)
T = 1_700_000_000


def test_delete_the_announcement_by_address() -> None:
    address = handler_address(NODE.public_key.hex(), "cdvm-node-1")
    event = build_deletion(
        author_hex=NODE.public_key.hex(),
        created_at=T,
        addresses=[address],
        kinds=[31990],
        reason="shutting down",
    ).sign(NODE, aux_rand=AUX)
    assert event.kind == 5
    assert event.tags == (("a", address), ("k", "31990"))
    parsed = parse_deletion(Event.from_json(event.to_json()))
    assert (parsed.event_ids, parsed.addresses, parsed.kinds) == ((), (address,), (31990,))
    assert parsed.reason == "shutting down"


def test_delete_events_by_id() -> None:
    ids = ["ab" * 32, "cd" * 32]
    event = build_deletion(
        author_hex=NODE.public_key.hex(), created_at=T, event_ids=ids, kinds=[5050]
    ).sign(NODE, aux_rand=AUX)
    parsed = parse_deletion(event)
    assert parsed.event_ids == tuple(ids)
    assert parsed.kinds == (5050,)


def test_parse_address() -> None:
    assert parse_address(f"31990:{'ab' * 32}:d:with:colons") == (31990, "ab" * 32, "d:with:colons")
    assert parse_address(f"30000:{'ab' * 32}:") == (30000, "ab" * 32, "")


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("31990:" + "ab" * 32, "must be '<kind>:<pubkey>:<d>'"),
        ("x:" + "ab" * 32 + ":d", "kind must be"),
        ("70000:" + "ab" * 32 + ":d", "kind must be"),
        ("31990:" + "AB" * 32 + ":d", "64 lowercase hex"),
    ],
)
def test_bad_addresses(address: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        parse_address(address)


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ([], "at least one event or address"),
        ([["k", "1"]], "at least one event or address"),
        ([["e"]], "'e' tag has no value"),
        ([["e", "xyz"]], "64-hex event id"),
        ([["a", "nope"]], "must be '<kind>:<pubkey>:<d>'"),
        ([["e", "ab" * 32], ["k", "-1"]], "'k' tag must be"),
    ],
)
def test_refusals(tags: list[list[str]], message: str) -> None:
    event = UnsignedEvent(NODE.public_key.hex(), T, 5, tags, "").sign(NODE, aux_rand=AUX)
    with pytest.raises(CodecError, match=message):
        parse_deletion(event)


def test_refuses_another_kind_and_empty_builds() -> None:
    event = UnsignedEvent(NODE.public_key.hex(), T, 1, [["e", "ab" * 32]], "").sign(
        NODE, aux_rand=AUX
    )
    with pytest.raises(CodecError, match="not a deletion request"):
        parse_deletion(event)
    with pytest.raises(CodecError, match="at least one"):
        build_deletion(author_hex=NODE.public_key.hex(), created_at=T)


@settings(max_examples=100, deadline=None)
@given(
    tags=st.lists(
        st.lists(
            st.sampled_from(["e", "a", "k", "ab" * 32, "1", ":", "x"]), min_size=1, max_size=3
        ),
        max_size=5,
    )
)
def test_garbage_raises_only_our_errors(tags: list[list[str]]) -> None:
    event = UnsignedEvent(NODE.public_key.hex(), T, 5, tags, "").sign(NODE, aux_rand=AUX)
    with contextlib.suppress(NostrError):  # anything else fails the test
        parse_deletion(event)
