"""publish_wrap: an ephemeral wrap refused everywhere goes again as a stored one, once.

The pool is a stand-in that answers each publish from a table (publish_wrap only calls
``pool.publish``); the real relays' answers are in tests/integration/test_relay_profiles.py.
"""

from __future__ import annotations

import secrets
import time

import pytest

from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.nostr.messages import ReasonPrefix
from dvm.relay import (
    PublishError,
    PublishOutcome,
    PublishResult,
    RelayPublishResult,
    publish_wrap,
)

URL = "ws://relay.test"
KEY = SecretKey(b"\x05" * 32)

pytestmark = pytest.mark.asyncio


def event(kind: int) -> Event:
    return UnsignedEvent(KEY.public_key.hex(), int(time.time()), kind, (), "x").sign(
        KEY, aux_rand=secrets.token_bytes(32)
    )


class StubPool:
    """Answers a publish of kind k with ``answers[k]`` (accepted when absent)."""

    def __init__(self, answers: dict[int, RelayPublishResult]) -> None:
        self.answers = answers
        self.published: list[int] = []

    async def publish(self, ev: Event) -> PublishResult:
        self.published.append(ev.kind)
        answer = self.answers.get(ev.kind, RelayPublishResult(URL, PublishOutcome.ACCEPTED))
        result = PublishResult(ev.id, (answer,))
        if not result.ok:
            raise PublishError(result)
        return result


def refused(prefix: ReasonPrefix) -> RelayPublishResult:
    return RelayPublishResult(URL, PublishOutcome.REFUSED, prefix, f"{prefix}: no")


async def publish(pool: StubPool, kind: int) -> Event:
    sent, _ = await publish_wrap(pool, event, kind=kind)  # type: ignore[arg-type]
    return sent


@pytest.mark.parametrize("prefix", [ReasonPrefix.MUTE, ReasonPrefix.INVALID, ReasonPrefix.BLOCKED])
async def test_a_refused_ephemeral_wrap_goes_again_as_1059(prefix: ReasonPrefix) -> None:
    pool = StubPool({21059: refused(prefix)})
    assert (await publish(pool, 21059)).kind == 1059
    assert pool.published == [21059, 1059]


async def test_an_accepted_ephemeral_wrap_is_sent_once() -> None:
    pool = StubPool({})
    assert (await publish(pool, 21059)).kind == 21059
    assert pool.published == [21059]


@pytest.mark.parametrize(
    "answer",
    [
        RelayPublishResult(URL, PublishOutcome.TIMEOUT, None, "no OK"),
        RelayPublishResult(URL, PublishOutcome.UNREACHABLE, None, "down"),
        RelayPublishResult(URL, PublishOutcome.TOO_LARGE, None, "big"),
    ],
)
async def test_no_retry_when_no_relay_refused(answer: RelayPublishResult) -> None:
    pool = StubPool({21059: answer})
    with pytest.raises(PublishError):
        await publish(pool, 21059)
    assert pool.published == [21059]


async def test_a_stored_wrap_is_not_retried_and_a_refused_retry_raises() -> None:
    stored = StubPool({1059: refused(ReasonPrefix.INVALID)})
    with pytest.raises(PublishError):
        await publish(stored, 1059)
    assert stored.published == [1059]
    both = StubPool({21059: refused(ReasonPrefix.MUTE), 1059: refused(ReasonPrefix.BLOCKED)})
    with pytest.raises(PublishError) as info:
        await publish(both, 21059)
    assert info.value.result.relays[0].prefix is ReasonPrefix.BLOCKED  # the last attempt's
    assert both.published == [21059, 1059]
