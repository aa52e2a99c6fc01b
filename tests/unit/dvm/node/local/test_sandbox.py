"""The bubblewrap command line (pure) and process identity."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from dvm.node.local.relay_forwarder import RELAYS_MOUNT
from dvm.node.local.sandbox import (
    MODELS_MOUNT,
    RUNTIME_MOUNT,
    SandboxPlan,
    bwrap_argv,
    group_alive,
    kill_process_group,
    parse_handle,
    process_handle,
    process_start_time,
    sandbox_env,
    seccomp_memfd,
)
from dvm.node.local.seccomp import build_filter, native_arch

PLAN = SandboxPlan(
    python=Path("/venv/bin/python"),
    python_prefixes=(Path("/venv"), Path("/py"), Path("/venv")),
    runtime_dir=Path("/stage/runtime"),
    model_path=Path("/srv/models/gemma.gguf"),
    model_name="gemma",
)


def _argv() -> list[str]:
    links = {"/bin": "usr/bin", "/lib": "usr/lib"}
    return bwrap_argv(
        "bwrap",
        PLAN,
        seccomp_fd=9,
        exists=lambda p: p in {"/lib64", "/bin", "/lib"},
        readlink=links.get,
    )


def _pairs(argv: list[str], flag: str, arity: int) -> list[tuple[str, ...]]:
    return [tuple(argv[i + 1 : i + 1 + arity]) for i, a in enumerate(argv) if a == flag]


def test_namespaces_and_process_options() -> None:
    argv = _argv()
    for flag in (
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ):
        assert flag in argv
    assert "--unshare-net" not in argv  # no relay directory in this plan: the host's network
    assert "--share-net" not in argv
    assert _pairs(argv, "--seccomp", 1) == [("9",)]
    assert argv.index("--seccomp") < argv.index("--")
    assert ("ALL",) in _pairs(argv, "--cap-drop", 1)
    assert argv[0] == "bwrap"
    assert argv[argv.index("--") :] == ["--", "/venv/bin/python", "-P", "-m", "container"]


def test_binds_are_read_only_and_minimal() -> None:
    argv = _argv()
    assert "--bind" not in argv  # nothing writable from the host
    ro = _pairs(argv, "--ro-bind", 2)
    assert ("/usr", "/usr") in ro
    assert ("/lib64", "/lib64") in ro  # a real directory on this fake host
    assert ("usr/bin", "/bin") in _pairs(argv, "--symlink", 2)
    assert ("/stage/runtime", RUNTIME_MOUNT) in ro
    assert ("/srv/models/gemma.gguf", f"{MODELS_MOUNT}/gemma") in ro
    assert ro.count(("/venv", "/venv")) == 1
    assert ("/py", "/py") in ro
    sources = {src for src, _ in ro} | {src for src, _ in _pairs(argv, "--ro-bind-try", 2)}
    assert all(
        src.startswith(("/usr", "/lib", "/etc/", "/venv", "/py", "/stage", "/srv"))
        for src in sources
    )
    assert "/etc/shadow" not in sources
    assert ("/tmp",) in _pairs(argv, "--tmpfs", 1)
    assert ("/tmp",) in _pairs(argv, "--chdir", 1)


def test_an_installation_under_tmp_is_bound_after_the_scratch_tmpfs() -> None:
    # A checkout (and its venv) in /tmp must stay visible: the tmpfs over /tmp has to be
    # mounted before the binds, or it hides them and the container cannot start.
    plan = SandboxPlan(
        python=Path("/tmp/checkout/.venv/bin/python"),
        python_prefixes=(Path("/tmp/checkout/.venv"), Path("/py")),
        runtime_dir=Path("/tmp/stage"),
        model_path=Path("/tmp/models/m.gguf"),
        model_name="m",
    )
    argv = bwrap_argv("bwrap", plan, seccomp_fd=3, exists=lambda p: False, readlink=lambda p: None)
    tmpfs_at = argv.index("--tmpfs")
    bind_positions = [i for i, a in enumerate(argv) if a == "--ro-bind"]
    under_tmp = [i for i in bind_positions if argv[i + 2].startswith("/tmp/")]
    assert under_tmp, "the plan binds something under /tmp"
    assert all(i > tmpfs_at for i in under_tmp)


def test_a_relay_directory_means_a_private_network_and_one_door() -> None:
    plan = dataclasses.replace(PLAN, relay_dir=Path("/run/node/relays-j1"))
    argv = bwrap_argv("bwrap", plan, seccomp_fd=7, exists=lambda p: False, readlink=lambda p: None)
    assert "--unshare-net" in argv
    assert argv.index("--unshare-net") < argv.index("--")
    assert ("/run/node/relays-j1", RELAYS_MOUNT) in _pairs(argv, "--ro-bind", 2)
    assert "--bind" not in argv  # the door is read-only: connect(2) needs no write access
    assert _pairs(argv, "--seccomp", 1) == [("7",)]


def test_the_filter_fd_holds_the_program() -> None:
    program = build_filter(native_arch())
    fd = seccomp_memfd(program)
    try:
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # bubblewrap reads from the current offset
        assert os.read(fd, len(program) + 1) == program
    finally:
        os.close(fd)


def test_environment_is_the_documented_one() -> None:
    argv = _argv()
    env = {pair[0]: pair[1] for pair in _pairs(argv, "--setenv", 2)}
    assert env == sandbox_env(home="/tmp", pythonpath=RUNTIME_MOUNT)
    assert set(env) == {
        "PATH",
        "HOME",
        "TMPDIR",
        "PYTHONPATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
    }
    assert env["PYTHONHASHSEED"] == "random"
    assert argv.index("--clearenv") < argv.index("--setenv")


def test_process_identity_and_handles() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )
    try:
        start = process_start_time(child.pid)
        assert start is not None
        assert process_handle(child.pid) == f"{child.pid}:{start}"
        assert parse_handle(process_handle(child.pid)) == (child.pid, start)
        assert group_alive(child.pid)
        assert kill_process_group(child.pid)
        child.wait(timeout=10)
        assert process_start_time(child.pid) is None
        assert not group_alive(child.pid)
        assert not kill_process_group(child.pid)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_start_time_of_this_process_is_stable() -> None:
    assert process_start_time(os.getpid()) == process_start_time(os.getpid())


def test_start_time_parsing_with_odd_command_names(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    fields = ["S"] + ["0"] * 18 + ["12345"] + ["0"] * 10
    (tmp_path / "42" / "stat").write_text("42 (a) b) c) " + " ".join(fields), encoding="ascii")
    assert process_start_time(42, proc=tmp_path) == 12345
    fields[0] = "Z"
    (tmp_path / "42" / "stat").write_text("42 (x) " + " ".join(fields), encoding="ascii")
    assert process_start_time(42, proc=tmp_path) is None  # a zombie has finished
    (tmp_path / "42" / "stat").write_text("42 (x) S 1", encoding="ascii")
    assert process_start_time(42, proc=tmp_path) is None
    assert process_start_time(43, proc=tmp_path) is None


def test_parse_handle_rejects_garbage() -> None:
    for bad in ("", "12", "12:", ":5", "a:b", "1:2:3", "-1:5"):
        assert parse_handle(bad) is None
