"""NIP-42: authentication of clients to relays (the kind-22242 AUTH event).

NIP-42: https://github.com/nostr-protocol/nips/blob/master/42.md

A relay sends ``["AUTH", <challenge>]``; the client answers ``["AUTH", <signed event>]`` where the
event is kind 22242, has tags ``["relay", <relay url>]`` and ``["challenge", <challenge>]`` and
empty content. The event is ephemeral and must never be broadcast. Time (``created_at``) and
signing randomness (``aux_rand``) are parameters: this module stays pure.

``check_auth_event`` is the relay-side structural check (kind, tags, freshness window), used by
tests that play a relay; it returns None or raises :class:`EventError`.
"""

from __future__ import annotations

from .errors import EventError
from .event import Event, UnsignedEvent
from .keys import SecretKey

__all__ = [
    "AUTH_KIND",
    "AUTH_MAX_SKEW_S",
    "build_auth_event",
    "check_auth_event",
    "sign_auth_event",
]

AUTH_KIND = 22242
# NIP-42: "created_at should be close to the current time (e.g. within ~10 minutes)".
AUTH_MAX_SKEW_S = 600


def build_auth_event(
    *, pubkey: str, relay_url: str, challenge: str, created_at: int
) -> UnsignedEvent:
    """The unsigned kind-22242 event answering ``challenge`` from ``relay_url``."""
    if not challenge:
        raise EventError("AUTH challenge is empty")
    if not relay_url.startswith(("ws://", "wss://")):
        raise EventError("AUTH relay url must be a ws:// or wss:// url")
    return UnsignedEvent(
        pubkey=pubkey,
        created_at=created_at,
        kind=AUTH_KIND,
        tags=(("relay", relay_url), ("challenge", challenge)),
        content="",
    )


def sign_auth_event(
    secret: SecretKey, *, relay_url: str, challenge: str, created_at: int, aux_rand: bytes
) -> Event:
    """Build and sign the AUTH event with ``secret``."""
    unsigned = build_auth_event(
        pubkey=secret.public_key.hex(),
        relay_url=relay_url,
        challenge=challenge,
        created_at=created_at,
    )
    return unsigned.sign(secret, aux_rand=aux_rand)


def _normalise_url(url: str) -> str:
    return url.rstrip("/").lower()


def check_auth_event(event: Event, *, relay_url: str, challenge: str, now: int) -> None:
    """Relay-side check of a received AUTH event (signature already verified by ``Event``)."""
    if event.kind != AUTH_KIND:
        raise EventError(f"AUTH event has kind {event.kind}, expected {AUTH_KIND}")
    if abs(now - event.created_at) > AUTH_MAX_SKEW_S:
        raise EventError("AUTH event created_at is outside the allowed window")
    if event.tag_values("challenge") != [challenge]:
        raise EventError("AUTH event does not answer this challenge")
    relays = event.tag_values("relay")
    if len(relays) != 1 or _normalise_url(relays[0]) != _normalise_url(relay_url):
        raise EventError("AUTH event names another relay")
