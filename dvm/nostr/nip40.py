"""NIP-40: Expiration Timestamp.

NIP-40: https://github.com/nostr-protocol/nips/blob/master/40.md

An event may carry ``["expiration", <unix seconds>]``; clients SHOULD ignore an event once its
expiration has passed, and relays SHOULD NOT send it. The tag itself is parsed by each message's
codec (a malformed value is that codec's :class:`~dvm.nostr.errors.CodecError`); this module is
the one comparison, so the node's intake, the node's attestation check and the requester agree
to the second.

Contract (pure: ``now`` is a parameter). An event is expired **at** its expiration second:
``expiration <= now``, so an event that expires "now" is no longer acted on.
"""

from __future__ import annotations

__all__ = ["is_expired"]


def is_expired(expiration: int | None, *, now: int) -> bool:
    """Whether an event with this ``expiration`` (None: no tag) has expired at ``now`` (unix s)."""
    return expiration is not None and expiration <= now
