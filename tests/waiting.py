"""Waiting, in tests, for a positive fact, with a deadline (STYLE.md: no sleeps as synchronisation).

A test that expects something to happen (a feedback event, a log line, a disconnection, a pod)
polls for exactly that fact: :func:`wait_for` in async tests, :func:`wait_for_blocking` in
synchronous ones. Each returns the condition's first truthy value, or fails the test with an
``AssertionError`` that names ``what`` (and ``details()``, such as a node's log) when
``timeout_s`` passes; the deadline only bounds a failure, it never decides a pass.

Absences ("no second container started", "the attestation was not accepted") are asserted only
after a positive fact proved the code under test ran: a sleep followed by an absence passes
when nothing ran at all.

Import it as ``from tests.waiting import wait_for`` (pytest runs with ``--import-mode=importlib``
from the repository root, as for ``tests.integration.conftest``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for", "wait_for_blocking"]

T = TypeVar("T")

#: Poll interval: short against every deadline used in the tests, long against a busy loop.
DEFAULT_INTERVAL_S = 0.02


def _failure(what: str, timeout_s: float, details: Callable[[], str] | None) -> AssertionError:
    message = f"{what}: not within {timeout_s:g} s"
    if details is not None:
        message += "\n" + details()
    return AssertionError(message)


async def wait_for(
    condition: Callable[[], T],
    *,
    timeout_s: float,
    what: str = "the awaited condition",
    details: Callable[[], str] | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> T:
    """Return ``condition()``'s first truthy value, checked now and every ``interval_s``.

    The event loop runs between checks, so the code under test progresses. Raises
    ``AssertionError`` (with ``what`` and ``details()``) once ``timeout_s`` has passed.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _failure(what, timeout_s, details)
        await asyncio.sleep(interval_s)


def wait_for_blocking(
    condition: Callable[[], T],
    *,
    timeout_s: float,
    what: str = "the awaited condition",
    details: Callable[[], str] | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
) -> T:
    """:func:`wait_for` for synchronous tests (the code under test runs in another process)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _failure(what, timeout_s, details)
        time.sleep(interval_s)
