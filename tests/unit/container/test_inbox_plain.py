"""The inbox and standard NIP-17 clients: plain kind-14 messages of the authorised key only.

A plain message is what Amethyst, 0xchat or nostr-sdk's ``nip17_make_private_msg`` send: a
kind-14 rumor with ``["p", C]`` and nothing else (docs/standard-clients.md).
"""

from __future__ import annotations

from container.inbox import Accepted, Ended, Ignored, Refused
from dvm.cdvm.channel import ChannelError
from dvm.nostr.event import UnsignedEvent
from dvm.nostr.keys import SecretKey
from tests.unit.container.test_inbox import CONTAINER, REQUESTER, STRANGER, inbox, one_input, wrap


def plain(text: str, sender: SecretKey = REQUESTER, *extra: tuple[str, ...]) -> UnsignedEvent:
    tags = (("p", CONTAINER.public_key.hex()), *extra)
    return UnsignedEvent(sender.public_key.hex(), 1_700_000_000, 14, tags, text)


def test_a_plain_message_of_the_authorised_key_is_a_plain_input() -> None:
    rumor = plain("hello")
    got = inbox().receive(wrap(rumor, kind=1059))
    assert got == Accepted(rumor.id, "hello", 1059, plain=True)
    assert "hello" not in repr(got)


def test_plain_end_text_ends_the_job_and_says_the_peer_is_plain() -> None:
    assert inbox().receive(wrap(plain(" /end\n"), kind=1059)) == Ended(1059, plain=True)


def test_a_plain_message_of_anyone_else_is_ignored() -> None:
    got = inbox().receive(wrap(plain("hello", STRANGER), STRANGER, kind=1059))
    assert isinstance(got, Ignored)


def test_an_empty_or_oversized_plain_message_is_refused_plainly() -> None:
    assert inbox().receive(wrap(plain(""), kind=1059)) == Refused(
        ChannelError.BAD_INPUT, 1059, plain=True
    )
    assert inbox(max_input_bytes=3).receive(wrap(plain("four"), kind=1059)) == Refused(
        ChannelError.TOO_LARGE, 1059, plain=True
    )


def test_a_cdvm_input_is_not_plain() -> None:
    rumor = one_input("hello")
    assert inbox().receive(wrap(rumor, kind=1059)) == Accepted(rumor.id, "hello", 1059)


def test_an_e_tag_naming_no_message_of_the_conversation_is_ignored() -> None:
    got = inbox().receive(wrap(plain("hi", REQUESTER, ("e", "cd" * 32)), kind=1059))
    assert isinstance(got, Ignored)
    assert "job" in got.why


def test_a_nip17_reply_to_a_message_the_container_sent_is_a_plain_input() -> None:
    box = inbox()
    box.note_sent(["cd" * 32])
    rumor = plain("and then?", REQUESTER, ("e", "cd" * 32))
    assert box.receive(wrap(rumor, kind=1059)) == Accepted(rumor.id, "and then?", 1059, True)


def test_a_nip17_reply_to_an_earlier_input_is_a_plain_input() -> None:
    box = inbox()
    first = plain("one")
    assert isinstance(box.receive(wrap(first, kind=1059)), Accepted)
    reply = plain("two", REQUESTER, ("e", first.id))
    assert box.receive(wrap(reply, kind=1059)) == Accepted(reply.id, "two", 1059, True)


def test_a_reply_from_anyone_else_is_still_ignored() -> None:
    box = inbox()
    box.note_sent(["cd" * 32])
    stranger = plain("hi", STRANGER, ("e", "cd" * 32))
    assert isinstance(box.receive(wrap(stranger, STRANGER, kind=1059)), Ignored)


def test_clear_forgets_the_conversation() -> None:
    box = inbox()
    box.note_sent(["cd" * 32])
    box.clear()
    assert isinstance(box.receive(wrap(plain("x", REQUESTER, ("e", "cd" * 32)))), Ignored)


def test_a_cdvm_tag_without_the_job_is_not_plain() -> None:
    got = inbox().receive(wrap(plain("", REQUESTER, ("cdvm", "end")), kind=1059))
    assert isinstance(got, Ignored)
