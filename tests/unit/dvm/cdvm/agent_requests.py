"""Test fixtures: the Kata agent API requests for one cdvm job pod, as the agent's policy sees them.

Each request is the JSON object the Kata agent hands its policy engine as ``input``: the agent
API protobuf message (kata-containers ``src/libs/protocols/protos/agent.proto``) serialized by
the agent, top-level fields by their proto names and the OCI spec by its Go field names
(``Process``, ``Root``, ``Mounts`` with ``type_``, ``Linux``), as in upstream genpolicy's
policy test data; ``CopyFileRequest`` in the agent's policy form (``symlink_src`` in place of
``data``). The values are those containerd and the Kata runtime produce for the Pod that
``dvm.node.kubernetes.pod.build_job_pod`` builds: pod-level RuntimeDefault seccomp, a
read-only root, every capability dropped, uid/gid 10001, the memory-backed ``scratch`` volume
at /tmp, guest-pulled images, ``shared_fs = none`` (files copied with CopyFile).

Built fresh on every call so a test can break one field without touching another's fixture.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dvm.cdvm.pod_contract import (
    JOB_SPEC_ENV,
    WORKLOAD_COMMAND,
    WORKLOAD_ENV,
    WORKLOAD_UID,
    job_pod_name,
)

SANDBOX_ID = hashlib.sha256(b"fixture sandbox").hexdigest()
WORKLOAD_ID = hashlib.sha256(b"fixture workload").hexdigest()
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
NAMESPACE = "cdvm-jobs"
_BUNDLES = "/run/containerd/io.containerd.runtime.v2.task/k8s.io/"

MASKED_PATHS = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]


def fixture_seccomp() -> dict[str, Any]:
    """An excerpt of containerd's RuntimeDefault profile for a container without capabilities."""
    return {
        "DefaultAction": "SCMP_ACT_ERRNO",
        "Architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "Flags": [],
        "Syscalls": [
            {
                "Names": [
                    *("accept4", "brk", "clock_gettime", "close", "connect", "epoll_wait"),
                    *("execve", "exit_group", "futex", "mmap", "openat", "ptrace", "read"),
                    *("recvfrom", "sendto", "socket", "write"),
                ],
                "Action": "SCMP_ACT_ALLOW",
                "Args": [],
            },
            {
                "Names": ["personality"],
                "Action": "SCMP_ACT_ALLOW",
                "Args": [{"Index": 0, "Value": 0, "ValueTwo": 0, "Op": "SCMP_CMP_EQ"}],
            },
            {"Names": ["clone3"], "Action": "SCMP_ACT_ERRNO", "Args": [], "ErrnoRet": 38},
        ],
    }


def _shared_file(container_id: str, name: str) -> str:
    # Kata's runtime names a copied file <container id>-<16 random hex>-<base name>.
    return f"/run/kata-containers/shared/containers/{container_id}-0123456789abcdef-{name}"


def _kernel_mounts() -> list[dict[str, Any]]:
    def mount(destination: str, kind: str, source: str, options: list[str]) -> dict[str, Any]:
        return {"destination": destination, "source": source, "type_": kind, "options": options}

    return [
        mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        mount("/dev/shm", "bind", "/run/kata-containers/sandbox/shm", ["rbind"]),
    ]


def _guest_pull(container_id: str, image: str, kind: str) -> dict[str, Any]:
    metadata = {"io.kubernetes.cri.container-type": kind, "io.kubernetes.cri.image-name": image}
    return {
        "driver": "image_guest_pull",
        "driver_options": ["image_guest_pull=" + json.dumps({"metadata": metadata})],
        "source": image,
        "fstype": "overlay",
        "options": [],
        "mount_point": f"/run/kata-containers/{container_id}/rootfs",
        "fs_group": None,
    }


def _linux(devices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "UIDMappings": [],
        "GIDMappings": [],
        "Sysctl": {
            "net.ipv4.ip_unprivileged_port_start": "0",
            "net.ipv4.ping_group_range": "0 2147483647",
        },
        "Resources": {"Devices": [], "Memory": None, "CPU": None, "Pids": None},
        "CgroupsPath": "kubepods-pod1234.slice:cri-containerd:x",
        "Namespaces": [
            {"Type": "ipc", "Path": ""},
            {"Type": "uts", "Path": ""},
            {"Type": "mount", "Path": ""},
            {"Type": "network", "Path": "/run/netns/cni-0a1b2c3d"},
        ],
        "Devices": devices,
        "Seccomp": fixture_seccomp(),
        "RootfsPropagation": "",
        "MaskedPaths": list(MASKED_PATHS),
        "ReadonlyPaths": list(READONLY_PATHS),
        "MountLabel": "",
        "IntelRdt": None,
    }


def _oci(
    container_id: str,
    annotations: dict[str, str],
    process: dict[str, Any],
    mounts: list[dict[str, Any]],
    hostname: str,
    devices: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "Version": "1.1.0",
        "Process": process,
        "Root": {"Path": f"/run/kata-containers/{container_id}/rootfs", "Readonly": True},
        "Hostname": hostname,
        "Mounts": mounts,
        "Hooks": None,
        "Annotations": annotations,
        "Linux": _linux(devices),
        "Solaris": None,
        "Windows": None,
    }


def _process(
    args: list[str], uid: int, gid: int, env: list[str], caps: list[str]
) -> dict[str, Any]:
    return {
        "Terminal": False,
        "ConsoleSize": None,
        "User": {"UID": uid, "GID": gid, "AdditionalGids": [gid], "Username": ""},
        "Args": args,
        "Env": env,
        "Cwd": "/" if uid != WORKLOAD_UID else "/tmp",  # the image's WORKDIR
        "Capabilities": {
            "Bounding": list(caps),
            "Effective": list(caps),
            "Inheritable": [],
            "Permitted": list(caps),
            "Ambient": [],
        },
        "Rlimits": [],
        "NoNewPrivileges": True,
        "ApparmorProfile": "",
        "OOMScoreAdj": -998,
        "SelinuxLabel": "",
    }


def fixture_create_sandbox(job_id: str) -> dict[str, Any]:
    return {
        "hostname": job_pod_name(job_id),
        "dns": [
            "nameserver 10.96.0.10",
            f"search {NAMESPACE}.svc.cluster.local",
            "options ndots:5",
        ],
        "storages": [
            {
                "driver": "ephemeral",
                "driver_options": [],
                "source": "shm",
                "fstype": "tmpfs",
                "options": ["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"],
                "mount_point": "/run/kata-containers/sandbox/shm",
                "fs_group": None,
            }
        ],
        "sandbox_pidns": False,
        "sandbox_id": SANDBOX_ID,
        "guest_hook_path": "",
        "kernel_modules": [],
        "guest_userns": False,
    }


def _create_container(
    container_id: str, oci: dict[str, Any], storages: list[dict[str, Any]], devices: list[Any]
) -> dict[str, Any]:
    return {
        "container_id": container_id,
        "exec_id": container_id,
        "string_user": None,
        "devices": devices,
        "storages": storages,
        "OCI": oci,
        "sandbox_pidns": False,
        "shared_mounts": [],
    }


def fixture_pause_container(job_id: str) -> dict[str, Any]:
    name = job_pod_name(job_id)
    annotations = {
        "io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-id": SANDBOX_ID,
        "io.kubernetes.cri.sandbox-name": name,
        "io.kubernetes.cri.sandbox-namespace": NAMESPACE,
        "io.kubernetes.cri.sandbox-uid": "6f1f3c52-8a1d-4d43-9b37-0c0f2f7f9a10",
        "io.kubernetes.cri.sandbox-log-directory": f"/var/log/pods/{NAMESPACE}_{name}_6f1f3c52",
        "io.kubernetes.cri.sandbox-cpu-quota": "200000",
        "io.katacontainers.pkg.oci.container_type": "pod_sandbox",
        "io.katacontainers.pkg.oci.bundle_path": _BUNDLES + SANDBOX_ID,
    }
    mounts = [
        *_kernel_mounts(),
        {
            "destination": "/etc/resolv.conf",
            "source": _shared_file(SANDBOX_ID, "resolv.conf"),
            "type_": "bind",
            "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
        },
    ]
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    process = _process(["/pause"], 65535, 65535, env, DEFAULT_CAPS)
    oci = _oci(SANDBOX_ID, annotations, process, mounts, name, [])
    return _create_container(SANDBOX_ID, oci, [_guest_pull(SANDBOX_ID, PAUSE_IMAGE, "sandbox")], [])


def job_spec_env(job_id: str, provider: str) -> str:
    spec = {"v": 1, "request": {"id": job_id, "kind": 5050}, "provider": provider}
    return f"{JOB_SPEC_ENV}={json.dumps(spec, separators=(',', ':'))}"


def fixture_workload_container(
    job_id: str, provider: str, image: str, *, gpu: bool = False
) -> dict[str, Any]:
    name = job_pod_name(job_id)
    annotations = {
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.container-name": "job",
        "io.kubernetes.cri.image-name": image,
        "io.kubernetes.cri.sandbox-id": SANDBOX_ID,
        "io.kubernetes.cri.sandbox-name": name,
        "io.kubernetes.cri.sandbox-namespace": NAMESPACE,
        "io.kubernetes.cri.sandbox-uid": "6f1f3c52-8a1d-4d43-9b37-0c0f2f7f9a10",
        "io.katacontainers.pkg.oci.container_type": "pod_container",
        "io.katacontainers.pkg.oci.bundle_path": _BUNDLES + WORKLOAD_ID,
    }
    mounts = [
        *_kernel_mounts(),
        {
            "destination": "/sys/fs/cgroup",
            "source": "cgroup",
            "type_": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
        {
            "destination": "/tmp",  # the pod's scratch volume
            "source": "/run/kata-containers/sandbox/ephemeral/scratch",
            "type_": "bind",
            "options": ["rbind", "rprivate", "rw"],
        },
    ]
    for destination, base, options in (
        ("/etc/hosts", "hosts", ["rbind", "rprivate", "ro"]),
        ("/dev/termination-log", "termination-log", ["rbind", "rprivate", "rw"]),
        ("/etc/hostname", "hostname", ["rbind", "rprivate", "ro"]),
        ("/etc/resolv.conf", "resolv.conf", ["rbind", "rprivate", "ro"]),
    ):
        mounts.append(
            {
                "destination": destination,
                "source": _shared_file(WORKLOAD_ID, base),
                "type_": "bind",
                "options": options,
            }
        )
    env = [
        *WORKLOAD_ENV,
        f"HOSTNAME={name}",
        "LANG=C.UTF-8",
        "KUBERNETES_SERVICE_HOST=10.96.0.1",
        "KUBERNETES_SERVICE_PORT=443",
        job_spec_env(job_id, provider),
    ]
    process = _process(list(WORKLOAD_COMMAND), WORKLOAD_UID, WORKLOAD_UID, env, [])
    linux_devices: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    if gpu:
        annotations["cdi.k8s.io/vfio0"] = "nvidia.com/pgpu=0"
        devices = [
            {
                "id": "vfio0",
                "type_": "vfio-pci-gk",
                "vm_path": "",
                "container_path": "/dev/vfio/devices/vfio0",
                "options": ["0000:41:00.0=0000:42:00.0"],
            }
        ]
    oci = _oci(WORKLOAD_ID, annotations, process, mounts, "", linux_devices)
    storages = [
        _guest_pull(WORKLOAD_ID, image, "container"),
        {
            "driver": "ephemeral",
            "driver_options": [],
            "source": "tmpfs",
            "fstype": "tmpfs",
            "options": [],
            "mount_point": "/run/kata-containers/sandbox/ephemeral/scratch",
            "fs_group": None,
        },
    ]
    return _create_container(WORKLOAD_ID, oci, storages, devices)


def fixture_copy_file(container_id: str, name: str, *, mode: int = 0o100644) -> dict[str, Any]:
    return {
        "path": _shared_file(container_id, name),
        "file_size": 128,
        "file_mode": mode,
        "dir_mode": 0o40750,
        "uid": 0,
        "gid": 0,
        "offset": 0,
        "symlink_src": "",
    }


def fixture_pod_sequence(
    job_id: str, provider: str, image: str, *, gpu: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """Every request Kata sends to create, start, wait for and delete the job's pod, in order."""
    interface = {
        "device": "eth0",
        "name": "eth0",
        "IPAddresses": [{"family": 0, "address": "10.244.1.23", "mask": "24"}],
        "mtu": 1450,
        "hwAddr": "0a:58:0a:f4:01:17",
        "devicePath": "",
        "type": "",
        "raw_flags": 0,
    }
    routes = [
        {"dest": "", "gateway": "10.244.1.1", "device": "eth0", "source": "", "scope": 0},
        {"dest": "10.244.1.0/24", "gateway": "", "device": "eth0", "source": "10.244.1.23"},
    ]
    neighbors = [
        {
            "toIPAddress": {"family": 0, "address": "10.244.1.1", "mask": ""},
            "device": "eth0",
            "lladdr": "0a:58:0a:f4:01:01",
            "state": 128,
            "flags": 0,
        }
    ]
    sandbox = {"container_id": SANDBOX_ID, "exec_id": SANDBOX_ID}
    workload = {"container_id": WORKLOAD_ID, "exec_id": WORKLOAD_ID}
    return [
        ("GuestDetailsRequest", {"mem_block_size": True, "mem_hotplug_probe": False}),
        ("UpdateInterfaceRequest", {"interface": interface}),
        ("UpdateRoutesRequest", {"routes": {"Routes": routes}}),
        ("AddARPNeighborsRequest", {"neighbors": {"ARPNeighbors": neighbors}}),
        ("CreateSandboxRequest", fixture_create_sandbox(job_id)),
        ("OnlineCPUMemRequest", {"wait": False, "nb_cpus": 2, "cpu_only": False}),
        ("CopyFileRequest", fixture_copy_file(SANDBOX_ID, "resolv.conf")),
        ("CreateContainerRequest", fixture_pause_container(job_id)),
        ("StartContainerRequest", {"container_id": SANDBOX_ID}),
        ("CopyFileRequest", fixture_copy_file(WORKLOAD_ID, "hosts")),
        ("CopyFileRequest", fixture_copy_file(WORKLOAD_ID, "termination-log", mode=0o100666)),
        ("CopyFileRequest", fixture_copy_file(WORKLOAD_ID, "hostname")),
        ("CopyFileRequest", fixture_copy_file(WORKLOAD_ID, "resolv.conf")),
        ("CreateContainerRequest", fixture_workload_container(job_id, provider, image, gpu=gpu)),
        ("StartContainerRequest", {"container_id": WORKLOAD_ID}),
        ("GetOOMEventRequest", {}),
        ("WaitProcessRequest", workload),
        ("StatsContainerRequest", {"container_id": WORKLOAD_ID}),
        ("SignalProcessRequest", {**sandbox, "signal": 15}),
        ("WaitProcessRequest", sandbox),
        ("RemoveContainerRequest", {"container_id": WORKLOAD_ID, "timeout": 0}),
        ("RemoveContainerRequest", {"container_id": SANDBOX_ID, "timeout": 0}),
        ("DestroySandboxRequest", {}),
    ]
