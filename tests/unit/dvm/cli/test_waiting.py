"""The waiting lines of cdvm submit/chat (issue 13): what each step leaves the job waiting for."""

from __future__ import annotations

import pytest

from dvm.cli.waiting import WaitingLines, awaited_after, waiting_line
from dvm.client import Step


@pytest.mark.parametrize(
    ("step", "chat", "what"),
    [
        (None, False, "the relays to accept the request"),
        (Step.PUBLISHED, False, "the provider's processing feedback"),
        (Step.LAUNCHED, True, "the container's attestation"),
        (Step.VERIFIED, False, None),
        (Step.VERIFIED, True, None),
        (Step.INPUT_SENT, True, "the answer"),
        (Step.ANSWER, False, "the container's destruction"),
        (Step.ANSWER, True, None),
        (Step.DESTROYED, False, None),
    ],
)
def test_awaited_after(step: Step | None, chat: bool, what: str | None) -> None:
    assert awaited_after(step, chat=chat) == what


def test_lines_name_the_step_and_the_time_since_it() -> None:
    now = [100.0]
    lines: list[str] = []
    forwarded: list[tuple[Step, str]] = []
    waiting = WaitingLines(
        lambda s, d: forwarded.append((s, d)), chat=False, write=lines.append, clock=lambda: now[0]
    )
    now[0] = 102.4
    waiting.tick()
    waiting.progress(Step.PUBLISHED, "on 1 relay")
    now[0] = 107.9
    waiting.tick()
    waiting.progress(Step.LAUNCHED, "C")
    waiting.progress(Step.VERIFIED, "ok")
    now[0] = 200.0
    waiting.tick()  # verified: the input is being sent, nothing awaited from the network
    assert lines == [
        "cdvm: waiting for the relays to accept the request (2 s)…",
        "cdvm: waiting for the provider's processing feedback (5 s)…",
    ]
    assert forwarded == [
        (Step.PUBLISHED, "on 1 relay"),
        (Step.LAUNCHED, "C"),
        (Step.VERIFIED, "ok"),
    ]
    assert waiting_line("x", 12.99) == "cdvm: waiting for x (12 s)…"
