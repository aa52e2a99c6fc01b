"""Hex64: the wire spelling of every 32-byte value, exactly 64 lowercase hex characters.

NIP-01: https://github.com/nostr-protocol/nips/blob/master/01.md ("32-bytes lowercase
hex-encoded" event ids and public keys). cdvm/1 spells its 32-byte values the same way: job ids
(event ids), request nonces, SHA-256 digests of models, chunks and images (docs/protocol.md).

Contract (pure): :func:`is_hex64` is the one test of that spelling in ``dvm`` and ``container``;
each codec raises its own error when it fails, naming the field (never the value).
:data:`HEX64_PATTERN` is the same rule as regular-expression text, for patterns that embed it
(an image reference's ``@sha256:`` digest). Uppercase hex is refused: two spellings of one id
would be two ids to a relay filter and to every string comparison.
"""

from __future__ import annotations

import re

__all__ = ["HEX64_PATTERN", "is_hex64"]

HEX64_PATTERN = "[0-9a-f]{64}"
_HEX64 = re.compile(HEX64_PATTERN)


def is_hex64(value: object) -> bool:
    """Whether ``value`` is a string of exactly 64 lowercase hex characters."""
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None
