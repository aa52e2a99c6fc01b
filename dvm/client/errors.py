"""Errors of the requester client (``dvm.client``).

One root. Every message names ids, kinds, reasons and sizes, never the job's input or output
and never key material::

    ClientError
    ├── OptionsError         the job options are unusable (bad params, unreadable policy/root)
    ├── NotPublished         no relay accepted the request or a channel message
    ├── AttestationRefused   the container's evidence failed; NOTHING was sent; ``reasons``
    │                        lists every failed check
    ├── JobFailed            the provider answered ``error`` feedback, or the container sent a
    │                        channel error; ``reason`` is the machine-readable reason
    └── ClientTimeout        a step did not complete in time; ``step`` names it

The CLI maps them to exit codes: ``OptionsError`` 2, ``ClientTimeout`` 3, the others 1.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AttestationRefused",
    "ClientError",
    "ClientTimeout",
    "JobFailed",
    "NotPublished",
    "OptionsError",
]


class ClientError(Exception):
    """Root of every error raised by the requester client."""


class OptionsError(ClientError):
    """Job options that cannot be used (usage error)."""


class NotPublished(ClientError):  # noqa: N818 - reads as the condition it reports
    """No relay accepted an event we had to publish."""


class AttestationRefused(ClientError):  # noqa: N818 - reads as the condition it reports
    """The container's attestation failed at least one check; nothing was sent to it."""

    def __init__(self, job_id: str, reasons: Sequence[str], *, container: str | None) -> None:
        self.job_id = job_id
        self.container = container
        self.reasons: tuple[str, ...] = tuple(reasons)
        listed = "".join(f"\n  - {r}" for r in self.reasons)
        super().__init__(f"job {job_id}: attestation refused, nothing was sent:{listed}")


class JobFailed(ClientError):  # noqa: N818 - reads as the condition it reports
    """The provider reported an ``error`` or the container answered a channel error."""

    def __init__(self, job_id: str, reason: str, detail: str = "") -> None:
        self.job_id = job_id
        self.reason = reason
        self.detail = detail
        extra = f": {detail}" if detail else ""
        super().__init__(f"job {job_id} failed ({reason}){extra}")


class ClientTimeout(ClientError):  # noqa: N818 - reads as the condition it reports
    """A step of the job (``step``) did not complete within its timeout."""

    def __init__(self, job_id: str, step: str, timeout_s: float) -> None:
        self.job_id = job_id
        self.step = step
        self.timeout_s = timeout_s
        super().__init__(f"job {job_id}: no {step} within {timeout_s:g} s")
