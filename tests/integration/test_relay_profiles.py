"""The production relay profiles (tests/relay_profiles.py) refuse what strfry, khatru and an
auth-gated DM relay refuse, over a real nostr-relay process; and the pool's answers to them
(the ``mute:`` fallback to 1059, NIP-42 as several keys) get events through.

Absence is shown without sleeps: after the event that must not arrive, a marker event the same
subscription may see is published; relays deliver one connection's events in order, so when the
marker arrives the other one would have arrived first.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.messages import ReasonPrefix
from dvm.nostr.nip17 import build_chat_rumor, gift_wraps
from dvm.nostr.nip59 import GIFT_WRAP_KIND, TWO_DAYS_S, WRAP_KIND_EPHEMERAL
from dvm.relay import BackoffPolicy, PublishError, RelayPool, Subscription, publish_wrap

from .conftest import RelayFactory

pytestmark = [pytest.mark.relay, pytest.mark.asyncio]

FAST = BackoffPolicy(initial_s=0.1, factor=2.0, max_s=0.5)


def new_key() -> SecretKey:
    return SecretKey.generate(secrets.token_bytes)


def make_event(
    key: SecretKey,
    *,
    kind: int = 1,
    content: str = "hello",
    created_at: int | None = None,
    tags: tuple[tuple[str, ...], ...] = (),
) -> Event:
    when = int(time.time()) if created_at is None else created_at
    return UnsignedEvent(key.public_key.hex(), when, kind, tags, content).sign(
        key, aux_rand=secrets.token_bytes(32)
    )


def wrap_to(recipient: SecretKey, *, kind: int, now: int | None = None) -> Event:
    sender = new_key()
    rumor = build_chat_rumor(
        sender=sender.public_key,
        receivers=[recipient.public_key],
        content="hi",
        created_at=int(time.time()),
    )
    ((_, wrapped),) = gift_wraps(
        rumor,
        sender,
        [recipient.public_key],
        random_bytes=secrets.token_bytes,
        now=int(time.time()) if now is None else now,
        include_sender=False,
        kind=kind,
    )
    return wrapped


async def refusal(pool: RelayPool, event: Event) -> tuple[ReasonPrefix | None, str]:
    with pytest.raises(PublishError) as info:
        await pool.publish(event)
    (answer,) = info.value.result.relays
    return answer.prefix, answer.message


async def next_event(sub: Subscription, timeout_s: float = 10.0) -> Event:
    async with asyncio.timeout(timeout_s):
        return await anext(sub)


# --- strfry-like --------------------------------------------------------------------------------


async def test_strfry_refuses_stale_ephemeral_huge_and_future_events(
    relay_factory: RelayFactory,
) -> None:
    relay = relay_factory(profile="strfry")
    key = new_key()
    now = int(time.time())
    async with RelayPool([relay.url], backoff=FAST) as pool:
        stale = make_event(key, kind=20001, created_at=now - 120)
        assert await refusal(pool, stale) == (
            ReasonPrefix.INVALID,
            "invalid: ephemeral event expired",
        )
        assert (await pool.publish(make_event(key, kind=20001))).ok
        assert (await pool.publish(make_event(key, created_at=now - 3600))).ok  # stored: fine

        huge = make_event(key, content="x" * 70_000)  # under the dev relay's 131072 characters
        prefix, message = await refusal(pool, huge)
        assert prefix is ReasonPrefix.INVALID
        assert message.startswith("invalid: event too large")
        assert (await pool.publish(make_event(key, content="x" * 60_000))).ok

        assert await refusal(pool, make_event(key, created_at=now + 1200)) == (
            ReasonPrefix.INVALID,
            "invalid: created_at too late",
        )
        assert (await pool.publish(make_event(key, created_at=now + 600))).ok


async def test_strfry_takes_todays_ephemeral_wraps_and_refused_the_backdated_ones(
    relay_factory: RelayFactory,
) -> None:
    relay = relay_factory(profile="strfry")
    recipient = new_key()
    async with RelayPool([relay.url], backoff=FAST) as pool:
        # What every 21059 wrap looked like before issue 10 (NIP-59 backdating): refused.
        backdated = wrap_to(recipient, kind=WRAP_KIND_EPHEMERAL, now=int(time.time()) - TWO_DAYS_S)
        prefix, _ = await refusal(pool, backdated)
        assert prefix is ReasonPrefix.INVALID
        # gift_wraps now dates an ephemeral wrap at `now`: accepted.
        assert (await pool.publish(wrap_to(recipient, kind=WRAP_KIND_EPHEMERAL))).ok


# --- khatru-like --------------------------------------------------------------------------------


async def test_khatru_mutes_an_ephemeral_event_nobody_listens_to_and_stores_none(
    relay_factory: RelayFactory,
) -> None:
    relay = relay_factory(profile="khatru")
    recipient = new_key()
    by_p = Filter(
        kinds=(WRAP_KIND_EPHEMERAL, GIFT_WRAP_KIND),
        tags=(Filter.tag("p", [recipient.public_key.hex()]),),
    )
    async with RelayPool([relay.url], backoff=FAST) as pool:
        prefix, message = await refusal(pool, wrap_to(recipient, kind=WRAP_KIND_EPHEMERAL))
        assert prefix is ReasonPrefix.MUTE
        assert message.startswith("mute: no one was listening")

        sub = await pool.subscribe([by_p])
        assert await sub.wait_eose(timeout_s=10)
        live = wrap_to(recipient, kind=WRAP_KIND_EPHEMERAL)
        assert (await pool.publish(live)).ok  # someone listens now
        assert (await next_event(sub)).id == live.id

        later = await pool.subscribe([by_p])
        assert await later.wait_eose(timeout_s=10)
        marker = wrap_to(recipient, kind=GIFT_WRAP_KIND)
        assert (await pool.publish(marker)).ok
        assert (await next_event(later)).id == marker.id  # the ephemeral one was never stored


async def test_publish_wrap_falls_back_to_a_stored_wrap_when_muted(
    relay_factory: RelayFactory,
) -> None:
    relay = relay_factory(profile="khatru")
    recipient = new_key()
    async with RelayPool([relay.url], backoff=FAST) as pool:
        sent, result = await publish_wrap(
            pool, lambda kind: wrap_to(recipient, kind=kind), kind=WRAP_KIND_EPHEMERAL
        )
        assert sent.kind == GIFT_WRAP_KIND
        assert result.ok
        # ...which the recipient finds when it subscribes.
        sub = await pool.subscribe([Filter(tags=(Filter.tag("p", [recipient.public_key.hex()]),))])
        assert (await next_event(sub)).id == sent.id


# --- auth-gated ---------------------------------------------------------------------------------


async def test_auth_gated_wants_auth_to_publish_and_the_author_among_the_keys(
    relay_factory: RelayFactory,
) -> None:
    relay = relay_factory(profile="auth")
    user, session = new_key(), new_key()
    request = make_event(user, kind=5050)
    async with RelayPool([relay.url], backoff=FAST) as anonymous:
        assert (await refusal(anonymous, request))[0] is ReasonPrefix.AUTH_REQUIRED
    async with RelayPool([relay.url], secret_key=session, backoff=FAST) as only_session:
        assert (await refusal(only_session, request))[0] is ReasonPrefix.RESTRICTED
        # Gift wraps are signed by one-time keys: any authenticated connection may post them.
        assert (await only_session.publish(wrap_to(new_key(), kind=GIFT_WRAP_KIND))).ok
    # Issue 10: the client authenticated only as S yet published U's request. Now: both.
    async with RelayPool([relay.url], secret_key=session, auth_keys=(user,), backoff=FAST) as both:
        assert (await both.publish(request)).ok
        assert (await both.publish(make_event(session, kind=1))).ok


async def test_auth_gated_serves_gift_wraps_only_to_their_authenticated_recipient(
    relay_factory: RelayFactory,
) -> None:
    relay = relay_factory(profile="auth")
    recipient, stranger, poster = new_key(), new_key(), new_key()
    to_recipient = Filter(
        kinds=(GIFT_WRAP_KIND, 1), tags=(Filter.tag("p", [recipient.public_key.hex()]),)
    )
    async with RelayPool([relay.url], secret_key=poster, backoff=FAST) as post:
        stored = wrap_to(recipient, kind=GIFT_WRAP_KIND)
        assert (await post.publish(stored)).ok

        async with RelayPool([relay.url], backoff=FAST) as anonymous:
            sub = await anonymous.subscribe([to_recipient])
            await sub.wait_eose(timeout_s=10)
            assert sub.closed_reasons[relay.url].prefix is ReasonPrefix.AUTH_REQUIRED

        async with RelayPool([relay.url], secret_key=stranger, backoff=FAST) as other:
            peek = await other.subscribe([to_recipient])
            assert await peek.wait_eose(timeout_s=10)
            async with RelayPool([relay.url], secret_key=recipient, backoff=FAST) as own:
                mine = await own.subscribe([to_recipient])
                assert await mine.wait_eose(timeout_s=10)
                assert (await next_event(mine)).id == stored.id  # stored, to its recipient

                live = wrap_to(recipient, kind=GIFT_WRAP_KIND)
                assert (await post.publish(live)).ok
                assert (await next_event(mine)).id == live.id
                marker = make_event(poster, tags=(("p", recipient.public_key.hex()),))
                assert (await post.publish(marker)).ok
                assert (await next_event(mine)).id == marker.id
                # The stranger asked for the same filter: neither wrap, stored or live, only
                # the marker published after them.
                assert (await next_event(peek)).id == marker.id
