"""The pool's shell against an in-process websocket relay (see fake_relay.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

import dvm.relay
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.messages import ReasonPrefix
from dvm.relay import (
    BackoffPolicy,
    PublishError,
    PublishOutcome,
    RelayPool,
    SubscriptionError,
    event_message_size_bytes,
)

from .fake_relay import FakeRelay

KEY = SecretKey(bytes.fromhex("66" * 32))
FAST = BackoffPolicy(initial_s=0.05, max_s=0.2)


def event(content: str) -> Event:
    return UnsignedEvent(KEY.public_key.hex(), int(time.time()), 1, (), content).sign(
        KEY, aux_rand=bytes(32)
    )


def test_public_surface() -> None:
    assert sorted(dvm.relay.__all__) == sorted(
        [
            "BackoffPolicy",
            "Nip11Error",
            "PoolClosedError",
            "PublishError",
            "PublishOutcome",
            "PublishResult",
            "RecentIds",
            "RelayError",
            "RelayInformation",
            "RelayLimits",
            "RelayPool",
            "RelayPublishResult",
            "RelaySession",
            "Subscription",
            "SubscriptionError",
            "backoff_delays",
            "event_message_size_bytes",
            "fetch_relay_information",
            "publish_wrap",
        ]
    )
    for name in dvm.relay.__all__:
        assert hasattr(dvm.relay, name)


@pytest.mark.asyncio
async def test_nip11_limits_refuse_locally_and_cap_subscriptions() -> None:
    limitation: dict[str, object] = {"max_message_length": 2000, "max_subscriptions": 1}
    async with (
        FakeRelay(limitation=limitation) as relay,
        RelayPool([relay.url], backoff=FAST) as pool,
    ):
        assert pool.limits(relay.url).max_message_length == 2000
        big = event("z" * 2000)
        with pytest.raises(PublishError) as caught:
            await pool.publish(big)
        refusal = caught.value.result.for_relay(relay.url)
        assert refusal.outcome is PublishOutcome.TOO_LARGE
        assert f"is {event_message_size_bytes(big)} bytes" in refusal.message
        assert "at most 2000" in str(caught.value)
        assert relay.received_event_ids == []

        small = event("fits")
        assert (await pool.publish(small)).ok
        assert relay.received_event_ids == [small.id]

        first = await pool.subscribe([Filter(kinds=(1,))])
        with pytest.raises(SubscriptionError, match="max_subscriptions"):
            await pool.subscribe([Filter(kinds=(2,))])
        await first.close()
        assert (await pool.subscribe([Filter(kinds=(3,))])).id != first.id


@pytest.mark.asyncio
async def test_auth_required_with_and_without_a_key() -> None:
    async with FakeRelay(require_auth=True) as relay:
        async with RelayPool([relay.url], backoff=FAST, ok_timeout_s=3) as anonymous:
            with pytest.raises(PublishError) as caught:
                await anonymous.publish(event("anon"))
            assert caught.value.result.for_relay(relay.url).prefix is ReasonPrefix.AUTH_REQUIRED
            sub = await anonymous.subscribe([Filter(kinds=(1,))])
            assert await sub.wait_eose(timeout_s=3)
            assert sub.closed_reasons[relay.url].prefix is ReasonPrefix.AUTH_REQUIRED

        async with RelayPool([relay.url], secret_key=KEY, backoff=FAST, ok_timeout_s=3) as pool:
            member = event("member")
            assert (await pool.publish(member)).accepted_by == (relay.url,)
            sub = await pool.subscribe([Filter(kinds=(1,))])
            assert await sub.wait_eose(timeout_s=3)
            assert sub.closed_reasons == {}
            assert relay.received_event_ids == [member.id]


@pytest.mark.asyncio
async def test_unreachable_relay_is_reported_and_tasks_end() -> None:
    pool = RelayPool(["ws://127.0.0.1:9"], backoff=FAST, connect_timeout_s=0.5, fetch_nip11=False)
    async with pool:
        with pytest.raises(PublishError) as caught:
            await pool.publish(event("nobody"), timeout_s=0.3)
        assert caught.value.result.relays[0].outcome is PublishOutcome.UNREACHABLE
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
