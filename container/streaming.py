"""Run one input in a worker thread and hand its output to the loop in batches (DESIGN §3.7).

Contract: :func:`stream_run` starts ``runner.run`` in a worker thread (the event loop stays
responsive: relays, timers and the channel keep working while the model computes), receives
each emitted piece through ``call_soon_threadsafe``, groups pieces with the pure
:class:`Batcher` (every :data:`BATCH_MAX_PIECES` pieces or :data:`BATCH_MAX_DELAY_S` after the
first piece of a batch) and calls ``on_partial(text)`` for each due batch. It returns
``(final_text, answer)``: ``answer`` is the runner's whole answer and ``final_text`` what the
partial batches did not carry (the unsent tail of a stream, or the whole answer of a runner
that does not stream, such as ONNX).
:class:`~container.errors.RunError` from the runner propagates. Setting ``cancel`` makes a
streaming runner stop at its next piece; a worker thread cannot be killed, so an ONNX call
finishes on its own.

:class:`Batcher` is the pure streaming policy (docs/container.md): a batch is sent when it
holds :data:`BATCH_MAX_PIECES` pieces or its first piece is :data:`BATCH_MAX_DELAY_S` old,
whichever comes first, and the rest goes out with the final message.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from .runner import Runner

__all__ = ["BATCH_MAX_DELAY_S", "BATCH_MAX_PIECES", "Batcher", "stream_run"]

BATCH_MAX_PIECES = 16
BATCH_MAX_DELAY_S = 0.5


class Batcher:
    """Groups streamed pieces into messages (pure: the caller passes ``now``, in seconds)."""

    __slots__ = ("_first_at", "_max_delay_s", "_max_pieces", "_pieces")

    def __init__(
        self, *, max_pieces: int = BATCH_MAX_PIECES, max_delay_s: float = BATCH_MAX_DELAY_S
    ) -> None:
        if max_pieces < 1 or max_delay_s <= 0:
            raise ValueError("a batch needs max_pieces >= 1 and max_delay_s > 0")
        self._max_pieces = max_pieces
        self._max_delay_s = max_delay_s
        self._pieces: list[str] = []
        self._first_at: float | None = None

    def add(self, piece: str, *, now: float) -> bool:
        """Store a piece; True when the batch is due (send :meth:`take`)."""
        if not piece:
            return self.due(now=now)
        if not self._pieces:
            self._first_at = now
        self._pieces.append(piece)
        return self.due(now=now)

    def due(self, *, now: float) -> bool:
        if not self._pieces or self._first_at is None:
            return False
        return len(self._pieces) >= self._max_pieces or now - self._first_at >= self._max_delay_s

    def due_at(self) -> float | None:
        """When the pending batch becomes due by age; None when nothing is pending."""
        return None if self._first_at is None else self._first_at + self._max_delay_s

    def take(self) -> str:
        """The pending text, emptied."""
        text = "".join(self._pieces)
        self._pieces.clear()
        self._first_at = None
        return text


async def stream_run(
    runner: Runner,
    text: str,
    *,
    cancel: threading.Event,
    on_partial: Callable[[str], None],
    batcher: Batcher | None = None,
) -> tuple[str, str]:
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[str | None] = asyncio.Queue()

    def emit(piece: str) -> None:  # called from the worker thread
        loop.call_soon_threadsafe(pieces.put_nowait, piece)

    work = asyncio.ensure_future(asyncio.to_thread(runner.run, text, emit=emit, cancel=cancel))
    # Runs on the loop after every emit the thread scheduled before returning: the end marker
    # always comes after the last piece.
    work.add_done_callback(lambda _: pieces.put_nowait(None))
    batch = batcher or Batcher()
    streamed_chars = 0
    while True:
        due_at = batch.due_at()
        try:
            async with asyncio.timeout_at(due_at):
                piece = await pieces.get()
        except TimeoutError:
            piece = ""  # a tick: the pending batch is old enough
        if piece is None:
            break
        streamed_chars += len(piece)
        if batch.add(piece, now=loop.time()):
            on_partial(batch.take())
    answer = work.result()
    return batch.take() + answer[streamed_chars:], answer
