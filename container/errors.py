"""Errors of the job container.

One root; the runtime's per-job boundary turns any of them into destruction with an exit code
(docs/launch.md). Messages carry ids, kinds and lengths, never plaintext or key material::

    JobError
    ├── SpecError        the launcher's job spec is malformed (exit 20)
    ├── ModelError       the model file is missing, fails its sha256, or does not load (exit 21)
    ├── EvidenceError    evidence could not be obtained for our REPORT_DATA (exit 22)
    ├── RelayUnavailable no relay accepted our events (exit 30)
    └── RunError         one input could not be run (``bad-input``, ``model-failed``); the
                         requester gets ``["cdvm","error",reason]`` and the job goes on
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dvm.cdvm.channel import ChannelError

__all__ = ["EvidenceError", "JobError", "ModelError", "RelayUnavailable", "RunError", "SpecError"]


class JobError(Exception):
    """Root of every error raised by the container runtime."""


class SpecError(JobError):
    """The job spec is malformed; the container exits without keying."""


class ModelError(JobError):
    """The model file is missing, does not match its sha256, or fails to load."""


class EvidenceError(JobError):
    """No evidence could be obtained for our REPORT_DATA."""


class RelayUnavailable(JobError):  # noqa: N818 - names the condition
    """No relay accepted the attestation or the channel's events."""


class RunError(JobError):
    """One input failed: ``reason`` goes to the requester, the message (no plaintext) too."""

    def __init__(self, reason: ChannelError, message: str) -> None:
        super().__init__(message)
        self.reason = reason
