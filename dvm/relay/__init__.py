"""``dvm.relay``: an asyncio pool of Nostr relay connections on ``websockets``.

The public surface is listed in ``__all__`` (a test guards it); modules are private in spirit.
See ``docs/relay.md`` for the behaviour: backoff, resubscription with ``since``, de-duplication,
bounded queues, NIP-42 AUTH and NIP-11 limits.
"""

from __future__ import annotations

from .backoff import BackoffPolicy, backoff_delays
from .errors import Nip11Error, PoolClosedError, PublishError, RelayError, SubscriptionError
from .fallback import publish_wrap
from .nip11 import RelayInformation, RelayLimits, fetch_relay_information
from .pool import (
    PublishOutcome,
    PublishResult,
    RelayPool,
    RelayPublishResult,
    event_message_size_bytes,
)
from .session import RelaySession
from .subscription import RecentIds, Subscription

__all__ = [
    "BackoffPolicy",
    "Nip11Error",
    "PoolClosedError",
    "PublishError",
    "PublishOutcome",
    "PublishResult",
    "RecentIds",
    "RelayError",
    "RelayInformation",
    "RelayLimits",
    "RelayPool",
    "RelayPublishResult",
    "RelaySession",
    "Subscription",
    "SubscriptionError",
    "backoff_delays",
    "event_message_size_bytes",
    "fetch_relay_information",
    "publish_wrap",
]
