"""The seccomp filter: its program run by an independent cBPF interpreter, its syscall numbers
against the kernel headers, and the real kernel enforcing it inside bubblewrap."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvm.node.errors import SandboxUnavailable
from dvm.node.local.sandbox import bubblewrap_usable, seccomp_memfd
from dvm.node.local.seccomp import (
    CLONE_NAMESPACE_FLAGS,
    DENIED,
    SYSCALLS,
    Arch,
    build_filter,
    native_arch,
)

# The kernel's answers (include/uapi/linux/seccomp.h), spelled out here, not imported.
ALLOW = 0x7FFF0000
KILL_PROCESS = 0x80000000
EPERM = 0x00050000 | 1
ENOSYS = 0x00050000 | 38
AUDIT_ARCH = {Arch.X86_64: 0xC000003E, Arch.AARCH64: 0xC00000B7}
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_ARM = 0x40000028
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
CLONE_NEWTIME = 0x00000080
THREAD_FLAGS = 0x003D0F00  # what glibc's pthread_create passes to clone (CLONE_VM|FS|FILES|...)

HEADERS = {
    Arch.X86_64: Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    Arch.AARCH64: Path("/usr/include/asm-generic/unistd.h"),  # arm64 uses the generic table
}


def run_filter(program: bytes, *, arch: int, nr: int, args: tuple[int, ...] = ()) -> int:
    """A classic BPF interpreter for the opcodes a seccomp filter may use (only those ours
    emits are implemented; anything else fails the test)."""
    data = struct.pack(
        "<iIQ6Q", nr, arch, 0, *(list(args) + [0] * (6 - len(args)))
    )  # struct seccomp_data on a little-endian machine
    insns = [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]
    assert len(program) % 8 == 0
    assert len(insns) <= 4096  # BPF_MAXINSNS
    acc = 0
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:  # ld [k]
            assert k % 4 == 0
            assert k + 4 <= len(data)
            acc = struct.unpack_from("<I", data, k)[0]
            pc += 1
        elif code in (0x15, 0x35, 0x45):
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += 1 + (jt if taken else jf)
        elif code == 0x06:
            return int(k)
        else:  # pragma: no cover - a failure path
            raise AssertionError(f"unexpected opcode {code:#x}")
        assert pc < len(insns), "ran off the end of the program"


@pytest.mark.parametrize("arch", list(Arch))
def test_every_denied_call_is_eperm_and_nothing_else_is(arch: Arch) -> None:
    program = build_filter(arch)
    numbers = SYSCALLS[arch]
    audit = AUDIT_ARCH[arch]
    for name in DENIED:
        if name in numbers:
            assert run_filter(program, arch=audit, nr=numbers[name]) == EPERM, name
    assert run_filter(program, arch=audit, nr=numbers["clone3"]) == ENOSYS
    denied = {numbers[n] for n in DENIED if n in numbers} | {numbers["clone3"]}
    for nr in range(600):
        if nr not in denied and nr not in (numbers["clone"], numbers["unshare"]):
            assert run_filter(program, arch=audit, nr=nr) == ALLOW, nr


@pytest.mark.parametrize("arch", list(Arch))
def test_namespace_flags_of_clone_and_unshare(arch: Arch) -> None:
    program = build_filter(arch)
    audit = AUDIT_ARCH[arch]
    clone, unshare = SYSCALLS[arch]["clone"], SYSCALLS[arch]["unshare"]
    assert run_filter(program, arch=audit, nr=clone, args=(THREAD_FLAGS,)) == ALLOW
    assert run_filter(program, arch=audit, nr=clone, args=(17,)) == ALLOW  # fork(): SIGCHLD
    assert run_filter(program, arch=audit, nr=unshare, args=(0x400,)) == ALLOW  # CLONE_FILES
    for flag in (CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS, 0x02000000, 0x04000000, 0x08000000):
        assert run_filter(program, arch=audit, nr=clone, args=(THREAD_FLAGS | flag,)) == EPERM
        assert run_filter(program, arch=audit, nr=unshare, args=(flag,)) == EPERM
    # The high half of the 64-bit argument is not what the kernel reads for the flags.
    assert run_filter(program, arch=audit, nr=unshare, args=(CLONE_NEWUSER | 1 << 32,)) == EPERM
    assert run_filter(program, arch=audit, nr=unshare, args=(CLONE_NEWTIME,)) == EPERM
    # For clone, 0x80 is part of the exit signal, not CLONE_NEWTIME.
    assert run_filter(program, arch=audit, nr=clone, args=(0x80 | 17,)) == ALLOW


@given(flags=st.integers(min_value=0, max_value=2**64 - 1))
def test_unshare_is_refused_exactly_when_a_namespace_flag_is_set(flags: int) -> None:
    program = build_filter(Arch.X86_64)
    verdict = run_filter(
        program, arch=AUDIT_ARCH[Arch.X86_64], nr=SYSCALLS[Arch.X86_64]["unshare"], args=(flags,)
    )
    expected = EPERM if flags & (CLONE_NAMESPACE_FLAGS | CLONE_NEWTIME) else ALLOW
    assert verdict == expected


def test_foreign_architectures_and_abis_are_killed() -> None:
    x86 = build_filter(Arch.X86_64)
    arm = build_filter(Arch.AARCH64)
    assert run_filter(x86, arch=AUDIT_ARCH_I386, nr=0) == KILL_PROCESS
    assert run_filter(x86, arch=AUDIT_ARCH[Arch.AARCH64], nr=0) == KILL_PROCESS
    assert run_filter(arm, arch=AUDIT_ARCH_ARM, nr=0) == KILL_PROCESS
    assert run_filter(arm, arch=AUDIT_ARCH[Arch.X86_64], nr=0) == KILL_PROCESS
    x32_unshare = 0x40000000 | 272
    assert run_filter(x86, arch=AUDIT_ARCH[Arch.X86_64], nr=x32_unshare) == KILL_PROCESS
    assert run_filter(x86, arch=AUDIT_ARCH[Arch.X86_64], nr=0x40000000) == KILL_PROCESS
    assert run_filter(x86, arch=AUDIT_ARCH[Arch.X86_64], nr=-1) == ALLOW  # the kernel's ENOSYS


def test_the_program_starts_with_the_architecture_check() -> None:
    # Known answer: ld [4]; jeq #AUDIT_ARCH_X86_64, 1, 0; ret #KILL_PROCESS; ld [0].
    head = build_filter(Arch.X86_64)[:32]
    assert head == (
        struct.pack("=HBBI", 0x20, 0, 0, 4)
        + struct.pack("=HBBI", 0x15, 1, 0, 0xC000003E)
        + struct.pack("=HBBI", 0x06, 0, 0, 0x80000000)
        + struct.pack("=HBBI", 0x20, 0, 0, 0)
    )


def test_known_syscall_numbers() -> None:
    # Known answers from arch/x86/entry/syscalls/syscall_64.tbl and asm-generic/unistd.h.
    assert SYSCALLS[Arch.X86_64]["ptrace"] == 101
    assert SYSCALLS[Arch.X86_64]["unshare"] == 272
    assert SYSCALLS[Arch.X86_64]["bpf"] == 321
    assert SYSCALLS[Arch.AARCH64]["ptrace"] == 117
    assert SYSCALLS[Arch.AARCH64]["unshare"] == 97
    assert SYSCALLS[Arch.AARCH64]["clone"] == 220
    assert {"iopl", "ioperm", "uselib"}.isdisjoint(SYSCALLS[Arch.AARCH64])
    for arch in Arch:
        names = set(SYSCALLS[arch])
        assert names <= set(DENIED) | {"clone", "unshare", "clone3"}
        assert set(DENIED) - names <= {"iopl", "ioperm", "uselib"}


@pytest.mark.parametrize("arch", list(Arch))
def test_syscall_numbers_match_the_kernel_headers(arch: Arch) -> None:
    header = HEADERS[arch]
    if not header.exists():
        pytest.skip(f"{header} is not installed (linux-libc-dev)")
    text = header.read_text(encoding="ascii")
    for name, number in SYSCALLS[arch].items():
        match = re.search(rf"^#define __NR_{name}\s+(\d+)\s*$", text, re.MULTILINE)
        assert match is not None, name
        assert int(match.group(1)) == number, name


def test_native_arch() -> None:
    assert native_arch("x86_64") is Arch.X86_64
    assert native_arch("AMD64") is Arch.X86_64
    assert native_arch("aarch64") is Arch.AARCH64
    assert native_arch("arm64") is Arch.AARCH64
    with pytest.raises(SandboxUnavailable, match="riscv64"):
        native_arch("riscv64")


# --- the real kernel --------------------------------------------------------------------

needs_bwrap = pytest.mark.skipif(not bubblewrap_usable("bwrap"), reason="bubblewrap unusable")

PROBE = r"""
import ctypes, errno, os, socket, sys, json
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return errno.errorcode.get(ctypes.get_errno(), "OK") if result == -1 else "OK"
numbers = json.loads(sys.argv[1])
out = {}
out["unshare_newuser"] = call(numbers["unshare"], 0x10000000)
out["unshare_newns"] = call(numbers["unshare"], 0x00020000)
out["unshare_files"] = call(numbers["unshare"], 0x400)
out["ptrace"] = call(numbers["ptrace"], 3, 999999, 0, 0)  # PEEKUSER, no such pid
out["keyctl"] = call(numbers["keyctl"], 0, -3, 0)  # KEYCTL_GET_KEYRING_ID of the session ring
out["bpf"] = call(numbers["bpf"], 0, 0, 0)
out["mount"] = call(numbers["mount"], 0, 0, 0, 0, 0)
out["setns"] = call(numbers["setns"], 0, 0)
out["clone3"] = call(numbers["clone3"], 0, 0)
import threading, subprocess, tempfile
t = threading.Thread(target=lambda: None); t.start(); t.join()
out["thread"] = "OK"
child = subprocess.run([sys.executable, "-c", "pass"])
out["subprocess"] = "OK" if child.returncode == 0 else "FAIL"
with tempfile.NamedTemporaryFile(dir=os.environ.get("TMPDIR", "/tmp")) as f:
    f.write(b"scratch"); f.flush(); f.seek(0)
    out["file_io"] = "OK" if f.read() == b"scratch" else "FAIL"
print(json.dumps(out))
"""


def _sandboxed(code: str, *args: str, seccomp: bool) -> subprocess.CompletedProcess[str]:
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    fd = seccomp_memfd(build_filter(native_arch()))
    try:
        argv = [bwrap, "--unshare-user", "--unshare-pid", "--die-with-parent"]
        argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        # A checkout (and its venv) under /tmp, as CI's fresh clone may be, stays visible.
        for keep in sorted({sys.prefix, sys.base_prefix}):
            if Path(keep).resolve().is_relative_to("/tmp"):
                argv += ["--ro-bind", keep, keep]
        argv += ["--seccomp", str(fd)] if seccomp else []
        argv += ["--", sys.executable, "-c", code, *args]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=60, check=False, pass_fds=(fd,)
        )
    finally:
        os.close(fd)


@needs_bwrap
def test_the_kernel_enforces_the_filter_inside_bubblewrap() -> None:
    numbers = json.dumps(dict(SYSCALLS[native_arch()]))
    done = _sandboxed(PROBE, numbers, seccomp=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for name in ("unshare_newuser", "unshare_newns", "ptrace", "keyctl", "bpf", "mount", "setns"):
        assert out[name] == "EPERM", (name, out)
    assert out["clone3"] == "ENOSYS"
    assert out["unshare_files"] == "OK"
    assert out["thread"] == out["subprocess"] == out["file_io"] == "OK"


@needs_bwrap
def test_without_the_filter_the_same_probe_gets_further() -> None:
    # The control: these refusals come from the filter, not from bubblewrap's other settings.
    numbers = json.dumps(dict(SYSCALLS[native_arch()]))
    done = _sandboxed(PROBE, numbers, seccomp=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["unshare_newuser"] == "OK"  # a nested user namespace, which the filter stops
    assert out["unshare_newns"] == "OK"
    for name in ("ptrace", "keyctl", "bpf", "mount", "setns"):
        assert out[name] != "EPERM", (name, out)  # the kernel's own answer (ESRCH, EFAULT, ...)
    assert out["clone3"] != "ENOSYS"


@needs_bwrap
def test_a_foreign_abi_call_kills_the_process() -> None:
    if native_arch() is not Arch.X86_64:
        pytest.skip("the x32 check is x86_64's")
    code = "import ctypes; ctypes.CDLL(None).syscall(0x40000000 | 39); print('alive')"
    done = _sandboxed(code, seccomp=True)
    assert "alive" not in done.stdout
    assert done.returncode != 0
