"""The node's side of the launch contract (docs/launch.md §3): exit -> final feedback.

The exit codes and destroy reasons are the container's (:mod:`container.launch`); the status
lines are tested there (tests/unit/container/launch/test_status.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from container.launch import REASON_EXIT_CODES, DestroyReason, ExitCode, Limits, RunnerKind
from dvm.node.config import NodeConfig
from dvm.node.launcher import EXIT_FEEDBACK, ExitInfo, feedback_for_exit
from dvm.nostr.nip90 import ErrorReason, FeedbackStatus


@pytest.mark.parametrize(
    ("info", "status", "reason", "destroyed"),
    [
        (ExitInfo(ExitCode.OK, killed=False, destroyed=True), FeedbackStatus.SUCCESS, None, True),
        (
            ExitInfo(ExitCode.OK, killed=False, destroyed=False),
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            False,
        ),
        (
            ExitInfo(ExitCode.ATTESTATION_TIMEOUT, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.TIMEOUT,
            True,
        ),
        (
            ExitInfo(ExitCode.IDLE_TIMEOUT, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.TIMEOUT,
            True,
        ),
        (
            ExitInfo(ExitCode.DEADLINE, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.TIMEOUT,
            True,
        ),
        (
            ExitInfo(ExitCode.BAD_SPEC, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            True,
        ),
        (
            ExitInfo(ExitCode.MODEL, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            True,
        ),
        (
            ExitInfo(ExitCode.EVIDENCE, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            True,
        ),
        (
            ExitInfo(ExitCode.RELAY, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            True,
        ),
        (
            ExitInfo(ExitCode.FAILURE, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            True,
        ),
        (
            ExitInfo(-9, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            True,
        ),
        (
            ExitInfo(None, killed=True, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.TIMEOUT,
            True,
        ),
        (
            ExitInfo(None, killed=True, destroyed=False),
            FeedbackStatus.ERROR,
            ErrorReason.TIMEOUT,
            False,
        ),
    ],
)
def test_exit_to_feedback(
    info: ExitInfo, status: FeedbackStatus, reason: ErrorReason | None, destroyed: bool
) -> None:
    final = feedback_for_exit(info)
    assert (final.status, final.reason, final.destroyed) == (status, reason, destroyed)


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (
            ExitInfo(None, killed=True, destroyed=True, detail="activeDeadlineSeconds reached"),
            "killed by the launcher: activeDeadlineSeconds reached",
        ),
        (
            ExitInfo(ExitCode.MODEL, killed=False, destroyed=True, detail="pod reason Error"),
            "model missing, wrong sha256, or failed to load: pod reason Error",
        ),
        (
            ExitInfo(
                ExitCode.OK, killed=False, destroyed=True, detail="the pod was deleted while it ran"
            ),
            "the pod was deleted while it ran",
        ),
        (ExitInfo(ExitCode.DEADLINE, killed=False, destroyed=True, detail="  "), "hard deadline"),
    ],
)
def test_the_launchers_detail_reaches_the_feedback_message(info: ExitInfo, message: str) -> None:
    final = feedback_for_exit(info)
    assert final.message == message
    # The detail never changes the status, the reason or the destruction.
    plain = feedback_for_exit(ExitInfo(info.exit_code, killed=info.killed, destroyed=True))
    assert (final.status, final.reason, final.destroyed) == (plain.status, plain.reason, True)


def test_a_long_detail_is_cut() -> None:
    final = feedback_for_exit(
        ExitInfo(ExitCode.FAILURE, killed=False, destroyed=True, detail="x" * 5000)
    )
    assert final.message.startswith("the container failed: x")
    assert len(final.message) < 600


def test_every_exit_code_of_the_container_has_a_feedback() -> None:
    assert set(EXIT_FEEDBACK) == set(ExitCode)
    for code in ExitCode:
        final = feedback_for_exit(ExitInfo(code, killed=False, destroyed=True))
        reason, message = EXIT_FEEDBACK[code]
        assert final.reason is reason
        assert final.message == message
        assert (final.status is FeedbackStatus.SUCCESS) == (code is ExitCode.OK)


# What the requester must learn after each `destroying` reason (docs/launch.md §2-§3).
FEEDBACK_AFTER = {
    DestroyReason.END: (FeedbackStatus.SUCCESS, None),
    DestroyReason.ONESHOT: (FeedbackStatus.SUCCESS, None),
    DestroyReason.ATTESTATION_TIMEOUT: (FeedbackStatus.ERROR, ErrorReason.TIMEOUT),
    DestroyReason.IDLE_TIMEOUT: (FeedbackStatus.ERROR, ErrorReason.TIMEOUT),
    DestroyReason.DEADLINE: (FeedbackStatus.ERROR, ErrorReason.TIMEOUT),
    DestroyReason.ERROR: (FeedbackStatus.ERROR, ErrorReason.LAUNCH_FAILED),
}


@pytest.mark.parametrize("reason", list(DestroyReason))
def test_every_destroy_reason_maps_to_its_feedback(reason: DestroyReason) -> None:
    assert set(FEEDBACK_AFTER) == set(DestroyReason)
    for code in REASON_EXIT_CODES[reason]:
        final = feedback_for_exit(ExitInfo(code, killed=False, destroyed=True))
        assert (final.status, final.reason) == FEEDBACK_AFTER[reason], code
        assert final.destroyed


@pytest.mark.parametrize(
    ("code", "message"), [(-9, "exit code -9"), (None, "the container failed")]
)
def test_an_undocumented_exit_is_a_launch_failure(code: int | None, message: str) -> None:
    final = feedback_for_exit(ExitInfo(code, killed=False, destroyed=True))
    assert (final.status, final.reason, final.message) == (
        FeedbackStatus.ERROR,
        ErrorReason.LAUNCH_FAILED,
        message,
    )


def test_the_launch_types_are_built_from_the_config_once(config: NodeConfig) -> None:
    limits = config.limits
    assert limits.job_limits() == Limits(
        attestation_timeout_s=limits.attestation_timeout_s,
        idle_timeout_s=limits.idle_timeout_s,
        deadline_s=limits.deadline_s,
        max_input_bytes=limits.max_input_bytes,
        max_output_tokens=limits.max_output_tokens,
    )
    model = config.models[0]
    spec = model.spec()
    assert (spec.name, spec.runner, Path(spec.path), spec.sha256, dict(spec.defaults)) == (
        model.name,
        RunnerKind.ONNX,
        model.path,
        model.sha256,
        dict(model.defaults),
    )
