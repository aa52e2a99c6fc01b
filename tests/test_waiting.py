"""tests/waiting.py: the first truthy value comes back; a missed deadline fails the test, named."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.waiting import wait_for, wait_for_blocking


@pytest.mark.asyncio
async def test_wait_for_returns_the_first_truthy_value_and_lets_the_loop_run() -> None:
    box: list[str] = []
    asyncio.get_running_loop().call_soon(box.append, "done")
    assert await wait_for(lambda: box[:1], timeout_s=5, what="the callback") == ["done"]


@pytest.mark.asyncio
async def test_wait_for_fails_with_what_and_details() -> None:
    with pytest.raises(AssertionError, match=r"the marker: not within 0\.05 s\nlog tail"):
        await wait_for(lambda: None, timeout_s=0.05, what="the marker", details=lambda: "log tail")


def test_wait_for_blocking_polls_until_true_or_fails() -> None:
    counter = itertools.count()
    assert wait_for_blocking(lambda: next(counter) >= 3, timeout_s=5, interval_s=0.001)
    with pytest.raises(AssertionError, match="nothing: not within"):
        wait_for_blocking(lambda: 0, timeout_s=0.02, what="nothing")
