"""``cdvm relay --data ./data/relay`` from another directory serves (issue 13, item 1).

Before the fix nostr-relay died at once with ``FileNotFoundError: data/relay/nostr-relay.yaml``:
the config was written under the relative path and the relay started inside it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import free_port, stop_group, wait_until_serving

pytestmark = pytest.mark.relay


def test_cdvm_relay_with_a_relative_data_dir_serves(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvm.cli", "relay", "--port", str(port), "--data", "./data/relay"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_serving(port)
        assert proc.poll() is None
        config = tmp_path / "data" / "relay" / "nostr-relay.yaml"
        assert config.stat().st_mode & 0o777 == 0o600
        assert str(tmp_path / "data" / "relay" / "nostr-relay.sqlite3") in config.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        stop_group(proc, sig=signal.SIGKILL, grace_s=1)
