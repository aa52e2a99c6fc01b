"""The job ledger: at-most-once claims (duplicate delivery, restart) and the state machine."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from dvm.node.errors import LedgerError
from dvm.node.ledger import LEDGER_FILE_NAME, TRANSITIONS, JobLedger, JobState

JOB = "ab" * 32
REQUESTER = "cd" * 32


def test_a_request_is_claimed_once(tmp_path: Path) -> None:
    with JobLedger.in_data_dir(tmp_path) as ledger:
        assert ledger.claim(JOB, requester=REQUESTER, kind=5050) is True
        # the same request delivered by a second relay
        assert ledger.claim(JOB, requester=REQUESTER, kind=5050) is False
        record = ledger.get(JOB)
        assert record is not None
        assert record.state is JobState.RECEIVED
        assert (record.requester, record.kind) == (REQUESTER, 5050)


def test_claims_survive_a_restart(tmp_path: Path) -> None:
    with JobLedger.in_data_dir(tmp_path) as ledger:
        ledger.claim(JOB, requester=REQUESTER, kind=5050)
        ledger.transition(JOB, JobState.LAUNCHING)
        ledger.transition(JOB, JobState.RUNNING, handle="123:456")
    with JobLedger.in_data_dir(tmp_path) as again:
        assert again.claim(JOB, requester=REQUESTER, kind=5050) is False
        unfinished = again.unfinished()
        assert [(r.request_id, r.state, r.handle) for r in unfinished] == [
            (JOB, JobState.RUNNING, "123:456")
        ]


def test_concurrent_claims_have_one_winner(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILE_NAME
    JobLedger(path).close()
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        ledger = JobLedger(path)
        barrier.wait()
        wins.append(ledger.claim(JOB, requester=REQUESTER, kind=5050))
        ledger.close()

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 7 + [True]


def test_the_happy_path_and_fields(tmp_path: Path) -> None:
    with JobLedger.in_data_dir(tmp_path) as ledger:
        ledger.claim(JOB, requester=REQUESTER, kind=5050)
        ledger.transition(JOB, JobState.LAUNCHING)
        ledger.transition(JOB, JobState.RUNNING, handle="1:2")
        ledger.set_container(JOB, "ef" * 32)
        ledger.transition(JOB, JobState.FINISHED)
        record = ledger.get(JOB)
        assert record is not None
        assert (record.state, record.handle, record.container) == (
            JobState.FINISHED,
            "1:2",
            "ef" * 32,
        )
        assert ledger.unfinished() == ()


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ((), JobState.RUNNING),
        ((), JobState.FINISHED),
        ((JobState.REFUSED,), JobState.LAUNCHING),
        ((JobState.LAUNCHING,), JobState.LAUNCHING),
        ((JobState.LAUNCHING, JobState.RUNNING, JobState.FINISHED), JobState.FAILED),
        ((JobState.FAILED,), JobState.RUNNING),
    ],
)
def test_illegal_transitions_raise(
    tmp_path: Path, path: tuple[JobState, ...], bad: JobState
) -> None:
    with JobLedger.in_data_dir(tmp_path) as ledger:
        ledger.claim(JOB, requester=REQUESTER, kind=5050)
        for state in path:
            ledger.transition(JOB, state)
        with pytest.raises(LedgerError, match=f"cannot move from .* to {bad.value}"):
            ledger.transition(JOB, bad)


def test_unknown_job_cannot_move(tmp_path: Path) -> None:
    with JobLedger.in_data_dir(tmp_path) as ledger, pytest.raises(LedgerError, match="absent"):
        ledger.transition(JOB, JobState.LAUNCHING)


def test_transitions_table_matches_the_documented_machine() -> None:
    # received -> launching -> running -> finished; refused only from received; failed from any
    # unfinished state; nothing leaves a terminal state.
    assert TRANSITIONS[JobState.FINISHED] == {JobState.RUNNING}
    terminal = {JobState.REFUSED, JobState.FINISHED, JobState.FAILED}
    for allowed in TRANSITIONS.values():
        assert not allowed & terminal


def test_unopenable_ledger_raises_ledger_error(tmp_path: Path) -> None:
    (tmp_path / LEDGER_FILE_NAME).write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(LedgerError, match="cannot open the job ledger"):
        JobLedger.in_data_dir(tmp_path)


def test_ledger_holds_only_ids_and_states(tmp_path: Path) -> None:
    with JobLedger.in_data_dir(tmp_path) as ledger:
        ledger.claim(JOB, requester=REQUESTER, kind=5050)
    columns = {
        row[1]
        for row in sqlite3.connect(tmp_path / LEDGER_FILE_NAME).execute("PRAGMA table_info(jobs)")
    }
    assert columns == {
        "request_id",
        "requester",
        "kind",
        "state",
        "handle",
        "container",
        "reason",
        "received_at",
        "updated_at",
    }


def test_data_dir_is_created_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "node"
    JobLedger.in_data_dir(data_dir).close()
    assert data_dir.stat().st_mode & 0o777 == 0o700


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_refusal_is_recorded_in_one_write_and_blocks_a_later_claim(tmp_path: Path) -> None:
    with JobLedger.in_data_dir(tmp_path) as ledger:
        assert ledger.record_refused(JOB, requester=REQUESTER, kind=5050, reason="capacity")
        assert not ledger.record_refused(JOB, requester=REQUESTER, kind=5050, reason="capacity")
        assert ledger.claim(JOB, requester=REQUESTER, kind=5050) is False
        record = ledger.get(JOB)
        assert record is not None
        assert (record.state, record.reason) == (JobState.REFUSED, "capacity")


def test_prune_deletes_only_old_final_rows(tmp_path: Path) -> None:
    clock = _Clock()
    with JobLedger.in_data_dir(tmp_path, clock=clock) as ledger:
        ids = {"refused": "1" * 64, "finished": "2" * 64, "failed": "3" * 64, "running": "4" * 64}
        ledger.record_refused(ids["refused"], requester=REQUESTER, kind=5050, reason="bad-request")
        for name in ("finished", "failed", "running"):
            ledger.claim(ids[name], requester=REQUESTER, kind=5050)
            ledger.transition(ids[name], JobState.LAUNCHING)
            ledger.transition(ids[name], JobState.RUNNING)
        ledger.transition(ids["finished"], JobState.FINISHED)
        ledger.transition(ids["failed"], JobState.FAILED, reason="timeout")
        clock.now += 100
        recent = "5" * 64
        ledger.record_refused(recent, requester=REQUESTER, kind=5050, reason="capacity")
        assert ledger.prune(100) == 0  # nothing is older than 100 s yet
        clock.now += 1
        assert ledger.prune(100) == 3
        assert ledger.count() == 2
        assert ledger.get(ids["running"]) is not None  # unfinished rows are never pruned
        assert ledger.get(recent) is not None
        clock.now += 10_000
        assert ledger.prune(100) == 1
        assert [r.request_id for r in ledger.unfinished()] == [ids["running"]]
