"""What the container says to a standard NIP-17 client, and the DM relay list it publishes.

Spec: NIP-17 (https://github.com/nostr-protocol/nips/blob/master/17.md), docs/standard-clients.md,
docs/protocol.md §5 ("Standard NIP-17 clients").

Contract: pure -- time (``now``/``created_at``) and randomness (``random_bytes``) are
parameters, nothing is sent. A standard client (Amethyst, 0xchat, nostr-sdk) shows every kind-14
message as a bubble and knows nothing of cdvm tags, so a *plain* peer gets:

* :func:`plain_messages`: the text as ordinary kind-14 rumors from C with ``["p", peer]`` and,
  when it answers an input, ``["e", input rumor id]`` (a NIP-17 reply, so clients thread it).
  Never empty (an empty answer reads :data:`EMPTY_ANSWER_TEXT`). One message per answer; an
  answer over one event's budget is split into consecutive plain messages (no chunk tags: a
  standard client could not reassemble them).
* :data:`ENDED_TEXT` as its last message when ``/end`` (or a one-shot answer) ends the job;
  the timeout notice is the channel's readable error text.

:func:`sign_relay_list` is C's kind 10050 (:mod:`dvm.nostr.nip17_relays`): the relays the
container reads, so a client that follows NIP-17 (send only to the recipient's 10050 relays)
reaches it. It carries the attestation's expiration: the list dies with the container.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dvm.cdvm.chunks import DEFAULT_CHUNK_BUDGET_BYTES, split_message
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip17 import CHAT_KIND
from dvm.nostr.nip17_relays import build_relay_list

__all__ = [
    "EMPTY_ANSWER_TEXT",
    "ENDED_TEXT",
    "READY_TEXT",
    "plain_messages",
    "sign_relay_list",
]

ENDED_TEXT = "Session ended; this container is being destroyed."
EMPTY_ANSWER_TEXT = "(the model returned no text)"
#: the content of the cdvm ``ready`` message: cdvm clients ignore it, other clients show it
READY_TEXT = "Ready: the model is loaded and checked. Write your message; /end ends the job."


def plain_messages(
    container: PublicKey,
    peer: PublicKey,
    text: str,
    *,
    created_at: int,
    reply_to: str | None = None,
    budget_bytes: int = DEFAULT_CHUNK_BUDGET_BYTES,
) -> list[UnsignedEvent]:
    """``text`` as readable kind-14 rumors for a standard client (one unless it is too large)."""
    tags: tuple[tuple[str, ...], ...] = (("p", peer.hex()),)
    if reply_to is not None:
        tags += (("e", reply_to),)
    pieces = split_message(text or EMPTY_ANSWER_TEXT, budget_bytes=budget_bytes)
    return [
        UnsignedEvent(container.hex(), created_at, CHAT_KIND, tags, piece.text) for piece in pieces
    ]


def sign_relay_list(
    key: SecretKey,
    relays: Sequence[str],
    *,
    expiration: int,
    now: int,
    random_bytes: Callable[[int], bytes],
) -> Event:
    """C's kind-10050 DM relay list naming ``relays``, expiring with the attestation."""
    unsigned = build_relay_list(key.public_key, relays, created_at=now, expiration=expiration)
    return unsigned.sign(key, aux_rand=random_bytes(32))
