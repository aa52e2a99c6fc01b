"""The container's channel acceptance rules (DESIGN §3.6): what is accepted, what is ignored."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from container.inbox import Accepted, Ended, Ignored, Inbox, Pending, Refused
from dvm.cdvm.channel import ChannelError, build_end, build_input, build_ready
from dvm.nostr import nip44, nip59
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from tests.hostile_wraps import event_templates, malformed_wraps, wrap_rumor_text, wrap_seal_text
from tests.strategies import hostile_event, hostile_json

JOB = "ab" * 32
_counter = itertools.count(1)


def det_bytes(size: int) -> bytes:
    """Deterministic distinct 'random' bytes (tests only)."""
    return hashlib.sha512(next(_counter).to_bytes(8, "big")).digest()[:size]


def key(n: int) -> SecretKey:
    return SecretKey(hashlib.sha256(bytes([n])).digest())


CONTAINER, REQUESTER, STRANGER = key(1), key(2), key(3)


def inbox(max_input_bytes: int = 10_000) -> Inbox:
    return Inbox(
        key=CONTAINER,
        expected_sender=REQUESTER.public_key,
        job=JOB,
        max_input_bytes=max_input_bytes,
    )


def wrap(rumor: UnsignedEvent, sender: SecretKey = REQUESTER, *, kind: int = 21059) -> Event:
    return nip59.wrap(
        rumor,
        sender,
        CONTAINER.public_key,
        wrapper=SecretKey.generate(det_bytes),
        seal_created_at=1_700_000_000,
        wrap_created_at=1_700_000_000,
        seal_nonce=det_bytes(32),
        wrap_nonce=det_bytes(32),
        seal_aux_rand=det_bytes(32),
        wrap_aux_rand=det_bytes(32),
        kind=kind,
    )


def one_input(text: str, sender: SecretKey = REQUESTER, job: str = JOB) -> UnsignedEvent:
    (rumor,) = build_input(sender.public_key, CONTAINER.public_key, job, text, created_at=1)
    return rumor


def test_an_input_from_the_expected_key_is_accepted_in_its_wrap_kind() -> None:
    rumor = one_input("hello")
    got = inbox().receive(wrap(rumor, kind=1059))
    assert got == Accepted(rumor.id, "hello", 1059)
    assert "hello" not in repr(got)


def test_end_tag_and_end_text_end_the_job() -> None:
    box = inbox()
    end = build_end(REQUESTER.public_key, CONTAINER.public_key, JOB, created_at=1)
    assert box.receive(wrap(end)) == Ended(21059)
    assert box.receive(wrap(one_input("/end"), kind=1059)) == Ended(1059)


def test_a_third_party_wrap_is_ignored() -> None:
    got = inbox().receive(wrap(one_input("hi", sender=STRANGER), STRANGER))
    assert isinstance(got, Ignored)
    assert "expected sender" in got.why


def test_a_replayed_wrap_is_ignored() -> None:
    box = inbox()
    event = wrap(one_input("once"))
    assert isinstance(box.receive(event), Accepted)
    got = box.receive(event)
    assert isinstance(got, Ignored)
    assert "replayed" in got.why


def test_a_replayed_rumor_in_a_fresh_wrap_is_ignored() -> None:
    box = inbox()
    rumor = one_input("once")
    assert isinstance(box.receive(wrap(rumor)), Accepted)
    assert isinstance(box.receive(wrap(rumor, kind=1059)), Ignored)


def test_a_seal_whose_pubkey_differs_from_the_rumor_is_ignored() -> None:
    # The requester seals a rumor that claims another author (impersonation, NIP-17).
    forged = one_input("forged", sender=STRANGER)
    content = nip44.encrypt(
        forged.to_json(),
        nip44.get_conversation_key(REQUESTER, CONTAINER.public_key),
        nonce=det_bytes(32),
    )
    seal = UnsignedEvent(REQUESTER.public_key.hex(), 1, nip59.SEAL_KIND, (), content).sign(
        REQUESTER, aux_rand=det_bytes(32)
    )
    event = nip59.gift_wrap(
        seal,
        CONTAINER.public_key,
        wrapper=SecretKey.generate(det_bytes),
        created_at=1,
        nonce=det_bytes(32),
        aux_rand=det_bytes(32),
        kind=21059,
    )
    got = inbox().receive(event)
    assert isinstance(got, Ignored)
    assert "impersonation" in got.why


def test_a_rumor_for_another_job_is_ignored() -> None:
    got = inbox().receive(wrap(one_input("other", job="cd" * 32)))
    assert isinstance(got, Ignored)
    assert "job" in got.why


def test_a_wrap_for_someone_else_is_ignored() -> None:
    rumor = one_input("x")
    event = nip59.wrap(
        rumor,
        REQUESTER,
        STRANGER.public_key,
        wrapper=SecretKey.generate(det_bytes),
        seal_created_at=1,
        wrap_created_at=1,
        seal_nonce=det_bytes(32),
        wrap_nonce=det_bytes(32),
        seal_aux_rand=det_bytes(32),
        wrap_aux_rand=det_bytes(32),
    )
    assert isinstance(inbox().receive(event), Ignored)


def test_our_own_kinds_of_message_from_the_peer_are_ignored() -> None:
    ready = build_ready(REQUESTER.public_key, CONTAINER.public_key, JOB, created_at=1)
    got = inbox().receive(wrap(ready))
    assert isinstance(got, Ignored)
    assert "ready" in got.why


def test_chunked_input_is_reassembled_under_the_first_piece_id() -> None:
    text = "0123456789" * 30
    rumors = build_input(
        REQUESTER.public_key, CONTAINER.public_key, JOB, text, created_at=1, budget_bytes=64
    )
    assert len(rumors) > 2
    box = inbox()
    results = [box.receive(wrap(r)) for r in reversed(rumors)]  # any order
    assert all(isinstance(r, Pending) for r in results[:-1])
    assert results[-1] == Accepted(rumors[0].id, text, 21059)


def test_a_chunk_that_breaks_the_hash_is_bad_input() -> None:
    text = "abcdefghij" * 20
    rumors = build_input(
        REQUESTER.public_key, CONTAINER.public_key, JOB, text, created_at=1, budget_bytes=64
    )
    last = rumors[-1]
    tampered = UnsignedEvent(
        last.pubkey, last.created_at, last.kind, last.tags, "X" + last.content[1:]
    )
    box = inbox()
    for rumor in rumors[:-1]:
        assert isinstance(box.receive(wrap(rumor)), Pending)
    assert box.receive(wrap(tampered)) == Refused(ChannelError.BAD_INPUT, 21059)


def test_oversized_input_is_refused_whole_or_chunked() -> None:
    box = inbox(max_input_bytes=100)
    assert box.receive(wrap(one_input("x" * 101))) == Refused(ChannelError.TOO_LARGE, 21059)
    rumors = build_input(
        REQUESTER.public_key, CONTAINER.public_key, JOB, "y" * 300, created_at=1, budget_bytes=64
    )
    results = [box.receive(wrap(r)) for r in rumors]
    assert Refused(ChannelError.TOO_LARGE, 21059) in results
    assert not any(isinstance(r, Accepted) for r in results)


def test_clear_forgets_pending_chunks_and_replays() -> None:
    box = inbox()
    rumors = build_input(
        REQUESTER.public_key, CONTAINER.public_key, JOB, "z" * 200, created_at=1, budget_bytes=64
    )
    assert isinstance(box.receive(wrap(rumors[0])), Pending)
    box.clear()
    results = [box.receive(wrap(r)) for r in rumors[1:]]
    assert not any(isinstance(r, Accepted) for r in results)


@pytest.mark.parametrize("kind", [1, 4, 1059])
def test_events_that_are_not_gift_wraps_are_ignored(kind: int) -> None:
    event = UnsignedEvent(
        STRANGER.public_key.hex(), 1, kind, (("p", CONTAINER.public_key.hex()),), "x"
    ).sign(STRANGER, aux_rand=bytes(32))
    assert isinstance(inbox().receive(event), Ignored)


@settings(max_examples=50, deadline=None)
@given(content=st.text(max_size=200), kind=st.sampled_from([1059, 21059, 1, 14]))
def test_garbage_wraps_are_ignored_never_raised(content: str, kind: int) -> None:
    event = UnsignedEvent(
        STRANGER.public_key.hex(), 1, kind, (("p", CONTAINER.public_key.hex()),), content
    ).sign(STRANGER, aux_rand=bytes(32))
    assert isinstance(inbox().receive(event), Ignored)


# --- issue 10: malformed wraps from anyone are ignored, and the channel goes on -------------


@pytest.mark.parametrize("attacker", [STRANGER, REQUESTER], ids=["stranger", "requester-key"])
def test_every_kind_of_malformed_wrap_is_ignored_then_the_channel_goes_on(
    attacker: SecretKey,
) -> None:
    box = inbox()
    wraps = malformed_wraps(
        CONTAINER.public_key,
        attacker=attacker,
        impersonate=(STRANGER if attacker is REQUESTER else REQUESTER).public_key,
        job=JOB,
        now=1_700_000_000,
    )
    assert len(wraps) >= 10
    for name, bad in wraps.items():
        got = box.receive(bad)
        assert isinstance(got, Ignored), name
    rumor = one_input("still here")
    assert box.receive(wrap(rumor)) == Accepted(rumor.id, "still here", 21059)


_SEAL, _RUMOR = event_templates(REQUESTER, CONTAINER.public_key, JOB, now=1_700_000_000)


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(hostile_json(), hostile_event(_SEAL), hostile_event(_RUMOR)).filter(
        lambda t: 0 < len(t) < 60000
    )
)
def test_hostile_seal_or_rumor_text_is_ignored(text: str | bytes) -> None:
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    box = inbox()
    now = 1_700_000_000
    assert isinstance(
        box.receive(wrap_seal_text(raw, CONTAINER.public_key, now=now, kind=21059)), Ignored
    )
    # Sealed by the requester's own key: the rumor parser is reached.
    # Never raises; a text that happens to be the intact template is a genuine input.
    box.receive(wrap_rumor_text(raw, REQUESTER, CONTAINER.public_key, now=now, kind=21059))


def expiring_wrap(rumor: UnsignedEvent, expiration: int) -> Event:
    """A wrap whose seal carries NIP-17's disappearing-message ``["expiration", t]``."""
    sealed = nip59.seal(
        rumor,
        REQUESTER,
        CONTAINER.public_key,
        created_at=1_700_000_000,
        nonce=det_bytes(32),
        aux_rand=det_bytes(32),
        expiration=expiration,
    )
    return nip59.gift_wrap(
        sealed,
        CONTAINER.public_key,
        wrapper=SecretKey.generate(det_bytes),
        created_at=1_700_000_000,
        nonce=det_bytes(32),
        aux_rand=det_bytes(32),
        kind=1059,
    )


def test_a_seal_with_an_expiration_is_accepted_until_it_expires() -> None:
    # Issue 10: NIP-17 says seals SHOULD carry one for disappearing messages; they were refused.
    live = one_input("still here")
    assert inbox().receive(expiring_wrap(live, 2_000), now=1_999) == Accepted(
        live.id, "still here", 1059
    )
    gone = one_input("too late")
    got = inbox().receive(expiring_wrap(gone, 2_000), now=2_000)
    assert isinstance(got, Ignored)
    assert "expired at 2000" in got.why
    assert "too late" not in got.why
