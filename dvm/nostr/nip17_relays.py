"""NIP-17 kind 10050: the relays a user wants to receive private direct messages on.

NIP-17: https://github.com/nostr-protocol/nips/blob/master/17.md ("Publishing"): a kind-10050
replaceable event with one ``["relay", url]`` tag per relay and empty content. A sender MUST
publish a recipient's messages only to the relays of that list, and clients (Amethyst,
nostr-sdk's ``send_private_msg``) refuse to send to a key that has none. The cdvm container
publishes one for C right after its attestation (docs/standard-clients.md) with a NIP-40
``expiration`` equal to the attestation's: the list dies with the container, whose key is wiped.

Contract: pure. :func:`build_relay_list` returns the unsigned event; :func:`parse_relay_list`
checks a (verified) event's kind and tags and returns its relay URLs in order, raising
:class:`~dvm.nostr.errors.CodecError` for anything else. URLs must be ``ws://`` or ``wss://``
(at most :data:`MAX_RELAYS`, each at most :data:`MAX_URL_CHARS`); other tags are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import CodecError
from .event import Event, UnsignedEvent
from .keys import PublicKey

__all__ = ["MAX_RELAYS", "MAX_URL_CHARS", "RELAY_LIST_KIND", "build_relay_list", "parse_relay_list"]

RELAY_LIST_KIND = 10050
MAX_RELAYS = 32  # NIP-17 asks for a short list (1-3 relays); more is a mistake or an attack
MAX_URL_CHARS = 512


def _check_url(url: str) -> str:
    if not url.startswith(("ws://", "wss://")) or len(url) > MAX_URL_CHARS or url.strip() != url:
        raise CodecError(f"relay URL of {len(url)} characters is not a ws:// or wss:// URL")
    return url


def build_relay_list(
    author: PublicKey,
    relays: Sequence[str],
    *,
    created_at: int,
    expiration: int | None = None,
) -> UnsignedEvent:
    """The kind-10050 event naming ``relays`` (in order, without duplicates)."""
    urls = list(dict.fromkeys(_check_url(url) for url in relays))
    if not urls or len(urls) > MAX_RELAYS:
        raise CodecError(f"a DM relay list names 1 to {MAX_RELAYS} relays, not {len(urls)}")
    tags: list[tuple[str, ...]] = [("relay", url) for url in urls]
    if expiration is not None:
        tags.append(("expiration", str(expiration)))
    return UnsignedEvent(author.hex(), created_at, RELAY_LIST_KIND, tuple(tags), "")


def parse_relay_list(event: Event) -> tuple[str, ...]:
    """The relay URLs of a kind-10050 event (refuses another kind, no relay, a bad URL)."""
    if event.kind != RELAY_LIST_KIND:
        raise CodecError(f"kind {event.kind} is not a DM relay list ({RELAY_LIST_KIND})")
    urls: list[str] = []
    for tag in event.tags:
        if tag[0] != "relay":
            continue
        if len(tag) < 2:
            raise CodecError("'relay' tag has no value")
        url = _check_url(tag[1])
        if url not in urls:
            urls.append(url)
    if not urls or len(urls) > MAX_RELAYS:
        raise CodecError(f"a DM relay list names 1 to {MAX_RELAYS} relays, not {len(urls)}")
    return tuple(urls)
