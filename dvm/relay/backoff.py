"""Reconnect delays: capped exponential backoff with jitter, as a pure generator.

Delay ``n`` (0-based) is ``base_n = min(max_s, initial_s * factor**n)`` scaled by
``1 - jitter * r`` with ``r = random()`` in ``[0, 1)``: with the defaults (0.5 s, x2, 30 s cap,
jitter 0.5) the delays fall in (0.25, 0.5], (0.5, 1], (1, 2], ... up to (15, 30] seconds. The
jitter spreads the reconnects of many clients after a relay restart ("thundering herd"); keeping
at least half of the base delay keeps the exponential shape. The randomness is injected, so the
sequence is reproducible in tests. The caller restarts the generator after a successful
connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["BackoffPolicy", "backoff_delays"]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s or self.factor < 1:
            raise ValueError("backoff needs 0 < initial_s <= max_s and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be in [0, 1]")


def backoff_delays(policy: BackoffPolicy, *, random: Callable[[], float]) -> Iterator[float]:
    """Endless reconnect delays in seconds for ``policy``, jittered with ``random()``."""
    base_s = policy.initial_s
    while True:
        r = random()
        if not 0 <= r < 1:
            raise ValueError("random() must return a float in [0, 1)")
        yield base_s * (1 - policy.jitter * r)
        base_s = min(policy.max_s, base_s * policy.factor)
