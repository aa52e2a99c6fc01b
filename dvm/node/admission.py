"""Admission: who may start a job now (allow-list, NIP-13 proof of work, rate limit, capacity).

NIP-13: https://github.com/nostr-protocol/nips/blob/master/13.md

Contract: pure apart from the injected ``clock`` (monotonic seconds). Each check returns None
(admitted) or a :class:`Refusal` carrying the cdvm/1 machine-readable reason (DESIGN §3.3) and
a human-readable message for the feedback's content (it names counts and limits, never data):

* allow-list (when configured): ``bad-request`` "not on this provider's allow-list";
* proof of work (``min_pow_bits`` > 0): ``bad-request`` with :func:`check_pow`'s reason;
* per-requester rate limit: a token bucket per author key (``rate_limit_burst`` tokens,
  refilled at ``rate_limit_per_minute``); ``rate-limited``. Every screened request spends a
  token, valid or not, so a flood of malformed requests is throttled too;
* capacity (``max_concurrent_jobs`` running containers): ``capacity``.

Buckets are kept for at most ``max_tracked_requesters`` keys (least recently seen evicted):
the limiter's memory is bounded whatever the number of keys an attacker makes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from dvm.nostr.errors import PowError
from dvm.nostr.event import Event
from dvm.nostr.nip13 import check_pow
from dvm.nostr.nip90 import ErrorReason

from .config import LimitsConfig

__all__ = ["Admission", "Refusal", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is not served: the feedback's reason and its human-readable content."""

    reason: ErrorReason
    message: str


class TokenBucket:
    """``capacity`` tokens, refilled continuously at ``rate_per_s``; :meth:`take` spends one."""

    def __init__(self, capacity: int, rate_per_s: float, *, now: float) -> None:
        if capacity < 1 or rate_per_s <= 0:
            raise ValueError("a token bucket needs capacity >= 1 and a positive rate")
        self.capacity = capacity
        self.rate_per_s = rate_per_s
        self._tokens = float(capacity)
        self._updated = now

    def tokens(self, now: float) -> float:
        elapsed = max(0.0, now - self._updated)
        return min(float(self.capacity), self._tokens + elapsed * self.rate_per_s)

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False (and nothing spent) otherwise."""
        self._tokens = self.tokens(now)
        self._updated = max(self._updated, now)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Admission:
    """The admission checks of one node, with its rate-limit buckets."""

    def __init__(
        self,
        limits: LimitsConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tracked_requesters: int = 10_000,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._max_tracked = max_tracked_requesters
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check_allowed(self, requester: str) -> Refusal | None:
        allowed = self._limits.allowed_requesters
        if allowed is not None and requester not in allowed:
            return Refusal(
                ErrorReason.BAD_REQUEST, "requester is not on this provider's allow-list"
            )
        return None

    def check_pow(self, event: Event) -> Refusal | None:
        try:
            check_pow(event, self._limits.min_pow_bits)
        except PowError as exc:
            return Refusal(
                ErrorReason.BAD_REQUEST,
                f"proof of work: {exc} (NIP-13, {self._limits.min_pow_bits} bits required)",
            )
        return None

    def check_rate(self, requester: str) -> Refusal | None:
        now = self._clock()
        bucket = self._buckets.get(requester)
        if bucket is None:
            bucket = TokenBucket(
                self._limits.rate_limit_burst, self._limits.rate_limit_per_minute / 60.0, now=now
            )
            self._buckets[requester] = bucket
            if len(self._buckets) > self._max_tracked:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(requester)
        if bucket.take(now):
            return None
        return Refusal(
            ErrorReason.RATE_LIMITED,
            f"more than {self._limits.rate_limit_burst} requests in a burst or "
            f"{self._limits.rate_limit_per_minute:g} per minute from this key",
        )

    def check_capacity(self, running_jobs: int) -> Refusal | None:
        limit = self._limits.max_concurrent_jobs
        if running_jobs >= limit:
            return Refusal(ErrorReason.CAPACITY, f"all {limit} job slots are busy; retry later")
        return None
