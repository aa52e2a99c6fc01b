"""The local sandbox's seccomp filter: a classic BPF program for ``bwrap --seccomp FD``.

Specs: seccomp(2) (``SECCOMP_SET_MODE_FILTER``; bubblewrap installs the program just before it
execs the job, bwrap(1) ``--seccomp``); ``struct seccomp_data`` and the return actions:
include/uapi/linux/seccomp.h; opcodes: include/uapi/linux/bpf_common.h; ``AUDIT_ARCH_*``:
include/uapi/linux/audit.h; syscall numbers: arch/x86/entry/syscalls/syscall_64.tbl (x86_64)
and include/uapi/asm-generic/unistd.h (arm64, which uses the generic table). A test checks the
numbers against the installed kernel headers where they are present.

Contract: :func:`build_filter` is pure: an architecture in, the program's bytes out (an array
of ``struct sock_filter``, native byte order, as ``seccomp_export_bpf`` writes it). A deny-list,
not an allow-list: the job runs CPython, llama.cpp or onnxruntime, whose exact syscall sets are
not ours to pin; the list removes the kernel interfaces a sandbox escape or a host attack starts
from and that the job never needs:

* a foreign ABI is killed (``SECCOMP_RET_KILL_PROCESS``): another ``AUDIT_ARCH`` (i386 through
  ``int 0x80`` on x86_64, arm32 compat on arm64) and the x32 numbers (bit 30 on x86_64), which
  would otherwise reach the same kernel code under numbers this list does not name;
* namespaces: ``unshare`` and ``clone`` with any ``CLONE_NEW*`` flag, ``setns`` -> ``EPERM``;
  ``clone3`` -> ``ENOSYS`` (its flags sit in memory a filter cannot read; the C library then
  falls back to ``clone``, whose flags are checked: what Docker's and Flatpak's filters do);
* debugging other processes: ``ptrace``, ``process_vm_readv``/``writev``, ``kcmp``,
  ``pidfd_getfd``; kernel keyrings: ``keyctl``, ``add_key``, ``request_key``; ``bpf``,
  ``perf_event_open``, ``userfaultfd``, ``io_uring_*``; mounts: ``mount``, ``umount2``,
  ``pivot_root``, ``chroot`` and the new mount API; ``open_by_handle_at`` and
  ``name_to_handle_at``; modules and kexec; clocks, swap, reboot, quotas, ``syslog``, ``acct``,
  ``vhangup``; and on x86_64 ``iopl``, ``ioperm``, ``uselib`` -> ``EPERM``.

Everything else is allowed. A process calling syscall ``-1`` gets the kernel's own ENOSYS.
"""

from __future__ import annotations

import platform
import struct
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from ..errors import SandboxUnavailable

__all__ = [
    "CLONE_NAMESPACE_FLAGS",
    "DENIED",
    "SYSCALLS",
    "Arch",
    "build_filter",
    "native_arch",
]

# include/uapi/linux/bpf_common.h
_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K

# include/uapi/linux/seccomp.h
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_EPERM = 1
_ENOSYS = 38

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARG0_LOW = 16  # little endian (both architectures below): the low 32 bits come first

_X32_SYSCALL_BIT = 0x40000000
_NO_SYSCALL = 0xFFFFFFFF  # syscall(-1): left to the kernel (ENOSYS), as libseccomp does

# include/uapi/linux/sched.h. The kernel takes clone's flags from the low 32 bits
# (kernel/fork.c), and unshare refuses unknown bits with EINVAL, so one 32-bit JSET suffices.
# CLONE_NEWTIME (0x80) overlaps clone's exit-signal byte: only unshare takes it.
CLONE_NAMESPACE_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)
_CLONE_NEWTIME = 0x00000080


class Arch(StrEnum):
    """The architectures the filter is built for (``platform.machine()`` names)."""

    X86_64 = "x86_64"
    AARCH64 = "aarch64"


# include/uapi/linux/audit.h: EM_X86_64 / EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
_AUDIT_ARCH = {Arch.X86_64: 0xC000003E, Arch.AARCH64: 0xC00000B7}

# Denied with EPERM, in the order the program tests them.
DENIED: tuple[str, ...] = (
    "setns",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "swapon",
    "swapoff",
    "reboot",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "acct",
    "vhangup",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "uselib",
)
_CHECKED_FLAGS = ("clone", "unshare")
_NOSYS = ("clone3",)

_X86_64 = {
    "clone": 56,
    "ptrace": 101,
    "syslog": 103,
    "uselib": 134,
    "vhangup": 153,
    "pivot_root": 155,
    "adjtimex": 159,
    "chroot": 161,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "iopl": 172,
    "ioperm": 173,
    "init_module": 175,
    "delete_module": 176,
    "quotactl": 179,
    "lookup_dcookie": 212,
    "clock_settime": 227,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "perf_event_open": 298,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "clock_adjtime": 305,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
}
_AARCH64 = {
    "lookup_dcookie": 18,
    "umount2": 39,
    "mount": 40,
    "pivot_root": 41,
    "chroot": 51,
    "vhangup": 58,
    "quotactl": 60,
    "acct": 89,
    "unshare": 97,
    "kexec_load": 104,
    "init_module": 105,
    "delete_module": 106,
    "clock_settime": 112,
    "syslog": 116,
    "ptrace": 117,
    "reboot": 142,
    "settimeofday": 170,
    "adjtimex": 171,
    "add_key": 217,
    "request_key": 218,
    "keyctl": 219,
    "clone": 220,
    "swapon": 224,
    "swapoff": 225,
    "perf_event_open": 241,
    "name_to_handle_at": 264,
    "open_by_handle_at": 265,
    "clock_adjtime": 266,
    "setns": 268,
    "process_vm_readv": 270,
    "process_vm_writev": 271,
    "kcmp": 272,
    "finit_module": 273,
    "bpf": 280,
    "userfaultfd": 282,
    "kexec_file_load": 294,
}
# Numbers from 403 on are common to every architecture (the unified table).
_COMMON = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "pidfd_getfd": 438,
    "mount_setattr": 442,
    "quotactl_fd": 443,
}
SYSCALLS: Mapping[Arch, Mapping[str, int]] = MappingProxyType(
    {
        Arch.X86_64: MappingProxyType(_X86_64 | _COMMON),
        Arch.AARCH64: MappingProxyType(_AARCH64 | _COMMON),
    }
)


def native_arch(machine: str | None = None) -> Arch:
    """The architecture of this machine; :class:`SandboxUnavailable` for any other."""
    name = platform.machine() if machine is None else machine
    try:
        return Arch({"amd64": "x86_64", "arm64": "aarch64"}.get(name.lower(), name.lower()))
    except ValueError:
        raise SandboxUnavailable(
            f"no seccomp filter for architecture {name!r} (x86_64 and aarch64 only)"
        ) from None


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _ret(action: int) -> bytes:
    return _insn(_RET_K, 0, 0, action)


def build_filter(arch: Arch) -> bytes:
    """The filter program for ``arch`` (see the module docstring for what it denies)."""
    numbers = SYSCALLS[arch]
    program = [
        _insn(_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        _insn(_JEQ_K, 1, 0, _AUDIT_ARCH[arch]),
        _ret(_RET_KILL_PROCESS),
        _insn(_LD_W_ABS, 0, 0, _OFFSET_NR),
    ]
    if arch is Arch.X86_64:
        program += [
            _insn(_JGE_K, 0, 2, _X32_SYSCALL_BIT),  # below: native numbers, go on
            _insn(_JEQ_K, 1, 0, _NO_SYSCALL),
            _ret(_RET_KILL_PROCESS),
        ]
    for name in DENIED:
        if name in numbers:
            program += [_insn(_JEQ_K, 0, 1, numbers[name]), _ret(_RET_ERRNO | _EPERM)]
    for name in _NOSYS:
        program += [_insn(_JEQ_K, 0, 1, numbers[name]), _ret(_RET_ERRNO | _ENOSYS)]
    for name in _CHECKED_FLAGS:
        mask = CLONE_NAMESPACE_FLAGS | (_CLONE_NEWTIME if name == "unshare" else 0)
        program += [
            _insn(_JEQ_K, 0, 4, numbers[name]),
            _insn(_LD_W_ABS, 0, 0, _OFFSET_ARG0_LOW),
            _insn(_JSET_K, 0, 1, mask),
            _ret(_RET_ERRNO | _EPERM),
            _ret(_RET_ALLOW),
        ]
    program.append(_ret(_RET_ALLOW))
    return b"".join(program)
