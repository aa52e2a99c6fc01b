"""A node's relay pool started before its relay: quick first retries, one "waiting" log line.

Issue 13: the node started a moment before ``cdvm relay`` and its first request waited ~20 s
for the reconnect backoff. The pool here is built as the node builds it
(``dvm.node.node.Node.run``: ``RelayPool(relays, secret_key=...)``, the default
:class:`dvm.relay.BackoffPolicy`), against a real nostr-relay started after it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import pytest

from dvm.nostr.event import UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.relay import RelayPool
from tests.waiting import wait_for

from .conftest import RelayFactory

pytestmark = [pytest.mark.relay, pytest.mark.asyncio]

_CONNECTION_LOG = "dvm.relay.connection"


async def test_first_request_is_served_soon_after_a_late_relay_comes_up(
    relay_factory: RelayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=_CONNECTION_LOG)
    relay = relay_factory(start=False)
    key = SecretKey.generate(secrets.token_bytes)

    def failures() -> int:
        return sum(
            r.name == _CONNECTION_LOG and "connect failed" in r.getMessage() for r in caplog.records
        )

    async with RelayPool([relay.url], secret_key=key) as pool:
        # Six failed attempts: within ~1.25 s with the quick retries, after at least
        # 0.25 + 0.5 + 1 + 2 + 4 s with a plain (jittered) exponential backoff.
        await wait_for(lambda: failures() >= 6, timeout_s=4, what="six quick attempts")

        await asyncio.to_thread(relay.start)  # returns once the relay accepts connections
        up_at = time.monotonic()
        await wait_for(
            lambda: relay.url in pool.connected_relays,
            timeout_s=3,
            what="the pool connected to the relay that came up",
        )
        assert time.monotonic() - up_at < 3  # the bound above, stated: quick, not ~20 s

        event = UnsignedEvent(key.public_key.hex(), int(time.time()), 1, (), "first request")
        result = await pool.publish(event.sign(key, aux_rand=secrets.token_bytes(32)))
        assert result.accepted_by == (relay.url,)

    waiting = [r for r in caplog.records if "waiting for relay" in r.getMessage()]
    assert len(waiting) == 1, "logged once for the streak of failures, not per attempt"
    assert waiting[0].levelno == logging.INFO
    assert relay.url in waiting[0].getMessage()
