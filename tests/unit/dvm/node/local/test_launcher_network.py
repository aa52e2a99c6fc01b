"""The local launcher with a private network namespace: the job's forwarder is there while it
runs (its socket visible in the sandbox at /run/cdvm-relays), gone after ``wait``."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pytest

from attestation.simulated import SimulatedChain, SimulatedTee
from dvm.node.config import LauncherConfig
from dvm.node.local.launcher import LocalLauncher, stage_runtime
from dvm.node.local.sandbox import bubblewrap_usable, private_network_here
from tests.unit.dvm.node.conftest import FAKE_RUNTIME
from tests.unit.dvm.node.local.test_launcher import _launch_request

pytestmark = pytest.mark.skipif(
    not bubblewrap_usable("bwrap") or not private_network_here("bwrap"),
    reason="bubblewrap or its private network namespace unusable here",
)


@pytest.mark.asyncio
async def test_the_forwarder_lives_as_long_as_the_job(
    tmp_path: Path, simulated_chain: SimulatedChain, caplog: pytest.LogCaptureFixture
) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"model bytes")
    runtime = Path(tempfile.mkdtemp(prefix="cdvm-runtime-test-"))
    measurement = stage_runtime(FAKE_RUNTIME, runtime)
    launcher = LocalLauncher(
        config=LauncherConfig(),
        tee=SimulatedTee(chain=simulated_chain, measurement=measurement),
        runtime_dir=runtime,
        sandboxed=True,
        private_network=True,
    )
    caplog.set_level(logging.DEBUG, logger="dvm.node.local.launcher")
    request = _launch_request(
        model, "ok", probe=["/run/cdvm-relays/0.sock", "/run/cdvm-relays/1.sock"]
    )
    try:
        job = await launcher.launch(request)
        leftovers = list(Path(tempfile.gettempdir()).glob(f"cdvm-relays-{request.job_id[:16]}-*"))
        assert len(leftovers) == 1  # the forwarder's directory, while the job runs
        assert (leftovers[0] / "0.sock").is_socket()
        _ = [line async for line in job.status_lines()]
        info = await job.wait()
    finally:
        await launcher.close()
    assert info.destroyed
    # The one relay's socket is there (reading a socket as a file fails with ENXIO: OSError);
    # there is no second one.
    assert "probe /run/cdvm-relays/0.sock: OSError" in caplog.text
    assert "probe /run/cdvm-relays/1.sock: FileNotFoundError" in caplog.text
    assert not leftovers[0].exists()
