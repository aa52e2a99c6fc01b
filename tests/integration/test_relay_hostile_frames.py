"""Hostile events through a real nostr-relay: the pool's subscription survives (issue 10).

A stranger's raw websocket client publishes, to the real relay, events a hostile author can
make: a lone surrogate escaped in the content and in a tag, a 5,000-digit ``created_at``,
``NaN``, a repeated key, a wrong id, deep nesting (nostr-relay 1.14 drops the surrogate ones
without an answer and closes the connection on the huge number). Whatever the relay does with
each (refuse it, or store and forward it), our pool, subscribed to everything, must keep its
one connection and deliver the valid event published afterwards. nostr-relay forwards none of
them, so this passes without issue 10's fix too: it guards the real-relay path; the proof that
a relay *sending* such frames no longer ends the connection is the raw server of
tests/unit/dvm/relay/test_connection.py.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.relay import RelayPool

from .conftest import RelayProcess

pytestmark = [pytest.mark.relay, pytest.mark.asyncio]


def _signed(key: SecretKey, content: str) -> Event:
    return UnsignedEvent(key.public_key.hex(), int(time.time()), 1, (), content).sign(
        key, aux_rand=secrets.token_bytes(32)
    )


def _hostile_frames(key: SecretKey) -> list[str]:
    good = _signed(key, "placeholder").to_dict()
    text = json.dumps(["EVENT", good], separators=(",", ":"))
    return [
        text.replace('"placeholder"', '"\\ud800"'),
        text.replace('"tags":[]', '"tags":[["t","\\udfff"]]'),
        text.replace(f'"created_at":{good["created_at"]}', '"created_at":' + "9" * 5000),
        text.replace('"kind":1', '"kind":NaN'),
        text.replace('"kind":1', '"kind":1,"kind":1'),
        text.replace(str(good["id"]), "0" * 64),
        '["EVENT",' + "[" * 5000 + "]" * 5000 + "]",
    ]


async def _send_then_mark(url: str, frame: str, key: SecretKey) -> None:
    """Send ``frame`` on a fresh connection, then a valid marker event, and wait for the
    marker's OK: the relay has dealt with the frame. nostr-relay ignores some of these frames
    and closes the connection on others (1013 after the 5,000-digit number): both are fine."""
    marker = _signed(key, "marker")
    async with connect(url, proxy=None) as raw:
        try:
            await raw.send(frame)
            await raw.send(json.dumps(["EVENT", marker.to_dict()]))
            async with asyncio.timeout(10):
                while True:
                    reply = json.loads(await raw.recv())
                    if reply[:2] == ["OK", marker.id]:
                        return
        except ConnectionClosed:
            return


async def test_hostile_events_published_to_a_real_relay_leave_the_pool_working(
    relay: RelayProcess,
) -> None:
    stranger = SecretKey.generate(secrets.token_bytes)
    author = SecretKey.generate(secrets.token_bytes)
    async with RelayPool([relay.url]) as pool:
        sub = await pool.subscribe(
            [Filter(authors=(stranger.public_key.hex(), author.public_key.hex()))]
        )
        assert await sub.wait_eose(timeout_s=10)
        for frame in _hostile_frames(stranger):
            await _send_then_mark(relay.url, frame, stranger)
        valid = _signed(author, "after the hostile events")
        result = await pool.publish(valid)
        assert result.ok
        received: list[Event] = []
        async with asyncio.timeout(10):
            async for event in sub:
                received.append(event)
                if event.id == valid.id:
                    break
        assert received[-1].id == valid.id
        # The one fact no public property gives: the pool never had to reconnect.
        assert pool._conns[relay.url].connect_count == 1
