"""The local launcher against real processes: bubblewrap sandbox, PSP, kill, orphans.

A fake container (``fake_runtime/container/__main__.py``, stdlib only) stands in for the
runtime; its behaviour is chosen by the model name.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import MappingProxyType

import pytest
import pytest_asyncio

from attestation.simulated import SimulatedChain, SimulatedTee, measure_runtime
from container.launch import Limits, ModelSpec, RunnerKind, StatusKind
from dvm.node.config import LauncherConfig, parse_config
from dvm.node.errors import SandboxUnavailable
from dvm.node.launcher import LaunchRequest, feedback_for_exit
from dvm.node.local.launcher import LocalLauncher, bubblewrap_usable, stage_runtime
from dvm.node.local.sandbox import process_handle, process_start_time
from dvm.nostr.nip90 import ErrorReason, FeedbackStatus, parse_job_request
from tests.unit.dvm.node.conftest import FAKE_RUNTIME, config_document, key, make_request

LOGGER = "dvm.node.local.launcher"
needs_bwrap = pytest.mark.skipif(not bubblewrap_usable("bwrap"), reason="bubblewrap unusable")


def _launch_request(
    model_path: Path, name: str, *, deadline_s: float = 30.0, probe: list[str] | None = None
) -> LaunchRequest:
    defaults = MappingProxyType({"probe": probe}) if probe else MappingProxyType({})
    return LaunchRequest(
        request=parse_job_request(make_request(key(2), key(1))),
        provider=key(1).public_key.hex(),
        relays=("ws://127.0.0.1:1",),
        model=ModelSpec(name, RunnerKind.ONNX, str(model_path), "0" * 64, defaults),
        limits=Limits(
            attestation_timeout_s=10,
            idle_timeout_s=10,
            deadline_s=deadline_s,
            max_input_bytes=1000,
            max_output_tokens=16,
        ),
        grace_s=0.5,
        runtime_version="test",
        runtime_image="test",
    )


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(b"model bytes")
    return path


@pytest_asyncio.fixture
async def launcher_factory(
    tmp_path: Path, simulated_chain: SimulatedChain
) -> AsyncIterator[type[LocalLauncher] | object]:
    made: list[LocalLauncher] = []

    def make(*, sandboxed: bool, config: LauncherConfig | None = None) -> LocalLauncher:
        runtime = Path(tempfile.mkdtemp(prefix="cdvm-runtime-test-"))
        measurement = stage_runtime(FAKE_RUNTIME, runtime)
        launcher = LocalLauncher(
            config=config or LauncherConfig(),
            tee=SimulatedTee(chain=simulated_chain, measurement=measurement),
            runtime_dir=runtime,
            sandboxed=sandboxed,
        )
        made.append(launcher)
        return launcher

    yield make
    for launcher in made:
        await launcher.close()


async def _run(launcher: LocalLauncher, request: LaunchRequest) -> tuple[list[StatusKind], object]:
    job = await launcher.launch(request)
    kinds = [line.kind async for line in job.status_lines()]
    return kinds, await job.wait()


@needs_bwrap
@pytest.mark.asyncio
async def test_sandboxed_job_runs_and_is_destroyed(
    launcher_factory: object, model_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    launcher = launcher_factory(sandboxed=True)  # type: ignore[operator]
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    kinds, info = await _run(launcher, _launch_request(model_file, "ok"))
    assert kinds == [
        StatusKind.ATTESTED,
        StatusKind.READY,
        StatusKind.DELIVERED,
        StatusKind.DESTROYING,
    ]
    final = feedback_for_exit(info)  # type: ignore[arg-type]
    assert final.status is FeedbackStatus.SUCCESS
    assert final.destroyed
    assert "evidence 1 item(s) of type simulated" in caplog.text
    assert "ignored stdout line" in caplog.text


@needs_bwrap
@pytest.mark.asyncio
async def test_sandbox_hides_the_node_key_and_data_dir(
    launcher_factory: object,
    model_file: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key_file = tmp_path / "provider.nsec"
    key_file.write_text("nsec1secret\n", encoding="ascii")
    key_file.chmod(0o600)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "ledger.sqlite3").write_bytes(b"ledger")
    launcher = launcher_factory(sandboxed=True)  # type: ignore[operator]
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    probes = [
        str(key_file),
        str(data_dir),
        str(data_dir / "ledger.sqlite3"),
        "/etc/shadow",
        "/models/probe",
        "/opt/cdvm/container/__main__.py",
    ]
    _, info = await _run(launcher, _launch_request(model_file, "probe", probe=probes))
    text = caplog.text
    for hidden in probes[:4]:
        assert f"probe {hidden}: FileNotFoundError" in text
    assert "probe /models/probe: READABLE" in text  # the model, read-only
    assert "probe /opt/cdvm/container/__main__.py: READABLE" in text
    env = next(line for line in text.splitlines() if "container: env " in line)
    names = set(env.split("container: env ")[1].split(","))
    assert names <= {
        "PATH",
        "HOME",
        "TMPDIR",
        "PYTHONPATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
        "LC_CTYPE",  # Python's own locale coercion may add it
        "PWD",  # bubblewrap's --chdir sets it
    }
    assert "container: cwd /tmp" in text
    assert "container: pid 2" in text or "container: pid 1" in text  # own pid namespace
    assert info.destroyed  # type: ignore[attr-defined]


@needs_bwrap
@pytest.mark.asyncio
async def test_rlimits_are_applied(
    launcher_factory: object, model_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = LauncherConfig(memory_bytes=3 * 1024**3, cpu_time_s=77)
    launcher = launcher_factory(sandboxed=True, config=config)  # type: ignore[operator]
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    await _run(launcher, _launch_request(model_file, "probe", probe=["/"]))
    assert f"rlimit_as {3 * 1024**3} {3 * 1024**3}" in caplog.text
    assert "rlimit_cpu 77 82" in caplog.text
    assert "rlimit_core 0 0" in caplog.text


@needs_bwrap
@pytest.mark.asyncio
async def test_exit_codes_map_to_feedback(launcher_factory: object, model_file: Path) -> None:
    launcher = launcher_factory(sandboxed=True)  # type: ignore[operator]
    _, info = await _run(launcher, _launch_request(model_file, "exit-21"))
    final = feedback_for_exit(info)  # type: ignore[arg-type]
    assert (final.status, final.reason) == (FeedbackStatus.ERROR, ErrorReason.LAUNCH_FAILED)
    _, info = await _run(launcher, _launch_request(model_file, "exit-11"))
    assert feedback_for_exit(info).reason is ErrorReason.TIMEOUT  # type: ignore[arg-type]


@pytest.mark.asyncio
@pytest.mark.parametrize("sandboxed", [True, False])
async def test_launcher_kills_at_deadline_plus_grace(
    launcher_factory: object, model_file: Path, sandboxed: bool
) -> None:
    if sandboxed and not bubblewrap_usable("bwrap"):
        pytest.skip("bubblewrap unusable")
    launcher = launcher_factory(sandboxed=sandboxed)  # type: ignore[operator]
    loop = asyncio.get_running_loop()
    started = loop.time()
    job = await launcher.launch(_launch_request(model_file, "hang", deadline_s=0.5))
    info = await asyncio.wait_for(job.wait(), timeout=20)
    elapsed = loop.time() - started
    assert info.killed
    assert info.exit_code is None
    assert info.destroyed
    assert 0.9 <= elapsed < 10
    assert process_start_time(job.pid) is None
    final = feedback_for_exit(info)
    assert (final.status, final.reason) == (FeedbackStatus.ERROR, ErrorReason.TIMEOUT)


@pytest.mark.asyncio
async def test_unsandboxed_job_scratch_is_removed(
    launcher_factory: object, model_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    launcher = launcher_factory(sandboxed=False)  # type: ignore[operator]
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    kinds, info = await _run(launcher, _launch_request(model_file, "probe", probe=["/"]))
    assert StatusKind.ATTESTED in kinds
    assert info.destroyed  # type: ignore[attr-defined]
    assert "WITHOUT a sandbox" in caplog.text
    cwd = next(line for line in caplog.text.splitlines() if "container: cwd " in line)
    scratch = Path(cwd.split("container: cwd ")[1])
    assert scratch.name.startswith("cdvm-job-")
    assert not scratch.exists()


@pytest.mark.asyncio
async def test_orphans_are_killed_only_if_still_ours(
    tmp_path: Path, simulated_chain: SimulatedChain
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    launcher = LocalLauncher(
        config=LauncherConfig(),
        tee=SimulatedTee(chain=simulated_chain, measurement=measure_runtime(FAKE_RUNTIME)),
        runtime_dir=runtime,
        sandboxed=False,
    )
    orphan = subprocess.Popen(  # a container "left by a previous run"
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        handle = process_handle(orphan.pid)
        pid, _, start = handle.partition(":")
        stale = f"{pid}:{int(start) + 1}"  # same pid, another start time: not ours
        killed = await launcher.collect_orphans({"aa" * 32: stale, "bb" * 32: "garbage"})
        assert list(killed) == []
        assert orphan.poll() is None
        reaper = asyncio.create_task(asyncio.to_thread(orphan.wait))
        killed = await launcher.collect_orphans({"cc" * 32: handle})
        assert list(killed) == ["cc" * 32]
        assert await asyncio.wait_for(reaper, timeout=10) == -signal.SIGKILL
    finally:
        if orphan.poll() is None:
            os.killpg(orphan.pid, signal.SIGKILL)
            orphan.wait()


@pytest.mark.asyncio
async def test_prepare_refuses_without_bubblewrap(tmp_path: Path) -> None:
    doc = config_document(tmp_path)
    doc["launcher"] = {"bwrap": "/nonexistent/bwrap"}
    config = parse_config(doc, base_dir=tmp_path)
    with pytest.raises(SandboxUnavailable, match="allow_unsandboxed"):
        LocalLauncher.prepare(config, now=dt.datetime.now(dt.UTC))


def test_stage_runtime_copies_exactly_the_measured_files(tmp_path: Path) -> None:
    measurement = stage_runtime(FAKE_RUNTIME, tmp_path)
    assert measurement == measure_runtime(FAKE_RUNTIME)
    assert sorted(
        p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()
    ) == ["container/__main__.py", "container/launch/status.py"]
    shutil.rmtree(tmp_path / "container")
