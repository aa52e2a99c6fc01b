"""The I/O half of one requester job: its relay pool, its subscription and its clocks.

Spec: DESIGN §3.2-§3.7, ``docs/relay.md`` (the pool), ``docs/client.md``. Used by the shell
(:mod:`dvm.client.session`) to perform the machine's actions; it decides nothing.

:class:`JobTransport` opens a :class:`~dvm.relay.RelayPool` answering NIP-42 AUTH as every key
the job publishes under (the session key S and the ``auth_keys``: the requester's U, which signs
the request; NIP-42 allows several AUTH events), or borrows the one given as ``pool`` (then it
neither starts nor closes it: its owner chose the keys that authenticate).
:meth:`JobTransport.perform` does the machine's I/O actions: subscribe and wait for EOSE;
publish (no relay accepting becomes :class:`~dvm.client.events.PublishRefused`); gift-wrap
rumors from S to C with fresh keys and nonces (``random_bytes``) and ``now`` from ``clock``,
each message in the job's wrap kind and, when that is 21059 and relays refuse it (khatru's
``mute:``, strfry's expiry), once more as 1059 (:func:`dvm.relay.publish_wrap`); start and
cancel timers as deadlines on the event loop, so that :meth:`JobTransport.next_event` returns
the next relay event, the first timer whose deadline passed, or the end of the subscription. It
also knows the chunk budget the relays allow.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from dvm.cdvm.chunks import DEFAULT_CHUNK_BUDGET_BYTES, chunk_budget_bytes
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip17 import gift_wraps
from dvm.relay import PublishError, RelayPool, Subscription, publish_wrap

from .events import (
    CancelTimer,
    MachineEvent,
    Publish,
    Published,
    PublishRefused,
    Received,
    RumorsSent,
    SendRumors,
    StartTimer,
    Subscribe,
    SubscriptionEnded,
    Timer,
    TimerFired,
)

__all__ = ["EOSE_WAIT_S", "JobTransport"]

_log = logging.getLogger(__name__)
EOSE_WAIT_S = 5.0


class JobTransport:
    """Relays and deadlines of one job (see the module docstring)."""

    def __init__(
        self,
        relays: Sequence[str],
        *,
        session: SecretKey,
        wrap_kind: int,
        pool: RelayPool | None,
        clock: Callable[[], float],
        random_bytes: Callable[[int], bytes],
        auth_keys: Sequence[SecretKey] = (),
    ) -> None:
        self._relays = tuple(relays)
        self._session = session
        self._auth_keys = tuple(auth_keys)
        self._wrap_kind = wrap_kind
        self._given_pool = pool
        self._clock = clock
        self._random_bytes = random_bytes
        self._pool: RelayPool | None = None
        self._sub: Subscription | None = None
        self._deadlines: dict[Timer, float] = {}

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    async def perform(
        self, action: Subscribe | Publish | SendRumors | StartTimer | CancelTimer
    ) -> MachineEvent | None:
        """Do one of the machine's I/O actions; the event that reports a publication."""
        try:
            match action:
                case Subscribe(filters=filters):
                    await self.subscribe(filters)
                case Publish(event=event):
                    return Published(await self.publish([event]))
                case SendRumors(rumors=rumors, recipient=recipient):
                    await self.send(rumors, recipient)
                    return RumorsSent()
                case StartTimer(timer=timer, timeout_s=timeout_s):
                    self.start_timer(timer, timeout_s)
                case CancelTimer(timer=timer):
                    self.cancel_timer(timer)
        except PublishError as exc:
            return PublishRefused(str(exc))
        return None

    async def subscribe(self, filters: Sequence[Filter]) -> None:
        """Open (or borrow) the pool, subscribe with ``filters`` and wait for EOSE (bounded)."""
        pool = self._given_pool
        if pool is None:
            pool = RelayPool(
                self._relays,
                secret_key=self._session,
                auth_keys=self._auth_keys,
                clock=self._clock,
                random_bytes=self._random_bytes,
            )
            self._pool = pool  # closed by close() even if start() is interrupted
            await pool.start()
        self._pool = pool
        self._sub = await pool.subscribe(filters)
        await self._sub.wait_eose(timeout_s=EOSE_WAIT_S)

    async def publish(self, events: Sequence[Event]) -> tuple[str, ...]:
        """Publish each event in order; the relays that accepted the last one."""
        if self._pool is None:
            raise ValueError("the job's relay pool is not open")
        accepted: tuple[str, ...] = ()
        for event in events:
            accepted = (await self._pool.publish(event)).accepted_by
        return accepted

    async def send(self, rumors: Sequence[UnsignedEvent], recipient: PublicKey) -> None:
        """Each rumor wrapped for ``recipient`` and published, in order; a 21059 wrap that
        relays refuse is sent once more as 1059 (:func:`dvm.relay.publish_wrap`)."""
        if self._pool is None:
            raise ValueError("the job's relay pool is not open")
        pool = self._pool
        for rumor in rumors:

            def build(kind: int, rumor: UnsignedEvent = rumor) -> Event:
                return self.wrap([rumor], recipient, kind=kind)[0]

            await publish_wrap(pool, build, kind=self._wrap_kind)

    def wrap(
        self, rumors: Sequence[UnsignedEvent], recipient: PublicKey, *, kind: int | None = None
    ) -> list[Event]:
        """Each rumor sealed by S and gift-wrapped to ``recipient`` only (no copy to S)."""
        return [
            wrap
            for rumor in rumors
            for _, wrap in gift_wraps(
                rumor,
                self._session,
                [recipient],
                random_bytes=self._random_bytes,
                now=int(self._clock()),
                include_sender=False,
                kind=self._wrap_kind if kind is None else kind,
            )
        ]

    def budget_bytes(self) -> int:
        """The chunk budget of a channel message: the smallest relay limit known, or the default."""
        pool = self._pool
        limits = (
            [] if pool is None else [pool.limits(u).max_message_length for u in pool.relay_urls]
        )
        known = [limit for limit in limits if limit is not None]
        if not known:
            return DEFAULT_CHUNK_BUDGET_BYTES
        return min(DEFAULT_CHUNK_BUDGET_BYTES, chunk_budget_bytes(min(known)))

    def start_timer(self, timer: Timer, timeout_s: float) -> None:
        self._deadlines[timer] = asyncio.get_running_loop().time() + timeout_s

    def cancel_timer(self, timer: Timer) -> None:
        self._deadlines.pop(timer, None)

    async def next_event(self) -> MachineEvent:
        """The next relay event, the first timer whose deadline passed, or the end."""
        if self._sub is None:
            return SubscriptionEnded()
        timer = min(self._deadlines, key=self._deadlines.__getitem__, default=None)
        remaining = None
        if timer is not None:
            remaining = self._deadlines[timer] - asyncio.get_running_loop().time()
        if remaining is None or remaining > 0:
            try:
                event = await asyncio.wait_for(anext(self._sub), remaining)
                return Received(event, now=int(self._clock()))
            except TimeoutError:
                pass  # only with a limit, so a timer is due
            except StopAsyncIteration:
                return SubscriptionEnded()
        if timer is None:  # pragma: no cover - wait_for without a limit never times out
            return SubscriptionEnded()
        del self._deadlines[timer]
        _log.info("the %s wait timed out", timer.value)
        return TimerFired(timer)

    async def close(self) -> None:
        """Close the subscription, and the pool unless it was given."""
        self._deadlines.clear()
        if self._sub is not None:
            await self._sub.close()
            self._sub = None
        if self._pool is not None and self._pool is not self._given_pool:
            await self._pool.close()
        self._pool = None
