"""RelayConnection against a raw websocket server that sends hostile frames (issue 10).

The server answers a REQ with every kind of bad frame a relay can send -- a lone surrogate
escaped inside an event, its raw UTF-8-like bytes, bytes that are not UTF-8, 20,000 levels of
nesting, a 5,000-digit number, ``NaN``, a repeated key, an event whose id does not match --
then one valid event. The connection must drop each bad frame, log its size and the reason
(never its text), keep the same socket (no reconnect) and deliver the valid event. A *text*
frame that is not UTF-8 is refused by websockets itself (close 1007): the connection comes back
and the subscription with it.
"""

from __future__ import annotations

import json
import logging
import random
import time

import pytest
from websockets.asyncio.server import ServerConnection, serve

from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.messages import ClientReq, RelayEose, parse_client_message
from dvm.relay.backoff import BackoffPolicy
from dvm.relay.connection import RelayConnection
from dvm.relay.session import EventReceived, SessionEvent
from tests.waiting import wait_for

pytestmark = pytest.mark.asyncio

KEY = SecretKey(bytes.fromhex("77" * 32))
CANARY = "canary-5e1b"


def _event(content: str) -> Event:
    return UnsignedEvent(KEY.public_key.hex(), int(time.time()), 1, (), content).sign(
        KEY, aux_rand=bytes(32)
    )


def _bad_frames(sub: str) -> list[str | bytes]:
    good = _event(CANARY).to_dict()
    text = json.dumps(["EVENT", sub, good], separators=(",", ":"))
    content = json.dumps(CANARY)
    return [
        text.replace(content, '"' + CANARY + '\\ud800"'),  # escaped lone surrogate
        # A raw lone surrogate cannot be sent in a text frame (websockets encodes strict UTF-8):
        # its 3-byte form, in a binary frame, is the nearest a relay can get.
        text.encode().replace(CANARY.encode(), CANARY.encode() + b"\xed\xa0\x80"),
        text.encode().replace(CANARY.encode(), CANARY.encode() + b"\xff"),  # not UTF-8 (binary)
        '["EVENT",' + "[" * 20000 + "]" * 20000 + "]",
        text.replace(f'"created_at":{good["created_at"]}', '"created_at":' + "9" * 5000),
        text.replace(f'"kind":{good["kind"]}', '"kind":NaN'),
        text.replace('"kind":1', '"kind":1,"kind":1'),
        text.replace(str(good["id"]), "0" * 64),
        f'["{CANARY}\\udc00"]',
        '["NOTICE"',
    ]


def _connection(port: int, received: list[SessionEvent | None]) -> RelayConnection:
    return RelayConnection(
        f"ws://127.0.0.1:{port}",
        listener=lambda _url, item: received.append(item),
        clock=time.time,
        random=random.random,
        signer=None,
        backoff=BackoffPolicy(initial_s=0.05, max_s=0.2),
        since_overlap_s=0,
        connect_timeout_s=5,
        limits_override=None,
        fetch_nip11=False,
        max_frame_bytes=1024 * 1024,
    )


class HostileRelay:
    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self.valid: Event | None = None

    async def handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        async for frame in ws:
            msg = parse_client_message(frame)
            if isinstance(msg, ClientReq):
                sub = msg.subscription_id
                await ws.send(RelayEose(sub).to_json())
                for bad in _bad_frames(sub):
                    await ws.send(bad)
                self.valid = _event("after the bad frames")
                await ws.send(json.dumps(["EVENT", sub, self.valid.to_dict()]))


async def test_bad_frames_are_dropped_and_the_connection_keeps_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="dvm.relay")
    relay = HostileRelay()
    received: list[SessionEvent | None] = []
    async with serve(relay.handle, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        conn = _connection(port, received)
        conn.start()
        try:
            await conn.subscribe("s", (Filter(authors=(KEY.public_key.hex(),)),))

            def delivered() -> Event | None:
                for item in received:
                    if isinstance(item, EventReceived):
                        return item.event
                return None

            event = await wait_for(delivered, timeout_s=10, what="the valid event arrives")
            assert relay.valid is not None
            assert event.id == relay.valid.id
            assert conn.session.invalid_messages == len(_bad_frames("s"))
            assert conn.connect_count == 1
            assert relay.connections == 1
            assert conn.connected
            assert None not in received  # never disconnected
        finally:
            await conn.close()
    dropped = [r for r in caplog.records if "dropped a frame" in r.getMessage()]
    assert len(dropped) == len(_bad_frames("s"))
    assert all(" bytes (" in r.getMessage() or " characters (" in r.getMessage() for r in dropped)
    assert not any(CANARY in r.getMessage() for r in caplog.records)


class NotUtf8TextRelay:
    """Sends a text frame that is not UTF-8 on the first connection, a valid event on the next."""

    def __init__(self) -> None:
        self.connections = 0
        self.valid = _event("after the reconnect")

    async def handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        first = self.connections == 1
        async for frame in ws:
            msg = parse_client_message(frame)
            if isinstance(msg, ClientReq):
                await ws.send(RelayEose(msg.subscription_id).to_json())
                if first:
                    await ws.send(b'["NOTICE","\xed\xa0\x80"]', text=True)
                else:
                    await ws.send(json.dumps(["EVENT", msg.subscription_id, self.valid.to_dict()]))


async def test_a_text_frame_that_is_not_utf8_closes_the_socket_and_the_connection_comes_back() -> (
    None
):
    relay = NotUtf8TextRelay()
    received: list[SessionEvent | None] = []
    async with serve(relay.handle, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        conn = _connection(port, received)
        conn.start()
        try:
            await conn.subscribe("s", (Filter(authors=(KEY.public_key.hex(),)),))
            await wait_for(
                lambda: any(
                    isinstance(i, EventReceived) and i.event.id == relay.valid.id for i in received
                ),
                timeout_s=10,
                what="the event sent after the reconnect arrives",
            )
            # websockets refused the frame (close 1007); the connection came back by itself.
            assert conn.connect_count == 2
            assert None in received
        finally:
            await conn.close()
