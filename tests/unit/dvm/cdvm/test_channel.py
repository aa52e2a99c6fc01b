"""cdvm/1 channel rumors: build/parse round trips, refusals, chunking, garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvm.cdvm import channel
from dvm.cdvm.channel import ChannelError, MessageKind, OutputState
from dvm.cdvm.chunks import ChunkBuffer, parse_chunk_tag
from dvm.nostr.errors import CodecError, NostrError
from dvm.nostr.event import UnsignedEvent
from dvm.nostr.keys import SecretKey

REQ = SecretKey(b"\x11" * 32).public_key
CON = SecretKey(b"\x22" * 32).public_key
JOB = "ab" * 32
OTHER_JOB = "cd" * 32
AT = 1_700_000_000


def test_input_round_trip() -> None:
    [rumor] = channel.build_input(REQ, CON, JOB, "hello", created_at=AT)
    msg = channel.parse_channel_rumor(rumor, job=JOB, recipient=CON)
    assert msg.kind is MessageKind.INPUT
    assert msg.content == "hello"
    assert msg.sender == REQ.hex()
    assert msg.rumor_id == rumor.id
    assert not msg.chunked


@pytest.mark.parametrize("text", ["/end", " /end\n"])
def test_end_by_text(text: str) -> None:
    rumor = UnsignedEvent(REQ.hex(), AT, 14, (("p", CON.hex()), ("e", JOB)), text)
    assert channel.parse_channel_rumor(rumor, job=JOB, recipient=CON).kind is MessageKind.END


def test_end_by_tag() -> None:
    rumor = channel.build_end(REQ, CON, JOB, created_at=AT)
    assert channel.parse_channel_rumor(rumor, job=JOB, recipient=CON).kind is MessageKind.END


def test_output_round_trip() -> None:
    answers = "ef" * 32
    [rumor] = channel.build_output(
        CON, REQ, JOB, "out", answers=answers, seq=3, state=OutputState.FINAL, created_at=AT
    )
    msg = channel.parse_channel_rumor(rumor, job=JOB, recipient=REQ)
    assert (msg.kind, msg.answers, msg.seq, msg.state, msg.content) == (
        MessageKind.OUTPUT,
        answers,
        3,
        OutputState.FINAL,
        "out",
    )


def test_error_and_ready() -> None:
    err = channel.build_error(
        CON, REQ, JOB, ChannelError.TOO_LARGE, "input too large", created_at=AT
    )
    msg = channel.parse_channel_rumor(err, job=JOB, recipient=REQ)
    assert (msg.kind, msg.reason, msg.content) == (
        MessageKind.ERROR,
        ChannelError.TOO_LARGE,
        "input too large",
    )
    ready = channel.build_ready(CON, REQ, JOB, created_at=AT)
    assert channel.parse_channel_rumor(ready, job=JOB, recipient=REQ).kind is MessageKind.READY


def test_large_input_is_chunked_and_reassembles() -> None:
    text = "é" * 3000 + "😀" * 500 + "x" * 10
    rumors = channel.build_input(REQ, CON, JOB, text, created_at=AT, budget_bytes=1000)
    assert len(rumors) > 1
    buffer = ChunkBuffer()
    whole: str | None = None
    for rumor in rumors:
        msg = channel.parse_channel_rumor(rumor, job=JOB, recipient=CON)
        assert msg.chunked
        assert msg.kind is MessageKind.INPUT
        tag = parse_chunk_tag(rumor.tags)
        assert tag is not None
        whole = buffer.add(tag, msg.content) or whole
    assert whole == text


def test_output_tag_rides_on_every_chunk() -> None:
    rumors = channel.build_output(
        CON,
        REQ,
        JOB,
        "y" * 5000,
        answers="ef" * 32,
        seq=0,
        state=OutputState.PARTIAL,
        created_at=AT,
        budget_bytes=1000,
    )
    assert len(rumors) == 5
    for rumor in rumors:
        assert (
            channel.parse_channel_rumor(rumor, job=JOB, recipient=REQ).state is OutputState.PARTIAL
        )


@pytest.mark.parametrize(
    ("tags", "kind", "message"),
    [
        ((("p", CON.hex()), ("e", OTHER_JOB)), 14, "does not name this job"),
        ((("p", CON.hex()),), 14, "does not name this job"),
        ((("p", CON.hex()), ("e", JOB), ("e", JOB)), 14, "more than one"),
        ((("p", REQ.hex()), ("e", JOB)), 14, "not addressed to us"),
        ((("p", CON.hex()), ("e", JOB)), 1, "not a chat message"),
        ((("p", CON.hex()), ("e", JOB), ("cdvm", "bogus")), 14, "unknown or malformed"),
        ((("p", CON.hex()), ("e", JOB), ("cdvm", "end", "x")), 14, "unknown or malformed"),
        ((("p", CON.hex()), ("e", JOB), ("cdvm", "error", "nope")), 14, "unknown channel error"),
        (
            (("p", CON.hex()), ("e", JOB), ("cdvm", "output", "zz", "0", "final")),
            14,
            "malformed output",
        ),
        (
            (("p", CON.hex()), ("e", JOB), ("cdvm", "output", "ab" * 32, "0", "done")),
            14,
            "partial or final",
        ),
        (
            (("p", CON.hex()), ("e", JOB), ("cdvm", "output", "ab" * 32, "-1", "final")),
            14,
            "malformed output",
        ),
    ],
)
def test_refusals(tags: tuple[tuple[str, ...], ...], kind: int, message: str) -> None:
    rumor = UnsignedEvent(REQ.hex(), AT, kind, tags, "x")
    with pytest.raises(CodecError, match=message):
        channel.parse_channel_rumor(rumor, job=JOB, recipient=CON)


def test_builders_refuse_bad_values() -> None:
    with pytest.raises(CodecError):
        channel.build_input(REQ, CON, JOB, "", created_at=AT)
    with pytest.raises(CodecError):
        channel.build_input(REQ, CON, "nothex", "x", created_at=AT)
    with pytest.raises(CodecError):
        channel.build_output(
            CON, REQ, JOB, "x", answers="zz", seq=0, state=OutputState.FINAL, created_at=AT
        )
    with pytest.raises(CodecError):
        channel.build_output(
            CON, REQ, JOB, "x", answers="ab" * 32, seq=-1, state=OutputState.FINAL, created_at=AT
        )


@given(st.text(max_size=2000))
def test_any_text_round_trips(text: str) -> None:
    if not text:
        return
    try:
        rumors = channel.build_input(REQ, CON, JOB, text, created_at=AT, budget_bytes=300)
    except CodecError:
        return  # lone surrogates cannot travel as UTF-8
    buffer = ChunkBuffer()
    out: str | None = None
    for rumor in rumors:
        msg = channel.parse_channel_rumor(rumor, job=JOB, recipient=CON)
        tag = parse_chunk_tag(rumor.tags)
        out = msg.content if tag is None else (buffer.add(tag, msg.content) or out)
    if text.strip() == "/end" and len(rumors) == 1:
        return
    assert out == text


@given(
    st.lists(st.lists(st.text(max_size=70), min_size=1, max_size=6), max_size=6),
    st.text(max_size=50),
)
def test_garbage_tags_raise_only_codec_errors(tags: list[list[str]], content: str) -> None:
    rumor = UnsignedEvent(
        REQ.hex(), AT, 14, (("p", CON.hex()), ("e", JOB), *map(tuple, tags)), content
    )
    with contextlib.suppress(NostrError):
        channel.parse_channel_rumor(rumor, job=JOB, recipient=CON)
