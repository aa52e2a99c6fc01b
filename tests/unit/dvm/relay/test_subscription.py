from __future__ import annotations

import asyncio

import pytest

from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.messages import Reason
from dvm.relay.subscription import RecentIds, Subscription, event_size_bytes

KEY = SecretKey(bytes.fromhex("44" * 32))


def event(n: int) -> Event:
    return UnsignedEvent(KEY.public_key.hex(), 1000 + n, 1, (), str(n)).sign(
        KEY, aux_rand=bytes(32)
    )


def test_recent_ids_is_a_bounded_lru() -> None:
    ids = RecentIds(2)
    assert ids.add("a")
    assert ids.add("b")
    assert not ids.add("a")  # refreshes a
    assert ids.add("c")  # evicts b, the least recently seen
    assert "a" in ids
    assert "c" in ids
    assert "b" not in ids
    assert len(ids) == 2


async def _noop(_: Subscription) -> None:
    return None


def make_sub(maxsize: int = 3) -> Subscription:
    return Subscription(
        "s",
        (Filter(),),
        frozenset({"ws://a", "ws://b"}),
        queue_maxsize=maxsize,
        dedup_capacity=100,
        on_close=_noop,
    )


@pytest.mark.asyncio
async def test_drop_oldest_when_full_and_dedup() -> None:
    sub = make_sub()
    events = [event(i) for i in range(5)]
    for e in events:
        sub._deliver(e)
    sub._deliver(events[4])
    assert sub.dropped_count == 2
    assert sub.duplicate_count == 1
    assert [sub.get_nowait() for _ in range(3)] == events[2:]
    assert sub.get_nowait() is None


@pytest.mark.asyncio
async def test_eose_and_closed_end_the_iteration() -> None:
    sub = make_sub()
    waiter = asyncio.create_task(sub.wait_eose(timeout_s=5))
    sub._mark_eose("ws://a")
    # One loop step, not a wait for time: the waiter runs up to its first suspension, where
    # it would already have returned if one relay's EOSE were enough.
    await asyncio.sleep(0)
    assert not waiter.done()
    sub._mark_closed("ws://b", Reason.parse("auth-required: no"))
    assert await waiter
    assert not sub.finished
    sub._mark_closed("ws://a", Reason.parse("error: bye"))
    assert sub.finished
    assert [e async for e in sub] == []


@pytest.mark.asyncio
async def test_iteration_waits_for_events_and_times_out_eose() -> None:
    sub = make_sub()
    reader = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)  # one loop step: the reader runs until it waits
    assert not reader.done()  # it is waiting, so the delivery below is what wakes it
    sub._deliver(event(1))
    assert (await reader).content == "1"
    assert not await sub.wait_eose(timeout_s=0.01)


def _sized(n: int, content_bytes: int) -> Event:
    return UnsignedEvent(
        KEY.public_key.hex(), 1000 + n, 1, (("t", "x"),), "é" * (content_bytes // 2)
    ).sign(KEY, aux_rand=bytes(32))


def test_event_size_is_close_to_its_json_size() -> None:
    for e in (event(1), _sized(2, 10_000), _sized(3, 0)):
        actual = len(e.to_json().encode("utf-8"))
        assert actual - 64 <= event_size_bytes(e) <= actual + 128, (actual, event_size_bytes(e))


@pytest.mark.asyncio
async def test_queue_is_bounded_by_bytes_too() -> None:
    sub = Subscription(
        "s",
        (Filter(),),
        frozenset({"ws://a"}),
        queue_maxsize=1000,
        dedup_capacity=100,
        on_close=_noop,
        queue_max_bytes=50_000,
    )
    big = [_sized(i, 20_000) for i in range(5)]
    for e in big:
        sub._deliver(e)
    assert sub.queued == 2  # two 20 kB events fit in 50 kB, a third does not
    assert sub.dropped_count == 3
    assert sub.queued_bytes == sum(event_size_bytes(e) for e in big[3:])
    assert sub.queued_bytes <= 50_000
    assert [sub.get_nowait(), sub.get_nowait()] == big[3:]  # the newest kept
    assert sub.queued_bytes == 0
    huge = _sized(9, 80_000)
    sub._deliver(huge)  # larger than the bound alone: kept (the queue was empty)
    assert sub.queued == 1
    sub._deliver(event(10))
    assert [sub.get_nowait(), sub.get_nowait()] == [event(10), None]


def test_a_queue_needs_a_positive_byte_bound() -> None:
    with pytest.raises(ValueError, match="queue_max_bytes"):
        Subscription(
            "s",
            (Filter(),),
            frozenset({"ws://a"}),
            queue_maxsize=1,
            dedup_capacity=1,
            on_close=_noop,
            queue_max_bytes=0,
        )
