"""Plain NIP-17 messages in the cdvm/1 channel parser (``allow_plain``; docs/protocol.md §5)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvm.cdvm import channel
from dvm.cdvm.channel import MessageKind
from dvm.nostr.errors import CodecError, NostrError
from dvm.nostr.event import UnsignedEvent
from tests.unit.dvm.cdvm.test_channel import AT, CON, JOB, OTHER_JOB, REQ


def rumor(content: str, *tags: tuple[str, ...]) -> UnsignedEvent:
    return UnsignedEvent(REQ.hex(), AT, 14, (("p", CON.hex()), *tags), content)


def test_a_plain_message_is_an_input_only_when_allowed() -> None:
    plain = rumor("hi")
    with pytest.raises(CodecError, match="'e' tag"):
        channel.parse_channel_rumor(plain, job=JOB, recipient=CON)  # the client's reading
    msg = channel.parse_channel_rumor(plain, job=JOB, recipient=CON, allow_plain=True)
    assert msg.kind is MessageKind.INPUT
    assert msg.plain
    assert msg.content == "hi"
    assert msg.job == JOB


def test_plain_end_text() -> None:
    msg = channel.parse_channel_rumor(rumor("/end "), job=JOB, recipient=CON, allow_plain=True)
    assert msg.kind is MessageKind.END
    assert msg.plain


def test_a_message_naming_the_job_is_not_plain() -> None:
    (cdvm,) = channel.build_input(REQ, CON, JOB, "hi", created_at=AT)
    msg = channel.parse_channel_rumor(cdvm, job=JOB, recipient=CON, allow_plain=True)
    assert not msg.plain


@pytest.mark.parametrize(
    "tags",
    [
        (("e", OTHER_JOB),),  # another job, or a NIP-17 reply: not plain, not ours
        (("cdvm", "end"),),  # a cdvm tag without the job
        (("cdvm", "output", "ab" * 32, "0", "final"),),
    ],
)
def test_what_is_still_refused_with_allow_plain(tags: tuple[tuple[str, ...], ...]) -> None:
    with pytest.raises(CodecError):
        channel.parse_channel_rumor(rumor("x", *tags), job=JOB, recipient=CON, allow_plain=True)


def test_a_reply_to_a_message_of_the_conversation_is_plain() -> None:
    reply = rumor("more", ("e", OTHER_JOB))
    msg = channel.parse_channel_rumor(
        reply, job=JOB, recipient=CON, allow_plain=True, replies={OTHER_JOB}
    )
    assert msg.plain
    assert msg.kind is MessageKind.INPUT
    with pytest.raises(CodecError):  # only with allow_plain
        channel.parse_channel_rumor(reply, job=JOB, recipient=CON, replies={OTHER_JOB})
    with pytest.raises(CodecError):  # a cdvm tag is never plain
        channel.parse_channel_rumor(
            rumor("", ("e", OTHER_JOB), ("cdvm", "end")),
            job=JOB,
            recipient=CON,
            allow_plain=True,
            replies={OTHER_JOB},
        )


def test_a_plain_message_must_still_be_addressed_to_us() -> None:
    stray = UnsignedEvent(REQ.hex(), AT, 14, (("p", REQ.hex()),), "x")
    with pytest.raises(CodecError, match="not addressed"):
        channel.parse_channel_rumor(stray, job=JOB, recipient=CON, allow_plain=True)


@given(
    st.lists(st.lists(st.text(max_size=70), min_size=1, max_size=6), max_size=6),
    st.text(max_size=50),
)
def test_garbage_plain_tags_raise_only_codec_errors(tags: list[list[str]], content: str) -> None:
    garbage = UnsignedEvent(REQ.hex(), AT, 14, (("p", CON.hex()), *map(tuple, tags)), content)
    with contextlib.suppress(NostrError):
        channel.parse_channel_rumor(garbage, job=JOB, recipient=CON, allow_plain=True)
