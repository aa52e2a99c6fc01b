"""One running job container of the local launcher: its process, its status lines, its end.

A :class:`LocalJob` is what :meth:`dvm.node.local.launcher.LocalLauncher.launch` returns (a
:class:`~dvm.node.launcher.LaunchedJob`). It reads the container's status lines from stdout
(docs/launch.md §2, :func:`container.launch.parse_status_line`), logs its stderr at DEBUG with
the job id, kills the process group at ``deadline_s + grace_s``, and in :meth:`LocalJob.wait`
reaps the process, ends the simulated PSP and the relay forwarder, kills whatever is left in
the process group, and reports ``destroyed`` only when the process group and the scratch are
gone (the launcher module's docstring says where the scratch lives).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from container.launch import StatusLine, parse_status_line

from ..launcher import ExitInfo
from .relay_forwarder import RelayForwarder
from .sandbox import group_alive, kill_process_group, process_handle

__all__ = ["LocalJob", "wait_until"]

_log = logging.getLogger("dvm.node.local.launcher")  # one logger for the wing's job lines
_STDERR_LINE_CHARS = 2000
_GONE_POLL_S = 0.02
_GONE_WAIT_S = 5.0


class LocalJob:
    """One running container process (a :class:`~dvm.node.launcher.LaunchedJob`)."""

    def __init__(
        self,
        *,
        job_id: str,
        process: asyncio.subprocess.Process,
        psp_task: asyncio.Task[None],
        scratch: Path | None,
        kill_after_s: float,
        forwarder: RelayForwarder | None = None,
    ) -> None:
        self.job_id = job_id
        self._process = process
        self._psp_task = psp_task
        self._forwarder = forwarder
        self._scratch = scratch
        self._killed = False
        self._handle = process_handle(process.pid)
        self._stderr_task = asyncio.create_task(self._log_stderr())
        self._deadline_task = asyncio.create_task(self._kill_at(kill_after_s))

    @property
    def handle(self) -> str:
        return self._handle

    @property
    def pid(self) -> int:
        return self._process.pid

    async def _kill_at(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        _log.warning("job %s: deadline + grace reached, killing its container", self.job_id)
        await self.kill()

    async def _log_stderr(self) -> None:
        stream = self._process.stderr
        if stream is None:  # pragma: no cover - launch always pipes stderr
            return
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the stream limit: skip it
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()[:_STDERR_LINE_CHARS]
            _log.debug("job %s container: %s", self.job_id, text)

    async def status_lines(self) -> AsyncIterator[StatusLine]:
        stream = self._process.stdout
        if stream is None:  # pragma: no cover - launch always pipes stdout
            return
        while True:
            try:
                line = await stream.readline()
            except ValueError:
                _log.warning("job %s: over-long stdout line ignored", self.job_id)
                continue
            if not line:
                return
            try:
                yield parse_status_line(line.strip())
            except ValueError as exc:
                _log.warning("job %s: ignored stdout line (%s)", self.job_id, exc)

    async def kill(self) -> None:
        self._killed = True
        kill_process_group(self._process.pid)

    async def wait(self) -> ExitInfo:
        code = await self._process.wait()
        self._deadline_task.cancel()
        self._psp_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._psp_task
        with contextlib.suppress(asyncio.CancelledError):
            await self._deadline_task
        if self._forwarder is not None:
            await self._forwarder.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stderr_task, timeout=_GONE_WAIT_S)
        # Anything the container left in its process group goes too (unsandboxed case).
        kill_process_group(self._process.pid)
        gone = await wait_until(lambda: not group_alive(self._process.pid))
        scratch_gone = True
        if self._scratch is not None:
            # The container makes its own scratch inside $TMPDIR (this directory) and deletes
            # it; whatever is left there is a leftover, removed here and reported.
            leftovers = list(self._scratch.iterdir()) if self._scratch.exists() else []
            if leftovers:
                _log.warning(
                    "job %s: the container left %d entries in its scratch; removing them",
                    self.job_id,
                    len(leftovers),
                )
            shutil.rmtree(self._scratch, ignore_errors=True)
            scratch_gone = not self._scratch.exists()
        destroyed = gone and scratch_gone
        _log.info(
            "job %s: container exited (%s), destroyed=%s",
            self.job_id,
            "killed" if self._killed else f"code {code}",
            destroyed,
        )
        return ExitInfo(
            exit_code=None if self._killed else code, killed=self._killed, destroyed=destroyed
        )


async def wait_until(check: Callable[[], bool], *, timeout_s: float = _GONE_WAIT_S) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(_GONE_POLL_S)
    return True
