"""stream_run: worker-thread runs, batched partial output, the final tail, cancellation; Batcher."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from container.errors import RunError
from container.streaming import BATCH_MAX_DELAY_S, BATCH_MAX_PIECES, Batcher, stream_run
from dvm.cdvm.channel import ChannelError


class FakeRunner:
    def __init__(self, pieces: list[str], *, delay_s: float = 0.0, answer: str | None = None):
        self.pieces = pieces
        self.delay_s = delay_s
        self.answer = answer
        self.thread: str | None = None

    def run(self, text: str, *, emit: Callable[[str], None], cancel: threading.Event) -> str:
        self.thread = threading.current_thread().name
        sent = []
        for piece in self.pieces:
            if cancel.is_set():
                break
            time.sleep(self.delay_s)
            emit(piece)
            sent.append(piece)
        if text == "fail":
            raise RunError(ChannelError.BAD_INPUT, "no")
        return self.answer if self.answer is not None else "".join(sent)

    def close(self) -> None:
        pass


@pytest.mark.asyncio
async def test_pieces_are_batched_by_count_and_the_tail_is_final() -> None:
    runner = FakeRunner([str(i) for i in range(7)])
    partials: list[str] = []
    final, answer = await stream_run(
        runner,
        "go",
        cancel=threading.Event(),
        on_partial=partials.append,
        batcher=Batcher(max_pieces=3, max_delay_s=60),
    )
    assert partials == ["012", "345"]
    assert final == "6"
    assert answer == "0123456"
    assert runner.thread != threading.current_thread().name  # ran in a worker thread


@pytest.mark.asyncio
async def test_slow_pieces_are_flushed_by_age() -> None:
    runner = FakeRunner(["a", "b", "c"], delay_s=0.15)
    partials: list[str] = []
    final, answer = await stream_run(
        runner,
        "go",
        cancel=threading.Event(),
        on_partial=partials.append,
        batcher=Batcher(max_pieces=100, max_delay_s=0.05),
    )
    assert len(partials) >= 2  # each piece aged out before the next arrived
    assert "".join(partials) + final == answer == "abc"


@pytest.mark.asyncio
async def test_a_runner_that_does_not_stream_answers_in_the_final() -> None:
    partials: list[str] = []
    final, answer = await stream_run(
        FakeRunner([], answer='{"outputs":{}}'),
        "go",
        cancel=threading.Event(),
        on_partial=partials.append,
    )
    assert partials == []
    assert final == answer == '{"outputs":{}}'


@pytest.mark.asyncio
async def test_run_errors_propagate() -> None:
    with pytest.raises(RunError):
        await stream_run(
            FakeRunner(["x"]), "fail", cancel=threading.Event(), on_partial=lambda _: None
        )


@pytest.mark.asyncio
async def test_cancel_stops_a_streaming_runner() -> None:
    cancel = threading.Event()
    cancel.set()
    final, answer = await stream_run(
        FakeRunner(["a", "b"]), "go", cancel=cancel, on_partial=lambda _: None
    )
    assert (final, answer) == ("", "")


def test_batches_flush_by_count() -> None:
    batcher = Batcher(max_pieces=3, max_delay_s=10)
    assert not batcher.add("a", now=0)
    assert not batcher.add("b", now=0.1)
    assert batcher.add("c", now=0.2)
    assert batcher.take() == "abc"
    assert batcher.due_at() is None
    assert batcher.take() == ""


def test_batches_flush_by_age_of_the_first_piece() -> None:
    batcher = Batcher(max_pieces=100, max_delay_s=0.5)
    assert not batcher.add("a", now=10.0)
    assert batcher.due_at() == 10.5
    assert not batcher.due(now=10.4)
    assert batcher.add("", now=10.5)  # a tick with no piece
    assert batcher.take() == "a"


def test_default_policy_is_documented_values() -> None:
    assert (BATCH_MAX_PIECES, BATCH_MAX_DELAY_S) == (16, 0.5)
    with pytest.raises(ValueError, match="max_pieces"):
        Batcher(max_pieces=0)
