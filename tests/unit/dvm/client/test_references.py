"""dvm.client.references against a real relay: only trusted publishers' kind 37100 is read,
garbage is skipped with its reason, the newest version per address wins."""

from __future__ import annotations

import secrets
import time

import pytest

from dvm.cdvm.refs import (
    REFERENCE_VALUES_KIND,
    LaunchMeasurement,
    ModelHash,
    ReferenceValues,
    SourceRef,
    build_reference_event,
)
from dvm.client import fetch_references
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.relay import RelayPool
from tests.integration.conftest import RelayProcess

pytestmark = pytest.mark.relay

MEAS = "aa" * 48


def _values(measurement: str = MEAS) -> ReferenceValues:
    return ReferenceValues(
        release="r",
        tee="simulated",
        runtime_version="0.1.0",
        images=(),
        measurements=(LaunchMeasurement(measurement),),
        min_tcb=(),
        models=(ModelHash("m", "cd" * 32),),
        recipe="recompute",
        source=SourceRef("https://example.org/cdvm.git", None),
    )


def _signed(key: SecretKey, created_at: int, measurement: str = MEAS) -> Event:
    unsigned = build_reference_event(
        _values(measurement), publisher=key.public_key, created_at=created_at
    )
    return unsigned.sign(key, aux_rand=secrets.token_bytes(32))


@pytest.mark.asyncio
async def test_only_trusted_publishers_newest_and_garbage_skipped(relay: RelayProcess) -> None:
    trusted, stranger = (SecretKey.generate(secrets.token_bytes) for _ in range(2))
    now = int(time.time())
    garbage = UnsignedEvent(
        trusted.public_key.hex(), now, REFERENCE_VALUES_KIND, (("d", "bad"), ("tee", "x")), "{}"
    ).sign(trusted, aux_rand=secrets.token_bytes(32))
    async with RelayPool([relay.url]) as pool:
        for event in (
            _signed(trusted, now - 100, "bb" * 48),  # an older version of the same address
            _signed(trusted, now),
            _signed(stranger, now),
            garbage,
        ):
            await pool.publish(event)
        fetched = await fetch_references([relay.url], {trusted.public_key.hex()}, pool=pool)
        assert pool.relay_urls == (relay.url,)  # a given pool is left open
        await pool.publish(_signed(stranger, now + 1))  # still usable
    assert fetched.complete
    (ref,) = fetched.references
    assert ref.publisher == trusted.public_key.hex()
    assert ref.values.measurements[0].measurement == MEAS  # the newest version
    (skipped,) = fetched.skipped
    assert skipped.startswith(f"event {garbage.id[:16]}… by {trusted.public_key.hex()[:16]}…: ")
    # its own pool, opened and closed here
    again = await fetch_references([relay.url], {stranger.public_key.hex()})
    assert [r.publisher for r in again.references] == [stranger.public_key.hex()]


@pytest.mark.asyncio
async def test_no_trusted_publisher_asks_no_relay() -> None:
    fetched = await fetch_references(["ws://127.0.0.1:1"], set())
    assert fetched.references == ()
    assert fetched.complete
