"""The relay pool against real nostr-relay processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.messages import ReasonPrefix
from dvm.relay import (
    BackoffPolicy,
    PoolClosedError,
    PublishError,
    PublishOutcome,
    RelayLimits,
    RelayPool,
    Subscription,
)
from tests.waiting import wait_for

from .conftest import RelayFactory, RelayProcess

pytestmark = [pytest.mark.relay, pytest.mark.asyncio]

FAST = BackoffPolicy(initial_s=0.1, factor=2.0, max_s=0.5)


def new_key() -> SecretKey:
    return SecretKey.generate(secrets.token_bytes)


def make_event(key: SecretKey, content: str = "hello", *, kind: int = 1) -> Event:
    unsigned = UnsignedEvent(key.public_key.hex(), int(time.time()), kind, (), content)
    return unsigned.sign(key, aux_rand=secrets.token_bytes(32))


async def next_event(sub: Subscription, timeout_s: float = 10.0) -> Event:
    async with asyncio.timeout(timeout_s):
        return await anext(sub)


def by_author(key: SecretKey) -> Filter:
    return Filter(authors=(key.public_key.hex(),))


async def test_publish_then_subscribe_stored_and_live(relay: RelayProcess) -> None:
    key = new_key()
    async with RelayPool([relay.url], secret_key=key, backoff=FAST) as pool:
        stored = make_event(key, "stored")
        result = await pool.publish(stored)
        assert result.accepted_by == (relay.url,)
        assert result.for_relay(relay.url).outcome is PublishOutcome.ACCEPTED

        sub = await pool.subscribe([by_author(key)])
        assert await sub.wait_eose(timeout_s=10)
        assert (await next_event(sub)).id == stored.id

        live = make_event(key, "live", kind=7)
        await pool.publish(live)
        got = await next_event(sub)
        assert got.id == live.id
        assert got.to_dict() == live.to_dict()

        again = await pool.publish(stored)  # the relay already has it: duplicate counts as accepted
        assert again.for_relay(relay.url).accepted


async def test_two_relays_deliver_each_event_once(relay_factory: RelayFactory) -> None:
    first, second = relay_factory(), relay_factory()
    key = new_key()
    async with RelayPool([first.url, second.url], backoff=FAST) as pool:
        stored = make_event(key, "on both")
        assert set((await pool.publish(stored)).accepted_by) == {first.url, second.url}

        sub = await pool.subscribe([by_author(key)])
        assert await sub.wait_eose(timeout_s=10)
        assert sub.eose_relays == {first.url, second.url}
        # Both relays sent the stored event before their EOSE; the caller sees it once.
        assert sub.queued == 1
        assert sub.duplicate_count == 1
        assert (await next_event(sub)).id == stored.id

        live = make_event(key, "live on both")
        await pool.publish(live)
        assert (await next_event(sub)).id == live.id
        # The second relay's copy of the live event arrives and is dropped, not queued.
        await wait_for(
            lambda: sub.duplicate_count >= 2, timeout_s=10, what="the second copy of live"
        )
        assert sub.queued == 0


async def test_killed_and_restarted_relay_keeps_delivering(relay: RelayProcess) -> None:
    key = new_key()
    async with (
        RelayPool([relay.url], backoff=FAST) as reader,
    ):
        sub = await reader.subscribe([by_author(key)])
        assert await sub.wait_eose(timeout_s=10)
        async with RelayPool([relay.url], backoff=FAST) as writer:
            before = make_event(key, "before the crash")
            await writer.publish(before)
        assert (await next_event(sub)).id == before.id

        relay.kill()
        await wait_for(
            lambda: relay.url not in reader.connected_relays,
            timeout_s=10,
            what="the reader notices that the relay is gone",
        )
        relay.start()  # same port, same database

        # A different client publishes after the restart; the reader does nothing at all.
        async with RelayPool([relay.url], backoff=FAST) as writer:
            after = make_event(key, "after the restart")
            await writer.publish(after)
        assert (await next_event(sub, timeout_s=15)).id == after.id
        # The resubscription (since = high water - overlap) re-sent "before"; it was dropped.
        assert await sub.wait_eose(timeout_s=10)
        assert sub.duplicate_count >= 1
        assert sub.queued == 0


async def test_nip42_auth_allows_the_authorised_key(relay_factory: RelayFactory) -> None:
    key = new_key()
    relay = relay_factory(authorised=(key.public_key.hex(),))
    async with RelayPool([relay.url], secret_key=key, backoff=FAST) as pool:
        event = make_event(key, "authenticated")
        result = await pool.publish(event)
        assert result.for_relay(relay.url).accepted
        sub = await pool.subscribe([by_author(key)])
        assert await sub.wait_eose(timeout_s=10)
        assert (await next_event(sub)).id == event.id
        assert sub.closed_reasons == {}


async def test_nip42_without_key_is_refused_with_typed_reason(
    relay_factory: RelayFactory,
) -> None:
    owner = new_key()
    relay = relay_factory(authorised=(owner.public_key.hex(),))
    async with RelayPool([relay.url], backoff=FAST) as anonymous:
        with pytest.raises(PublishError) as caught:
            await anonymous.publish(make_event(owner, "no auth"))
        refusal = caught.value.result.for_relay(relay.url)
        assert refusal.outcome is PublishOutcome.REFUSED
        # nostr-relay 1.14 answers "restricted:" where NIP-42 says "auth-required:".
        assert refusal.prefix is ReasonPrefix.RESTRICTED
        assert relay.url in str(caught.value)

        sub = await anonymous.subscribe([by_author(owner)])
        assert await sub.wait_eose(timeout_s=10)
        assert sub.closed_reasons[relay.url].prefix is ReasonPrefix.RESTRICTED
        assert sub.finished

    stranger = new_key()  # authenticates fine but holds no role on this relay
    async with RelayPool([relay.url], secret_key=stranger, backoff=FAST) as pool:
        with pytest.raises(PublishError) as caught:
            await pool.publish(make_event(stranger, "authenticated but not allowed"))
        assert caught.value.result.for_relay(relay.url).prefix is ReasonPrefix.RESTRICTED


async def test_relay_refuses_oversized_event_with_its_own_reason(
    relay_factory: RelayFactory,
) -> None:
    relay = relay_factory(max_event_size=2048)
    key = new_key()
    # The relay publishes no limits; tell the pool a generous one so the relay itself decides.
    generous = {relay.url: RelayLimits(max_message_length=1 << 20)}
    async with RelayPool([relay.url], relay_limits=generous, backoff=FAST) as pool:
        with pytest.raises(PublishError) as caught:
            await pool.publish(make_event(key, "x" * 4096))
        refusal = caught.value.result.for_relay(relay.url)
        assert refusal.outcome is PublishOutcome.REFUSED
        assert refusal.prefix is ReasonPrefix.INVALID
        assert "280 characters" in refusal.message  # nostr-relay's own words
        assert "280 characters" in str(caught.value)
        assert (await pool.publish(make_event(key, "x" * 2000))).ok


async def test_local_limit_refuses_before_sending(relay: RelayProcess) -> None:
    key = new_key()
    tight = {relay.url: RelayLimits(max_message_length=1000)}
    big = make_event(key, "y" * 1200)
    async with RelayPool([relay.url], relay_limits=tight, backoff=FAST) as pool:
        with pytest.raises(PublishError) as caught:
            await pool.publish(big)
        refusal = caught.value.result.for_relay(relay.url)
        assert refusal.outcome is PublishOutcome.TOO_LARGE
        assert "at most 1000" in refusal.message
    async with RelayPool([relay.url], backoff=FAST) as pool:  # the relay never saw it
        sub = await pool.subscribe([Filter(ids=(big.id,))])
        assert await sub.wait_eose(timeout_s=10)
        assert sub.queued == 0


async def test_slow_consumer_queue_is_bounded(relay: RelayProcess) -> None:
    key = new_key()
    async with RelayPool([relay.url], backoff=FAST, queue_maxsize=5) as pool:
        published = [make_event(key, f"event {i}") for i in range(20)]
        for event in published:
            await pool.publish(event)
        sub = await pool.subscribe([by_author(key)])
        assert await sub.wait_eose(timeout_s=10)
        assert sub.queued == 5
        assert sub.dropped_count == 15
        kept = [sub.get_nowait() for _ in range(5)]
        assert {e.id for e in kept if e is not None} <= {e.id for e in published}


async def test_clean_shutdown_leaves_no_tasks(relay_factory: RelayFactory) -> None:
    relay = relay_factory()
    pool = RelayPool([relay.url, "ws://127.0.0.1:9"], backoff=FAST, connect_timeout_s=1)
    await pool.start()
    sub = await pool.subscribe([Filter(kinds=(1,))])
    await sub.wait_eose(relay_url=relay.url, timeout_s=10)
    await pool.close()
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert others == []
    assert sub.finished
    assert [e async for e in sub] == []
    with pytest.raises(PoolClosedError):
        await pool.publish(make_event(new_key()))
