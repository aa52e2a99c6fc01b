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
lines come from :mod:`dvm.node.kubernetes.relay_status`, because the host cannot read the
pod's stdout).
The job spec, the status lines and the exit codes are the container's launch contract
(:mod:`container.launch`); this module is the node's side of it only.
A launch that cannot start raises :class:`~dvm.node.errors.LaunchError` whose ``reason`` and
message become the ``error`` feedback.

:func:`feedback_for_exit` is the one mapping from an exit to the final feedback
(docs/launch.md §3), shared by every launcher; the launcher's ``ExitInfo.detail`` (for example
``activeDeadlineSeconds reached (DeadlineExceeded)``) is appended to the message so the
requester learns what happened, not only the class of failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from container.launch import ExitCode, Limits, ModelSpec, StatusLine
from dvm.nostr.nip90 import ErrorReason, FeedbackStatus, JobRequest

__all__ = [
    "EXIT_FEEDBACK",
    "ExitInfo",
    "FinalFeedback",
    "LaunchRequest",
    "LaunchedJob",
    "Launcher",
    "feedback_for_exit",
]

_MAX_DETAIL_CHARS = 500


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """Everything a launcher needs to start the container of one accepted job.

    ``model`` and ``limits`` are the launch contract's own types (:mod:`container.launch`),
    built once from the config (:meth:`dvm.node.config.ModelConfig.spec`,
    :meth:`dvm.node.config.LimitsConfig.job_limits`); ``model.path`` is where the *node* finds
    the model (the local launcher binds it into the sandbox and names the in-sandbox path in
    the job spec; under Kubernetes it already is the in-image path). ``grace_s`` is the node's
    own margin after ``limits.deadline_s`` before it kills the container."""

    request: JobRequest
    provider: str
    relays: tuple[str, ...]
    model: ModelSpec
    limits: Limits
    grace_s: float
    runtime_version: str
    runtime_image: str

    @property
    def job_id(self) -> str:
        return self.request.id

    @property
    def kill_after_s(self) -> float:
        """When the launcher kills a container still running: the deadline plus the grace."""
        return self.limits.deadline_s + self.grace_s


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


#: docs/launch.md §3: each exit code's error reason (None: success) and feedback message.
EXIT_FEEDBACK: Mapping[ExitCode, tuple[ErrorReason | None, str]] = MappingProxyType(
    {
        ExitCode.OK: (None, ""),
        ExitCode.ATTESTATION_TIMEOUT: (ErrorReason.TIMEOUT, "attestation not used in time"),
        ExitCode.IDLE_TIMEOUT: (ErrorReason.TIMEOUT, "idle timeout"),
        ExitCode.DEADLINE: (ErrorReason.TIMEOUT, "hard deadline"),
        ExitCode.BAD_SPEC: (ErrorReason.LAUNCH_FAILED, "malformed job spec"),
        ExitCode.MODEL: (
            ErrorReason.LAUNCH_FAILED,
            "model missing, wrong sha256, or failed to load",
        ),
        ExitCode.EVIDENCE: (
            ErrorReason.LAUNCH_FAILED,
            "no evidence for the container's REPORT_DATA",
        ),
        ExitCode.RELAY: (ErrorReason.LAUNCH_FAILED, "no relay accepted the container's events"),
        ExitCode.FAILURE: (ErrorReason.LAUNCH_FAILED, "the container failed"),
    }
)


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


def _documented(exit_code: int | None) -> ExitCode | None:
    if exit_code is None:  # gone without a code, yet not killed by the launcher
        return ExitCode.FAILURE
    try:
        return ExitCode(exit_code)
    except ValueError:  # not a documented code (a signal, a crash of the interpreter)
        return None


def _feedback_for_code(info: ExitInfo) -> FinalFeedback:
    if info.killed:
        return FinalFeedback(
            FeedbackStatus.ERROR, ErrorReason.TIMEOUT, info.destroyed, "killed by the launcher"
        )
    code = _documented(info.exit_code)
    if code is None:
        return FinalFeedback(
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            info.destroyed,
            f"exit code {info.exit_code}",
        )
    reason, message = EXIT_FEEDBACK[code]
    if reason is not None:
        return FinalFeedback(FeedbackStatus.ERROR, reason, info.destroyed, message)
    if info.destroyed:
        return FinalFeedback(FeedbackStatus.SUCCESS, None, destroyed=True)
    return FinalFeedback(
        FeedbackStatus.ERROR,
        ErrorReason.LAUNCH_FAILED,
        destroyed=False,
        message="the container exited but its destruction was not confirmed",
    )


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
