"""cdvm/1 chunking: UTF-8-safe split under a budget, checked reassembly, the 64 KiB arithmetic."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.cdvm.chunks import (
    DEFAULT_CHUNK_BUDGET_BYTES,
    MAX_CHUNKS,
    RUMOR_OVERHEAD_BYTES,
    ChunkBuffer,
    ChunkTag,
    chunk_budget_bytes,
    escaped_size_bytes,
    gift_wrap_message_bytes,
    parse_chunk_tag,
    reassemble,
    split_message,
)
from dvm.nostr.errors import CodecError, NostrError
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip17 import build_chat_rumor
from dvm.nostr.nip59 import unwrap, wrap

DIGEST = "ab" * 32


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- splitting ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=600), budget=st.integers(6, 80))
def test_split_then_reassemble_is_identity(text: str, budget: int) -> None:
    chunks = split_message(text, budget_bytes=budget)
    assert all(escaped_size_bytes(c.text) <= budget for c in chunks)
    assert "".join(c.text for c in chunks) == text
    assert {c.tag.digest for c in chunks} == {_digest(text)}
    assert [c.tag.index for c in chunks] == list(range(len(chunks)))
    assert {c.tag.total for c in chunks} == {len(chunks)}
    shuffled = [(c.tag, c.text) for c in chunks]
    random.Random(len(text)).shuffle(shuffled)
    assert reassemble(shuffled) == text


def test_split_never_cuts_a_code_point_and_fills_the_budget() -> None:
    text = "🦙" * 10  # 4 UTF-8 bytes each
    chunks = split_message(text, budget_bytes=10)
    assert [c.text for c in chunks] == ["🦙🦙"] * 5
    for chunk in chunks:
        chunk.text.encode("utf-8")  # every piece is valid UTF-8 on its own


def test_split_measures_json_escaping() -> None:
    # A newline costs 2 bytes in the rumor JSON, a control character 6.
    assert escaped_size_bytes("\n\x01é") == 2 + 6 + 2
    assert [c.text for c in split_message("\n" * 5, budget_bytes=6)] == ["\n\n\n", "\n\n"]
    assert [c.text for c in split_message("\x01\x02", budget_bytes=6)] == ["\x01", "\x02"]


def test_a_short_message_is_one_chunk() -> None:
    (only,) = split_message("hello")
    assert only.tag == ChunkTag(0, 1, _digest("hello"))
    assert only.tag.to_tag() == ("chunk", "0", "1", _digest("hello"))
    (empty,) = split_message("")
    assert empty.text == ""
    assert empty.tag.total == 1


def test_split_refusals() -> None:
    with pytest.raises(CodecError, match="at least 6 bytes"):
        split_message("x", budget_bytes=5)
    with pytest.raises(CodecError, match="lone surrogate"):
        split_message("a\ud800b")
    with pytest.raises(CodecError, match="more than 4096"):
        split_message("x" * (6 * MAX_CHUNKS + 1), budget_bytes=6)


# --- the tag ---------------------------------------------------------------------------------


def test_parse_chunk_tag() -> None:
    assert parse_chunk_tag((("p", "x"),)) is None
    tag = parse_chunk_tag((("chunk", "2", "3", DIGEST),))
    assert tag == ChunkTag(2, 3, DIGEST)


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        (("chunk", "0", "1"), "\\['chunk', index, total, sha256\\]"),
        (("chunk", "3", "3", DIGEST), "index out of range"),
        (("chunk", "0", "0", DIGEST), "total must be 1 to 4096"),
        (("chunk", "0", "4097", DIGEST), "total must be 1 to 4096"),
        (("chunk", "01", "2", DIGEST), "decimal integers"),
        (("chunk", "-1", "2", DIGEST), "decimal integers"),
        (("chunk", "0", "2", DIGEST.upper()), "64 lowercase hex"),
    ],
)
def test_bad_chunk_tags(tag: tuple[str, ...], message: str) -> None:
    with pytest.raises(CodecError, match=message):
        parse_chunk_tag((tag,))


def test_two_chunk_tags_are_refused() -> None:
    with pytest.raises(CodecError, match="more than one"):
        parse_chunk_tag((("chunk", "0", "2", DIGEST), ("chunk", "1", "2", DIGEST)))


# --- reassembly --------------------------------------------------------------------------------


def _pieces(text: str, budget: int = 6) -> list[tuple[ChunkTag, str]]:
    return [(c.tag, c.text) for c in split_message(text, budget_bytes=budget)]


def test_reassembly_refuses_a_duplicate_index() -> None:
    pieces = _pieces("abcdefghijkl")
    with pytest.raises(CodecError, match="arrived twice"):
        reassemble([pieces[0], pieces[0], *pieces[1:]])


def test_reassembly_refuses_inconsistent_totals() -> None:
    first, second = _pieces("abcdefghijkl")
    with pytest.raises(CodecError, match="differs from 2 seen before"):
        reassemble([first, (ChunkTag(1, 3, second[0].digest), second[1])])


def test_reassembly_refuses_a_wrong_digest() -> None:
    first, second = _pieces("abcdefghijkl")
    with pytest.raises(CodecError, match="does not match its sha256"):
        reassemble([first, (second[0], "ghijkX")])


def test_reassembly_refuses_missing_pieces_and_mixed_messages() -> None:
    pieces = _pieces("abcdefghijkl")
    with pytest.raises(CodecError, match="incomplete"):
        reassemble(pieces[:1])
    with pytest.raises(CodecError, match="incomplete"):
        reassemble([])
    with pytest.raises(CodecError, match="different messages"):
        reassemble([pieces[0], _pieces("zzzzzzzzzzzz")[1]])


def test_buffer_interleaves_messages_and_bounds_memory() -> None:
    buffer = ChunkBuffer(max_pending_bytes=20)
    a, b = _pieces("aaaaaaaaaaaa"), _pieces("bbbbbbbbbbbb")
    assert buffer.add(*a[0]) is None
    assert buffer.add(*b[1]) is None
    assert buffer.pending_messages == 2
    assert buffer.pending_bytes == 12
    assert buffer.add(*a[1]) == "a" * 12
    assert buffer.add(*b[0]) == "b" * 12
    assert (buffer.pending_messages, buffer.pending_bytes) == (0, 0)
    big = _pieces("c" * 30)
    buffer.add(*big[0])
    buffer.add(*big[1])
    buffer.add(*big[2])
    with pytest.raises(CodecError, match="exceed 20 bytes"):
        buffer.add(*big[3])
    assert buffer.pending_messages == 0  # the failed message is dropped
    assert buffer.pending_bytes == 0


def test_buffer_discard() -> None:
    buffer = ChunkBuffer()
    tag, text = _pieces("abcdefghijkl")[0]
    buffer.add(tag, text)
    buffer.discard(tag.digest)
    assert (buffer.pending_messages, buffer.pending_bytes) == (0, 0)


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(
        st.tuples(
            st.integers(-2, 5),
            st.integers(-1, 5),
            st.sampled_from([DIGEST, "cd" * 32, "x"]),
            st.text(max_size=5),
        ),
        max_size=8,
    )
)
def test_garbage_pieces_raise_only_our_errors(pieces: list[tuple[int, int, str, str]]) -> None:
    try:
        tags = [
            (parse_chunk_tag((("chunk", str(i), str(n), d),)), text) for i, n, d, text in pieces
        ]
        reassemble([(t, text) for t, text in tags if t is not None])
    except NostrError:
        pass  # anything else fails the test


# --- the budget arithmetic ---------------------------------------------------------------------


def test_default_budget_is_the_documented_figure() -> None:
    assert DEFAULT_CHUNK_BUDGET_BYTES == 27_648
    assert gift_wrap_message_bytes(DEFAULT_CHUNK_BUDGET_BYTES + RUMOR_OVERHEAD_BYTES) <= 65_536
    assert gift_wrap_message_bytes(DEFAULT_CHUNK_BUDGET_BYTES + RUMOR_OVERHEAD_BYTES + 1) > 65_536


def test_budget_for_smaller_relays() -> None:
    for limit in (4096, 16_384, 131_072):
        budget = chunk_budget_bytes(limit)
        assert gift_wrap_message_bytes(budget + RUMOR_OVERHEAD_BYTES) <= limit
        assert gift_wrap_message_bytes(budget + RUMOR_OVERHEAD_BYTES + 1) > limit
    with pytest.raises(CodecError, match="leaves no room"):
        chunk_budget_bytes(1500)


@pytest.mark.parametrize("unit", ["a", "é", "🦙", "\n", "\x01", '"'])
def test_a_full_chunk_really_fits_a_64_kib_relay(unit: str) -> None:
    # The real thing: a worst-case rumor (many tags of the cdvm channel) sealed and wrapped.
    sender, receiver, wrapper = (SecretKey(bytes([i]) * 32) for i in (1, 2, 3))
    text = unit * (2 * DEFAULT_CHUNK_BUDGET_BYTES)
    chunk = split_message(text)[0]
    rumor = build_chat_rumor(
        sender=sender.public_key,
        receivers=[receiver.public_key],
        content=chunk.text,
        created_at=9_999_999_999,
        reply_to="ab" * 32,
        extra_tags=[chunk.tag.to_tag(), ("cdvm", "end")],
    )
    assert len(rumor.to_json().encode("utf-8")) <= DEFAULT_CHUNK_BUDGET_BYTES + RUMOR_OVERHEAD_BYTES
    wrapped = wrap(
        rumor,
        sender,
        receiver.public_key,
        wrapper=wrapper,
        seal_created_at=9_999_999_999,
        wrap_created_at=9_999_999_999,
        seal_nonce=b"\x01" * 32,
        wrap_nonce=b"\x02" * 32,
        seal_aux_rand=bytes(32),
        wrap_aux_rand=bytes(32),
    )
    message = json.dumps(
        ["EVENT", wrapped.to_dict()], ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")
    assert len(message) <= 65_536
    assert len(message) <= gift_wrap_message_bytes(len(rumor.to_json().encode("utf-8")))
    assert unwrap(wrapped, receiver).rumor.content == chunk.text
