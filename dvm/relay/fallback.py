"""Ephemeral first, stored if refused: how a gift-wrapped message reaches production relays.

NIP-01: https://github.com/nostr-protocol/nips/blob/master/01.md (ephemeral kinds 20000-29999,
the ``mute:`` and ``invalid:`` OK prefixes)
NIP-59: https://github.com/nostr-protocol/nips/blob/master/59.md (kind 1059, stored)

cdvm/1 prefers kind 21059 (ephemeral) wraps: relays forward them to live subscribers and keep
nothing. Production relays may refuse one: khatru answers ``mute: no one was listening`` when
no subscriber matched it (the peer may not have subscribed *yet*), strfry answers ``invalid:
ephemeral event expired`` to a stale one, an auth-gated relay may not serve the ephemeral kind
at all. Losing a channel message for that reason would end the job, so
:func:`publish_wrap` publishes the message wrapped as ``kind`` and, if that was 21059 and no
relay accepted it while at least one *refused* it (a NIP-01 ``OK false``, whatever its prefix),
publishes the same message again wrapped as 1059 (stored, delivered when the peer subscribes).
Only that message falls back; the next one tries 21059 again. A publish that failed for another
reason (timeouts, unreachable relays, too large) is not retried: a stored wrap would fail the
same way. The wrap is rebuilt by the caller's ``build(kind)`` because the kind is signed into
the event (new id, new one-time key, NIP-59 backdating for the stored one).

Logs name event ids, kinds and relay counts, never content.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from dvm.nostr.event import Event
from dvm.nostr.nip59 import GIFT_WRAP_KIND, WRAP_KIND_EPHEMERAL

from .errors import PublishError
from .pool import PublishResult, RelayPool

__all__ = ["publish_wrap"]

_log = logging.getLogger(__name__)


async def publish_wrap(
    pool: RelayPool, build: Callable[[int], Event], *, kind: int
) -> tuple[Event, PublishResult]:
    """Publish ``build(kind)``; an ephemeral wrap refused everywhere is re-sent as ``build(1059)``.

    Returns the event that was accepted and its result; raises :class:`PublishError` (the last
    attempt's) if no relay accepted either.
    """
    event = build(kind)
    try:
        return event, await pool.publish(event)
    except PublishError as exc:
        refused = exc.result.refused
        if kind != WRAP_KIND_EPHEMERAL or not refused:
            raise
        _log.info(
            "ephemeral wrap %s refused by %d relays (%s); re-sent as kind %d",
            event.id,
            len(refused),
            ", ".join(sorted({str(r.prefix) for r in refused})),
            GIFT_WRAP_KIND,
        )
    stored = build(GIFT_WRAP_KIND)
    return stored, await pool.publish(stored)
