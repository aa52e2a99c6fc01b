"""ProviderNode.on_event under a flood, without relays: what is written, answered and spawned.

The node's clock is pinned to the requests' ``NOW`` and its monotonic clock is a fake, so the
token buckets and the load meter are exact. Over a real relay: tests/integration/test_node_flood.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from pathlib import Path
from typing import Any

import pytest

from dvm.node.config import NodeConfig
from dvm.node.ledger import JobLedger
from dvm.node.node import MAX_BACKGROUND, ProviderNode
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import SecretKey
from tests.unit.dvm.node.conftest import NOW, key, make_request

PROVIDER = key(1)


class _Clock:
    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


def _node(config: NodeConfig, ledger: JobLedger, monotonic: _Clock) -> ProviderNode:
    return ProviderNode(
        config,
        secret_key=PROVIDER,
        launcher=None,  # type: ignore[arg-type]  # never reached: nothing is accepted here
        ledger=ledger,
        runtime_version="test",
        runtime_image="test",
        clock=lambda: float(NOW),
        monotonic=monotonic,
    )


def _junk(kind: int = 5051) -> Event:
    """A request from a fresh key for a kind the node does not serve (a cheap refusal)."""
    fresh = SecretKey.generate(secrets.token_bytes)
    unsigned = UnsignedEvent(
        fresh.public_key.hex(), NOW, kind, (("p", PROVIDER.public_key.hex()),), ""
    )
    return unsigned.sign(fresh, aux_rand=bytes(32))


async def _settle(node: ProviderNode) -> None:
    """Wait for the node's background (feedback) tasks to finish."""
    if node._background:
        await asyncio.wait(set(node._background))


@pytest.mark.asyncio
async def test_cheap_refusals_write_nothing_and_answers_stay_within_the_rate(
    config: NodeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = dataclasses.replace(
        config.limits, refusal_feedback_burst=5, refusal_feedback_per_minute=6.0
    )
    config = dataclasses.replace(config, limits=limits)
    answered: list[str] = []

    async def feedback(self: ProviderNode, request_id: str, *args: Any, **kwargs: Any) -> None:
        answered.append(request_id)

    monkeypatch.setattr(ProviderNode, "feedback", feedback)
    monotonic = _Clock()
    with JobLedger.in_data_dir(tmp_path / "data") as ledger:
        node = _node(config, ledger, monotonic)
        for _ in range(500):
            node.on_event(_junk())
        await _settle(node)
        assert ledger.count() == 0
        assert len(answered) == 5  # the node-wide burst
        monotonic.now += 60.0  # a minute later: 6 more tokens, capped at the burst of 5
        for _ in range(100):
            node.on_event(_junk())
        await _settle(node)
        assert len(answered) == 10
        assert ledger.count() == 0


@pytest.mark.asyncio
async def test_a_refused_request_past_the_cheap_checks_is_one_refused_row(
    config: NodeConfig, tmp_path: Path
) -> None:
    requester = key(2)
    with JobLedger.in_data_dir(tmp_path / "data") as ledger:
        node = _node(config, ledger, _Clock())
        event = make_request(requester, PROVIDER, params=[("model", "gpt-9")])
        node.on_event(event)
        record = ledger.get(event.id)
        assert record is not None
        assert (record.state.value, record.reason) == ("refused", "unsupported-model")
        node.on_event(event)  # delivered again: already in the ledger, dropped
        assert ledger.count() == 1


@pytest.mark.asyncio
async def test_background_tasks_are_bounded(config: NodeConfig, tmp_path: Path) -> None:
    release = asyncio.Event()
    with JobLedger.in_data_dir(tmp_path / "data") as ledger:
        node = _node(config, ledger, _Clock())
        assert all(node._spawn(release.wait()) for _ in range(MAX_BACKGROUND))  # type: ignore[arg-type]
        extra = release.wait()
        assert node._spawn(extra) is False  # type: ignore[arg-type]  # closed, never run
        assert extra.cr_frame is None  # the coroutine was closed: no "never awaited" warning
        release.set()
        await asyncio.wait(set(node._background))
        assert not node._background
