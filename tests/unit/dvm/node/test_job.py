"""dvm.node.job: the final feedback of a cancelled job (the rest runs over a real relay in
tests/integration/test_node_feedback.py and test_node_flood.py)."""

from __future__ import annotations

from dvm.node.job import final_feedback
from dvm.node.launcher import ExitInfo, feedback_for_exit
from dvm.nostr.nip90 import ErrorReason, FeedbackStatus

DELETION = "de" * 32


def test_a_cancelled_job_ends_with_error_cancelled_naming_the_deletion() -> None:
    for destroyed in (True, False):
        info = ExitInfo(exit_code=None, killed=True, destroyed=destroyed)
        final = final_feedback(info, DELETION)
        assert (final.status, final.reason, final.destroyed) == (
            FeedbackStatus.ERROR,
            ErrorReason.CANCELLED,
            destroyed,
        )
        assert DELETION in final.message
        assert ("container destroyed" in final.message) is destroyed


def test_without_a_deletion_the_exit_decides() -> None:
    for info in (
        ExitInfo(exit_code=0, killed=False, destroyed=True),
        ExitInfo(exit_code=None, killed=True, destroyed=True),
        ExitInfo(exit_code=21, killed=False, destroyed=False),
    ):
        assert final_feedback(info, None) == feedback_for_exit(info)
    assert ErrorReason("cancelled") is ErrorReason.CANCELLED  # a wire string requesters parse
