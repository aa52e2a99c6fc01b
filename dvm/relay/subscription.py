"""A pool subscription: de-duplicated, bounded, async-iterable stream of verified events.

Memory is bounded twice:

* **De-duplication** keeps the ids of the last ``dedup_capacity`` events delivered
  (:class:`RecentIds`, an LRU): the same event from two relays, or re-delivered after a
  resubscription with ``since``, reaches the caller once. An id evicted from the LRU and then
  re-delivered would pass again; the ``since`` overlap (seconds) is far smaller than what
  4096 ids cover for the subscriptions a DVM makes.
* **The queue** holds at most ``queue_maxsize`` events **and** at most ``queue_max_bytes``
  bytes of them (:func:`event_size_bytes`: the UTF-8 size of the id, key, signature, tags and
  content, a close estimate of the event's JSON; a count alone lets a few large events hold
  ``queue_maxsize`` times the largest event a relay accepts). When the consumer is slower than
  the relays, the *oldest* queued events are dropped and counted (``dropped_count``; a warning is
  logged on the first drop and then every 1000th). We chose dropping over backpressure because
  one websocket carries every subscription of a relay plus its pings: blocking the reader for
  one slow consumer would stall the others and eventually get the connection dropped by the
  relay (which then re-sends everything after reconnect). Dropping the oldest keeps the most
  recent traffic, which is what a live DVM exchange needs; a consumer that sees
  ``dropped_count`` grow can resubscribe with ``since`` to fetch what it missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from dvm.nostr.event import Event
from dvm.nostr.filters import Filter
from dvm.nostr.messages import Reason

__all__ = ["DEFAULT_QUEUE_MAX_BYTES", "RecentIds", "Subscription", "event_size_bytes"]

_log = logging.getLogger(__name__)

#: bytes of events one subscription may hold for its consumer
DEFAULT_QUEUE_MAX_BYTES = 16 * 1024 * 1024
_FIXED_BYTES = 64 + 64 + 128 + 80  # id, pubkey, sig (hex) and the JSON around the fields


def event_size_bytes(event: Event) -> int:
    """The UTF-8 size of the event's strings plus their framing: its JSON's size, near enough."""
    tags = sum(len(value.encode("utf-8", "surrogatepass")) + 3 for t in event.tags for value in t)
    content = len(event.content.encode("utf-8", "surrogatepass"))
    return _FIXED_BYTES + tags + 2 * len(event.tags) + content


class RecentIds:
    """A bounded set of recently seen ids with least-recently-seen eviction."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def add(self, event_id: str) -> bool:
        """Record ``event_id``; True if it is new, False if it was already seen (refreshed)."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


class Subscription:
    """Events matching ``filters`` from every relay of the pool, each delivered once.

    Iterate with ``async for event in sub``; iteration ends after :meth:`close`, after the
    pool closes, or once every relay has closed the subscription (``closed_reasons``).
    """

    def __init__(
        self,
        subscription_id: str,
        filters: tuple[Filter, ...],
        relay_urls: frozenset[str],
        *,
        queue_maxsize: int,
        dedup_capacity: int,
        on_close: Callable[[Subscription], Awaitable[None]],
        queue_max_bytes: int = DEFAULT_QUEUE_MAX_BYTES,
    ) -> None:
        if queue_maxsize < 1 or queue_max_bytes < 1:
            raise ValueError("queue_maxsize and queue_max_bytes must be >= 1")
        self.id = subscription_id
        self.filters = filters
        self.relay_urls = relay_urls
        self.queue_maxsize = queue_maxsize
        self.queue_max_bytes = queue_max_bytes
        self._queued_bytes = 0
        self.dropped_count = 0
        self.duplicate_count = 0
        self._queue: deque[tuple[Event, int]] = deque()
        self._seen = RecentIds(dedup_capacity)
        self._eose: set[str] = set()
        self._closed: dict[str, Reason] = {}
        self._finished = False
        self._changed = asyncio.Event()
        self._on_close = on_close

    # --- consumer side ------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._queue:
            if self._finished:
                raise StopAsyncIteration
            self._changed.clear()
            await self._changed.wait()
        return self._pop()

    def get_nowait(self) -> Event | None:
        return self._pop() if self._queue else None

    def _pop(self) -> Event:
        event, size = self._queue.popleft()
        self._queued_bytes -= size
        return event

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """:func:`event_size_bytes` of the queued events, summed."""
        return self._queued_bytes

    @property
    def eose_relays(self) -> frozenset[str]:
        """Relays that sent EOSE (stored events are all delivered) on their current REQ."""
        return frozenset(self._eose)

    @property
    def closed_reasons(self) -> dict[str, Reason]:
        """Relays that closed this subscription, with their reason (``CLOSED`` or local)."""
        return dict(self._closed)

    @property
    def finished(self) -> bool:
        return self._finished

    def _all_answered(self) -> bool:
        return self._finished or all(
            url in self._eose or url in self._closed for url in self.relay_urls
        )

    async def wait_eose(
        self, *, relay_url: str | None = None, timeout_s: float | None = None
    ) -> bool:
        """Wait until ``relay_url`` (default: every relay) sent EOSE or closed; False on timeout."""

        def done() -> bool:
            if relay_url is not None:
                return self._finished or relay_url in self._eose or relay_url in self._closed
            return self._all_answered()

        try:
            async with asyncio.timeout(timeout_s):
                while not done():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Send CLOSE to the relays and end the iteration (queued events stay readable)."""
        if not self._finished:
            await self._on_close(self)
            self._finish()

    # --- pool side ----------------------------------------------------------------------

    def _deliver(self, event: Event) -> bool:
        if self._finished:
            return False
        if not self._seen.add(event.id):
            self.duplicate_count += 1
            self._changed.set()
            return False
        size = event_size_bytes(event)
        while self._queue and (
            len(self._queue) >= self.queue_maxsize
            or self._queued_bytes + size > self.queue_max_bytes
        ):
            self._pop()
            self.dropped_count += 1
            if self.dropped_count == 1 or self.dropped_count % 1000 == 0:
                _log.warning(
                    "subscription %s: consumer too slow, %d events dropped (queue %d, %d bytes)",
                    self.id,
                    self.dropped_count,
                    self.queue_maxsize,
                    self.queue_max_bytes,
                )
        self._queue.append((event, size))
        self._queued_bytes += size
        self._changed.set()
        return True

    def _mark_eose(self, relay_url: str) -> None:
        self._eose.add(relay_url)
        self._changed.set()

    def _mark_reconnecting(self, relay_url: str) -> None:
        self._eose.discard(relay_url)

    def _mark_closed(self, relay_url: str, reason: Reason) -> None:
        self._closed[relay_url] = reason
        if all(url in self._closed for url in self.relay_urls):
            self._finished = True
        self._changed.set()

    def _finish(self) -> None:
        self._finished = True
        self._changed.set()
