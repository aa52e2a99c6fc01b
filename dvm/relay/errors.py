"""Errors of the relay pool.

One root; the tree::

    RelayError
    ├── PublishError        no relay accepted an event; ``.result`` holds every relay's answer
    ├── SubscriptionError   no relay could take a subscription (NIP-11 max_subscriptions, closed)
    ├── PoolClosedError     the pool was used after ``close()``
    └── Nip11Error          a NIP-11 relay information document could not be fetched or parsed

Messages carry relay URLs, event and subscription ids, sizes and the relays' own reason strings;
never event content or key material.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pool import PublishResult

__all__ = ["Nip11Error", "PoolClosedError", "PublishError", "RelayError", "SubscriptionError"]


class RelayError(Exception):
    """Root of every error raised by ``dvm.relay``."""


class PublishError(RelayError):
    """No relay accepted the event. ``result`` holds the per-relay outcomes."""

    def __init__(self, result: PublishResult) -> None:
        self.result = result
        reasons = "; ".join(f"{r.relay_url}: {r.outcome} ({r.message})" for r in result.relays)
        super().__init__(f"no relay accepted event {result.event_id[:16]}…: {reasons}")


class SubscriptionError(RelayError):
    """No relay could take the subscription."""


class PoolClosedError(RelayError):
    """The pool is closed."""


class Nip11Error(RelayError):
    """A NIP-11 document that could not be fetched or does not parse."""
