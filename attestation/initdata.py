"""Per-job Confidential Containers initdata: the TOML document, its annotation and HOST_DATA.

Specs: CoCo initdata (https://github.com/confidential-containers/trustee/blob/main/kbs/docs/initdata.md:
``version`` "0.1.0", ``algorithm`` one of sha256/sha384/sha512, ``[data]`` a string→string map);
the Kata Containers implementation, which is what runs and so what we follow where it is more
precise than the spec (``src/libs/kata-types/src/initdata.rs`` and ``src/agent/src/initdata.rs``:
the runtime takes the pod annotation ``io.katacontainers.config.hypervisor.cc_init_data`` = base64
of gzip of the TOML, hashes the **exact TOML bytes** with ``algorithm`` and truncates or zero-pads
the digest to the TEE field, 32 bytes for SEV-SNP ``HOST_DATA``; the agent in the guest hashes the
same bytes and reads ``policy.rego`` from ``[data]``); the Kata agent policy
(https://github.com/kata-containers/kata-containers/blob/main/docs/how-to/how-to-use-the-kata-agent-policy.md:
package ``agent_policy``, one rule per agent request, a request whose rule is not true is refused).

Contract (pure: no I/O, clock or randomness). :func:`build_initdata` is deterministic: the same
job id, provider, image digest and GPU flag give the same bytes, so the requester rebuilds the
document the launcher used and compares byte for byte (:func:`verify_initdata`), and
:func:`expected_host_data` is the one place HOST_DATA is derived; with ``algorithm = "sha256"``
(the only one we emit) it equals :func:`attestation.binding.host_data_for_initdata` (DESIGN §3.4:
HOST_DATA = SHA-256(initdata)). The document names the job and the provider, so a report of one
job never verifies for another, and its agent policy

* pins the workload image (``io.kubernetes.cri.image-name`` and the guest-pull storage source)
  to the digest reference, the command, a non-root user and a read-only root filesystem;
* refuses exec, attach (stdin, TTY) and reading the workload's stdout/stderr, policy
  replacement, tracing, metrics, swap, guest clock and RNG writes from the host;
* admits only the environment the launcher sets, and only a job spec whose request id and
  provider are the ones named here.

:func:`parse_initdata` and :func:`decode_initdata_annotation` are parsers of untrusted input:
they raise :class:`~attestation.errors.ParseError` only.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import re
import tomllib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from attestation.binding import host_data_for_initdata
from attestation.errors import BindingMismatch, ParseError

__all__ = [
    "ANNOTATION",
    "HOST_DATA_SIZE_BYTES",
    "INITDATA_VERSION",
    "MAX_INITDATA_BYTES",
    "WORKLOAD_COMMAND",
    "WORKLOAD_ENV",
    "WORKLOAD_UID",
    "Initdata",
    "agent_policy",
    "build_initdata",
    "check_image_reference",
    "decode_initdata_annotation",
    "encode_initdata_annotation",
    "expected_host_data",
    "parse_initdata",
    "verify_initdata",
]

ANNOTATION = "io.katacontainers.config.hypervisor.cc_init_data"
INITDATA_VERSION = "0.1.0"
HOST_DATA_SIZE_BYTES = 32
#: Kubernetes caps all annotations of an object at 256 KiB; the document is far smaller.
MAX_INITDATA_BYTES = 128 * 1024
_ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}

#: What the job image runs, as which user, with which environment (container/Containerfile and
#: dvm/node/k8s_pod.py use these; the agent policy admits nothing else).
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
_JOB_SPEC_ENV = "CDVM_JOB_SPEC"

_HEX64 = re.compile(r"[0-9a-f]{64}")
# OCI distribution reference, restricted: a registry host (with a dot or a port, or localhost),
# a lowercase path, no tag, and a sha256 digest. No normalisation can change such a name, so the
# string the policy pins is the string containerd and the guest puller see.
_IMAGE_REF = re.compile(
    r"(?P<host>(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+"
    r"|localhost)(?::[0-9]{1,5})?)"
    r"(?P<path>(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+)"
    r"@sha256:(?P<digest>[0-9a-f]{64})"
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


def _check_hex(value: str, what: str) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
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
    _check_hex(job_id, "job id")
    _check_hex(provider, "provider")
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
    count([e | some e in input.OCI.Process.Env; startswith(e, "{_JOB_SPEC_ENV}=")]) == 1
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
    startswith(e, "{_JOB_SPEC_ENV}=")
    spec := json.unmarshal(substring(e, {len(_JOB_SPEC_ENV) + 1}, -1))
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


@dataclass(frozen=True, slots=True)
class Initdata:
    """A parsed initdata document: metadata, the data map, and the cdvm fields if present."""

    version: str
    algorithm: str
    data: Mapping[str, str]

    @property
    def job_id(self) -> str | None:
        return self.data.get("cdvm_job")

    @property
    def provider(self) -> str | None:
        return self.data.get("cdvm_provider")

    @property
    def image(self) -> str | None:
        return self.data.get("cdvm_image")

    @property
    def policy(self) -> str | None:
        return self.data.get("policy.rego")


def parse_initdata(document: bytes) -> Initdata:
    """Parse an initdata TOML document (structure only: version, algorithm, string data)."""
    if not isinstance(document, bytes | bytearray):
        raise ParseError("initdata must be bytes")
    if len(document) > MAX_INITDATA_BYTES:
        raise ParseError(f"initdata is {len(document)} bytes (max {MAX_INITDATA_BYTES})")
    try:
        table = tomllib.loads(bytes(document).decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ParseError(f"initdata is not UTF-8 TOML: {type(exc).__name__}") from None
    version = table.get("version")
    if version != INITDATA_VERSION:
        raise ParseError(f"initdata version must be {INITDATA_VERSION!r}")
    algorithm = table.get("algorithm")
    if not isinstance(algorithm, str) or algorithm not in _ALGORITHMS:
        raise ParseError(f"initdata algorithm must be one of {sorted(_ALGORITHMS)}")
    data = table.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ParseError("initdata [data] must map strings to strings")
    unknown = set(table) - {"version", "algorithm", "data"}
    if unknown:
        raise ParseError(f"initdata has unknown top-level keys: {sorted(unknown)}")
    return Initdata(version=version, algorithm=algorithm, data=dict(data))


def expected_host_data(document: bytes) -> bytes:
    """SEV-SNP HOST_DATA for ``document``: its ``algorithm`` digest fitted to 32 bytes.

    Kata hashes the exact TOML bytes (not a canonical form) and truncates longer digests or
    zero-pads shorter ones to the field size; for sha256 this is SHA-256(document).
    """
    parsed = parse_initdata(document)
    if parsed.algorithm == "sha256":
        return host_data_for_initdata(bytes(document))
    digest = _ALGORITHMS[parsed.algorithm](bytes(document)).digest()
    return digest[:HOST_DATA_SIZE_BYTES].ljust(HOST_DATA_SIZE_BYTES, b"\0")


def encode_initdata_annotation(document: bytes) -> str:
    """The pod annotation value: standard base64 of gzip (mtime 0, so it is reproducible)."""
    parse_initdata(document)
    return base64.b64encode(gzip.compress(bytes(document), compresslevel=9, mtime=0)).decode()


def decode_initdata_annotation(value: str) -> bytes:
    """The TOML bytes inside an annotation value (whitespace ignored, as Kata does)."""
    if not isinstance(value, str):
        raise ParseError("initdata annotation must be a string")
    compact = "".join(value.split())
    if len(compact) > 4 * MAX_INITDATA_BYTES:
        raise ParseError("initdata annotation is too long")
    try:
        packed = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("initdata annotation is not standard base64") from None
    try:
        inflater = zlib.decompressobj(wbits=31)  # gzip framing
        document = inflater.decompress(packed, MAX_INITDATA_BYTES + 1)
    except zlib.error:
        raise ParseError("initdata annotation is not gzip") from None
    if len(document) > MAX_INITDATA_BYTES or inflater.unconsumed_tail:
        raise ParseError(f"initdata annotation inflates past {MAX_INITDATA_BYTES} bytes")
    if not inflater.eof:
        raise ParseError("initdata annotation is truncated gzip")
    parse_initdata(document)
    return document


def verify_initdata(
    document: bytes, *, job_id: str, provider: str, image: str, gpu: bool = False
) -> None:
    """Check that ``document`` is exactly the initdata of this job; raise BindingMismatch.

    The requester calls this with the job it asked for, the provider it addressed and the
    image digest it trusts, then checks HOST_DATA against :func:`expected_host_data`.
    """
    expected = build_initdata(job_id=job_id, provider=provider, image=image, gpu=gpu)
    if hmac.compare_digest(bytes(document), expected):
        return
    parsed = parse_initdata(document)
    reasons = [
        f"{what} is {seen!r}, expected {wanted!r}"
        for what, seen, wanted in (
            ("initdata job", parsed.job_id, job_id),
            ("initdata provider", parsed.provider, provider),
            ("initdata image", parsed.image, image),
        )
        if seen != wanted
    ]
    raise BindingMismatch(
        "; ".join(reasons) or "initdata differs from the document this job's launcher builds"
    )
