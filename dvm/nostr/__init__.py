"""The pure Nostr protocol core of cdvm/1.

Keys, NIP-01 events, NIP-19, NIP-44 v2 (and legacy NIP-04), NIP-59/NIP-17 gift wraps, the
NIP-90/NIP-89 codecs, NIP-13, NIP-40 expiry, the 64-hex spelling (``hex64``) and relay
messages, and the one strict JSON loader every parser uses (``strict_json``). Nothing here
opens a socket, reads a clock or draws randomness: those are parameters, supplied one layer up
(``dvm.relay``, ``dvm.node``, ``dvm.client``). import-linter enforces it.
"""

from . import (
    errors,
    event,
    filters,
    hex64,
    keys,
    messages,
    nip04,
    nip09,
    nip13,
    nip17,
    nip19,
    nip40,
    nip42,
    nip44,
    nip59,
    nip89,
    nip90,
    strict_json,
)
from .errors import NostrError
from .event import Event, UnsignedEvent
from .keys import PublicKey, SecretKey

__all__ = [
    "Event",
    "NostrError",
    "PublicKey",
    "SecretKey",
    "UnsignedEvent",
    "errors",
    "event",
    "filters",
    "hex64",
    "keys",
    "messages",
    "nip04",
    "nip09",
    "nip13",
    "nip17",
    "nip19",
    "nip40",
    "nip42",
    "nip44",
    "nip59",
    "nip89",
    "nip90",
    "strict_json",
]
