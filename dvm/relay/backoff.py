"""Reconnect delays: a few quick retries, then capped exponential backoff with jitter, as a
pure generator.

The first ``quick_attempts`` delays (0-based ``n < quick_attempts``) use the base
``min(quick_s, initial_s)``; delay ``quick_attempts + k`` then uses
``base_k = min(max_s, initial_s * factor**k)``. Every delay is its base scaled by
``1 - jitter * r`` with ``r = random()`` in ``[0, 1)``. With the defaults (20 quick retries at
0.25 s, then 0.5 s, x2, 30 s cap, jitter 0.5) the first ~2.5-5 s retry every (0.125, 0.25]
seconds, then the delays fall in (0.25, 0.5], (0.5, 1], (1, 2], ... up to (15, 30] seconds.

Why the quick retries: a node (or client) often starts a moment before its relay (a shell
script, a compose file, a restart of both); with a plain exponential backoff the relay coming up
at second 4 is found at second ~8-16, and the first request waits for it (issue 13). Retrying
a refused loopback or LAN connection four times a second for a few seconds costs nothing; a
relay that is still down after that is a real outage and gets the exponential backoff.

The jitter spreads the reconnects of many clients after a relay restart ("thundering herd");
keeping at least half of the base delay keeps the exponential shape. The randomness is
injected, so the sequence is reproducible in tests. The caller restarts the generator after a
successful connection (so a lost connection gets the quick retries too).
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
    #: How many delays use the quick base before the exponential part starts (0: none).
    quick_attempts: int = 20
    #: The quick base in seconds; never above ``initial_s`` (a policy faster than the quick
    #: retries keeps its own pace).
    quick_s: float = 0.25

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s or self.factor < 1:
            raise ValueError("backoff needs 0 < initial_s <= max_s and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be in [0, 1]")
        if self.quick_attempts < 0 or self.quick_s <= 0:
            raise ValueError("backoff needs quick_attempts >= 0 and quick_s > 0")


def backoff_delays(policy: BackoffPolicy, *, random: Callable[[], float]) -> Iterator[float]:
    """Endless reconnect delays in seconds for ``policy``, jittered with ``random()``."""
    quick_s = min(policy.quick_s, policy.initial_s)
    base_s = policy.initial_s
    attempt = 0
    while True:
        r = random()
        if not 0 <= r < 1:
            raise ValueError("random() must return a float in [0, 1)")
        if attempt < policy.quick_attempts:
            attempt += 1
            yield quick_s * (1 - policy.jitter * r)
            continue
        yield base_s * (1 - policy.jitter * r)
        base_s = min(policy.max_s, base_s * policy.factor)
