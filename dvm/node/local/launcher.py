"""The local launcher: one sandboxed ``python -m container`` process per job (DESIGN §4).

docs/launch.md is the contract (§1 spec on stdin, §2 status lines on stdout, §3 exit codes,
§4 the simulated PSP on an inherited fd, §5 the sandbox); ``docs/node.md`` says how the node
uses it.

Contract:

* :meth:`LocalLauncher.prepare` (blocking; call it in a thread) checks that bubblewrap works
  (it runs a probe sandbox) and refuses with :class:`SandboxUnavailable` when it does not,
  unless ``launcher.allow_unsandboxed`` is true; stages the runtime files
  (:func:`attestation.simulated.runtime_files`: exactly what is measured) into a fresh
  directory that is bound read-only into every sandbox, computes their measurement, and loads
  (or mints, once) the simulated TEE's chain from ``tee.simulated_dir``.
* :meth:`LocalLauncher.launch` starts the process (new session, rlimits, the PSP socket as an
  inherited fd), writes the job spec to its stdin and closes it. Its stderr lines go to the node
  log at DEBUG with the job id (the container logs ids and sizes only). A timer kills the
  process group at ``deadline_s + grace_s``.
* :meth:`LocalJob.wait` reaps the process, kills anything left in its process group, and
  reports ``destroyed`` only when the process is gone and its scratch is gone: sandboxed, the
  scratch is the sandbox's private tmpfs, which vanishes with its mount namespace when the
  sandbox's pid-1 exits (the kernel then kills every process of the pid namespace);
  unsandboxed, it is a directory the launcher created as the container's ``$TMPDIR``/``$HOME``;
  the container deletes its own scratch inside it, the launcher then removes the directory
  (warning if the container left anything) and checks that it is gone.
* Unsandboxed jobs (``allow_unsandboxed = true`` and no usable bubblewrap) log a warning each.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import importlib.metadata
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

import container
from attestation.errors import AttestationError
from attestation.simulated import SimulatedTee, load_or_mint, measure_runtime, runtime_files
from container.launch import (
    EvidenceSource,
    JobSpec,
    StatusLine,
    build_job_spec,
    parse_status_line,
)

from ..config import LauncherConfig, NodeConfig
from ..errors import LaunchError, SandboxUnavailable
from ..launcher import ExitInfo, LaunchRequest
from . import psp
from .sandbox import (
    MODELS_MOUNT,
    SandboxPlan,
    bwrap_argv,
    group_alive,
    kill_process_group,
    parse_handle,
    process_handle,
    process_start_time,
    rlimits_preexec,
    sandbox_env,
)

__all__ = ["LocalJob", "LocalLauncher", "bubblewrap_usable", "default_runtime_root"]

_log = logging.getLogger(__name__)
_SCRATCH_PREFIX = "cdvm-job-"
_STDERR_LINE_CHARS = 2000
_GONE_POLL_S = 0.02
_GONE_WAIT_S = 5.0


def default_runtime_root() -> Path:
    """The directory holding the installed ``container`` package (and its siblings)."""
    return Path(container.__file__).resolve().parent.parent


def bubblewrap_usable(bwrap: str) -> bool:
    """True if ``bwrap`` exists and can make user and pid namespaces here."""
    path = shutil.which(bwrap)
    if path is None:
        return False
    probe = [path, "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "--", "/bin/true"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=20, check=False)  # noqa: S603 - fixed argv
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _runtime_version() -> str:
    try:
        return importlib.metadata.version("confidential-dvm")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def stage_runtime(root: Path, dest: Path) -> bytes:
    """Copy the measured runtime files of ``root`` into ``dest``; their measurement."""
    for relative in runtime_files(root):
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / relative, target)
    return measure_runtime(dest)


class LocalJob:
    """One running container process (a :class:`~dvm.node.launcher.LaunchedJob`)."""

    def __init__(
        self,
        *,
        job_id: str,
        process: asyncio.subprocess.Process,
        psp_task: asyncio.Task[None],
        scratch: Path | None,
        kill_after_s: float,
    ) -> None:
        self.job_id = job_id
        self._process = process
        self._psp_task = psp_task
        self._scratch = scratch
        self._killed = False
        self._handle = process_handle(process.pid)
        self._stderr_task = asyncio.create_task(self._log_stderr())
        self._deadline_task = asyncio.create_task(self._kill_at(kill_after_s))

    @property
    def handle(self) -> str:
        return self._handle

    @property
    def pid(self) -> int:
        return self._process.pid

    async def _kill_at(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        _log.warning("job %s: deadline + grace reached, killing its container", self.job_id)
        await self.kill()

    async def _log_stderr(self) -> None:
        stream = self._process.stderr
        if stream is None:  # pragma: no cover - launch always pipes stderr
            return
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the stream limit: skip it
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()[:_STDERR_LINE_CHARS]
            _log.debug("job %s container: %s", self.job_id, text)

    async def status_lines(self) -> AsyncIterator[StatusLine]:
        stream = self._process.stdout
        if stream is None:  # pragma: no cover - launch always pipes stdout
            return
        while True:
            try:
                line = await stream.readline()
            except ValueError:
                _log.warning("job %s: over-long stdout line ignored", self.job_id)
                continue
            if not line:
                return
            try:
                yield parse_status_line(line.strip())
            except ValueError as exc:
                _log.warning("job %s: ignored stdout line (%s)", self.job_id, exc)

    async def kill(self) -> None:
        self._killed = True
        kill_process_group(self._process.pid)

    async def wait(self) -> ExitInfo:
        code = await self._process.wait()
        self._deadline_task.cancel()
        self._psp_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._psp_task
        with contextlib.suppress(asyncio.CancelledError):
            await self._deadline_task
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stderr_task, timeout=_GONE_WAIT_S)
        # Anything the container left in its process group goes too (unsandboxed case).
        kill_process_group(self._process.pid)
        gone = await _until(lambda: not group_alive(self._process.pid))
        scratch_gone = True
        if self._scratch is not None:
            # The container makes its own scratch inside $TMPDIR (this directory) and deletes
            # it; whatever is left there is a leftover, removed here and reported.
            leftovers = list(self._scratch.iterdir()) if self._scratch.exists() else []
            if leftovers:
                _log.warning(
                    "job %s: the container left %d entries in its scratch; removing them",
                    self.job_id,
                    len(leftovers),
                )
            shutil.rmtree(self._scratch, ignore_errors=True)
            scratch_gone = not self._scratch.exists()
        destroyed = gone and scratch_gone
        _log.info(
            "job %s: container exited (%s), destroyed=%s",
            self.job_id,
            "killed" if self._killed else f"code {code}",
            destroyed,
        )
        return ExitInfo(
            exit_code=None if self._killed else code, killed=self._killed, destroyed=destroyed
        )


async def _until(check: Callable[[], bool], *, timeout_s: float = _GONE_WAIT_S) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(_GONE_POLL_S)
    return True


def _changed(pid: int, start: int) -> bool:
    return process_start_time(pid) != start


class LocalLauncher:
    """Starts each job in its own sandboxed process (a :class:`~dvm.node.launcher.Launcher`)."""

    def __init__(
        self,
        *,
        config: LauncherConfig,
        tee: SimulatedTee,
        runtime_dir: Path,
        sandboxed: bool,
        python: Path | None = None,
        python_prefixes: Sequence[Path] | None = None,
    ) -> None:
        self._config = config
        self._tee = tee
        self._runtime_dir = runtime_dir
        self.sandboxed = sandboxed
        self._python = python or Path(sys.executable)
        self._prefixes = tuple(python_prefixes or (Path(sys.prefix), Path(sys.base_prefix)))
        self.runtime_version = _runtime_version()

    @property
    def measurement(self) -> bytes:
        return self._tee.measurement

    @property
    def runtime_image(self) -> str:
        mode = "bubblewrap" if self.sandboxed else "unsandboxed"
        return f"local-{mode}:sha384:{self._tee.measurement.hex()}"

    @classmethod
    def prepare(cls, config: NodeConfig, *, now: dt.datetime) -> LocalLauncher:
        """Probe the sandbox, stage and measure the runtime, load the simulated TEE."""
        launcher = config.launcher
        sandboxed = bubblewrap_usable(launcher.bwrap)
        if not sandboxed and not launcher.allow_unsandboxed:
            raise SandboxUnavailable(
                f"bubblewrap ({launcher.bwrap}) is missing or cannot create namespaces here; "
                "install it, or set launcher.allow_unsandboxed = true to run jobs WITHOUT a "
                "sandbox (not recommended)"
            )
        if not sandboxed:
            _log.warning("bubblewrap unusable: jobs will run UNSANDBOXED (allow_unsandboxed)")
        root = launcher.runtime_root or default_runtime_root()
        runtime_dir = Path(tempfile.mkdtemp(prefix="cdvm-runtime-"))
        try:
            measurement = stage_runtime(root, runtime_dir)
            chain = load_or_mint(config.tee.simulated_dir, now=now)
            tee = SimulatedTee(chain=chain, measurement=measurement)
        except (OSError, AttestationError) as exc:
            shutil.rmtree(runtime_dir, ignore_errors=True)
            raise LaunchError(f"cannot prepare the local launcher: {exc}") from None
        _log.info(
            "local launcher ready: %d runtime files staged, measurement %s, sandboxed=%s",
            len(runtime_files(runtime_dir)),
            measurement.hex(),
            sandboxed,
        )
        return cls(config=launcher, tee=tee, runtime_dir=runtime_dir, sandboxed=sandboxed)

    def _spec(self, launch: LaunchRequest, *, model_path: str, fd: int) -> bytes:
        return build_job_spec(
            JobSpec(
                request=launch.request.event,
                provider=launch.provider,
                relays=launch.relays,
                tee=launch.request.tee,
                evidence_source=EvidenceSource.SIMULATED_FD,
                evidence_fd=fd,
                model=dataclasses.replace(launch.model, path=model_path),
                runtime_version=launch.runtime_version,
                runtime_image=launch.runtime_image,
                limits=launch.limits,
            )
        )

    def argv(self, launch: LaunchRequest) -> list[str]:
        """The command line of ``launch``'s process (sandboxed or not)."""
        if not self.sandboxed:
            return [str(self._python), "-P", "-m", "container"]
        plan = SandboxPlan(
            python=self._python,
            python_prefixes=self._prefixes,
            runtime_dir=self._runtime_dir,
            model_path=Path(launch.model.path),
            model_name=launch.model.name,
        )
        return bwrap_argv(self._config.bwrap, plan)

    async def launch(self, launch: LaunchRequest) -> LocalJob:
        job_id = launch.job_id
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        scratch: Path | None = None
        if self.sandboxed:
            env: dict[str, str] = {}
            cwd = None
            model_path = f"{MODELS_MOUNT}/{launch.model.name}"
        else:
            _log.warning("job %s: running WITHOUT a sandbox (allow_unsandboxed)", job_id)
            scratch = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{job_id[:16]}-"))
            env = sandbox_env(home=str(scratch), pythonpath=str(self._runtime_dir))
            cwd = str(scratch)
            model_path = launch.model.path
        spec = self._spec(launch, model_path=model_path, fd=theirs.fileno())
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv(launch),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                env=env,
                cwd=cwd,
                preexec_fn=rlimits_preexec(
                    memory_bytes=self._config.memory_bytes, cpu_time_s=self._config.cpu_time_s
                ),
            )
        except OSError as exc:
            ours.close()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            raise LaunchError(f"job {job_id}: cannot start the container: {exc}") from None
        finally:
            theirs.close()
        psp_task = asyncio.create_task(psp.serve(self._tee, ours, job_id=job_id))
        job = LocalJob(
            job_id=job_id,
            process=process,
            psp_task=psp_task,
            scratch=scratch,
            kill_after_s=launch.kill_after_s,
        )
        _log.info("job %s: container started (pid %d, %d-byte spec)", job_id, job.pid, len(spec))
        stdin = process.stdin
        if stdin is not None:
            try:
                stdin.write(spec)
                await stdin.drain()
                stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                _log.warning("job %s: the container closed stdin before reading its spec", job_id)
        return job

    async def collect_orphans(self, handles: Mapping[str, str]) -> Sequence[str]:
        killed: list[str] = []
        for job_id, handle in handles.items():
            for stale in Path(tempfile.gettempdir()).glob(f"{_SCRATCH_PREFIX}{job_id[:16]}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            parsed = parse_handle(handle)
            if parsed is None:
                continue
            pid, start = parsed
            if process_start_time(pid) != start:
                continue  # gone, or the pid now names another process: leave it alone
            _log.warning("job %s: killing the orphaned container of a previous run", job_id)
            kill_process_group(pid)
            await _until(functools.partial(_changed, pid, start))
            killed.append(job_id)
        return killed

    async def close(self) -> None:
        shutil.rmtree(self._runtime_dir, ignore_errors=True)
