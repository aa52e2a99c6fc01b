"""The local launcher's sandbox: the bubblewrap command line, rlimits, and process identity.

bubblewrap: https://github.com/containers/bubblewrap (bwrap(1)); docs/launch.md §5.

Contract: :func:`bwrap_argv` is pure: paths in, argv out. The sandbox gets new user, pid, ipc,
uts and (where available) cgroup namespaces; a new network namespace when the plan names a
relay socket directory (:mod:`.relay_forwarder`, bound read-only at
:data:`~.relay_forwarder.RELAYS_MOUNT`: the job's only way out), else the host's network; the
seccomp filter of :mod:`.seccomp`, read by bubblewrap from an inherited fd
(:func:`seccomp_memfd`) and installed just before it execs the job; it
sees read-only binds of the system (``/usr`` and its ``/bin``/``/lib`` links, a few files of
``/etc``), the Python installation and virtual environment, the staged runtime packages at
:data:`RUNTIME_MOUNT` and the model at ``/models/<name>``; a private tmpfs at ``/tmp`` is its
scratch (and working directory); the environment is cleared except :func:`sandbox_env`;
``--die-with-parent`` and ``--new-session``; every capability dropped. Nothing else of the host
is visible: in particular not the node's key file nor its data directory, which are never
bound (a test runs Python inside and tries to read them).

:func:`apply_rlimits` runs in the child before ``exec`` (``preexec_fn``): address space
(``RLIMIT_AS``), CPU time (``RLIMIT_CPU``; SIGXCPU at the soft limit, SIGKILL 5 s later) and no
core dumps (``RLIMIT_CORE`` 0: a core file would put the job's plaintext on the host's disk).

:func:`process_start_time` reads ``/proc/<pid>/stat`` (proc(5), field 22) so that a restarted
node kills an orphan only if the pid still names the process it started, not a reused pid.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import SandboxUnavailable
from .relay_forwarder import RELAYS_MOUNT
from .seccomp import build_filter, native_arch

__all__ = [
    "MODELS_MOUNT",
    "RUNTIME_MOUNT",
    "SandboxPlan",
    "apply_rlimits",
    "bubblewrap_usable",
    "bwrap_argv",
    "group_alive",
    "kill_process_group",
    "parse_handle",
    "private_network_here",
    "process_handle",
    "process_start_time",
    "rlimits_preexec",
    "sandbox_env",
    "seccomp_memfd",
]

RUNTIME_MOUNT = "/opt/cdvm"
MODELS_MOUNT = "/models"
_SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
)
_CPU_HARD_MARGIN_S = 5


@dataclass(frozen=True, slots=True)
class SandboxPlan:
    """What one job's sandbox shows. Paths are host paths."""

    python: Path
    python_prefixes: tuple[Path, ...]
    runtime_dir: Path
    model_path: Path
    model_name: str
    module: str = "container"
    relay_dir: Path | None = None  # set: a private network namespace, this directory its door


def sandbox_env(*, home: str, pythonpath: str) -> dict[str, str]:
    """The whole environment of the container process (docs/launch.md §5)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "PYTHONPATH": pythonpath,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "random",
    }


def _system_binds(
    exists: Callable[[str], bool], readlink: Callable[[str], str | None]
) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for path in _SYSTEM_LINKS:
        target = readlink(path)
        if target is not None:
            args += ["--symlink", target, path]
        elif exists(path):
            args += ["--ro-bind", path, path]
    for path in _ETC_FILES:
        args += ["--ro-bind-try", path, path]
    return args


def _readlink(path: str) -> str | None:
    link = Path(path)
    return str(link.readlink()) if link.is_symlink() else None


def bwrap_argv(
    bwrap: str,
    plan: SandboxPlan,
    *,
    seccomp_fd: int,
    exists: Callable[[str], bool] = os.path.exists,
    readlink: Callable[[str], str | None] = _readlink,
) -> list[str]:
    """The full argv: bwrap, its options, then ``python -P -m container`` inside.

    ``seccomp_fd``: an fd the child inherits, holding the filter (:func:`seccomp_memfd`).
    """
    args = [
        bwrap,
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        *(["--unshare-net"] if plan.relay_dir is not None else []),
        "--hostname",
        "cdvm-job",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--clearenv",
    ]
    for key, value in sandbox_env(home="/tmp", pythonpath=RUNTIME_MOUNT).items():  # noqa: S108 - the sandbox's own tmpfs
        args += ["--setenv", key, value]
    args += _system_binds(exists, readlink)
    # bwrap applies mounts in order: the scratch tmpfs goes first, so a Python installation or
    # virtual environment that lives under /tmp (a checkout in /tmp) is bound on top of it
    # rather than hidden by it.
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108
    for prefix in dict.fromkeys(plan.python_prefixes):
        args += ["--ro-bind", str(prefix), str(prefix)]
    args += ["--ro-bind", str(plan.runtime_dir), RUNTIME_MOUNT]
    args += ["--ro-bind", str(plan.model_path), f"{MODELS_MOUNT}/{plan.model_name}"]
    if plan.relay_dir is not None:
        # connect(2) to a socket needs no write access to the file system it lives on.
        args += ["--ro-bind", str(plan.relay_dir), RELAYS_MOUNT]
    args += ["--chdir", "/tmp"]  # noqa: S108
    args += ["--seccomp", str(seccomp_fd)]
    args += ["--", str(plan.python), "-P", "-m", plan.module]
    return args


def seccomp_memfd(program: bytes) -> int:
    """A new memory file holding ``program``, positioned at its start (bubblewrap reads it from
    there); one per launch, since the child shares the file offset. The caller closes it."""
    fd = os.memfd_create("cdvm-seccomp")
    try:
        os.write(fd, program)
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


def bubblewrap_usable(bwrap: str, *, private_network: bool = False) -> bool:
    """True if ``bwrap`` exists, can make user and pid namespaces (and a network namespace
    with ``private_network``) and loads our seccomp filter: it runs ``/bin/true`` so."""
    path = shutil.which(bwrap)
    if path is None:
        return False
    try:
        fd = seccomp_memfd(build_filter(native_arch()))
    except (OSError, SandboxUnavailable):
        return False
    probe = [path, "--unshare-user", "--unshare-pid"]
    probe += ["--unshare-net"] if private_network else []
    probe += ["--ro-bind", "/", "/", "--seccomp", str(fd), "--", "/bin/true"]
    try:
        done = subprocess.run(probe, capture_output=True, timeout=20, check=False, pass_fds=(fd,))  # noqa: S603 - fixed argv
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        os.close(fd)
    return done.returncode == 0


def private_network_here(bwrap: str) -> bool:
    """True if jobs can run in a private network namespace here (``bwrap --unshare-net``)."""
    return bubblewrap_usable(bwrap, private_network=True)


def apply_rlimits(*, memory_bytes: int, cpu_time_s: int) -> None:
    """Set the job's rlimits on the calling process (run in the child before exec)."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_time_s, cpu_time_s + _CPU_HARD_MARGIN_S))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def rlimits_preexec(*, memory_bytes: int, cpu_time_s: int) -> Callable[[], None]:
    def preexec() -> None:
        apply_rlimits(memory_bytes=memory_bytes, cpu_time_s=cpu_time_s)

    return preexec


# --- process identity (orphan collection) -----------------------------------------------


def process_start_time(pid: int, *, proc: Path = Path("/proc")) -> int | None:
    """The start time (clock ticks after boot) of ``pid``; None if it is gone or a zombie."""
    try:
        text = (proc / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces or ')'.
    fields = text[text.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X"):
        return None  # a zombie has finished; only its exit status is left to reap
    try:
        return int(fields[19])  # field 22 of proc(5), counting from 1 with pid and comm
    except (IndexError, ValueError):
        return None


def process_handle(pid: int) -> str:
    """``"<pid>:<start time>"``: the ledger's record of a local container."""
    return f"{pid}:{process_start_time(pid)}"


def parse_handle(handle: str) -> tuple[int, int] | None:
    pid_text, _, start_text = handle.partition(":")
    if not pid_text.isdigit() or not start_text.isdigit():
        return None
    return int(pid_text), int(start_text)


def kill_process_group(pgid: int) -> bool:
    """SIGKILL the process group ``pgid``; False if it no longer exists."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
