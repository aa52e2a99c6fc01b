"""The container's side of the cdvm/1 channel: which gift wraps it accepts (DESIGN §3.6).

Spec: DESIGN §3.6, docs/launch.md §6, :mod:`dvm.cdvm.channel` (the rumors),
:mod:`dvm.nostr.nip59` (the unwrap checks), :mod:`dvm.cdvm.chunks` (reassembly).

Contract: pure (no I/O, no clock, no RNG). :meth:`Inbox.receive` takes one verified gift wrap
event and returns exactly one of:

* :class:`Accepted` -- a whole input (chunks reassembled and hash-checked), with the id that
  outputs answer (the first piece's rumor id);
* :class:`Ended` -- ``["cdvm","end"]`` or ``/end``;
* :class:`Refused` -- an authenticated message of the requester that cannot be an input
  (``too-large``: over ``max_input_bytes``; ``bad-input``: a chunk that does not reassemble);
  the shell answers with ``["cdvm","error",reason]``;
* :class:`Pending` -- a piece of a chunked input, stored;
* :class:`Ignored` -- anything else, silently dropped: a third party's wrap, a seal by another
  key, a seal whose pubkey differs from the rumor's (checked by ``nip59.unwrap``), a replayed
  wrap or rumor, a rumor for another job or not addressed to us, our own kinds of message, a
  seal whose NIP-40 ``expiration`` (NIP-17 disappearing messages) is not after ``now``.
  ``why`` names the check with ids and kinds only, for the operator log.

Every result except ``Ignored`` carries the wrap kind the requester used (1059 or 21059): the
container answers in the kind it last saw. Plain NIP-17 messages of the authorised sender (no
``e``, no ``cdvm`` tag: a standard client, docs/standard-clients.md) are accepted too, with
``plain=True`` on the result; a message of anyone else is still ``Ignored`` (the seal check).
A plain message may be a NIP-17 reply to a message of this conversation: one the shell sent
(:meth:`Inbox.note_sent`) or an input accepted earlier.
Replays are dropped by wrap id and by rumor id (a replayed rumor re-wrapped by anyone holding
it is still the same rumor). Memory is bounded:
the replay sets keep the last ``seen_capacity`` ids, pending chunks at most
``max_input_bytes``. :meth:`clear` forgets everything (destruction).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from dvm.cdvm.channel import ChannelError, MessageKind, parse_channel_rumor
from dvm.cdvm.chunks import ChunkBuffer, parse_chunk_tag
from dvm.nostr import nip59
from dvm.nostr.errors import NostrError
from dvm.nostr.event import Event
from dvm.nostr.keys import PublicKey, SecretKey

__all__ = ["Accepted", "Ended", "Ignored", "Inbox", "Pending", "Received", "Refused"]

DEFAULT_SEEN_CAPACITY = 65536


@dataclass(frozen=True, slots=True)
class Accepted:
    input_id: str
    text: str
    wrap_kind: int
    plain: bool = False

    def __repr__(self) -> str:  # the text is the requester's plaintext: never printed
        return (
            f"Accepted(input_id={self.input_id!r}, size={len(self.text)}, "
            f"kind={self.wrap_kind}, plain={self.plain})"
        )


@dataclass(frozen=True, slots=True)
class Ended:
    wrap_kind: int
    plain: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    reason: ChannelError
    wrap_kind: int
    plain: bool = False


@dataclass(frozen=True, slots=True)
class Pending:
    wrap_kind: int


@dataclass(frozen=True, slots=True)
class Ignored:
    why: str


Received = Accepted | Ended | Refused | Pending | Ignored


class _Seen:
    """A bounded replay set (least recently added evicted)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def add(self, item: str) -> bool:
        """True if new."""
        if item in self._ids:
            return False
        self._ids[item] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True

    def clear(self) -> None:
        self._ids.clear()


class Inbox:
    """Acceptance rules for the gift wraps addressed to the container key ``key``."""

    def __init__(
        self,
        *,
        key: SecretKey,
        expected_sender: PublicKey,
        job: str,
        max_input_bytes: int,
        seen_capacity: int = DEFAULT_SEEN_CAPACITY,
    ) -> None:
        self._key = key
        self._expected = expected_sender
        self._job = job
        self._max_input_bytes = max_input_bytes
        self._wraps = _Seen(seen_capacity)
        self._rumors = _Seen(seen_capacity)
        self._conversation = _Seen(seen_capacity)  # ids a plain peer may reply to (NIP-17 e)
        self._chunks = ChunkBuffer(max_pending_bytes=max_input_bytes)
        self._first_piece: dict[str, str] = {}  # digest -> rumor id of piece 0

    def clear(self) -> None:
        """Forget pending chunks and replay sets (buffers wiped on destruction)."""
        for digest in list(self._first_piece):
            self._chunks.discard(digest)
        self._chunks = ChunkBuffer(max_pending_bytes=self._max_input_bytes)
        self._first_piece.clear()
        self._wraps.clear()
        self._rumors.clear()
        self._conversation.clear()

    def note_sent(self, rumor_ids: Iterable[str]) -> None:
        """Remember the rumors the container sent: a standard client may reply to them."""
        for rumor_id in rumor_ids:
            self._conversation.add(rumor_id)

    def receive(self, wrap: Event, *, now: int | None = None) -> Received:
        """One wrap's outcome; ``now`` (unix seconds) expires seals that carry an expiration."""
        if not self._wraps.add(wrap.id):
            return Ignored(f"wrap {wrap.id[:16]}… kind {wrap.kind}: replayed")
        try:
            opened = nip59.unwrap(wrap, self._key, expected_sender=self._expected, now=now)
        except NostrError as exc:
            return Ignored(f"{type(exc).__name__}: {exc}")
        rumor = opened.rumor
        where = f"wrap {wrap.id[:16]}… rumor {rumor.id[:16]}…"
        if not self._rumors.add(rumor.id):
            return Ignored(f"{where}: rumor replayed")
        try:
            message = parse_channel_rumor(
                rumor,
                job=self._job,
                recipient=self._key.public_key,
                allow_plain=True,
                replies=self._conversation,
            )
        except NostrError as exc:
            return Ignored(f"{where}: {exc}")
        kind, plain = opened.wrap_kind, message.plain
        if message.kind is MessageKind.END:
            return Ended(kind, plain)
        if message.kind is not MessageKind.INPUT:
            return Ignored(f"{where}: a {message.kind.value} message is not the requester's")
        if not message.chunked:
            if len(message.content.encode("utf-8", "surrogatepass")) > self._max_input_bytes:
                return Refused(ChannelError.TOO_LARGE, kind, plain)
            if not message.content:
                return Refused(ChannelError.BAD_INPUT, kind, plain)
            self._conversation.add(rumor.id)
            return Accepted(rumor.id, message.content, kind, plain)
        return self._piece(rumor.tags, message.content, rumor.id, kind)

    def _piece(
        self, tags: tuple[tuple[str, ...], ...], text: str, rumor_id: str, kind: int
    ) -> Received:
        try:
            tag = parse_chunk_tag(tags)
        except NostrError:
            return Refused(ChannelError.BAD_INPUT, kind)
        if tag is None:  # pragma: no cover - parse_channel_rumor said it is chunked
            return Refused(ChannelError.BAD_INPUT, kind)
        size_bytes = len(text.encode("utf-8", "surrogatepass"))
        if self._chunks.pending_bytes + size_bytes > self._max_input_bytes:
            self._chunks.discard(tag.digest)
            self._first_piece.pop(tag.digest, None)
            return Refused(ChannelError.TOO_LARGE, kind)
        if tag.index == 0:
            self._first_piece[tag.digest] = rumor_id
        try:
            whole = self._chunks.add(tag, text)
        except NostrError:
            self._first_piece.pop(tag.digest, None)
            return Refused(ChannelError.BAD_INPUT, kind)
        if whole is None:
            return Pending(kind)
        return Accepted(self._first_piece.pop(tag.digest, rumor_id), whole, kind)
