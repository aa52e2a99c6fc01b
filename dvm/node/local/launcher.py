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
* :meth:`LocalLauncher.launch` starts the process (new session, rlimits, the PSP socket and the
  seccomp filter as inherited fds; with a private network namespace, the job's
  :class:`~.relay_forwarder.RelayForwarder`, closed by :meth:`LocalJob.wait`), writes the job
  spec to its stdin and closes it. Its stderr lines go to the node log at DEBUG with the job
  id (the container logs ids and sizes only). A timer kills the process group at
  ``deadline_s + grace_s``.
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
import dataclasses
import datetime as dt
import functools
import importlib.metadata
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import container
from attestation.errors import AttestationError
from attestation.simulated import SimulatedTee, load_or_mint, measure_runtime, runtime_files
from container.launch import (
    EvidenceSource,
    JobSpec,
    build_job_spec,
)

from ..config import LauncherConfig, NodeConfig
from ..errors import LaunchError, SandboxUnavailable
from ..launcher import LaunchRequest
from . import psp
from .job import LocalJob, wait_until
from .relay_forwarder import RelayForwarder
from .sandbox import (
    MODELS_MOUNT,
    SandboxPlan,
    bubblewrap_usable,
    bwrap_argv,
    kill_process_group,
    parse_handle,
    private_network_here,
    process_start_time,
    rlimits_preexec,
    sandbox_env,
    seccomp_memfd,
)
from .seccomp import build_filter, native_arch

__all__ = ["LocalJob", "LocalLauncher", "bubblewrap_usable", "default_runtime_root"]

_log = logging.getLogger(__name__)
_SCRATCH_PREFIX = "cdvm-job-"


def default_runtime_root() -> Path:
    """The directory holding the installed ``container`` package (and its siblings)."""
    return Path(container.__file__).resolve().parent.parent


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
        private_network: bool = False,
        python: Path | None = None,
        python_prefixes: Sequence[Path] | None = None,
    ) -> None:
        self._config = config
        self._tee = tee
        self._runtime_dir = runtime_dir
        self.sandboxed = sandboxed
        # A private network namespace (relays through the forwarder) only inside the sandbox.
        self.private_network = sandboxed and private_network
        self._seccomp = build_filter(native_arch()) if sandboxed else b""
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
                f"bubblewrap ({launcher.bwrap}) is missing or cannot create namespaces or load "
                "the seccomp filter here; "
                "install it, or set launcher.allow_unsandboxed = true to run jobs WITHOUT a "
                "sandbox (not recommended)"
            )
        if not sandboxed:
            _log.warning("bubblewrap unusable: jobs will run UNSANDBOXED (allow_unsandboxed)")
        private_network = sandboxed and private_network_here(launcher.bwrap)
        if sandboxed and not private_network:
            _log.warning(
                "no private network namespace here (bwrap --unshare-net failed): jobs share the "
                "host's network, including services on 127.0.0.1"
            )
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
            "local launcher ready: %d runtime files staged, measurement %s, sandboxed=%s, "
            "private network=%s",
            len(runtime_files(runtime_dir)),
            measurement.hex(),
            sandboxed,
            private_network,
        )
        return cls(
            config=launcher,
            tee=tee,
            runtime_dir=runtime_dir,
            sandboxed=sandboxed,
            private_network=private_network,
        )

    def _spec(
        self,
        launch: LaunchRequest,
        *,
        model_path: str,
        fd: int,
        relay_sockets: Mapping[str, str],
    ) -> bytes:
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
                relay_sockets=relay_sockets,
            )
        )

    def argv(
        self, launch: LaunchRequest, *, seccomp_fd: int = -1, relay_dir: Path | None = None
    ) -> list[str]:
        """The command line of ``launch``'s process (sandboxed or not)."""
        if not self.sandboxed:
            return [str(self._python), "-P", "-m", "container"]
        plan = SandboxPlan(
            python=self._python,
            python_prefixes=self._prefixes,
            runtime_dir=self._runtime_dir,
            model_path=Path(launch.model.path),
            model_name=launch.model.name,
            relay_dir=relay_dir,
        )
        return bwrap_argv(self._config.bwrap, plan, seccomp_fd=seccomp_fd)

    async def _doors(self, job_id: str, relays: Sequence[str]) -> tuple[int, RelayForwarder | None]:
        """The seccomp filter's fd (-1 unsandboxed) and the started relay forwarder (None
        without a private network namespace)."""
        if not self.sandboxed:
            return -1, None
        seccomp_fd = -1
        try:
            seccomp_fd = seccomp_memfd(self._seccomp)
            if not self.private_network:
                return seccomp_fd, None
            forwarder = RelayForwarder(relays, job_id=job_id)
            await forwarder.start()
        except (OSError, ValueError) as exc:
            if seccomp_fd >= 0:
                os.close(seccomp_fd)
            raise LaunchError(f"job {job_id}: cannot prepare the sandbox: {exc}") from None
        return seccomp_fd, forwarder

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
        try:
            seccomp_fd, forwarder = await self._doors(job_id, launch.relays)
        except LaunchError:
            ours.close()
            theirs.close()
            raise
        spec = self._spec(
            launch,
            model_path=model_path,
            fd=theirs.fileno(),
            relay_sockets=forwarder.sandbox_paths if forwarder is not None else {},
        )
        argv = self.argv(
            launch,
            seccomp_fd=seccomp_fd,
            relay_dir=forwarder.directory if forwarder is not None else None,
        )
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(theirs.fileno(), *([seccomp_fd] if seccomp_fd >= 0 else [])),
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
            if forwarder is not None:
                await forwarder.close()
            raise LaunchError(f"job {job_id}: cannot start the container: {exc}") from None
        finally:
            theirs.close()
            if seccomp_fd >= 0:
                os.close(seccomp_fd)
        psp_task = asyncio.create_task(psp.serve(self._tee, ours, job_id=job_id))
        job = LocalJob(
            job_id=job_id,
            process=process,
            psp_task=psp_task,
            scratch=scratch,
            kill_after_s=launch.kill_after_s,
            forwarder=forwarder,
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
            await wait_until(functools.partial(_changed, pid, start))
            killed.append(job_id)
        return killed

    async def close(self) -> None:
        shutil.rmtree(self._runtime_dir, ignore_errors=True)
