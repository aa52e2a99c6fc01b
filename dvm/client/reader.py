"""The requester's side of the cdvm/1 channel: open the container's gift wraps, collect answers.

Spec: DESIGN §3.6-§3.7, ``dvm/cdvm/channel.py``, ``docs/launch.md`` §6. Pure (no I/O): events
in, typed messages and answers out.

:class:`ChannelReader` accepts a gift wrap only if :func:`dvm.nostr.nip59.unwrap` opens it
for our key with every NIP-59 check **and** the seal is signed by the container key C (so a third
party's wrap, or a seal whose pubkey differs from the rumor's, is dropped), the rumor is a channel
message of this job addressed to us (:func:`dvm.cdvm.channel.parse_channel_rumor`), and its
rumor id was not seen before (replays are dropped). Chunked messages are reassembled and checked
against their SHA-256 before they count. Everything dropped is counted in ``dropped``, by reason,
and never raises: a relay or a stranger cannot make the client fail by sending garbage. (It was
``Inbox`` until the container's own ``container.inbox.Inbox`` made the name ambiguous.)

:class:`Answers` puts output messages back in order: an answer to input ``i`` is complete when
the ``final`` output and every ``seq`` before it have arrived; its text is their concatenation.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

from dvm.cdvm.channel import ChannelMessage, MessageKind, parse_channel_rumor
from dvm.cdvm.chunks import ChunkBuffer, parse_chunk_tag
from dvm.nostr.errors import NostrError
from dvm.nostr.event import Event
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip59 import unwrap

__all__ = ["Answers", "ChannelReader", "OutputPart"]

_MAX_SEEN_IDS = 65536


class ChannelReader:
    """Gift wraps addressed to our key ``recipient``, from the container ``container`` only."""

    def __init__(self, recipient: SecretKey, container: PublicKey, job_id: str) -> None:
        self._recipient = recipient
        self._container = container
        self._job_id = job_id
        self._seen: set[str] = set()
        self._chunks = ChunkBuffer()
        self.dropped: Counter[str] = Counter()
        self.last_wrap_kind: int | None = None

    def add(self, wrap: Event, *, now: int | None = None) -> ChannelMessage | None:
        """The whole channel message ``wrap`` completes, or None (dropped, or a partial chunk).

        A seal with a NIP-40 ``expiration`` (NIP-17 disappearing messages) is accepted; with
        ``now`` given, one that expired is dropped (counted under ``unwrap``).
        """
        try:
            opened = unwrap(wrap, self._recipient, expected_sender=self._container, now=now)
        except NostrError:
            self.dropped["unwrap"] += 1
            return None
        rumor = opened.rumor
        if rumor.id in self._seen:
            self.dropped["replay"] += 1
            return None
        try:
            message = parse_channel_rumor(
                rumor, job=self._job_id, recipient=self._recipient.public_key
            )
            chunk = parse_chunk_tag(rumor.tags)
        except NostrError:
            self.dropped["not-a-channel-message"] += 1
            return None
        if len(self._seen) >= _MAX_SEEN_IDS:
            self._seen.clear()  # bounded memory; a container sends far fewer messages
        self._seen.add(rumor.id)
        self.last_wrap_kind = opened.wrap_kind
        if chunk is None:
            return message
        try:
            whole = self._chunks.add(chunk, message.content)
        except NostrError:
            self.dropped["bad-chunk"] += 1
            return None
        if whole is None:
            return None
        return dataclasses.replace(message, content=whole, chunked=False)


@dataclass(frozen=True, slots=True)
class OutputPart:
    seq: int
    text: str
    final: bool


class Answers:
    """Output messages, grouped by the input they answer and put back in ``seq`` order."""

    def __init__(self) -> None:
        self._parts: dict[str, dict[int, OutputPart]] = {}

    def add(self, message: ChannelMessage) -> None:
        if message.kind is not MessageKind.OUTPUT or message.answers is None:
            return
        if message.seq is None or message.state is None:
            return
        parts = self._parts.setdefault(message.answers, {})
        parts.setdefault(
            message.seq, OutputPart(message.seq, message.content, message.state.value == "final")
        )

    def complete(self, input_id: str) -> str | None:
        """The whole answer to ``input_id`` once its final part and all before it arrived."""
        parts = self._parts.get(input_id, {})
        finals = [p.seq for p in parts.values() if p.final]
        if not finals:
            return None
        last = min(finals)
        if any(seq not in parts for seq in range(last + 1)):
            return None
        return "".join(parts[seq].text for seq in range(last + 1))

    def received_bytes(self, input_id: str) -> int:
        """How much of the answer to ``input_id`` arrived so far (for progress)."""
        return sum(len(p.text.encode("utf-8")) for p in self._parts.get(input_id, {}).values())
