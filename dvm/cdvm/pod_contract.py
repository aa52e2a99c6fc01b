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
and its agent policy (:mod:`dvm.cdvm.agent_policy`, default deny) admits only this job's pod:

* a sandbox with no guest hooks, no kernel modules, no shared PID namespace, only the shm
  storage, named after the job (:func:`job_pod_name`);
* the pause container and the workload container, the latter pinned to the image digest
  (annotation and guest-pull source), the command, uid/gid 10001, no capability, no OCI hook,
  a read-only root, a refusing seccomp filter, the pod's mounts only, the environment the
  launcher sets with a job spec naming this job and this provider, and a GPU only for a GPU job;
* copies of only the hosts, hostname, resolv.conf and termination-log files, as regular
  non-executable files;
* no exec, attach, stdout/stderr reads, policy replacement, tracing, metrics, swap, guest
  clock or RNG writes, and nothing on the guest's loopback network.

Errors are :mod:`attestation`'s (``ParseError`` for a malformed job id, provider or image
reference, ``BindingMismatch`` for another job's document), like the initdata checks they feed.
"""

from __future__ import annotations

import json
import re

from attestation.errors import BindingMismatch, ParseError
from attestation.initdata import INITDATA_VERSION, parse_initdata, verify_initdata
from dvm.nostr.hex64 import HEX64_PATTERN, is_hex64

from .agent_policy import render_agent_policy

__all__ = [
    "JOB_SPEC_ENV",
    "SCRATCH_MOUNT",
    "SCRATCH_VOLUME",
    "WORKLOAD_COMMAND",
    "WORKLOAD_CONTAINER",
    "WORKLOAD_ENV",
    "WORKLOAD_UID",
    "agent_policy",
    "build_initdata",
    "check_image_reference",
    "job_pod_name",
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
#: Variables whose value cannot change what runs (set by the base image); ``HOSTNAME`` is
#: admitted only as the pod's name.
_FREE_ENV_NAMES = ("LANG", "PYTHON_VERSION", "PYTHON_SHA256", "GPG_KEY")
#: The environment variable that carries the job spec (docs/launch.md §1; container/__main__.py).
JOB_SPEC_ENV = "CDVM_JOB_SPEC"
#: The workload container's name and its one volume, the pod's memory-backed scratch
#: (dvm/node/kubernetes/pod.py builds the pod with these; the agent policy pins them).
WORKLOAD_CONTAINER = "job"
SCRATCH_VOLUME = "scratch"
SCRATCH_MOUNT = "/tmp"  # noqa: S108 - the pod's private memory-backed scratch, not a host path
#: Where Kata mounts a memory-backed emptyDir in the guest (its name appended): an ephemeral
#: storage (genpolicy-settings.json ``emptyDir_memory``).
_SCRATCH_GUEST_PATH = "/run/kata-containers/sandbox/ephemeral/"

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


def _rego(value: str | int | bool | tuple[str, ...] | frozenset[str]) -> str:
    # Only called with checked hex / image references / constants: json.dumps of such a
    # string is also a Rego string literal (no quote or backslash to escape).
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return "{" + ", ".join(json.dumps(v) for v in sorted(value)) + "}"


def job_pod_name(job_id: str) -> str:
    """``cdvm-job-`` and the first 40 hex digits of the job id: the pod's name and hostname."""
    return f"cdvm-job-{job_id[:40]}"


def agent_policy(*, job_id: str, provider: str, image: str, gpu: bool = False) -> str:
    """The Rego agent policy of one job (package ``agent_policy``; :mod:`.agent_policy`)."""
    _hex_field(job_id, "job id")
    _hex_field(provider, "provider")
    check_image_reference(image)
    constants: list[tuple[str, str]] = [
        ("image", _rego(image)),
        ("job", _rego(job_id)),
        ("provider", _rego(provider)),
        ("pod_name", _rego(job_pod_name(job_id))),
        ("container_name", _rego(WORKLOAD_CONTAINER)),
        ("command", _rego(WORKLOAD_COMMAND)),
        ("uid", _rego(WORKLOAD_UID)),
        ("env_exact", _rego(frozenset(WORKLOAD_ENV))),
        ("env_free", _rego(frozenset(_FREE_ENV_NAMES))),
        ("job_spec_prefix", _rego(JOB_SPEC_ENV + "=")),
        ("scratch_mount", _rego(SCRATCH_MOUNT)),
        ("scratch_source", _rego(_SCRATCH_GUEST_PATH + SCRATCH_VOLUME)),
        ("gpu", _rego(gpu)),
    ]
    return render_agent_policy(constants)


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
