"""The per-job Confidential Containers pod contract of cdvm/1: workload, agent policy, initdata.

Specs: DESIGN §3.4 and §4; CoCo initdata (the generic document, its annotation and HOST_DATA are
:mod:`attestation.initdata`); the Kata agent policy
(https://github.com/kata-containers/kata-containers/blob/main/docs/how-to/how-to-use-the-kata-agent-policy.md:
package ``agent_policy``, one rule per agent request, a request whose rule is not true is refused).

Contract (pure: no I/O, clock or randomness). This is what the Kubernetes launcher puts on a job's
pod and what the node and the requester rebuild to check a report's HOST_DATA (through
:mod:`dvm.cdvm.jobcheck`). :func:`build_initdata` is deterministic: the same job id, provider,
image digest and GPU flag give the same bytes (pinned by a known-answer test), so the requester
rebuilds the document the launcher used and compares byte for byte (:func:`verify_job_initdata`).
The document names the job and the provider, so a report of one job never verifies for another,
and its agent policy

* pins the workload image (``io.kubernetes.cri.image-name`` and the guest-pull storage source)
  to the digest reference, the command, a non-root user and a read-only root filesystem;
* refuses exec, attach (stdin, TTY) and reading the workload's stdout/stderr, policy
  replacement, tracing, metrics, swap, guest clock and RNG writes from the host;
* admits only the environment the launcher sets, and only a job spec whose request id and
  provider are the ones named here.

Errors are :mod:`attestation`'s (``ParseError`` for a malformed job id, provider or image
reference, ``BindingMismatch`` for another job's document), like the initdata checks they feed.
"""

from __future__ import annotations

import re

from attestation.errors import BindingMismatch, ParseError
from attestation.initdata import INITDATA_VERSION, parse_initdata, verify_initdata
from dvm.nostr.hex64 import HEX64_PATTERN, is_hex64

__all__ = [
    "JOB_SPEC_ENV",
    "WORKLOAD_COMMAND",
    "WORKLOAD_ENV",
    "WORKLOAD_UID",
    "agent_policy",
    "build_initdata",
    "check_image_reference",
    "verify_job_initdata",
]

#: What the job image runs, as which user, with which environment (container/Containerfile and
#: dvm/node/kubernetes/pod.py use these; the agent policy admits nothing else).
WORKLOAD_COMMAND = ("/opt/cdvm/bin/python", "-m", "container")
WORKLOAD_UID = 10001
WORKLOAD_ENV = (
    "PATH=/opt/cdvm/bin:/usr/local/bin:/usr/bin:/bin",
    "HOME=/tmp",
    "PYTHONDONTWRITEBYTECODE=1",
    "PYTHONUNBUFFERED=1",
    "PYTHONNOUSERSITE=1",
)
#: Variables whose value cannot change what runs (set by the base image or the kubelet).
_FREE_ENV_NAMES = ("HOSTNAME", "LANG", "PYTHON_VERSION", "PYTHON_SHA256", "GPG_KEY")
#: The environment variable that carries the job spec (docs/launch.md §1; container/__main__.py).
JOB_SPEC_ENV = "CDVM_JOB_SPEC"

# OCI distribution reference, restricted: a registry host (with a dot or a port, or localhost),
# a lowercase path, no tag, and a sha256 digest. No normalisation can change such a name, so the
# string the policy pins is the string containerd and the guest puller see.
_IMAGE_REF = re.compile(
    r"(?P<host>(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+"
    r"|localhost)(?::[0-9]{1,5})?)"
    r"(?P<path>(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+)"
    rf"@sha256:(?P<digest>{HEX64_PATTERN})"
)


def check_image_reference(image: str) -> str:
    """Return ``image`` if it is ``registry/path@sha256:<64 hex>``; raise ParseError otherwise.

    Tags (``:latest``, ``name:tag@sha256:...``) are refused: a tag is a pointer the registry
    owner can move, and the requester must be able to name the exact bytes that ran.
    """
    if not isinstance(image, str) or not _IMAGE_REF.fullmatch(image):
        raise ParseError(
            "image must be a digest reference registry.example/path@sha256:<64 hex> "
            f"without a tag, got {image!r}"
        )
    return image


def _hex_field(value: str, what: str) -> str:
    if not is_hex64(value):
        raise ParseError(f"{what} must be 64 lowercase hex characters")
    return value


def _rego_string(value: str) -> str:
    # Only called with checked hex / image references / constants: no quote or backslash.
    return '"' + value + '"'


def _rego_array(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(_rego_string(v) for v in values) + "]"


_ALWAYS = {
    "CreateSandboxRequest": True,
    "DestroySandboxRequest": True,
    "GetOOMEventRequest": True,
    "GuestDetailsRequest": True,
    "OnlineCPUMemRequest": True,
    "MemHotplugByProbeRequest": True,
    "RemoveContainerRequest": True,
    "RemoveStaleVirtiofsShareMountsRequest": True,
    "SignalProcessRequest": True,
    "StartContainerRequest": True,
    "StatsContainerRequest": True,
    "WaitProcessRequest": True,
    # Networking is the host's anyway (the channel is end-to-end encrypted).
    "AddARPNeighborsRequest": True,
    "ListInterfacesRequest": True,
    "ListRoutesRequest": True,
    "UpdateInterfaceRequest": True,
    "UpdateRoutesRequest": True,
    # Decided by the rules below.
    "CreateContainerRequest": False,
    "CopyFileRequest": False,
    "PullImageRequest": False,
    # exec, attach and logs: the operator must not reach into the workload.
    "ExecProcessRequest": False,
    "ReadStreamRequest": False,
    "WriteStreamRequest": False,
    "CloseStdinRequest": False,
    "TtyWinResizeRequest": False,
    # The policy cannot be replaced from outside, nor the guest inspected or steered.
    "SetPolicyRequest": False,
    "AllowRequestsFailingPolicy": False,
    "StartTracingRequest": False,
    "StopTracingRequest": False,
    "GetMetricsRequest": False,
    "AddSwapRequest": False,
    "SetGuestDateTimeRequest": False,
    "ReseedRandomDevRequest": False,
    "PauseContainerRequest": False,
    "ResumeContainerRequest": False,
    "UpdateContainerRequest": False,
    "UpdateEphemeralMountsRequest": False,
}

_MOUNTS = (
    "/proc",
    "/dev",
    "/dev/pts",
    "/dev/mqueue",
    "/dev/shm",  # noqa: S108 - a mount point the policy admits, not a temp file
    "/dev/termination-log",
    "/sys",
    "/sys/fs/cgroup",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/tmp",  # noqa: S108 - the pod's memory-backed scratch mount point
)


def agent_policy(*, job_id: str, provider: str, image: str, gpu: bool = False) -> str:
    """The Rego agent policy of one job (package ``agent_policy``)."""
    _hex_field(job_id, "job id")
    _hex_field(provider, "provider")
    check_image_reference(image)
    defaults = "\n".join(
        f"default {name} := {'true' if value else 'false'}" for name, value in _ALWAYS.items()
    )
    devices = (
        'every d in input.devices { startswith(d.container_path, "/dev/nvidia") }\n'
        '    every d in input.OCI.Linux.Devices { startswith(d.Path, "/dev/nvidia") }'
        if gpu
        else "count(input.devices) == 0\n    count(input.OCI.Linux.Devices) == 0"
    )
    # The Rego comment below names the module's former home on purpose: the text is part of
    # the initdata bytes, so editing it would change HOST_DATA for every job and make this
    # version's requesters refuse pods launched by the previous version's nodes (and back).
    return f"""package agent_policy

# cdvm/1 agent policy for one job, generated by attestation/initdata.py (do not edit: the
# requester rebuilds this document byte for byte and checks HOST_DATA against its digest).

import future.keywords.every
import future.keywords.if
import future.keywords.in

{defaults}

image := {_rego_string(image)}
job := {_rego_string(job_id)}
provider := {_rego_string(provider)}
command := {_rego_array(WORKLOAD_COMMAND)}
uid := {WORKLOAD_UID}
env_exact := {{{", ".join(_rego_string(e) for e in WORKLOAD_ENV)}}}
env_free := {{{", ".join(_rego_string(n) for n in _FREE_ENV_NAMES)}}}
mounts := {{{", ".join(_rego_string(m) for m in _MOUNTS)}}}

PullImageRequest if {{
    input.image == image
}}

CopyFileRequest if {{
    startswith(input.path, "/run/kata-containers/shared/containers/")
    not contains(input.path, "..")
}}

CreateContainerRequest if {{
    input.OCI.Annotations["io.kubernetes.cri.container-type"] == "sandbox"
    count([s | some s in input.storages; s.driver == "image_guest_pull"]) == 0
}}

CreateContainerRequest if {{
    annotations := input.OCI.Annotations
    annotations["io.kubernetes.cri.container-type"] == "container"
    annotations["io.kubernetes.cri.image-name"] == image
    pulls := [s | some s in input.storages; s.driver == "image_guest_pull"]
    count(pulls) == 1
    every s in pulls {{ s.source == image }}
    every s in input.storages {{ s.driver in {{"image_guest_pull", "ephemeral"}} }}
    input.OCI.Root.Readonly == true
    input.OCI.Process.Args == command
    input.OCI.Process.User.UID == uid
    input.OCI.Process.Terminal == false
    every m in input.OCI.Mounts {{ m.destination in mounts }}
    every e in input.OCI.Process.Env {{ allowed_env(e) }}
    count([e | some e in input.OCI.Process.Env; startswith(e, "{JOB_SPEC_ENV}=")]) == 1
    {devices}
}}

allowed_env(e) if {{
    e in env_exact
}}

allowed_env(e) if {{
    name := split(e, "=")[0]
    name in env_free
}}

allowed_env(e) if {{
    startswith(e, "KUBERNETES_")
}}

allowed_env(e) if {{
    startswith(e, "{JOB_SPEC_ENV}=")
    spec := json.unmarshal(substring(e, {len(JOB_SPEC_ENV) + 1}, -1))
    spec.request.id == job
    spec.provider == provider
}}
"""


def build_initdata(*, job_id: str, provider: str, image: str, gpu: bool = False) -> bytes:
    """The initdata TOML of one job (UTF-8 bytes; the document HOST_DATA is the digest of)."""
    policy = agent_policy(job_id=job_id, provider=provider, image=image, gpu=gpu)
    if "'''" in policy:  # cannot happen with checked inputs; a literal string cannot hold it
        raise ParseError("agent policy contains a TOML literal-string delimiter")
    text = (
        f'version = "{INITDATA_VERSION}"\n'
        'algorithm = "sha256"\n'
        "\n"
        "[data]\n"
        'cdvm_version = "cdvm/1"\n'
        f'cdvm_job = "{job_id}"\n'
        f'cdvm_provider = "{provider}"\n'
        f'cdvm_image = "{image}"\n'
        f"\"policy.rego\" = '''\n{policy}'''\n"
    )
    return text.encode("utf-8")


def verify_job_initdata(
    document: bytes, *, job_id: str, provider: str, image: str, gpu: bool = False
) -> None:
    """Check that ``document`` is exactly the initdata of this job; raise BindingMismatch.

    The requester calls this with the job it asked for, the provider it addressed and the
    image digest of the claims, then checks HOST_DATA against
    :func:`attestation.initdata.expected_host_data`. The error names the job fields that differ.
    """
    expected = build_initdata(job_id=job_id, provider=provider, image=image, gpu=gpu)
    try:
        verify_initdata(document, expected=expected)
    except BindingMismatch:
        data = parse_initdata(document).data
        reasons = [
            f"{what} is {seen!r}, expected {wanted!r}"
            for what, seen, wanted in (
                ("initdata job", data.get("cdvm_job"), job_id),
                ("initdata provider", data.get("cdvm_provider"), provider),
                ("initdata image", data.get("cdvm_image"), image),
            )
            if seen != wanted
        ]
        raise BindingMismatch(
            "; ".join(reasons) or "initdata differs from the document this job's launcher builds"
        ) from None
