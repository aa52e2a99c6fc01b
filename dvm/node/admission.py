"""Admission: who may start a job now (allow-list, NIP-13 proof of work, rate limit, capacity),
how much work the node asks for under load, and which refusals it answers.

NIP-13: https://github.com/nostr-protocol/nips/blob/master/13.md

Contract: pure apart from the injected ``clock`` (monotonic seconds). Each check returns None
(admitted) or a :class:`Refusal` carrying the cdvm/1 machine-readable reason (DESIGN §3.3) and
a human-readable message for the feedback's content (it names counts and limits, never data):

* allow-list (when configured): ``bad-request`` "not on this provider's allow-list";
* proof of work: ``bad-request`` with :func:`check_pow`'s reason. The bits required are
  :meth:`Admission.required_pow_bits`: ``min_pow_bits`` normally; while the node is **under
  load** (at least ``load_refusals_per_minute`` refusals in the last 60 s, counted by
  :meth:`Admission.note_refusal`) the larger of that and ``load_pow_bits``. Proof of work is the
  node's answer to a flood from fresh keys, which a per-key rate limit cannot stop: each junk
  request then costs its sender about ``2**load_pow_bits`` hashes and the node one;
* per-requester rate limit: a token bucket per author key (``rate_limit_burst`` tokens,
  refilled at ``rate_limit_per_minute``); ``rate-limited``. Every request that reaches it
  spends a token, valid or not, so a flood of malformed requests is throttled too;
* capacity (``max_concurrent_jobs`` running containers): ``capacity``.

:meth:`Admission.may_answer` decides whether a refusal gets ``error`` feedback at all: a token
from a bucket of the requester's (as large and as fast as its request rate limit:
``rate_limit_burst``, ``rate_limit_per_minute``; the cheap refusals never reach that limit, so
this is what bounds one key's answers) **and** one from the node-wide bucket
(``refusal_feedback_burst``, refilled at ``refusal_feedback_per_minute``). A refusal beyond
either is only logged (debug): signing and publishing one event per junk request would make the
node an amplifier.

Buckets are kept for at most ``max_tracked_requesters`` keys (least recently seen evicted): the
limiter's memory is bounded whatever the number of keys an attacker makes; the load meter is
six counters.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from dvm.nostr.errors import PowError
from dvm.nostr.event import Event
from dvm.nostr.nip13 import check_pow
from dvm.nostr.nip90 import ErrorReason

from .config import LimitsConfig

__all__ = [
    "Admission",
    "KeyedBuckets",
    "LoadMeter",
    "Refusal",
    "TokenBucket",
]


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

    def wait_s(self, now: float) -> float:
        """Seconds until :meth:`take` can succeed (0 if it can now)."""
        return max(0.0, (1.0 - self.tokens(now)) / self.rate_per_s)


class KeyedBuckets:
    """One :class:`TokenBucket` per key, at most ``max_keys`` of them (least recent evicted)."""

    def __init__(self, capacity: int, per_minute: float, *, max_keys: int) -> None:
        self._capacity = capacity
        self._rate_per_s = per_minute / 60.0
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def get(self, key: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self._capacity, self._rate_per_s, now=now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket


class LoadMeter:
    """How many events in the last ``window_s`` seconds, in six fixed slots (bounded memory)."""

    _SLOTS = 6

    def __init__(self, window_s: float = 60.0) -> None:
        self._slot_s = window_s / self._SLOTS
        self._counts: deque[list[int]] = deque(maxlen=self._SLOTS)  # [slot number, count]

    def add(self, now: float) -> None:
        slot = int(now // self._slot_s)
        if self._counts and self._counts[-1][0] == slot:
            self._counts[-1][1] += 1
        else:
            self._counts.append([slot, 1])

    def count(self, now: float) -> int:
        oldest = int(now // self._slot_s) - self._SLOTS + 1
        return sum(n for slot, n in self._counts if slot >= oldest)


class Admission:
    """The admission checks of one node, with its rate-limit buckets and its load meter."""

    def __init__(
        self,
        limits: LimitsConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tracked_requesters: int = 10_000,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._rate = KeyedBuckets(
            limits.rate_limit_burst, limits.rate_limit_per_minute, max_keys=max_tracked_requesters
        )
        self._answers = KeyedBuckets(
            limits.rate_limit_burst, limits.rate_limit_per_minute, max_keys=max_tracked_requesters
        )
        self._global_answers = TokenBucket(
            limits.refusal_feedback_burst, limits.refusal_feedback_per_minute / 60.0, now=clock()
        )
        self._load = LoadMeter()

    # --- load ------------------------------------------------------------------------

    def note_refusal(self) -> None:
        """Count one refusal (any reason) towards the load."""
        self._load.add(self._clock())

    def refusals_last_minute(self) -> int:
        return self._load.count(self._clock())

    def under_load(self) -> bool:
        return self.refusals_last_minute() >= self._limits.load_refusals_per_minute

    def required_pow_bits(self) -> int:
        """``min_pow_bits``, raised to ``load_pow_bits`` while the node is under load."""
        floor = self._limits.min_pow_bits
        return max(floor, self._limits.load_pow_bits) if self.under_load() else floor

    # --- checks ----------------------------------------------------------------------

    def check_allowed(self, requester: str) -> Refusal | None:
        allowed = self._limits.allowed_requesters
        if allowed is not None and requester not in allowed:
            return Refusal(
                ErrorReason.BAD_REQUEST, "requester is not on this provider's allow-list"
            )
        return None

    def check_pow(self, event: Event) -> Refusal | None:
        bits = self.required_pow_bits()
        try:
            check_pow(event, bits)
        except PowError as exc:
            why = " while this provider is under load" if bits > self._limits.min_pow_bits else ""
            return Refusal(
                ErrorReason.BAD_REQUEST, f"proof of work: {exc} (NIP-13, {bits} bits required{why})"
            )
        return None

    def check_rate(self, requester: str) -> Refusal | None:
        if self._rate.get(requester, self._clock()).take(self._clock()):
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

    # --- answering refusals ----------------------------------------------------------

    def may_answer(self, requester: str) -> bool:
        """Whether a refusal to ``requester`` gets feedback (both buckets have a token)."""
        now = self._clock()
        own = self._answers.get(requester, now)
        if own.tokens(now) < 1.0 or self._global_answers.tokens(now) < 1.0:
            return False
        return own.take(now) and self._global_answers.take(now)
