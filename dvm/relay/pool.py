"""The relay pool: publish to and subscribe on many relays at once.

NIP-01: https://github.com/nostr-protocol/nips/blob/master/01.md (EVENT/REQ/CLOSE, OK, EOSE, CLOSED)
NIP-11: https://github.com/nostr-protocol/nips/blob/master/11.md (limits)
NIP-42: https://github.com/nostr-protocol/nips/blob/master/42.md (AUTH)

``async with RelayPool(urls, secret_key=...) as pool`` starts one self-healing connection per
relay (:mod:`dvm.relay.connection`) and waits, at most ``connect_timeout_s``, for each to make
its first attempt. Then:

* ``await pool.publish(event)`` sends the event to every relay and returns a
  :class:`PublishResult` with one :class:`RelayPublishResult` per relay (accepted, refused with
  the typed NIP-01 prefix and message, timeout, unreachable, or too-large when refused locally
  against the relay's limit). ``duplicate:`` refusals count as accepted: the relay has the event.
  If no relay accepted, :class:`PublishError` is raised and its message carries every relay's
  reason.
* ``await pool.subscribe([Filter(...)])`` returns a :class:`Subscription`: async-iterable,
  de-duplicated by id across relays, bounded (drop-oldest), with per-relay EOSE, surviving relay
  restarts through resubscription with ``since``.
* ``await pool.close()`` sends CLOSE for open subscriptions, closes the sockets, and awaits or
  cancels every task it started.

Local limits: before sending, an event whose ``["EVENT", ...]`` frame is longer (UTF-8 bytes)
than the relay's ``max_message_length``, or whose content is longer than ``max_content_length``,
is not sent to that relay (outcome ``too-large``). Limits come from the relay's NIP-11 document
and from ``relay_limits`` in the constructor, which wins field by field (for relays, like
nostr-relay 1.14, that do not publish their limits). A relay whose ``max_subscriptions`` we
already fill is skipped for a new subscription (noted in ``closed_reasons``);
:class:`SubscriptionError` if no relay can take it.

``unix_sockets`` maps a relay URL to a UNIX socket the connection (and its NIP-11 fetch) uses
instead of the URL's host and port, with the same handshake for the URL: how a job in a private
network namespace reaches its relays through the node's forwarder (docs/node.md "Sandbox").

Time (``clock``, unix seconds) and randomness (``random`` for backoff jitter, ``random_bytes`` for
BIP-340 ``aux_rand`` of AUTH events) are injected.

NIP-42 with several keys: ``secret_key`` and ``auth_keys`` together are every key this pool
publishes under; a relay's challenge is answered with one AUTH event per key (NIP-42 lets a
client authenticate as several pubkeys on one connection), so a relay that accepts an event only
from its authenticated author accepts each of them. :attr:`PublishResult.refused` lists the
relays that answered with a NIP-01 refusal (``mute:`` included), which is what a caller
publishing an ephemeral event needs to decide on a stored retry (:mod:`dvm.relay.fallback`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from dvm.nostr.event import Event
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.messages import ClientEvent, Reason, ReasonPrefix
from dvm.nostr.nip42 import sign_auth_event

from .backoff import BackoffPolicy
from .connection import RelayConnection
from .errors import PoolClosedError, PublishError, SubscriptionError
from .nip11 import RelayLimits
from .session import EoseReceived, EventReceived, OkReceived, SessionEvent, SubscriptionClosed
from .subscription import Subscription

__all__ = [
    "PublishOutcome",
    "PublishResult",
    "RelayPool",
    "RelayPublishResult",
    "event_message_size_bytes",
]

_log = logging.getLogger(__name__)
_SYSTEM_RANDOM = secrets.SystemRandom()


class PublishOutcome(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    TOO_LARGE = "too-large"


@dataclass(frozen=True, slots=True)
class RelayPublishResult:
    """One relay's answer to a publish. ``prefix`` is set when the relay used a NIP-01 one."""

    relay_url: str
    outcome: PublishOutcome
    prefix: ReasonPrefix | None = None
    message: str = ""

    @property
    def accepted(self) -> bool:
        return self.outcome is PublishOutcome.ACCEPTED


@dataclass(frozen=True, slots=True)
class PublishResult:
    event_id: str
    relays: tuple[RelayPublishResult, ...]

    @property
    def accepted_by(self) -> tuple[str, ...]:
        return tuple(r.relay_url for r in self.relays if r.accepted)

    @property
    def ok(self) -> bool:
        return bool(self.accepted_by)

    @property
    def refused(self) -> tuple[RelayPublishResult, ...]:
        """The relays that answered ``OK false`` (``mute:``, ``invalid:``, ``restricted:``...)."""
        return tuple(r for r in self.relays if r.outcome is PublishOutcome.REFUSED)

    def for_relay(self, relay_url: str) -> RelayPublishResult:
        for result in self.relays:
            if result.relay_url == relay_url:
                return result
        raise KeyError(relay_url)


def event_message_size_bytes(event: Event) -> int:
    """Length in UTF-8 bytes of the ``["EVENT", event]`` frame we send for ``event``."""
    return len(ClientEvent(event).to_json().encode("utf-8"))


class RelayPool:
    """Connections to many relays; see the module docstring for the behaviour."""

    def __init__(
        self,
        relay_urls: Iterable[str],
        *,
        secret_key: SecretKey | None = None,
        auth_keys: Sequence[SecretKey] = (),
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _SYSTEM_RANDOM.random,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        backoff: BackoffPolicy | None = None,
        since_overlap_s: int = 30,
        connect_timeout_s: float = 5.0,
        ok_timeout_s: float = 10.0,
        queue_maxsize: int = 1024,
        dedup_capacity: int = 4096,
        relay_limits: Mapping[str, RelayLimits] | None = None,
        fetch_nip11: bool = True,
        max_frame_bytes: int = 4 * 1024 * 1024,
        unix_sockets: Mapping[str, str] | None = None,
    ) -> None:
        urls = list(dict.fromkeys(relay_urls))
        sockets = unix_sockets or {}
        if not urls:
            raise ValueError("a relay pool needs at least one relay url")
        distinct: dict[str, SecretKey] = {}
        for key in (secret_key, *auth_keys):
            if key is not None:
                distinct.setdefault(key.public_key.hex(), key)
        self._auth_keys = tuple(distinct.values())  # AUTH answers in this order
        self._clock = clock
        self._random_bytes = random_bytes
        self._ok_timeout_s = ok_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._queue_maxsize = queue_maxsize
        self._dedup_capacity = dedup_capacity
        self._subs: dict[str, Subscription] = {}
        self._sub_counter = itertools.count(1)
        self._closed = False
        limits = relay_limits or {}
        self._conns = {
            url: RelayConnection(
                url,
                listener=self._on_relay_event,
                clock=clock,
                random=random,
                signer=self._sign_auth if self._auth_keys else None,
                backoff=backoff or BackoffPolicy(),
                since_overlap_s=since_overlap_s,
                connect_timeout_s=connect_timeout_s,
                limits_override=limits.get(url),
                fetch_nip11=fetch_nip11,
                max_frame_bytes=max_frame_bytes,
                unix_path=sockets.get(url),
            )
            for url in urls
        }

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> RelayPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start every connection; wait (bounded) until each has tried once."""
        self._check_open()
        for conn in self._conns.values():
            conn.start()
        waits = [asyncio.create_task(c.wait_attempted()) for c in self._conns.values()]
        _, pending = await asyncio.wait(waits, timeout=self._connect_timeout_s * 2)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        """CLOSE every subscription, close every socket, stop every task. Idempotent."""
        if self._closed:
            return
        for sub in list(self._subs.values()):
            await sub.close()
        self._closed = True
        await asyncio.gather(*(conn.close() for conn in self._conns.values()))
        _log.info("relay pool closed (%d relays)", len(self._conns))

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosedError("the relay pool is closed")

    # --- introspection ------------------------------------------------------------------

    @property
    def relay_urls(self) -> tuple[str, ...]:
        return tuple(self._conns)

    @property
    def connected_relays(self) -> tuple[str, ...]:
        return tuple(url for url, c in self._conns.items() if c.connected)

    def limits(self, relay_url: str) -> RelayLimits:
        return self._conns[relay_url].limits

    async def wait_connected(self, relay_url: str, *, timeout_s: float) -> bool:
        return await self._conns[relay_url].wait_connected(timeout_s)

    # --- publish ------------------------------------------------------------------------

    async def publish(self, event: Event, *, timeout_s: float | None = None) -> PublishResult:
        """Send ``event`` to every relay; raise :class:`PublishError` if none accepted it."""
        self._check_open()
        wait_s = self._ok_timeout_s if timeout_s is None else timeout_s
        results = await asyncio.gather(
            *(self._publish_one(conn, event, wait_s) for conn in self._conns.values())
        )
        result = PublishResult(event.id, tuple(results))
        _log.info(
            "event %s kind %d: accepted by %d of %d relays",
            event.id,
            event.kind,
            len(result.accepted_by),
            len(results),
        )
        if not result.ok:
            raise PublishError(result)
        return result

    def _size_refusal(self, conn: RelayConnection, event: Event) -> RelayPublishResult | None:
        limits = conn.limits
        size = event_message_size_bytes(event)
        if limits.max_message_length is not None and size > limits.max_message_length:
            return RelayPublishResult(
                conn.url,
                PublishOutcome.TOO_LARGE,
                None,
                f"event {event.id[:16]}… is {size} bytes as an EVENT message; {conn.url} accepts"
                f" at most {limits.max_message_length} (limitation.max_message_length)",
            )
        length = len(event.content)
        if limits.max_content_length is not None and length > limits.max_content_length:
            return RelayPublishResult(
                conn.url,
                PublishOutcome.TOO_LARGE,
                None,
                f"event {event.id[:16]}… has {length} characters of content; {conn.url} accepts"
                f" at most {limits.max_content_length} (limitation.max_content_length)",
            )
        return None

    async def _publish_one(
        self, conn: RelayConnection, event: Event, timeout_s: float
    ) -> RelayPublishResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if not await conn.wait_connected(timeout_s):
            return RelayPublishResult(
                conn.url,
                PublishOutcome.UNREACHABLE,
                None,
                f"not connected within {timeout_s} s (last error: {conn.last_error})",
            )
        refusal = self._size_refusal(conn, event)
        if refusal is not None:
            _log.info("event %s not sent to %s: too large", event.id, conn.url)
            return refusal
        fut = await conn.publish(event)
        await asyncio.wait({fut}, timeout=max(0.0, deadline - loop.time()))
        if not fut.done():
            conn.forget_publish(event.id, fut)
            fut.cancel()
            return RelayPublishResult(
                conn.url, PublishOutcome.TIMEOUT, None, f"no OK within {timeout_s} s"
            )
        if fut.cancelled():
            return RelayPublishResult(conn.url, PublishOutcome.UNREACHABLE, None, "pool closed")
        ok = fut.result()
        accepted = ok.accepted or ok.reason.prefix is ReasonPrefix.DUPLICATE
        return RelayPublishResult(
            conn.url,
            PublishOutcome.ACCEPTED if accepted else PublishOutcome.REFUSED,
            ok.reason.prefix,
            ok.reason.text,
        )

    # --- subscribe ----------------------------------------------------------------------

    async def subscribe(
        self,
        filters: Iterable[Filter],
        *,
        queue_maxsize: int | None = None,
        dedup_capacity: int | None = None,
    ) -> Subscription:
        """Open a subscription on every relay that can take one more."""
        self._check_open()
        frozen = tuple(filters)
        if not frozen:
            raise ValueError("a subscription needs at least one filter")
        sub_id = f"cdvm-{next(self._sub_counter)}"
        skipped: dict[str, Reason] = {}
        targets: list[RelayConnection] = []
        for conn in self._conns.values():
            limit = conn.limits.max_subscriptions
            if limit is not None and len(conn.session.subscription_ids) >= limit:
                text = (
                    f"local: {conn.url} allows {limit} subscriptions (limitation.max_subscriptions)"
                )
                skipped[conn.url] = Reason(None, text, text)
            else:
                targets.append(conn)
        if not targets:
            raise SubscriptionError(
                "no relay can take another subscription: "
                + "; ".join(f"{url}: {r.text}" for url, r in skipped.items())
            )
        sub = Subscription(
            sub_id,
            frozen,
            frozenset(self._conns),
            queue_maxsize=queue_maxsize or self._queue_maxsize,
            dedup_capacity=dedup_capacity or self._dedup_capacity,
            on_close=self._close_subscription,
        )
        for url, reason in skipped.items():
            sub._mark_closed(url, reason)
        self._subs[sub_id] = sub
        for conn in targets:
            await conn.subscribe(sub_id, frozen)
        _log.info("subscription %s opened on %d relays", sub_id, len(targets))
        return sub

    async def _close_subscription(self, sub: Subscription) -> None:
        if self._subs.pop(sub.id, None) is None:
            return
        for conn in self._conns.values():
            await conn.unsubscribe(sub.id)
        _log.info("subscription %s closed", sub.id)

    # --- events from connections --------------------------------------------------------

    def _on_relay_event(self, relay_url: str, item: SessionEvent | None) -> None:
        if item is None:
            for open_sub in self._subs.values():
                open_sub._mark_reconnecting(relay_url)
            return
        if isinstance(item, OkReceived):
            return  # OKs are resolved by the connection's futures
        sub = self._subs.get(item.subscription_id)
        if sub is None:
            return
        if isinstance(item, EventReceived):
            sub._deliver(item.event)
        elif isinstance(item, EoseReceived):
            sub._mark_eose(relay_url)
        elif isinstance(item, SubscriptionClosed):
            _log.info(
                "relay %s closed subscription %s (%s)",
                relay_url,
                item.subscription_id,
                item.reason.prefix,
            )
            sub._mark_closed(relay_url, item.reason)
            if sub.finished:
                self._subs.pop(sub.id, None)

    def _sign_auth(self, relay_url: str, challenge: str) -> tuple[Event, ...]:
        created_at = int(self._clock())
        return tuple(
            sign_auth_event(
                key,
                relay_url=relay_url,
                challenge=challenge,
                created_at=created_at,
                aux_rand=self._random_bytes(32),
            )
            for key in self._auth_keys
        )
