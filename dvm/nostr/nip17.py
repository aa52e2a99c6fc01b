"""NIP-17 private direct messages: kind-14 chat rumors and their gift wraps.

NIP-17: https://github.com/nostr-protocol/nips/blob/master/17.md
Gift wrapping: :mod:`dvm.nostr.nip59`.

A chat message is an **unsigned** kind-14 event (a rumor) with one ``["p", receiver, relay?]``
tag per receiver, an optional ``["e", parent, relay?]`` naming the message it replies to and an
optional ``["subject", title]``; the content is plain text. cdvm/1 (DESIGN §3.6) puts the job id
in that ``e`` tag on every rumor of a job's channel: a standard NIP-17 client shows such a
message as a reply to an event it cannot find, i.e. as a plain message, so the channel stays
readable there.

:func:`gift_wraps` seals and wraps one rumor for each receiver (and, as NIP-17 asks, for the
sender's own copy unless ``include_sender`` is false), drawing every random value -- the one-time
wrapper keys, NIP-44 nonces, signature ``aux_rand`` and the seal and wrap timestamps, uniform in
``[now - max_backdate_s, now]`` -- from the injected ``random_bytes`` (``secrets.token_bytes`` one
layer up): this package has no RNG and no clock of its own.

Ephemeral wraps (kind 21059) are the exception: their ``created_at`` is ``now``. Relays keep no
ephemeral event, so backdating one hides nothing from a later reader, and production relays
refuse stale ones (strfry: ``rejectEphemeralEventsOlderThanSeconds``, 60 s by default, answered
``invalid: ephemeral event expired``; issue 10 measured 78,888-159,388 s old wraps). The seal
inside stays randomised (NIP-59), so the relay sees only when the wrap was sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import nip59
from .errors import CodecError, NostrError
from .event import Event, UnsignedEvent
from .hex64 import is_hex64
from .keys import PublicKey, SecretKey

__all__ = [
    "CHAT_KIND",
    "ChatMessage",
    "build_chat_rumor",
    "gift_wraps",
    "parse_chat_rumor",
]

CHAT_KIND = 14


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A parsed kind-14 rumor. ``sender`` is only authenticated if the rumor came out of
    :func:`dvm.nostr.nip59.unwrap` (which checks it against the seal signature)."""

    rumor: UnsignedEvent
    receivers: tuple[str, ...]
    reply_to: str | None
    subject: str | None

    @property
    def id(self) -> str:
        return self.rumor.id

    @property
    def sender(self) -> str:
        return self.rumor.pubkey

    @property
    def content(self) -> str:
        return self.rumor.content


def build_chat_rumor(
    *,
    sender: PublicKey,
    receivers: Sequence[PublicKey],
    content: str,
    created_at: int,
    reply_to: str | None = None,
    subject: str | None = None,
    extra_tags: Sequence[Sequence[str]] = (),
) -> UnsignedEvent:
    """A kind-14 rumor from ``sender`` to ``receivers`` (never sign it: NIP-17)."""
    tags: list[tuple[str, ...]] = [("p", receiver.hex()) for receiver in receivers]
    if reply_to is not None:
        tags.append(("e", reply_to))
    if subject is not None:
        tags.append(("subject", subject))
    tags += [tuple(tag) for tag in extra_tags]
    rumor = UnsignedEvent(sender.hex(), created_at, CHAT_KIND, tuple(tags), content)
    parse_chat_rumor(rumor)
    return rumor


def parse_chat_rumor(rumor: UnsignedEvent) -> ChatMessage:
    """Check a kind-14 rumor's shape: at least one valid ``p``, at most one ``e`` and subject."""
    if rumor.kind != CHAT_KIND:
        raise CodecError(f"kind {rumor.kind} is not a chat message (14)")
    receivers: list[str] = []
    for tag in rumor.tags:
        if tag[0] != "p":
            continue
        if len(tag) < 2:
            raise CodecError("'p' tag has no value")
        try:
            receivers.append(PublicKey.from_hex(tag[1]).hex())
        except NostrError:
            raise CodecError("'p' tag is not a valid public key") from None
    if not receivers:
        raise CodecError("a chat message names at least one receiver")
    if len(set(receivers)) != len(receivers):
        raise CodecError("a receiver is named twice")
    e_tags = [t for t in rumor.tags if t[0] == "e"]
    if len(e_tags) > 1:
        raise CodecError("a chat message replies to at most one event")
    reply_to: str | None = None
    if e_tags:
        if len(e_tags[0]) < 2 or not is_hex64(e_tags[0][1]):
            raise CodecError("'e' tag must name a 64-hex event id")
        reply_to = e_tags[0][1]
    subjects = [t for t in rumor.tags if t[0] == "subject"]
    if len(subjects) > 1 or (subjects and len(subjects[0]) != 2):
        raise CodecError("at most one ['subject', title] tag")
    return ChatMessage(
        rumor=rumor,
        receivers=tuple(receivers),
        reply_to=reply_to,
        subject=subjects[0][1] if subjects else None,
    )


def _random_past(random_bytes: Callable[[int], bytes], now: int, max_backdate_s: int) -> int:
    # 8 random bytes modulo a span of at most days: the bias is below 2**-40, irrelevant here.
    offset = int.from_bytes(random_bytes(8), "big") % (max_backdate_s + 1)
    return max(0, now - offset)


def gift_wraps(
    rumor: UnsignedEvent,
    sender: SecretKey,
    receivers: Sequence[PublicKey],
    *,
    random_bytes: Callable[[int], bytes],
    now: int,
    include_sender: bool = True,
    kind: int = nip59.GIFT_WRAP_KIND,
    max_backdate_s: int = nip59.TWO_DAYS_S,
    extra_wrap_tags: Sequence[Sequence[str]] = (),
) -> list[tuple[PublicKey, Event]]:
    """One gift wrap per receiver (and the sender's copy), each with fresh keys and nonces.

    The seal's ``created_at`` is backdated by up to ``max_backdate_s``; the wrap's too, except for
    kind 21059, whose wrap carries ``now`` (see the module docstring).
    """
    if max_backdate_s < 0:
        raise CodecError("max_backdate_s must be >= 0")
    targets = list(receivers)
    if include_sender and sender.public_key not in targets:
        targets.append(sender.public_key)
    wraps: list[tuple[PublicKey, Event]] = []
    for target in targets:
        wrapper = SecretKey.generate(random_bytes)
        try:
            event = nip59.wrap(
                rumor,
                sender,
                target,
                wrapper=wrapper,
                seal_created_at=_random_past(random_bytes, now, max_backdate_s),
                wrap_created_at=(
                    now
                    if kind == nip59.WRAP_KIND_EPHEMERAL
                    else _random_past(random_bytes, now, max_backdate_s)
                ),
                seal_nonce=random_bytes(32),
                wrap_nonce=random_bytes(32),
                seal_aux_rand=random_bytes(32),
                wrap_aux_rand=random_bytes(32),
                kind=kind,
                extra_tags=extra_wrap_tags,
            )
        finally:
            wrapper.wipe()  # one-time: nothing needs it after signing
        wraps.append((target, event))
    return wraps
