"""How a job ended, and how the client tells it: :class:`JobOutcome` and its two renderings.

Spec: DESIGN §3.8-§3.9, ``docs/client.md`` (the CLI's ``--json`` document and progress lines).
Pure values and formatting: nothing here touches a relay, a clock or a key. The texts name ids,
measurements, claims and checks, never key material; the answers are the caller's own data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from dvm.nostr.keys import PublicKey
from dvm.nostr.nip19 import encode_npub
from dvm.nostr.nip90 import FeedbackStatus

from .verify import Verification

__all__ = ["JobOutcome", "describe_verification", "outcome_to_json"]


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How a job ended. ``answers`` are the channel answers in order (one for a one-shot job);
    ``result`` is the decrypted NIP-90 result content (None if it never arrived)."""

    job_id: str
    container: str
    verification: Verification
    answers: tuple[str, ...]
    result: str | None
    result_id: str | None
    status: FeedbackStatus | None
    reason: str | None
    destroyed: bool

    @property
    def answer(self) -> str:
        """The last answer (the only one of a one-shot job)."""
        return self.answers[-1] if self.answers else ""

    @property
    def ok(self) -> bool:
        return self.status is FeedbackStatus.SUCCESS and self.destroyed


def describe_verification(verification: Verification) -> str:
    """A human summary of a verification: what was checked and what was not."""
    head = f"{verification.label}: " if verification.label else ""
    lines = [
        (
            f"{head}{verification.tee} evidence for container {verification.container} "
            f"(attestation {verification.attestation_id})"
        ),
        f"  measurement {verification.measurement}",
        f"  model {verification.claims.model.name} sha256 {verification.claims.model.sha256}",
    ]
    lines += [f"  checked: {c}" for c in verification.checks]
    lines += [f"  note: {w}" for w in verification.warnings]
    return "\n".join(lines)


def outcome_to_json(outcome: JobOutcome) -> str:
    """The CLI's ``--json`` document (no secrets; the answers are the caller's own data)."""
    v = outcome.verification
    return json.dumps(
        {
            "job": outcome.job_id,
            "container": outcome.container,
            "answer": outcome.answer,
            "answers": list(outcome.answers),
            "result": outcome.result,
            "status": outcome.status.value if outcome.status is not None else None,
            "reason": outcome.reason,
            "destroyed": outcome.destroyed,
            "verified": {
                "tee": v.tee,
                "simulated": v.simulated,
                "label": v.label,
                "attestation": v.attestation_id,
                "measurement": v.measurement,
                "claims": v.claims.to_dict(),
                "checks": list(v.checks),
                "warnings": list(v.warnings),
                "pins": [
                    {
                        "value": p.kind.value,
                        "observed": p.value,
                        "pinned": p.pinned,
                        "by_flag": p.by_flag,
                        "publishers": [encode_npub(PublicKey.from_hex(k)) for k in p.publishers],
                        "releases": list(p.releases),
                        "accepted_unpinned": p.accepted_unpinned,
                    }
                    for p in v.pins
                ],
            },
        },
        ensure_ascii=False,
    )
