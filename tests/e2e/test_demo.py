"""``cdvm demo`` (what `make demo` runs), through the installed console script as users run it: a
real relay, a real node with the local launcher and the simulated TEE, Gemma 3 270M, reference
values published by a demo publisher and trusted, one ``cdvm submit`` and one two-message
``cdvm chat``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Model

pytestmark = [pytest.mark.relay, pytest.mark.slow]

CDVM = Path(sys.executable).parent / "cdvm"


def test_demo_runs_end_to_end(gemma_model: Model) -> None:
    del gemma_model  # skips, loudly, where llama.cpp cannot complete a token
    result = subprocess.run(
        [str(CDVM), "demo"], capture_output=True, text=True, timeout=900, check=False
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "FAILED" not in out
    assert out.count("ANSWER: ") == 1  # the one-shot answer
    assert out.count("CONTAINER: ") == 2  # the two chat answers, each after its prompt
    assert "container destroyed: True (provider status success)" in out
    assert out.count("SIMULATED: not confidential") >= 2
    assert out.count("container destroyed") == 2
    assert "checked: REPORT_DATA" in out
    assert "published reference values 37100:" in out
    assert "trusted npub1" in out
    assert "checked: measurement matches reference values published by npub1" in out
    assert "checked: model sha256 matches reference values published by npub1" in out
    assert "==> 6. stopping the node and the relay" in out
