"""Run one input in a worker thread and hand its output to the loop in batches (DESIGN §3.7).

Contract: :func:`stream_run` starts ``runner.run`` in a worker thread (the event loop stays
responsive: relays, timers and the channel keep working while the model computes), receives
each emitted piece through ``call_soon_threadsafe``, groups pieces with the pure
:class:`~container.runner.Batcher` (every :data:`~container.runner.BATCH_MAX_PIECES` pieces or
:data:`~container.runner.BATCH_MAX_DELAY_S` after the first piece of a batch) and calls
``on_partial(text)`` for each due batch. It returns ``(final_text, answer)``: ``answer`` is the
runner's whole answer and ``final_text`` what the partial batches did not carry (the unsent
tail of a stream, or the whole answer of a runner that does not stream, such as ONNX).
:class:`~container.errors.RunError` from the runner propagates. Setting ``cancel`` makes a
streaming runner stop at its next piece; a worker thread cannot be killed, so an ONNX call
finishes on its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from .runner import Batcher, Runner

__all__ = ["stream_run"]


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
