"""Status lines (docs/launch.md §2) and the exit -> feedback mapping (§3)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvm.node.launcher import (
    DestroyReason,
    ExitInfo,
    StatusKind,
    feedback_for_exit,
    parse_status_line,
)
from dvm.nostr.nip90 import ErrorReason, FeedbackStatus

C = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"


def test_status_lines_parse() -> None:
    attested = parse_status_line(
        json.dumps({"status": "attested", "container": C, "attestation": "ab" * 32}).encode()
    )
    assert (attested.kind, attested.container, attested.attestation) == (
        StatusKind.ATTESTED,
        C,
        "ab" * 32,
    )
    assert parse_status_line(b'{"status":"ready"}').kind is StatusKind.READY
    delivered = parse_status_line(json.dumps({"status": "delivered", "result": "cd" * 32}).encode())
    assert delivered.result == "cd" * 32
    destroying = parse_status_line(b'{"status":"destroying","reason":"idle-timeout"}')
    assert destroying.reason is DestroyReason.IDLE_TIMEOUT


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"hello",
        b"[]",
        b'{"status":"exploded"}',
        b'{"status":"attested","container":"xyz","attestation":"' + b"ab" * 32 + b'"}',
        b'{"status":"attested","container":"' + C.encode() + b'"}',
        b'{"status":"delivered"}',
        b'{"status":"destroying","reason":"bored"}',
        b'{"status":"ready","pad":"' + b"x" * 5000 + b'"}',
    ],
)
def test_bad_status_lines_raise_value_error(line: bytes) -> None:
    with pytest.raises(ValueError, match="status line"):
        parse_status_line(line)


@given(st.binary(max_size=300))
def test_garbage_status_lines_raise_only_value_error(line: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_status_line(line)


@pytest.mark.parametrize(
    ("info", "status", "reason", "destroyed"),
    [
        (ExitInfo(0, killed=False, destroyed=True), FeedbackStatus.SUCCESS, None, True),
        (
            ExitInfo(0, killed=False, destroyed=False),
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            False,
        ),
        (
            ExitInfo(10, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.TIMEOUT,
            True,
        ),
        (
            ExitInfo(11, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.TIMEOUT,
            True,
        ),
        (
            ExitInfo(12, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.TIMEOUT,
            True,
        ),
        (
            ExitInfo(20, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            True,
        ),
        (
            ExitInfo(21, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            True,
        ),
        (
            ExitInfo(22, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            True,
        ),
        (
            ExitInfo(30, killed=False, destroyed=True),
            FeedbackStatus.ERROR,
            ErrorReason.LAUNCH_FAILED,
            True,
        ),
        (
            ExitInfo(1, killed=False, destroyed=True),
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
            ExitInfo(21, killed=False, destroyed=True, detail="pod reason Error"),
            "model missing, wrong sha256, or failed to load: pod reason Error",
        ),
        (
            ExitInfo(0, killed=False, destroyed=True, detail="the pod was deleted while it ran"),
            "the pod was deleted while it ran",
        ),
        (ExitInfo(12, killed=False, destroyed=True, detail="  "), "hard deadline"),
    ],
)
def test_the_launchers_detail_reaches_the_feedback_message(info: ExitInfo, message: str) -> None:
    final = feedback_for_exit(info)
    assert final.message == message
    # The detail never changes the status, the reason or the destruction.
    plain = feedback_for_exit(ExitInfo(info.exit_code, killed=info.killed, destroyed=True))
    assert (final.status, final.reason, final.destroyed) == (plain.status, plain.reason, True)


def test_a_long_detail_is_cut() -> None:
    final = feedback_for_exit(ExitInfo(1, killed=False, destroyed=True, detail="x" * 5000))
    assert final.message.startswith("the container failed: x")
    assert len(final.message) < 600
