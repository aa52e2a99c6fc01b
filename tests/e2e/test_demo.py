"""`make demo`'s program, run as users run it (a real relay process, real keys)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.relay
def test_demo_runs_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dvm.demo"], capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Bob reads: 'Hello Bob" in result.stdout
    assert "the message text is not among them" in result.stdout
    assert "FAILED" not in result.stdout
