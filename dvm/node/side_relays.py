"""A job's short-lived connections to the relays its request named (NIP-90 ``relays``).

NIP-90: https://github.com/nostr-protocol/nips/blob/master/90.md. Which URLs qualify is
:func:`dvm.node.feedback_relays.select_feedback_relays` (capped, ws/wss only, never local unless
the node's own relays are). docs/node.md §6 "Feedback relays".

Contract: :class:`SideRelays` opens one :class:`~dvm.relay.RelayPool` (signed by P, so it can
answer NIP-42 AUTH) when a job starts and :meth:`SideRelays.close` closes it when the job ends.
:meth:`SideRelays.publish` never blocks the job and never raises: each event is sent by a
background task, at most :data:`MAX_PENDING` at once (more are dropped and logged), each bounded
by ``publish_timeout_s``; close waits at most ``close_timeout_s`` for them. A relay that is down
or refuses costs the job nothing but a log line: the node's own relays carry the same event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence

from dvm.nostr.event import Event
from dvm.nostr.keys import SecretKey
from dvm.relay import BackoffPolicy, RelayError, RelayPool

__all__ = ["MAX_PENDING", "SideRelays"]

_log = logging.getLogger(__name__)

#: feedback events of one job in flight to its side relays
MAX_PENDING = 4


class SideRelays:
    """See the module docstring. Construct inside a running event loop."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        secret_key: SecretKey,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        publish_timeout_s: float = 5.0,
        close_timeout_s: float = 5.0,
    ) -> None:
        self.urls = tuple(urls)
        self._timeout_s = publish_timeout_s
        self._close_timeout_s = close_timeout_s
        self._pool = RelayPool(
            self.urls,
            secret_key=secret_key,
            clock=clock,
            random_bytes=random_bytes,
            backoff=BackoffPolicy(initial_s=1.0, factor=2.0, max_s=5.0),
            connect_timeout_s=publish_timeout_s,
            ok_timeout_s=publish_timeout_s,
            fetch_nip11=False,
        )
        self._started = asyncio.create_task(self._pool.start())
        self._pending: set[asyncio.Task[None]] = set()

    def publish(self, event: Event) -> None:
        if len(self._pending) >= MAX_PENDING:
            _log.info(
                "event %s not sent to the request's relays: %d in flight", event.id, MAX_PENDING
            )
            return
        task = asyncio.create_task(self._publish(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, event: Event) -> None:
        try:
            async with asyncio.timeout(2 * self._timeout_s):
                await self._started
                await self._pool.publish(event, timeout_s=self._timeout_s)
        except (RelayError, TimeoutError) as exc:
            _log.info(
                "event %s kind %d not published to the request's relays: %s",
                event.id,
                event.kind,
                exc or "timeout",
            )

    async def close(self) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=self._close_timeout_s)
        for task in (*self._pending, self._started):
            task.cancel()
        for task in (*self._pending, self._started):
            with contextlib.suppress(asyncio.CancelledError, RelayError):
                await task
        await self._pool.close()
