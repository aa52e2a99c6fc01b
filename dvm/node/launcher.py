"""The launcher seam: how the node starts, watches and ends one job container.

Contract (docs/launch.md): a :class:`Launcher` turns a :class:`LaunchRequest` into a running
:class:`LaunchedJob`: the container got its job spec, its status lines (docs/launch.md §2)
arrive on :meth:`LaunchedJob.status_lines`, :meth:`LaunchedJob.wait` returns an
:class:`ExitInfo` once the container is gone (``destroyed`` is True only when the launcher
*confirmed* it: the process reaped and its scratch removed locally, the pod deletion confirmed
on Kubernetes), and :meth:`LaunchedJob.kill` ends it now. ``handle`` is what the ledger keeps
so that :meth:`Launcher.collect_orphans` of a restarted node can find what a previous run left.

Implementations: :mod:`dvm.node.local.launcher` (a bubblewrap sandbox per job, simulated TEE)
and :mod:`dvm.node.kubernetes.launcher` (a Confidential Containers Pod per job; its status
lines come from :mod:`dvm.node.kubernetes.relay_status`, because the host cannot read the pod's stdout).
A launch that cannot start raises :class:`~dvm.node.errors.LaunchError` whose ``reason`` and
message become the ``error`` feedback.

:func:`feedback_for_exit` is the one mapping from an exit to the final feedback
(docs/launch.md §3), shared by every launcher; the launcher's ``ExitInfo.detail`` (for example
``activeDeadlineSeconds reached (DeadlineExceeded)``) is appended to the message so the
requester learns what happened, not only the class of failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from dvm.nostr.nip90 import ErrorReason, FeedbackStatus, JobRequest

from .config import ModelConfig

__all__ = [
    "DestroyReason",
    "ExitInfo",
    "FinalFeedback",
    "LaunchRequest",
    "LaunchedJob",
    "Launcher",
    "StatusKind",
    "StatusLine",
    "feedback_for_exit",
    "parse_status_line",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_STATUS_LINE_BYTES = 4096
_MAX_DETAIL_CHARS = 500


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """Everything a launcher needs to start the container of one accepted job."""

    request: JobRequest
    provider: str
    relays: tuple[str, ...]
    model: ModelConfig
    attestation_timeout_s: float
    idle_timeout_s: float
    deadline_s: float
    grace_s: float
    max_input_bytes: int
    max_output_tokens: int
    runtime_version: str
    runtime_image: str

    @property
    def job_id(self) -> str:
        return self.request.id


class StatusKind(StrEnum):
    ATTESTED = "attested"
    READY = "ready"
    DELIVERED = "delivered"
    DESTROYING = "destroying"


class DestroyReason(StrEnum):
    END = "end"
    ONESHOT = "oneshot"
    ATTESTATION_TIMEOUT = "attestation-timeout"
    IDLE_TIMEOUT = "idle-timeout"
    DEADLINE = "deadline"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class StatusLine:
    """One parsed status line. ``container``/``attestation``/``result`` are hex ids."""

    kind: StatusKind
    container: str | None = None
    attestation: str | None = None
    result: str | None = None
    reason: DestroyReason | None = None


def _hex_field(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ValueError(f"status line field {key!r} must be 64 lowercase hex")
    return value


def parse_status_line(line: bytes) -> StatusLine:
    """Parse one stdout line of a container, or raise ValueError (the line is then ignored)."""
    if len(line) > MAX_STATUS_LINE_BYTES:
        raise ValueError(f"status line of {len(line)} bytes is too long")
    try:
        body = json.loads(line)
    except (ValueError, RecursionError):
        raise ValueError("status line is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("status line is not a JSON object")  # noqa: TRY004 - one error type for the caller
    try:
        kind = StatusKind(str(body.get("status")))
    except ValueError:
        raise ValueError("status line has an unknown status") from None
    if kind is StatusKind.ATTESTED:
        return StatusLine(
            kind,
            container=_hex_field(body, "container"),
            attestation=_hex_field(body, "attestation"),
        )
    if kind is StatusKind.DELIVERED:
        return StatusLine(kind, result=_hex_field(body, "result"))
    if kind is StatusKind.DESTROYING:
        try:
            return StatusLine(kind, reason=DestroyReason(str(body.get("reason"))))
        except ValueError:
            raise ValueError("destroying status line has an unknown reason") from None
    return StatusLine(kind)


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """How a container ended. ``exit_code`` is None when the launcher killed it; ``detail`` is
    the launcher's short public explanation (no job data), shown in the final feedback."""

    exit_code: int | None
    killed: bool
    destroyed: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FinalFeedback:
    status: FeedbackStatus
    reason: ErrorReason | None
    destroyed: bool
    message: str = field(default="")


_TIMEOUT_CODES = {10: "attestation not used in time", 11: "idle timeout", 12: "hard deadline"}
_LAUNCH_CODES = {
    20: "malformed job spec",
    21: "model missing, wrong sha256, or failed to load",
    22: "no evidence for the container's REPORT_DATA",
    30: "no relay accepted the container's events",
    1: "the container failed",
}


def _with_detail(message: str, detail: str) -> str:
    detail = detail.strip()[:_MAX_DETAIL_CHARS]
    if not detail:
        return message
    return f"{message}: {detail}" if message else detail


def feedback_for_exit(info: ExitInfo) -> FinalFeedback:
    """docs/launch.md §3: exit code (or kill) -> the node's final feedback."""
    final = _feedback_for_code(info)
    if not info.detail.strip():
        return final
    return FinalFeedback(
        final.status, final.reason, final.destroyed, _with_detail(final.message, info.detail)
    )


def _feedback_for_code(info: ExitInfo) -> FinalFeedback:
    if info.killed:
        return FinalFeedback(
            FeedbackStatus.ERROR, ErrorReason.TIMEOUT, info.destroyed, "killed by the launcher"
        )
    if info.exit_code == 0 and info.destroyed:
        return FinalFeedback(FeedbackStatus.SUCCESS, None, destroyed=True)
    if info.exit_code == 0:
        return FinalFeedback(
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            destroyed=False,
            message="the container exited but its destruction was not confirmed",
        )
    if info.exit_code in _TIMEOUT_CODES:
        return FinalFeedback(
            FeedbackStatus.ERROR,
            ErrorReason.TIMEOUT,
            info.destroyed,
            _TIMEOUT_CODES[info.exit_code],
        )
    message = _LAUNCH_CODES.get(info.exit_code or 1, f"exit code {info.exit_code}")
    return FinalFeedback(FeedbackStatus.ERROR, ErrorReason.LAUNCH_FAILED, info.destroyed, message)


class LaunchedJob(Protocol):
    """A running container (see the module docstring)."""

    @property
    def handle(self) -> str: ...

    def status_lines(self) -> AsyncIterator[StatusLine]: ...

    async def wait(self) -> ExitInfo: ...

    async def kill(self) -> None: ...


class Launcher(Protocol):
    """Starts containers; also cleans up what a previous run of the node left behind."""

    async def launch(self, launch: LaunchRequest) -> LaunchedJob:
        """Start the container (raise :class:`~dvm.node.errors.LaunchError` if it cannot)."""
        ...

    async def collect_orphans(self, handles: Mapping[str, str]) -> Sequence[str]:
        """Kill what is left of the given ``{job id: handle}``; return the ids it killed."""
        ...

    async def close(self) -> None:
        """Release what the launcher holds (staged runtime, sockets)."""
        ...
