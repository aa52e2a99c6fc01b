"""The job ledger: one SQLite row per request id, so each request launches at most once.

SQLite: https://www.sqlite.org/lang_insert.html (``INSERT OR IGNORE``), WAL + ``synchronous =
FULL`` (https://www.sqlite.org/pragma.html#pragma_synchronous) so a claim is on disk before the
container starts. ``NORMAL`` would be enough against a crash of the node but not against a power
loss, after which a lost claim lets a re-delivered request launch a second container (a
Kubernetes pod outlives the node). FULL costs one fsync per write; that cost is bounded because
the node writes only for requests that passed its cheap checks and the per-key rate limit
(:mod:`dvm.node.intake`): a flood of junk never reaches the ledger.

Contract: :meth:`JobLedger.claim` inserts the request id or, if it is already there (a second
relay delivered it, or the node restarted and the relay re-sent it), returns False: only the
caller that got True may go on. Every state change is a conditional ``UPDATE`` from the states
allowed to precede it (:data:`TRANSITIONS`), so two tasks cannot both move one job forward::

    received ──► launching ──► running ──► finished
        │            │            │
        ├──► refused └──► failed ◄┘
        └──────────────► failed

``handle`` is the launcher's record of the container (the local launcher stores
``pid:start-time`` so a restarted node can find and kill an orphan, and only if it really is
ours). The ledger holds ids, kinds, states, reasons and handles: nothing of a job's data.

Retention: :meth:`JobLedger.prune` deletes rows in a final state (``refused``, ``finished``,
``failed``) last updated more than ``retention_s`` ago; the node prunes at start and then
periodically (``limits.ledger_retention_s``). Unfinished rows are never pruned (they are how a
restarted node finds its orphans). A pruned request id re-delivered later would be screened
again; relays re-deliver only within the node's ``since_lookback_s``, far below any retention.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from .errors import LedgerError

__all__ = ["LEDGER_FILE_NAME", "TRANSITIONS", "JobLedger", "JobRecord", "JobState"]

LEDGER_FILE_NAME = "ledger.sqlite3"


class JobState(StrEnum):
    RECEIVED = "received"
    REFUSED = "refused"
    LAUNCHING = "launching"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


#: state -> the states it may be entered from.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.REFUSED: frozenset({JobState.RECEIVED}),
    JobState.LAUNCHING: frozenset({JobState.RECEIVED}),
    JobState.RUNNING: frozenset({JobState.LAUNCHING}),
    JobState.FINISHED: frozenset({JobState.RUNNING}),
    JobState.FAILED: frozenset({JobState.RECEIVED, JobState.LAUNCHING, JobState.RUNNING}),
}
_UNFINISHED = (JobState.RECEIVED, JobState.LAUNCHING, JobState.RUNNING)
_FINAL = (JobState.REFUSED, JobState.FINISHED, JobState.FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    request_id TEXT PRIMARY KEY,
    requester  TEXT NOT NULL,
    kind       INTEGER NOT NULL,
    state      TEXT NOT NULL,
    handle     TEXT,
    container  TEXT,
    reason     TEXT,
    received_at INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class JobRecord:
    request_id: str
    requester: str
    kind: int
    state: JobState
    handle: str | None
    container: str | None
    reason: str | None
    received_at: int
    updated_at: int


class JobLedger:
    """The ledger in ``<data_dir>/ledger.sqlite3``; use as a context manager or call close()."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the job ledger {path}: {exc}") from None

    @classmethod
    def in_data_dir(cls, data_dir: Path, *, clock: Callable[[], float] = time.time) -> JobLedger:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return cls(data_dir / LEDGER_FILE_NAME, clock=clock)

    def __enter__(self) -> JobLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def claim(self, request_id: str, *, requester: str, kind: int) -> bool:
        """Record a new request; False if this id was seen before (never launch it then)."""
        now = int(self._clock())
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO jobs (request_id, requester, kind, state, received_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (request_id, requester, kind, JobState.RECEIVED.value, now, now),
        )
        return cursor.rowcount == 1

    def record_refused(self, request_id: str, *, requester: str, kind: int, reason: str) -> bool:
        """Record a request refused after the cheap checks (one write); False if already seen."""
        now = int(self._clock())
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO jobs (request_id, requester, kind, state, reason, received_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (request_id, requester, kind, JobState.REFUSED.value, reason, now, now),
        )
        return cursor.rowcount == 1

    def prune(self, retention_s: float) -> int:
        """Delete final rows updated more than ``retention_s`` ago; how many were deleted."""
        cutoff = int(self._clock() - retention_s)
        cursor = self._db.execute(
            "DELETE FROM jobs WHERE updated_at < ? AND state IN (SELECT value FROM json_each(?))",
            (cutoff, json.dumps([s.value for s in _FINAL])),
        )
        return cursor.rowcount

    def count(self) -> int:
        """How many rows the ledger holds."""
        row = self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()
        return int(row[0])

    def transition(
        self,
        request_id: str,
        state: JobState,
        *,
        handle: str | None = None,
        container: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Move a job to ``state`` from one of its allowed predecessors, or raise LedgerError.

        ``handle``, ``container`` and ``reason`` are stored when given and kept otherwise.
        """
        before = json.dumps(sorted(s.value for s in TRANSITIONS[state]))
        cursor = self._db.execute(
            "UPDATE jobs SET state = ?, handle = COALESCE(?, handle),"
            " container = COALESCE(?, container), reason = COALESCE(?, reason), updated_at = ?"
            " WHERE request_id = ? AND state IN (SELECT value FROM json_each(?))",
            (state.value, handle, container, reason, int(self._clock()), request_id, before),
        )
        if cursor.rowcount != 1:
            current = self.get(request_id)
            found = current.state.value if current else "absent"
            raise LedgerError(f"job {request_id}: cannot move from {found} to {state.value}")

    def set_container(self, request_id: str, container: str) -> None:
        """Record the container key C of a running job (no state change)."""
        self._db.execute(
            "UPDATE jobs SET container = ?, updated_at = ? WHERE request_id = ? AND state = ?",
            (container, int(self._clock()), request_id, JobState.RUNNING.value),
        )

    def get(self, request_id: str) -> JobRecord | None:
        row = self._db.execute(
            "SELECT request_id, requester, kind, state, handle, container, reason, received_at,"
            " updated_at FROM jobs WHERE request_id = ?",
            (request_id,),
        ).fetchone()
        return _record(row) if row else None

    def unfinished(self) -> tuple[JobRecord, ...]:
        """Jobs a previous run left received, launching or running (oldest first)."""
        rows = self._db.execute(
            "SELECT request_id, requester, kind, state, handle, container, reason, received_at,"
            " updated_at FROM jobs WHERE state IN (SELECT value FROM json_each(?))"
            " ORDER BY received_at",
            (json.dumps([s.value for s in _UNFINISHED]),),
        ).fetchall()
        return tuple(_record(row) for row in rows)


def _record(row: tuple[object, ...]) -> JobRecord:
    request_id, requester, kind, state, handle, container, reason, received, updated = row
    return JobRecord(
        request_id=str(request_id),
        requester=str(requester),
        kind=int(str(kind)),
        state=JobState(str(state)),
        handle=None if handle is None else str(handle),
        container=None if container is None else str(container),
        reason=None if reason is None else str(reason),
        received_at=int(str(received)),
        updated_at=int(str(updated)),
    )
