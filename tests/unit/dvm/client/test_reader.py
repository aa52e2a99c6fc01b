"""dvm.client.reader: only the container's sealed, fresh, well-formed channel messages count."""

from __future__ import annotations

import secrets
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.cdvm.channel import MessageKind, OutputState, build_output
from dvm.client import Answers, ChannelReader
from dvm.nostr import nip44
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip17 import gift_wraps
from dvm.nostr.nip59 import WRAP_KIND_EPHEMERAL, gift_wrap, seal
from tests.hostile_wraps import event_templates, malformed_wraps, wrap_rumor_text, wrap_seal_text
from tests.strategies import hostile_event, hostile_json

JOB = "ab" * 32
INPUT = "cd" * 32


def _key() -> SecretKey:
    return SecretKey.generate(secrets.token_bytes)


def _wrap(rumor: UnsignedEvent, sender: SecretKey, to: PublicKey) -> Event:
    [(_, event)] = gift_wraps(
        rumor,
        sender,
        [to],
        random_bytes=secrets.token_bytes,
        now=int(time.time()),
        include_sender=False,
        kind=WRAP_KIND_EPHEMERAL,
    )
    return event


def _outputs(
    container: SecretKey, to: PublicKey, text: str, *, seq: int = 0, budget: int = 27648
) -> list[UnsignedEvent]:
    return build_output(
        container.public_key,
        to,
        JOB,
        text,
        answers=INPUT,
        seq=seq,
        state=OutputState.FINAL,
        created_at=int(time.time()),
        budget_bytes=budget,
    )


def test_the_containers_output_is_accepted() -> None:
    me, container = _key(), _key()
    inbox = ChannelReader(me, container.public_key, JOB)
    [rumor] = _outputs(container, me.public_key, "answer")
    message = inbox.add(_wrap(rumor, container, me.public_key))
    assert message is not None
    assert message.kind is MessageKind.OUTPUT
    assert message.content == "answer"
    assert inbox.last_wrap_kind == WRAP_KIND_EPHEMERAL
    assert not inbox.dropped


def test_a_third_partys_wrap_is_dropped() -> None:
    me, container, stranger = _key(), _key(), _key()
    inbox = ChannelReader(me, container.public_key, JOB)
    [rumor] = _outputs(stranger, me.public_key, "fake answer")
    assert inbox.add(_wrap(rumor, stranger, me.public_key)) is None
    assert inbox.dropped["unwrap"] == 1


def test_a_replayed_wrap_and_a_rewrapped_rumor_are_dropped() -> None:
    me, container = _key(), _key()
    inbox = ChannelReader(me, container.public_key, JOB)
    [rumor] = _outputs(container, me.public_key, "once")
    wrap = _wrap(rumor, container, me.public_key)
    assert inbox.add(wrap) is not None
    assert inbox.add(wrap) is None
    assert inbox.add(_wrap(rumor, container, me.public_key)) is None
    assert inbox.dropped["replay"] == 2


def test_a_seal_whose_pubkey_differs_from_the_rumors_is_dropped() -> None:
    me, container, stranger = _key(), _key(), _key()
    inbox = ChannelReader(me, container.public_key, JOB)
    [rumor] = _outputs(stranger, me.public_key, "impersonated")  # rumor says: stranger
    conv = nip44.get_conversation_key(container, me.public_key)
    content = nip44.encrypt(rumor.to_json(), conv, nonce=secrets.token_bytes(32))
    seal = UnsignedEvent(container.public_key.hex(), int(time.time()), 13, (), content).sign(
        container, aux_rand=secrets.token_bytes(32)
    )
    wrapper = _key()
    wrap = gift_wrap(
        seal,
        me.public_key,
        wrapper=wrapper,
        created_at=int(time.time()),
        nonce=secrets.token_bytes(32),
        aux_rand=secrets.token_bytes(32),
        kind=WRAP_KIND_EPHEMERAL,
    )
    assert inbox.add(wrap) is None
    assert inbox.dropped["unwrap"] == 1


def test_another_jobs_message_is_dropped() -> None:
    me, container = _key(), _key()
    inbox = ChannelReader(me, container.public_key, "ef" * 32)
    [rumor] = _outputs(container, me.public_key, "for job ab..")
    assert inbox.add(_wrap(rumor, container, me.public_key)) is None
    assert inbox.dropped["not-a-channel-message"] == 1


def test_chunked_output_is_reassembled_and_checked() -> None:
    me, container = _key(), _key()
    inbox = ChannelReader(me, container.public_key, JOB)
    text = "0123456789" * 30
    rumors = _outputs(container, me.public_key, text, budget=64)
    assert len(rumors) > 2
    results = [inbox.add(_wrap(r, container, me.public_key)) for r in reversed(rumors)]
    assert results[:-1] == [None] * (len(rumors) - 1)
    last = results[-1]
    assert last is not None
    assert last.content == text
    assert not last.chunked


def test_answers_wait_for_every_part_in_order() -> None:
    me, container = _key(), _key()
    inbox = ChannelReader(me, container.public_key, JOB)
    answers = Answers()
    parts = [
        ("Hello, ", OutputState.PARTIAL),
        ("wor", OutputState.PARTIAL),
        ("ld", OutputState.FINAL),
    ]
    rumors = [
        build_output(
            container.public_key,
            me.public_key,
            JOB,
            text,
            answers=INPUT,
            seq=seq,
            state=state,
            created_at=int(time.time()),
        )[0]
        for seq, (text, state) in enumerate(parts)
    ]
    for rumor in (rumors[2], rumors[0]):
        message = inbox.add(_wrap(rumor, container, me.public_key))
        assert message is not None
        answers.add(message)
    assert answers.complete(INPUT) is None
    assert answers.received_bytes(INPUT) == len("Hello, ld")
    message = inbox.add(_wrap(rumors[1], container, me.public_key))
    assert message is not None
    answers.add(message)
    assert answers.complete(INPUT) == "Hello, world"
    assert answers.complete("ee" * 32) is None


_ME = SecretKey(bytes(31) + b"\x07")
_CONTAINER = SecretKey(bytes(31) + b"\x09")


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from([1059, 21059, 14, 13]),
    content=st.text(max_size=300),
    tags=st.lists(st.lists(st.text(max_size=70), min_size=1, max_size=4), max_size=4),
)
def test_garbage_wraps_are_dropped_never_raised(
    kind: int, content: str, tags: list[list[str]]
) -> None:
    inbox = ChannelReader(_ME, _CONTAINER.public_key, JOB)
    stranger = _key()
    all_tags = (("p", _ME.public_key.hex()), *(tuple(t) for t in tags))
    event = UnsignedEvent(stranger.public_key.hex(), 1, kind, all_tags, content).sign(
        stranger, aux_rand=bytes(32)
    )
    assert inbox.add(event) is None
    assert sum(inbox.dropped.values()) == 1


# --- issue 10: malformed wraps from anyone are dropped, and the channel goes on -------------


def test_every_kind_of_malformed_wrap_is_dropped_then_the_channel_goes_on() -> None:
    me, container, stranger = _key(), _key(), _key()
    reader = ChannelReader(me, container.public_key, JOB)
    now = int(time.time())
    attacks = {
        f"{who}:{name}": bad
        for who, attacker, claimed in (
            ("stranger", stranger, container.public_key),
            ("container-key", container, stranger.public_key),
        )
        for name, bad in malformed_wraps(
            me.public_key, attacker=attacker, impersonate=claimed, job=JOB, now=now
        ).items()
    }
    for name, bad in attacks.items():
        assert reader.add(bad) is None, name
    assert sum(reader.dropped.values()) == len(attacks)
    [rumor] = _outputs(container, me.public_key, "answer after the attacks")
    message = reader.add(_wrap(rumor, container, me.public_key))
    assert message is not None
    assert message.content == "answer after the attacks"


_ME, _CONTAINER = _key(), _key()
_SEAL, _RUMOR = event_templates(_CONTAINER, _ME.public_key, JOB, now=int(time.time()))


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(hostile_json(), hostile_event(_SEAL), hostile_event(_RUMOR)).filter(
        lambda t: 0 < len(t) < 60000
    )
)
def test_hostile_seal_or_rumor_text_is_dropped(text: str | bytes) -> None:
    me, container = _ME, _CONTAINER
    reader = ChannelReader(me, container.public_key, JOB)
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    now = int(time.time())
    # Never raises; a text that happens to be the intact template is a genuine message.
    assert reader.add(wrap_seal_text(raw, me.public_key, now=now, kind=21059)) is None
    reader.add(wrap_rumor_text(raw, container, me.public_key, now=now, kind=21059))
    assert reader.dropped["unwrap"] >= 1


def _expiring_wrap(
    rumor: UnsignedEvent, sender: SecretKey, to: PublicKey, expiration: int
) -> Event:
    sealed = seal(
        rumor,
        sender,
        to,
        created_at=int(time.time()),
        nonce=secrets.token_bytes(32),
        aux_rand=secrets.token_bytes(32),
        expiration=expiration,
    )
    return gift_wrap(
        sealed,
        to,
        wrapper=_key(),
        created_at=int(time.time()),
        nonce=secrets.token_bytes(32),
        aux_rand=secrets.token_bytes(32),
        kind=WRAP_KIND_EPHEMERAL,
    )


def test_a_seal_with_an_expiration_is_read_until_it_expires() -> None:
    # Issue 10: seals with NIP-17's disappearing-message expiration were refused.
    me, container = _key(), _key()
    reader = ChannelReader(me, container.public_key, JOB)
    [kept] = _outputs(container, me.public_key, "kept")
    message = reader.add(_expiring_wrap(kept, container, me.public_key, 2_000), now=1_999)
    assert message is not None
    assert message.content == "kept"
    [late] = _outputs(container, me.public_key, "late", seq=1)
    assert reader.add(_expiring_wrap(late, container, me.public_key, 2_000), now=2_000) is None
    assert reader.dropped == {"unwrap": 1}
