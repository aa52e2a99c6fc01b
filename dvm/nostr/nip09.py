"""NIP-09 event deletion requests (kind 5).

NIP-09: https://github.com/nostr-protocol/nips/blob/master/09.md

A deletion request names regular events by ``["e", id]`` and addressable events by
``["a", "<kind>:<pubkey>:<d>"]``, optionally with ``["k", kind]`` for each kind it deletes; the
content is an optional human-readable reason. cdvm/1 uses it for the node's NIP-89 announcement
on clean shutdown (an ``a`` tag ``31990:<P>:<d>``) and for cancelling a job request. Relays only
honour a request from the author of the named events; checking that is the relay's (and the
reader's) job, not this codec's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import CodecError
from .event import MAX_KIND, Event, UnsignedEvent
from .hex64 import is_hex64

__all__ = ["DELETION_KIND", "Deletion", "build_deletion", "parse_address", "parse_deletion"]

DELETION_KIND = 5

_KIND = re.compile(r"0|[1-9][0-9]{0,4}")


def parse_address(address: str) -> tuple[int, str, str]:
    """Split ``<kind>:<pubkey hex>:<d>`` (the ``d`` part may contain ``:``)."""
    parts = address.split(":", 2)
    if len(parts) != 3:
        raise CodecError("address must be '<kind>:<pubkey>:<d>'")
    kind, pubkey, identifier = parts
    if not _KIND.fullmatch(kind) or int(kind) > MAX_KIND:
        raise CodecError("address kind must be 0 to 65535")
    if not is_hex64(pubkey):
        raise CodecError("address pubkey must be 64 lowercase hex characters")
    return int(kind), pubkey, identifier


@dataclass(frozen=True, slots=True)
class Deletion:
    """A parsed deletion request."""

    event: Event
    event_ids: tuple[str, ...]
    addresses: tuple[str, ...]
    kinds: tuple[int, ...]

    @property
    def reason(self) -> str:
        return self.event.content


def _check(
    tags: tuple[tuple[str, ...], ...],
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    ids: list[str] = []
    addresses: list[str] = []
    kinds: list[int] = []
    for tag in tags:
        if tag[0] not in ("e", "a", "k"):
            continue
        if len(tag) < 2:
            raise CodecError(f"{tag[0]!r} tag has no value")
        if tag[0] == "e":
            if not is_hex64(tag[1]):
                raise CodecError("'e' tag must name a 64-hex event id")
            ids.append(tag[1])
        elif tag[0] == "a":
            parse_address(tag[1])
            addresses.append(tag[1])
        else:
            if not _KIND.fullmatch(tag[1]) or int(tag[1]) > MAX_KIND:
                raise CodecError("'k' tag must be a kind 0 to 65535")
            kinds.append(int(tag[1]))
    if not ids and not addresses:
        raise CodecError("a deletion request names at least one event or address")
    return tuple(ids), tuple(addresses), tuple(kinds)


def build_deletion(
    *,
    author_hex: str,
    created_at: int,
    event_ids: Sequence[str] = (),
    addresses: Sequence[str] = (),
    kinds: Sequence[int] = (),
    reason: str = "",
) -> UnsignedEvent:
    """A kind-5 request by ``author_hex`` deleting ``event_ids`` and ``addresses``."""
    tags: list[tuple[str, ...]] = [("e", event_id) for event_id in event_ids]
    tags += [("a", address) for address in addresses]
    tags += [("k", str(kind)) for kind in kinds]
    unsigned = UnsignedEvent(author_hex, created_at, DELETION_KIND, tuple(tags), reason)
    _check(unsigned.tags)
    return unsigned


def parse_deletion(event: Event) -> Deletion:
    """Parse a verified kind-5 event, or raise CodecError."""
    if event.kind != DELETION_KIND:
        raise CodecError(f"kind {event.kind} is not a deletion request ({DELETION_KIND})")
    ids, addresses, kinds = _check(event.tags)
    return Deletion(event=event, event_ids=ids, addresses=addresses, kinds=kinds)
