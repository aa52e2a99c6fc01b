"""``cdvm submit`` says what it waits for (issue 13): against a relay where no provider listens."""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

from dvm.nostr.keys import SecretKey

from .conftest import RelayProcess

pytestmark = pytest.mark.relay


def _submit(relay: RelayProcess, *extra: str) -> subprocess.CompletedProcess[str]:
    provider = SecretKey.generate(secrets.token_bytes).public_key.hex()  # nobody runs it
    args = ["--provider", provider, "--relay", relay.url, "--model", "m", "--tee", "simulated"]
    return subprocess.run(
        [sys.executable, "-m", "dvm.cli", "submit", *args, "--timeout", "5", *extra],
        check=False,
        input="hello",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_submit_names_the_step_it_waits_on(relay: RelayProcess) -> None:
    result = _submit(relay)
    assert result.returncode == 3, result.stderr  # EXIT_TIMEOUT
    assert "request published" in result.stderr
    waiting = [line for line in result.stderr.splitlines() if line.startswith("cdvm: waiting")]
    assert waiting, result.stderr
    assert all("for the provider's processing feedback (" in line for line in waiting), waiting
    assert "timeout" in result.stderr


def test_json_mode_prints_no_waiting_lines(relay: RelayProcess) -> None:
    result = _submit(relay, "--json")
    assert result.returncode == 3, result.stderr
    assert "timeout" in result.stderr  # the run got as far as the wait
    assert "waiting for" not in result.stderr
