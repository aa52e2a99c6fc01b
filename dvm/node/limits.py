"""The provider's ``[limits]`` table: the node's own limits and every job's (docs/node.md §2).

The node's own: how many jobs at once, the per-requester rate limit, proof of work (the floor
and the bits required under load), the allow-list, the request size, the ledger's retention and
the rates at which refusals are answered (docs/node.md §3 "Under load"). Every job's: the launch
contract's :class:`~container.launch.Limits` (attestation, idle and hard deadlines, input size,
output tokens), whose defaults are the contract's own; ``grace_s`` is how long after the
deadline the launcher kills the container. Every key is optional; :func:`parse_limits` names the
key in each error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from container.launch import Limits
from dvm.nostr.errors import NostrError
from dvm.nostr.keys import PublicKey
from dvm.nostr.nip19 import decode_npub

from .config_fields import integer, number, table
from .errors import ConfigError

__all__ = ["LIMITS_KEYS", "LimitsConfig", "parse_limits", "parse_requesters"]

_JOB_LIMITS = Limits()  # a job's default limits are the launch contract's


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """``[limits]``: the node's own (admission, grace) and each job's (:meth:`job_limits`)."""

    max_concurrent_jobs: int = 2
    rate_limit_burst: int = 5
    rate_limit_per_minute: float = 6.0
    min_pow_bits: int = 0
    allowed_requesters: frozenset[str] | None = None
    max_request_bytes: int = 16 * 1024
    attestation_timeout_s: float = _JOB_LIMITS.attestation_timeout_s
    idle_timeout_s: float = _JOB_LIMITS.idle_timeout_s
    deadline_s: float = _JOB_LIMITS.deadline_s
    grace_s: float = 10.0
    max_input_bytes: int = _JOB_LIMITS.max_input_bytes
    max_output_tokens: int = _JOB_LIMITS.max_output_tokens
    # flood resistance (docs/node.md §3 "Under load")
    ledger_retention_s: int = 7 * 24 * 3600
    refusal_feedback_per_minute: float = 30.0
    refusal_feedback_burst: int = 10
    load_pow_bits: int = 16
    load_refusals_per_minute: int = 60

    def job_limits(self) -> Limits:
        """The limits every job container gets (docs/launch.md §1)."""
        return Limits(
            attestation_timeout_s=self.attestation_timeout_s,
            idle_timeout_s=self.idle_timeout_s,
            deadline_s=self.deadline_s,
            max_input_bytes=self.max_input_bytes,
            max_output_tokens=self.max_output_tokens,
        )


#: The keys ``[limits]`` may hold: exactly the fields of :class:`LimitsConfig`.
LIMITS_KEYS = frozenset(LimitsConfig.__dataclass_fields__)


def parse_requesters(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    where = "limits.allowed_requesters"
    if not isinstance(value, list):
        raise ConfigError(f"config key {where} must be a list of npub or hex public keys")
    keys: set[str] = set()
    for index, item in enumerate(value):
        try:
            if not isinstance(item, str):
                raise ConfigError(f"config key {where}[{index}] must be a string")
            key = decode_npub(item) if item.startswith("npub1") else PublicKey.from_hex(item)
        except NostrError:
            raise ConfigError(f"config key {where}[{index}] is not a public key") from None
        keys.add(key.hex())
    return frozenset(keys)


def parse_limits(data: Mapping[str, Any]) -> LimitsConfig:
    """The ``[limits]`` table of ``data`` (every key optional), or raise :class:`ConfigError`."""
    raw = table(data, "limits", "limits", LIMITS_KEYS)
    d = LimitsConfig()
    w = "limits"
    limits = LimitsConfig(
        max_concurrent_jobs=integer(raw, "max_concurrent_jobs", w, d.max_concurrent_jobs),
        rate_limit_burst=integer(raw, "rate_limit_burst", w, d.rate_limit_burst),
        rate_limit_per_minute=number(raw, "rate_limit_per_minute", w, d.rate_limit_per_minute),
        min_pow_bits=integer(raw, "min_pow_bits", w, d.min_pow_bits, low=0),
        allowed_requesters=parse_requesters(raw.get("allowed_requesters")),
        max_request_bytes=integer(raw, "max_request_bytes", w, d.max_request_bytes),
        attestation_timeout_s=number(raw, "attestation_timeout_s", w, d.attestation_timeout_s),
        idle_timeout_s=number(raw, "idle_timeout_s", w, d.idle_timeout_s),
        deadline_s=number(raw, "deadline_s", w, d.deadline_s),
        grace_s=number(raw, "grace_s", w, d.grace_s),
        max_input_bytes=integer(raw, "max_input_bytes", w, d.max_input_bytes),
        max_output_tokens=integer(raw, "max_output_tokens", w, d.max_output_tokens),
        ledger_retention_s=integer(raw, "ledger_retention_s", w, d.ledger_retention_s, low=60),
        refusal_feedback_per_minute=number(
            raw, "refusal_feedback_per_minute", w, d.refusal_feedback_per_minute
        ),
        refusal_feedback_burst=integer(raw, "refusal_feedback_burst", w, d.refusal_feedback_burst),
        load_pow_bits=integer(raw, "load_pow_bits", w, d.load_pow_bits, low=0),
        load_refusals_per_minute=integer(
            raw, "load_refusals_per_minute", w, d.load_refusals_per_minute
        ),
    )
    for key in ("min_pow_bits", "load_pow_bits"):
        if getattr(limits, key) > 256:
            raise ConfigError(f"config key limits.{key} must be at most 256")
    return limits
