"""cdvm/1 channel messages: the kind-14 rumors the requester and the container exchange.

Defined by this project (DESIGN §3.6-§3.7, docs/protocol.md); carried as NIP-17 rumors
(https://github.com/nostr-protocol/nips/blob/master/17.md) sealed and gift-wrapped by
:mod:`dvm.nostr.nip59`. Every rumor carries ``["e", job]`` and ``["p", peer]``. Large messages
are split with :mod:`dvm.cdvm.chunks`; the ``cdvm`` tag rides on every piece.

Requester -> container:

- **input**: content = the input (text for GGUF models, JSON for ONNX), no ``cdvm`` tag.
- **end**: ``["cdvm", "end"]`` (content ignored), or an input whose whole text is ``/end``.

Container -> requester:

- **output**: ``["cdvm", "output", <input id>, <seq>, "partial" | "final"]``. ``input id`` is
  the id of the (first piece of the) input rumor being answered, ``seq`` counts the output
  messages of that input from 0; the last one is ``final`` (it may be empty when the stream
  ended exactly on a batch boundary). Streaming batches partial outputs.
- **error**: ``["cdvm", "error", <reason>]`` with a human-readable content (no secrets); the
  reasons are those of :class:`ChannelError`.
- **ready**: ``["cdvm", "ready"]`` once the model is loaded and checked (inputs sent earlier are
  queued, not lost).

Anything else from the peer is refused with :class:`CodecError` and ignored by the receiver.

**Plain NIP-17 messages** (docs/standard-clients.md, docs/protocol.md §5): a standard client
(Amethyst, 0xchat, nostr-sdk's ``nip17_make_private_msg``) sends a kind-14 rumor with only
``["p", C]``. With ``allow_plain=True`` (the container's reading), a rumor that carries neither
an ``e`` tag nor a ``cdvm`` tag is an input (or ``/end``) with ``plain=True``: the job check the
``e`` tag makes adds nothing there, because C exists for this one job and the seal is checked
against the one authorised key. So is a NIP-17 *reply*, whose ``e`` tag names an earlier
message of the conversation given in ``replies``. Any other ``e`` tag must name this job.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from enum import StrEnum

from dvm.nostr.errors import CodecError
from dvm.nostr.event import UnsignedEvent
from dvm.nostr.hex64 import is_hex64
from dvm.nostr.keys import PublicKey
from dvm.nostr.nip17 import CHAT_KIND

from .chunks import DEFAULT_CHUNK_BUDGET_BYTES, parse_chunk_tag, split_message

__all__ = [
    "CDVM_TAG",
    "END_TEXT",
    "ChannelError",
    "ChannelMessage",
    "MessageKind",
    "OutputState",
    "build_end",
    "build_error",
    "build_input",
    "build_output",
    "build_ready",
    "parse_channel_rumor",
]

CDVM_TAG = "cdvm"
END_TEXT = "/end"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,8}")


class MessageKind(StrEnum):
    INPUT = "input"
    END = "end"
    OUTPUT = "output"
    ERROR = "error"
    READY = "ready"


class OutputState(StrEnum):
    PARTIAL = "partial"
    FINAL = "final"


class ChannelError(StrEnum):
    """Machine-readable reasons the container sends in ``["cdvm", "error", reason]``."""

    BAD_INPUT = "bad-input"
    TOO_LARGE = "too-large"
    MODEL_FAILED = "model-failed"
    TIMEOUT = "timeout"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """A parsed channel rumor (one piece when chunked: see ``chunk``)."""

    kind: MessageKind
    job: str
    sender: str
    content: str
    rumor_id: str
    answers: str | None = None  # output: the input id it answers
    seq: int | None = None  # output: its sequence number
    state: OutputState | None = None  # output: partial or final
    reason: ChannelError | None = None  # error: the reason
    chunked: bool = False
    plain: bool = False  # a plain NIP-17 message: no 'e' tag, no 'cdvm' tag (allow_plain)


def _base_tags(job: str, peer: PublicKey) -> list[tuple[str, ...]]:
    if not is_hex64(job):
        raise CodecError("job id must be 64 lowercase hex characters")
    return [("p", peer.hex()), ("e", job)]


def _rumors(
    sender: PublicKey,
    peer: PublicKey,
    job: str,
    content: str,
    *,
    cdvm: tuple[str, ...] | None,
    created_at: int,
    budget_bytes: int,
) -> list[UnsignedEvent]:
    base = _base_tags(job, peer)
    if cdvm is not None:
        base.append(cdvm)
    pieces = split_message(content, budget_bytes=budget_bytes)
    if len(pieces) == 1:  # fits: a whole message carries no chunk tag
        return [UnsignedEvent(sender.hex(), created_at, CHAT_KIND, tuple(base), content)]
    return [
        UnsignedEvent(sender.hex(), created_at, CHAT_KIND, (*base, p.tag.to_tag()), p.text)
        for p in pieces
    ]


def build_input(
    sender: PublicKey,
    container: PublicKey,
    job: str,
    text: str,
    *,
    created_at: int,
    budget_bytes: int = DEFAULT_CHUNK_BUDGET_BYTES,
) -> list[UnsignedEvent]:
    """One input, split into as many rumors as the budget needs."""
    if not text:
        raise CodecError("an input must not be empty")
    return _rumors(
        sender, container, job, text, cdvm=None, created_at=created_at, budget_bytes=budget_bytes
    )


def build_end(
    sender: PublicKey, container: PublicKey, job: str, *, created_at: int
) -> UnsignedEvent:
    tags = (*_base_tags(job, container), (CDVM_TAG, MessageKind.END.value))
    return UnsignedEvent(sender.hex(), created_at, CHAT_KIND, tags, "")


def build_output(
    container: PublicKey,
    requester: PublicKey,
    job: str,
    text: str,
    *,
    answers: str,
    seq: int,
    state: OutputState,
    created_at: int,
    budget_bytes: int = DEFAULT_CHUNK_BUDGET_BYTES,
) -> list[UnsignedEvent]:
    if not is_hex64(answers):
        raise CodecError("answers must name a 64-hex rumor id")
    if seq < 0:
        raise CodecError("seq must be >= 0")
    cdvm = (CDVM_TAG, MessageKind.OUTPUT.value, answers, str(seq), state.value)
    return _rumors(
        container, requester, job, text, cdvm=cdvm, created_at=created_at, budget_bytes=budget_bytes
    )


def build_error(
    container: PublicKey,
    requester: PublicKey,
    job: str,
    reason: ChannelError,
    message: str,
    *,
    created_at: int,
) -> UnsignedEvent:
    tags = (*_base_tags(job, requester), (CDVM_TAG, MessageKind.ERROR.value, reason.value))
    return UnsignedEvent(container.hex(), created_at, CHAT_KIND, tags, message)


def build_ready(
    container: PublicKey, requester: PublicKey, job: str, *, created_at: int, text: str = ""
) -> UnsignedEvent:
    """``["cdvm","ready"]``; ``text`` (ignored by parsers) keeps it readable in other clients."""
    tags = (*_base_tags(job, requester), (CDVM_TAG, MessageKind.READY.value))
    return UnsignedEvent(container.hex(), created_at, CHAT_KIND, tags, text)


def _one(rumor: UnsignedEvent, name: str) -> tuple[str, ...] | None:
    found = [t for t in rumor.tags if t[0] == name]
    if len(found) > 1:
        raise CodecError(f"more than one {name!r} tag")
    return found[0] if found else None


def parse_channel_rumor(
    rumor: UnsignedEvent,
    *,
    job: str,
    recipient: PublicKey,
    allow_plain: bool = False,
    replies: Container[str] = frozenset(),
) -> ChannelMessage:
    """Check a rumor belongs to this job's channel and say what it is.

    Refuses (``CodecError``) a rumor that is not kind 14, does not carry exactly one
    ``["e", job]`` for *this* job, is not addressed to ``recipient``, or has an unknown or
    malformed ``cdvm`` tag. With ``allow_plain``, a rumor with no ``cdvm`` tag and either no
    ``e`` tag or one naming an id in ``replies`` (a NIP-17 reply) is a plain NIP-17 input or
    ``/end`` (``plain=True``; see the module docstring).
    """
    if rumor.kind != CHAT_KIND:
        raise CodecError(f"kind {rumor.kind} is not a chat message (14)")
    e_tag = _one(rumor, "e")
    plain = (
        allow_plain
        and _one(rumor, CDVM_TAG) is None
        and (e_tag is None or (len(e_tag) > 1 and e_tag[1] != job and e_tag[1] in replies))
    )
    if not plain and (e_tag is None or len(e_tag) < 2 or e_tag[1] != job):
        raise CodecError("the rumor does not name this job in its 'e' tag")
    if recipient.hex() not in [t[1] for t in rumor.tags if t[0] == "p" and len(t) > 1]:
        raise CodecError("the rumor is not addressed to us")
    chunked = parse_chunk_tag(rumor.tags) is not None
    cdvm = _one(rumor, CDVM_TAG)

    def message(
        kind: MessageKind,
        content: str = "",
        *,
        answers: str | None = None,
        seq: int | None = None,
        state: OutputState | None = None,
        reason: ChannelError | None = None,
    ) -> ChannelMessage:
        return ChannelMessage(
            kind=kind,
            job=job,
            sender=rumor.pubkey,
            content=content,
            rumor_id=rumor.id,
            answers=answers,
            seq=seq,
            state=state,
            reason=reason,
            chunked=chunked,
            plain=plain,
        )

    if cdvm is None:
        if rumor.content.strip() == END_TEXT and not chunked:
            return message(MessageKind.END)
        return message(MessageKind.INPUT, rumor.content)
    kind = MessageKind(cdvm[1]) if len(cdvm) > 1 and cdvm[1] in _KINDS else None
    if kind in (MessageKind.END, MessageKind.READY) and len(cdvm) == 2:
        return message(kind)
    if kind is MessageKind.ERROR and len(cdvm) == 3:
        if cdvm[2] not in _REASONS:
            raise CodecError("unknown channel error reason")
        return message(kind, rumor.content, reason=ChannelError(cdvm[2]))
    if kind is MessageKind.OUTPUT and len(cdvm) == 5:
        answers, seq, state = cdvm[2], cdvm[3], cdvm[4]
        if not is_hex64(answers) or not _DECIMAL.fullmatch(seq):
            raise CodecError("malformed output tag")
        if state not in _STATES:
            raise CodecError("output state must be partial or final")
        return message(kind, rumor.content, answers=answers, seq=int(seq), state=OutputState(state))
    raise CodecError("unknown or malformed 'cdvm' tag")


_KINDS = frozenset(k.value for k in MessageKind)
_REASONS = frozenset(r.value for r in ChannelError)
_STATES = frozenset(s.value for s in OutputState)
