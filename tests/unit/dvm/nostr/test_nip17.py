"""NIP-17 kind-14 chat rumors and their gift wraps."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.nostr.errors import CodecError, NostrError
from dvm.nostr.event import UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip17 import build_chat_rumor, gift_wraps, parse_chat_rumor
from dvm.nostr.nip59 import TWO_DAYS_S, unwrap

ALICE = SecretKey(b"\x0a" * 32)
BOB = SecretKey(b"\x0b" * 32)
CAROL = SecretKey(b"\x0c" * 32)
JOB = "ab" * 32
NOW = 1_700_000_000


class _Counter:
    """A deterministic stand-in for secrets.token_bytes: distinct bytes on every call."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, size: int) -> bytes:
        self.calls += 1
        out = b""
        while len(out) < size:
            out += hashlib.sha256(f"{self.calls}:{len(out)}".encode()).digest()
        return out[:size]


def test_build_and_parse() -> None:
    rumor = build_chat_rumor(
        sender=ALICE.public_key,
        receivers=[BOB.public_key, CAROL.public_key],
        content="hello",
        created_at=NOW,
        reply_to=JOB,
        subject="job",
        extra_tags=[("cdvm", "end")],
    )
    assert rumor.kind == 14
    assert rumor.tags == (
        ("p", BOB.public_key.hex()),
        ("p", CAROL.public_key.hex()),
        ("e", JOB),
        ("subject", "job"),
        ("cdvm", "end"),
    )
    message = parse_chat_rumor(rumor)
    assert message.receivers == (BOB.public_key.hex(), CAROL.public_key.hex())
    assert (message.reply_to, message.subject, message.content) == (JOB, "job", "hello")
    assert message.sender == ALICE.public_key.hex()
    assert message.id == rumor.id


def test_relay_hints_in_tags_are_accepted() -> None:
    tags = (("p", BOB.public_key.hex(), "wss://r"), ("e", JOB, "wss://r", "reply"))
    message = parse_chat_rumor(UnsignedEvent(ALICE.public_key.hex(), NOW, 14, tags, "x"))
    assert (message.receivers, message.reply_to) == ((BOB.public_key.hex(),), JOB)


@pytest.mark.parametrize(
    ("kind", "tags", "message"),
    [
        (1, (("p", "ab" * 32),), "kind 1 is not a chat message"),
        (14, (), "at least one receiver"),
        (14, (("p",),), "'p' tag has no value"),
        (14, (("p", "zz"),), "not a valid public key"),
        (14, (("p", "b" * 64), ("p", "b" * 64)), "named twice"),
        (14, (("p", "b" * 64), ("e", JOB), ("e", JOB)), "at most one event"),
        (14, (("p", "b" * 64), ("e", "xyz")), "64-hex event id"),
        (14, (("p", "b" * 64), ("subject", "a"), ("subject", "b")), "at most one"),
        (14, (("p", "b" * 64), ("subject",)), "at most one"),
    ],
)
def test_refusals(kind: int, tags: tuple[tuple[str, ...], ...], message: str) -> None:
    # "b" * 64 is not on the curve; use a real key where the check is not about the key.
    tags = tuple(
        (t[0], BOB.public_key.hex(), *t[2:]) if t[:2] == ("p", "b" * 64) else t for t in tags
    )
    with pytest.raises(CodecError, match=message):
        parse_chat_rumor(UnsignedEvent(ALICE.public_key.hex(), NOW, kind, tags, "x"))


def test_gift_wraps_one_per_receiver_plus_the_sender_copy() -> None:
    rumor = build_chat_rumor(
        sender=ALICE.public_key,
        receivers=[BOB.public_key, CAROL.public_key],
        content="hi all",
        created_at=NOW,
        reply_to=JOB,
    )
    rng = _Counter()
    wraps = gift_wraps(rumor, ALICE, [BOB.public_key, CAROL.public_key], random_bytes=rng, now=NOW)
    assert [target for target, _ in wraps] == [BOB.public_key, CAROL.public_key, ALICE.public_key]
    wrappers = {event.pubkey for _, event in wraps}
    assert len(wrappers) == 3  # a fresh one-time key per wrap
    assert ALICE.public_key.hex() not in wrappers
    for (target, event), key in zip(wraps, (BOB, CAROL, ALICE), strict=True):
        assert event.kind == 1059
        assert event.tags == (("p", target.hex()),)
        assert NOW - TWO_DAYS_S <= event.created_at <= NOW
        opened = unwrap(event, key, expected_sender=ALICE.public_key)
        assert opened.rumor == rumor
        assert parse_chat_rumor(opened.rumor).reply_to == JOB


def test_gift_wraps_without_the_sender_copy_and_ephemeral_kind() -> None:
    rumor = build_chat_rumor(
        sender=ALICE.public_key, receivers=[BOB.public_key], content="x", created_at=NOW
    )
    wraps = gift_wraps(
        rumor,
        ALICE,
        [BOB.public_key],
        random_bytes=_Counter(),
        now=NOW,
        include_sender=False,
        kind=21059,
        max_backdate_s=0,
        extra_wrap_tags=[("expiration", str(NOW + 60))],
    )
    ((target, event),) = wraps
    assert target == BOB.public_key
    assert event.kind == 21059
    assert event.created_at == NOW
    assert event.tags == (("p", BOB.public_key.hex()), ("expiration", str(NOW + 60)))


def test_timestamps_are_randomized_independently() -> None:
    rumor = build_chat_rumor(
        sender=ALICE.public_key, receivers=[BOB.public_key], content="x", created_at=NOW
    )
    wraps = gift_wraps(
        rumor, ALICE, [BOB.public_key] * 6, random_bytes=_Counter(), now=NOW, include_sender=False
    )
    stamps = {event.created_at for _, event in wraps}
    assert len(stamps) > 1
    assert all(NOW - TWO_DAYS_S <= s <= NOW for s in stamps)


def test_ephemeral_wraps_carry_the_current_time_and_their_seals_stay_randomised() -> None:
    # strfry refuses ephemeral events older than 60 s (issue 10: the client's 21059 wraps were
    # 78,888-159,388 s old). Only the wrap is current; NIP-59 backdating stays on the seal.
    rumor = build_chat_rumor(
        sender=ALICE.public_key, receivers=[BOB.public_key], content="x", created_at=NOW
    )
    wraps = gift_wraps(
        rumor,
        ALICE,
        [BOB.public_key] * 6,
        random_bytes=_Counter(),
        now=NOW,
        kind=21059,
        include_sender=False,
    )
    assert {event.created_at for _, event in wraps} == {NOW}
    seals = {unwrap(event, BOB).seal_id for _, event in wraps}
    assert len(seals) == 6
    stored = gift_wraps(
        rumor,
        ALICE,
        [BOB.public_key] * 6,
        random_bytes=_Counter(),
        now=NOW,
        kind=1059,
        include_sender=False,
    )
    assert len({event.created_at for _, event in stored}) > 1


def test_gift_wraps_refuses_negative_backdate() -> None:
    rumor = build_chat_rumor(
        sender=ALICE.public_key, receivers=[BOB.public_key], content="x", created_at=NOW
    )
    with pytest.raises(CodecError, match="max_backdate_s"):
        gift_wraps(
            rumor, ALICE, [BOB.public_key], random_bytes=_Counter(), now=NOW, max_backdate_s=-1
        )


@settings(max_examples=40, deadline=None)
@given(content=st.text(max_size=200), subject=st.none() | st.text(max_size=20))
def test_round_trips(content: str, subject: str | None) -> None:
    rumor = build_chat_rumor(
        sender=ALICE.public_key,
        receivers=[BOB.public_key],
        content=content,
        created_at=NOW,
        subject=subject,
    )
    ((_, event),) = gift_wraps(
        rumor, ALICE, [BOB.public_key], random_bytes=_Counter(), now=NOW, include_sender=False
    )
    message = parse_chat_rumor(unwrap(event, BOB).rumor)
    assert (message.content, message.subject) == (content, subject)


@settings(max_examples=100, deadline=None)
@given(
    tags=st.lists(
        st.lists(
            st.sampled_from(["p", "e", "subject", BOB.public_key.hex(), JOB, "x", ""]),
            min_size=1,
            max_size=3,
        ),
        max_size=5,
    ),
    kind=st.sampled_from([14, 15]),
)
def test_garbage_raises_only_our_errors(tags: list[list[str]], kind: int) -> None:
    rumor = UnsignedEvent(ALICE.public_key.hex(), NOW, kind, tags, "x")
    with contextlib.suppress(NostrError):  # anything else fails the test
        parse_chat_rumor(rumor)
