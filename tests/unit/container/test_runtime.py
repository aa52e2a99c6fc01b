"""The runtime's stdout: status lines only, one per line, flushed at once (docs/launch.md §2).

The whole runtime runs against a real relay in tests/integration/test_container_job.py.
"""

from __future__ import annotations

import io

from container.launch import DestroyReason, StatusKind, StatusLine, parse_status_line
from container.runtime import StatusWriter

C = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"


class _Stream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushed_at: list[int] = []

    def flush(self) -> None:
        self.flushed_at.append(len(self.getvalue()))


def test_each_status_line_is_one_flushed_line_the_launcher_reads_back() -> None:
    stream = _Stream()
    writer = StatusWriter(stream)
    lines = [
        StatusLine(StatusKind.ATTESTED, container=C, attestation="ab" * 32),
        StatusLine(StatusKind.READY),
        StatusLine(StatusKind.DELIVERED, result="cd" * 32),
        StatusLine(StatusKind.DESTROYING, reason=DestroyReason.ONESHOT),
    ]
    for line in lines:
        writer.write(line)
    text = stream.getvalue()
    assert text.endswith("\n")
    written = text.splitlines()
    assert [parse_status_line(raw.encode()) for raw in written] == lines
    # Flushed after every line, so the launcher sees each one as it happens.
    ends = [sum(len(raw) + 1 for raw in written[: i + 1]) for i in range(len(written))]
    assert stream.flushed_at == ends
