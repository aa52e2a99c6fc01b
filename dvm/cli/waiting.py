"""What ``cdvm submit``/``chat`` are waiting for, said on stderr while they wait (issue 13).

The client reports each completed :class:`~dvm.client.Step` (``JobOptions.progress``); between
two steps nothing is printed, and a job whose provider is slow (a container starting, an
attestation being produced) or absent looks hung. :class:`WaitingLines` wraps the progress
listener: it remembers the last step and when it came, and :meth:`WaitingLines.around` runs a
ticker beside the job that prints ``cdvm: waiting for <what> (<n> s)…`` every
:data:`INTERVAL_S` seconds while the job waits on the network (docs/client.md "Waiting").

What is awaited after each step is :func:`awaited_after` (pure). ``None`` means the job waits
on the user (a chat between messages), so nothing is printed. ``--json`` prints no waiting lines
(stderr stays quiet except for errors, as for the progress lines).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import TypeVar

from dvm.client import Step
from dvm.client.options import ProgressListener

__all__ = ["INTERVAL_S", "WaitingLines", "awaited_after", "waiting_line"]

#: Seconds between two waiting lines (and before the first one of a wait).
INTERVAL_S = 2.0

T = TypeVar("T")


def awaited_after(step: Step | None, *, chat: bool) -> str | None:
    """What the job waits for once ``step`` (None: nothing yet) has completed; None: the user."""
    if step is None:
        return "the relays to accept the request"
    if step is Step.PUBLISHED:
        return "the provider's processing feedback"
    if step is Step.LAUNCHED:
        return "the container's attestation"
    if step is Step.INPUT_SENT:
        return "the answer"
    if step is Step.ANSWER and not chat:
        return "the container's destruction"
    return None  # verified (the input follows at once, or the user types), answered in a chat


def waiting_line(what: str, waited_s: float) -> str:
    return f"cdvm: waiting for {what} ({int(waited_s)} s)…"


class WaitingLines:
    """A progress listener that also says, every :data:`INTERVAL_S`, what the job waits for."""

    def __init__(
        self,
        forward: ProgressListener,
        *,
        chat: bool,
        write: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = INTERVAL_S,
    ) -> None:
        self._forward = forward
        self._chat = chat
        self._write = write
        self._clock = clock
        self._interval_s = interval_s
        self._last: Step | None = None
        self._since = clock()

    def progress(self, step: Step, detail: str) -> None:
        self._last, self._since = step, self._clock()
        self._forward(step, detail)

    def tick(self) -> None:
        """Print the waiting line for now, if the job waits on the network."""
        what = awaited_after(self._last, chat=self._chat)
        if what is not None:
            self._write(waiting_line(what, self._clock() - self._since))

    async def around(self, job: Coroutine[object, object, T], *, quiet: bool = False) -> T:
        """Run ``job`` with the ticker beside it (none when ``quiet``); it ends with the job."""
        if quiet:
            return await job

        async def ticker() -> None:
            while True:
                await asyncio.sleep(self._interval_s)
                self.tick()

        task = asyncio.create_task(ticker())
        try:
            return await job
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
