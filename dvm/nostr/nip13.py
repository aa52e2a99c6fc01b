"""NIP-13 proof of work: difficulty of an id, mining, and checking a committed target.

NIP-13: https://github.com/nostr-protocol/nips/blob/master/13.md

Difficulty is the number of leading zero bits of the event id. A mined event carries
``["nonce", <counter>, <target>]``: three items. cdvm/1 job requests also carry a freshness
nonce ``["nonce", <64 hex>]`` with the same tag name but two items (docs/protocol.md); the
two never collide because this module only reads and writes three-item ``nonce`` tags, and the
NIP-90 codec only reads two-item ones. Both can sit in one request.

:func:`check_pow` honours the committed target, as the NIP recommends: an event whose committed
target is below the required difficulty is refused even if its id happens to be lucky, and an
event with no commitment is refused whenever any difficulty is required.

:func:`mine` does not touch ``created_at`` (the NIP suggests updating it while mining; the
caller owns the clock) and stops after ``max_iterations`` with :class:`PowError`.
"""

from __future__ import annotations

import hashlib
import json
import re

from .errors import PowError
from .event import Event, Tags, UnsignedEvent
from .hex64 import is_hex64

__all__ = [
    "DEFAULT_MAX_ITERATIONS",
    "MAX_DIFFICULTY",
    "check_pow",
    "committed_target",
    "leading_zero_bits",
    "mine",
]

MAX_DIFFICULTY = 256
DEFAULT_MAX_ITERATIONS = 1 << 24
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def leading_zero_bits(event_id: str) -> int:
    """The NIP-13 difficulty of a 64-hex id: its number of leading zero bits (0 to 256)."""
    if not is_hex64(event_id):
        raise PowError("event id must be 64 lowercase hex characters")
    value = int(event_id, 16)
    return MAX_DIFFICULTY - value.bit_length()


def _pow_tags(tags: Tags) -> list[tuple[str, ...]]:
    return [t for t in tags if t[0] == "nonce" and len(t) == 3]


def committed_target(tags: Tags) -> int | None:
    """The target committed by the NIP-13 ``nonce`` tag, None without one."""
    found = _pow_tags(tags)
    if not found:
        return None
    if len(found) > 1:
        raise PowError("more than one NIP-13 nonce tag")
    _, counter, target = found[0]
    if not _DECIMAL.fullmatch(counter) or not _DECIMAL.fullmatch(target):
        raise PowError("NIP-13 nonce counter and target must be decimal integers")
    if len(target) > 3 or int(target) > MAX_DIFFICULTY:
        raise PowError(f"NIP-13 target must be at most {MAX_DIFFICULTY}")
    return int(target)


def check_pow(event: Event | UnsignedEvent, min_difficulty: int) -> None:
    """Require ``min_difficulty`` bits of committed work. Returns None or raises PowError."""
    if min_difficulty <= 0:
        return
    target = committed_target(event.tags)
    if target is None:
        raise PowError(f"event {event.id[:16]}… commits to no proof-of-work target")
    if target < min_difficulty:
        raise PowError(f"committed target {target} is below the required {min_difficulty}")
    actual = leading_zero_bits(event.id)
    if actual < min_difficulty:
        raise PowError(f"event has {actual} bits of work, {min_difficulty} required")


def mine(
    unsigned: UnsignedEvent,
    difficulty: int,
    *,
    start_nonce: int = 0,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
) -> UnsignedEvent:
    """Return ``unsigned`` with ``["nonce", counter, difficulty]`` appended (replacing an earlier
    NIP-13 tag; a cdvm two-item nonce tag is kept) such that its id has ``difficulty`` bits."""
    if not 0 <= difficulty <= MAX_DIFFICULTY:
        raise PowError(f"difficulty must be 0 to {MAX_DIFFICULTY}")
    if start_nonce < 0 or max_iterations < 1:
        raise PowError("start_nonce must be >= 0 and max_iterations >= 1")
    kept = tuple(t for t in unsigned.tags if not (t[0] == "nonce" and len(t) == 3))
    target = str(difficulty)
    # The nonce tag is the last tag, so the serialization is head + counter + tail: hash the
    # head once and only the counter and tail per attempt.
    template = UnsignedEvent(
        unsigned.pubkey,
        unsigned.created_at,
        unsigned.kind,
        (*kept, ("nonce", "", target)),
        unsigned.content,
    ).serialize()
    tail = (
        '",'
        + json.dumps(target)
        + "]],"
        + json.dumps(unsigned.content, ensure_ascii=False, separators=(",", ":"))
        + "]"
    ).encode("utf-8")
    if not template.endswith(tail):  # pragma: no cover - guards the layout assumption above
        raise PowError("unexpected serialization layout")
    head = hashlib.sha256(template[: -len(tail)])
    threshold = 1 << (MAX_DIFFICULTY - difficulty)  # id < threshold <=> enough zero bits
    for counter in range(start_nonce, start_nonce + max_iterations):
        attempt = head.copy()
        attempt.update(str(counter).encode("ascii"))
        attempt.update(tail)
        if int.from_bytes(attempt.digest(), "big") < threshold:
            mined = UnsignedEvent(
                unsigned.pubkey,
                unsigned.created_at,
                unsigned.kind,
                (*kept, ("nonce", str(counter), target)),
                unsigned.content,
            )
            check_pow(mined, difficulty)
            return mined
    raise PowError(f"no nonce reached {difficulty} bits in {max_iterations} attempts")
