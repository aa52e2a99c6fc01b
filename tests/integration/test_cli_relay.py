"""``cdvm relay`` through the real CLI: it starts nostr-relay, accepts an event, and stops."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dvm.nostr.event import UnsignedEvent
from dvm.nostr.keys import SecretKey
from dvm.relay import RelayPool

from .conftest import free_port, stop_group, wait_until_serving

pytestmark = pytest.mark.relay


def test_cdvm_relay_serves_and_terminates(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "relay-data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvm.cli", "relay", "--port", str(port), "--data", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_serving(port)
        assert (data / "nostr-relay.yaml").stat().st_mode & 0o777 == 0o600
        key = SecretKey.generate(secrets.token_bytes)
        event = UnsignedEvent(key.public_key.hex(), int(time.time()), 1, (), "via cdvm relay").sign(
            key, aux_rand=secrets.token_bytes(32)
        )

        async def publish() -> tuple[str, ...]:
            async with RelayPool([f"ws://127.0.0.1:{port}"]) as pool:
                return (await pool.publish(event)).accepted_by

        assert asyncio.run(publish()) == (f"ws://127.0.0.1:{port}",)
        # SIGTERM to cdvm only: it forwards the signal to nostr-relay and returns its code.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)  # nothing of the group (gunicorn master/worker) is left
    finally:
        stop_group(proc, sig=signal.SIGKILL, grace_s=1)


def test_cdvm_relay_refuses_public_bind(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dvm.cli", "relay", "--port", "1", "--host", "0.0.0.0"],
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert b"loopback" in result.stderr
