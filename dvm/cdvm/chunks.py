"""cdvm/1 chunked messages: ``["chunk", index, total, sha256-of-whole]`` on kind-14 rumors.

Defined by this project (DESIGN §3.6, docs/protocol.md). A message too large for one gift-wrapped
event is split into pieces sent as separate rumors, each tagged with its 0-based ``index``, the
``total`` number of pieces (decimal, no leading zeros) and the SHA-256 (64 lowercase hex) of the
whole message's UTF-8 bytes. A rumor without a chunk tag is a whole message.

Splitting is on code-point boundaries (Python ``str`` indices), so every piece is valid UTF-8;
the size of a piece is measured as it will sit in the rumor JSON (NIP-01 escaping with
``ensure_ascii=False``: ``"`` and ``\\`` and control characters grow, non-ASCII does not).

**Budget arithmetic** (:func:`chunk_budget_bytes`). A gift wrap is
``["EVENT", wrap]`` where ``wrap.content = NIP-44(seal JSON)`` and
``seal.content = NIP-44(rumor JSON)``. A NIP-44 payload of ``n`` plaintext bytes is
``base64(1 + 32 + 2 + padded(n) + 32)`` characters; ``padded`` rounds up to 32-byte steps under
256 bytes and to 1/8 of the next power of two above (up to 25 % more), and base64 adds 4/3 --
twice, because the seal is encrypted inside the wrap. The fixed fields of the seal and the wrap
(id, pubkey, sig, created_at, kind, ``p`` tag) add about 250 bytes each. For a 64 KiB message
limit the largest rumor JSON is 28,672 bytes: its payload is 38,320 characters, the seal JSON
38,663 bytes (padded to 40,960), the wrap content 54,704 characters and the whole
``["EVENT",...]`` message 55,131 bytes. One byte more pads the seal to 49,152 and the message
grows to 66,055 bytes, over the limit. :data:`RUMOR_OVERHEAD_BYTES` of the 28,672 is kept for
the rumor's own fields and tags, which leaves :data:`DEFAULT_CHUNK_BUDGET_BYTES` (27,648)
of escaped text per piece. Relays announce smaller limits in NIP-11 (``max_message_length``);
callers compute the budget for those with :func:`chunk_budget_bytes`.

Reassembly (:class:`ChunkBuffer`, :func:`reassemble`) checks the index range, that every piece
agrees on ``total``, that no index arrives twice, and the SHA-256 of the joined whole; any
failure is a :class:`CodecError`. Memory is bounded by ``max_pending_bytes``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from dvm.nostr.errors import CodecError
from dvm.nostr.event import Tags
from dvm.nostr.hex64 import is_hex64
from dvm.nostr.nip44 import payload_chars_for

__all__ = [
    "CHUNK_TAG",
    "DEFAULT_CHUNK_BUDGET_BYTES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "MAX_CHUNKS",
    "RUMOR_OVERHEAD_BYTES",
    "Chunk",
    "ChunkBuffer",
    "ChunkTag",
    "chunk_budget_bytes",
    "escaped_size_bytes",
    "gift_wrap_message_bytes",
    "parse_chunk_tag",
    "reassemble",
    "split_message",
]

CHUNK_TAG = "chunk"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
RUMOR_OVERHEAD_BYTES = 1024
MAX_CHUNKS = 4096
_MIN_BUDGET_BYTES = 6  # the widest escaped code point, \u00XX
_DEFAULT_MAX_PENDING_BYTES = 16 * 1024 * 1024

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,8}")

# Fixed parts of the seal and wrap JSON, measured on templates: a 10-digit created_at (valid
# until the year 2286) and the field layout Event.to_json writes. Only the content varies.
_TEMPLATE_CREATED_AT = 9_999_999_999


def _event_json_bytes(kind: int, tags: list[list[str]], content_chars: int) -> int:
    template = {
        "id": "0" * 64,
        "pubkey": "0" * 64,
        "created_at": _TEMPLATE_CREATED_AT,
        "kind": kind,
        "tags": tags,
        "content": "",
        "sig": "0" * 128,
    }
    # base64 content never needs JSON escaping, so it adds exactly its length.
    return len(json.dumps(template, separators=(",", ":")).encode("utf-8")) + content_chars


def gift_wrap_message_bytes(rumor_json_bytes: int, *, extra_wrap_tags_bytes: int = 0) -> int:
    """Size of ``["EVENT",<gift wrap>]`` carrying a rumor whose JSON is ``rumor_json_bytes``.

    ``extra_wrap_tags_bytes`` counts wrap tags beyond ``["p", ...]`` (e.g. an expiration).
    """
    seal_bytes = _event_json_bytes(13, [], payload_chars_for(rumor_json_bytes))
    wrap_bytes = _event_json_bytes(1059, [["p", "0" * 64]], payload_chars_for(seal_bytes))
    return len('["EVENT",]') + wrap_bytes + extra_wrap_tags_bytes


def chunk_budget_bytes(
    max_message_bytes: int,
    *,
    rumor_overhead_bytes: int = RUMOR_OVERHEAD_BYTES,
    extra_wrap_tags_bytes: int = 0,
) -> int:
    """The largest escaped text size per piece so each gift wrap fits ``max_message_bytes``."""
    low, high = 0, max_message_bytes  # invariant: low fits (or is 0), high + 1 does not
    while low < high:
        mid = (low + high + 1) // 2
        size = gift_wrap_message_bytes(
            mid + rumor_overhead_bytes, extra_wrap_tags_bytes=extra_wrap_tags_bytes
        )
        if size <= max_message_bytes:
            low = mid
        else:
            high = mid - 1
    if low < _MIN_BUDGET_BYTES:
        raise CodecError(f"a {max_message_bytes}-byte relay limit leaves no room for a message")
    return low


DEFAULT_CHUNK_BUDGET_BYTES = chunk_budget_bytes(DEFAULT_MAX_MESSAGE_BYTES)


def escaped_size_bytes(text: str) -> int:
    """UTF-8 size of ``text`` as a JSON string body (NIP-01 escaping, quotes excluded)."""
    try:
        return len(json.dumps(text, ensure_ascii=False).encode("utf-8")) - 2
    except UnicodeEncodeError:
        raise CodecError("text is not valid Unicode (lone surrogate)") from None


@dataclass(frozen=True, slots=True)
class ChunkTag:
    """The parsed ``["chunk", index, total, sha256]`` tag."""

    index: int
    total: int
    digest: str

    def __post_init__(self) -> None:
        if not 1 <= self.total <= MAX_CHUNKS:
            raise CodecError(f"chunk total must be 1 to {MAX_CHUNKS}")
        if not 0 <= self.index < self.total:
            raise CodecError("chunk index out of range")
        if not is_hex64(self.digest):
            raise CodecError("chunk digest must be 64 lowercase hex characters")

    def to_tag(self) -> tuple[str, str, str, str]:
        return (CHUNK_TAG, str(self.index), str(self.total), self.digest)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a message and its tag."""

    tag: ChunkTag
    text: str


def split_message(
    text: str, *, budget_bytes: int = DEFAULT_CHUNK_BUDGET_BYTES
) -> tuple[Chunk, ...]:
    """Split ``text`` into pieces of at most ``budget_bytes`` escaped bytes each.

    A text that fits comes back as one piece with ``total == 1``; senders may then omit the tag.
    """
    if budget_bytes < _MIN_BUDGET_BYTES:
        raise CodecError(f"chunk budget must be at least {_MIN_BUDGET_BYTES} bytes")
    escaped_size_bytes(text)  # refuses lone surrogates before any hashing
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    pieces: list[str] = []
    start = 0
    while start < len(text) or not pieces:
        end = _largest_fitting_end(text, start, budget_bytes)
        pieces.append(text[start:end])
        start = end
    if len(pieces) > MAX_CHUNKS:
        raise CodecError(f"message needs {len(pieces)} chunks, more than {MAX_CHUNKS}")
    total = len(pieces)
    return tuple(Chunk(ChunkTag(i, total, digest), piece) for i, piece in enumerate(pieces))


def _largest_fitting_end(text: str, start: int, budget_bytes: int) -> int:
    # Every code point takes at least one byte, so no piece is longer than the budget in chars;
    # search the largest end whose slice fits (the size is monotonic in the end).
    low, high = start, min(len(text), start + budget_bytes)
    if escaped_size_bytes(text[start:high]) <= budget_bytes:
        return high
    while low < high - 1:
        mid = (low + high) // 2
        if escaped_size_bytes(text[start:mid]) <= budget_bytes:
            low = mid
        else:
            high = mid
    return low


def parse_chunk_tag(tags: Tags) -> ChunkTag | None:
    """The chunk tag of a rumor, None if it has none; malformed or repeated: CodecError."""
    found = [t for t in tags if t[0] == CHUNK_TAG]
    if not found:
        return None
    if len(found) > 1:
        raise CodecError("more than one 'chunk' tag")
    tag = found[0]
    if len(tag) != 4:
        raise CodecError("'chunk' tag must be ['chunk', index, total, sha256]")
    if not _DECIMAL.fullmatch(tag[1]) or not _DECIMAL.fullmatch(tag[2]):
        raise CodecError("chunk index and total must be decimal integers")
    return ChunkTag(int(tag[1]), int(tag[2]), tag[3])


def _size_bytes(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


class ChunkBuffer:
    """Collects pieces of possibly interleaved messages (keyed by their digest); pure, no I/O.

    :meth:`add` returns the whole text when its last piece arrives, else None. A bad piece
    raises :class:`CodecError` and drops what was collected for that message.
    """

    __slots__ = ("_max_pending_bytes", "_pending", "_pending_bytes")

    def __init__(self, *, max_pending_bytes: int = _DEFAULT_MAX_PENDING_BYTES) -> None:
        self._max_pending_bytes = max_pending_bytes
        self._pending: dict[str, tuple[int, dict[int, str]]] = {}
        self._pending_bytes = 0

    @property
    def pending_messages(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def discard(self, digest: str) -> None:
        """Forget a partial message (e.g. on timeout)."""
        _, pieces = self._pending.pop(digest, (0, {}))
        self._pending_bytes -= sum(_size_bytes(p) for p in pieces.values())

    def add(self, tag: ChunkTag, text: str) -> str | None:
        total, pieces = self._pending.get(tag.digest, (tag.total, {}))
        if total != tag.total:
            self.discard(tag.digest)
            raise CodecError(f"chunk total {tag.total} differs from {total} seen before")
        if tag.index in pieces:
            self.discard(tag.digest)
            raise CodecError(f"chunk {tag.index} of {total} arrived twice")
        size_bytes = _size_bytes(text)
        if self._pending_bytes + size_bytes > self._max_pending_bytes:
            self.discard(tag.digest)
            raise CodecError(f"pending chunks exceed {self._max_pending_bytes} bytes")
        pieces[tag.index] = text
        self._pending[tag.digest] = (total, pieces)
        self._pending_bytes += size_bytes
        if len(pieces) < total:
            return None
        self.discard(tag.digest)
        whole = "".join(pieces[i] for i in range(total))
        try:
            whole_bytes = whole.encode("utf-8")
        except UnicodeEncodeError:
            raise CodecError("reassembled message is not valid Unicode") from None
        if hashlib.sha256(whole_bytes).hexdigest() != tag.digest:
            raise CodecError("reassembled message does not match its sha256")
        return whole


def reassemble(pieces: Iterable[tuple[ChunkTag, str]]) -> str:
    """Join the pieces of exactly one message (any order), checking everything."""
    buffer = ChunkBuffer()
    whole: str | None = None
    digest: str | None = None
    for tag, text in pieces:
        if digest is not None and tag.digest != digest:
            raise CodecError("pieces of different messages")
        if whole is not None:
            raise CodecError(f"chunk {tag.index} arrived after the message was complete")
        digest = tag.digest
        whole = buffer.add(tag, text)
    if whole is None:
        raise CodecError("message is incomplete")
    return whole
