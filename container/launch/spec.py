"""The job spec: what the launcher hands a fresh job container, and nothing more.

Spec: docs/launch.md §1; part of the launch contract (:mod:`container.launch`).

The launcher (``dvm.node``) writes one JSON object to the container's **stdin** and closes it;
the container parses it with :func:`parse_job_spec` before doing anything else. The spec holds
no secret: the request is a public event, the model path is a read-only file inside the
sandbox, and the container makes its own one-time key. Under Kubernetes the same object
arrives in the ``CDVM_JOB_SPEC`` environment variable instead (docs/launch.md).

Shape (``v`` 1)::

    {
      "v": 1,
      "request": {...},            # the job request event, verified again here (NIP-01)
      "provider": "<64 hex>",      # P, the node's public key
      "relays": ["ws://..."],      # where to publish and listen
      "tee": "simulated" | "sev-snp" | "sev-snp+nvidia-h100",
      "evidence": {"source": "simulated-fd", "fd": 3}   # or {"source": "sev-snp"}, ...
      "model": {"name": "...", "runner": "llama" | "onnx", "path": "/models/...",
                "sha256": "<64 hex>", "defaults": {"max_tokens": 128, ...}},
      "runtime": {"version": "...", "image": "..."},
      "limits": {"attestation_timeout_s": 120, "idle_timeout_s": 300, "deadline_s": 1800,
                 "max_input_bytes": 1048576, "max_output_tokens": 1024},
      "relay_sockets": {"ws://...": "/run/cdvm-relays/0.sock"}   # optional, see below
    }

``relay_sockets`` (optional, absent unless the launcher runs the job in a private network
namespace): for every relay URL, the absolute path of a UNIX socket through which the
container reaches that relay (the local node's forwarder; docs/node.md "Sandbox"). The
websocket handshake is still the URL's. When present it must name exactly the relays.

Unknown keys are refused: a field the container ignored would be a setting nobody applied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dvm.nostr.errors import NostrError
from dvm.nostr.event import Event
from dvm.nostr.hex64 import is_hex64

from ..errors import SpecError

__all__ = [
    "MAX_SPEC_BYTES",
    "EvidenceSource",
    "JobSpec",
    "Limits",
    "ModelSpec",
    "RunnerKind",
    "SpecError",
    "build_job_spec",
    "parse_job_spec",
]

MAX_SPEC_BYTES = 256 * 1024


class RunnerKind(StrEnum):
    """Which runner loads the model (:func:`container.runner.load_runner`)."""

    LLAMA = "llama"
    ONNX = "onnx"


class EvidenceSource(StrEnum):
    """Where the container gets evidence for a REPORT_DATA (docs/launch.md)."""

    SIMULATED_FD = "simulated-fd"  # the local launcher's simulated PSP on an inherited socket
    SEV_SNP = "sev-snp"  # configfs-tsm, /dev/sev-guest, or the CoCo attestation agent
    SEV_SNP_NVIDIA = "sev-snp+nvidia"  # the above plus NVIDIA GPU evidence


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """The served model. In a job spec ``path`` is where the container reads the file (inside
    its sandbox or image); a launcher holding one before it builds the spec may have the host's
    path there instead (:class:`dvm.node.launcher.LaunchRequest`)."""

    name: str
    runner: RunnerKind
    path: str
    sha256: str
    defaults: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Limits:
    """A job's limits; the defaults are the node's defaults too (``[limits]``, docs/node.md)."""

    attestation_timeout_s: float = 120.0
    idle_timeout_s: float = 300.0
    deadline_s: float = 1800.0
    max_input_bytes: int = 1024 * 1024
    max_output_tokens: int = 1024


@dataclass(frozen=True, slots=True)
class JobSpec:
    request: Event
    provider: str
    relays: tuple[str, ...]
    tee: str
    evidence_source: EvidenceSource
    evidence_fd: int | None
    model: ModelSpec
    runtime_version: str
    runtime_image: str
    limits: Limits
    relay_sockets: Mapping[str, str] = field(default_factory=dict)


_TOP = frozenset(
    {
        "v",
        "request",
        "provider",
        "relays",
        "tee",
        "evidence",
        "model",
        "runtime",
        "limits",
        "relay_sockets",
    }
)
_MODEL = frozenset({"name", "runner", "path", "sha256", "defaults"})
_LIMITS = frozenset(
    {
        "attestation_timeout_s",
        "idle_timeout_s",
        "deadline_s",
        "max_input_bytes",
        "max_output_tokens",
    }
)


def _object(
    value: object, keys: frozenset[str], what: str, *, required: frozenset[str]
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{what} must be a JSON object")
    unknown = set(value) - keys
    if unknown:
        raise SpecError(f"{what} has unknown keys: {sorted(unknown)}")
    missing = required - set(value)
    if missing:
        raise SpecError(f"{what} is missing: {sorted(missing)}")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{what} must be a non-empty string")
    return value


def _positive(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise SpecError(f"{what} must be a positive number")
    return float(value)


def _relay_sockets(value: object, relays: list[str]) -> dict[str, str]:
    if not isinstance(value, dict):
        raise SpecError("relay_sockets must be a JSON object")
    if set(value) != set(relays):
        raise SpecError("relay_sockets must name exactly the relays")
    for path in value.values():
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise SpecError("relay_sockets values must be absolute paths")
    return dict(value)


def parse_job_spec(raw: bytes) -> JobSpec:
    """Parse and check the spec; the request event is verified (id and signature)."""
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"job spec is {len(raw)} bytes (max {MAX_SPEC_BYTES})")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise SpecError("job spec is not JSON") from None
    top = _object(data, _TOP, "job spec", required=_TOP - {"limits", "relay_sockets"})
    if top["v"] != 1:
        raise SpecError("job spec version must be 1")
    try:
        request = Event.from_dict(top["request"])
    except NostrError as exc:
        raise SpecError(f"job spec request: {exc}") from None
    provider = _text(top["provider"], "provider")
    if not is_hex64(provider):
        raise SpecError("provider must be 64 lowercase hex characters")
    relays = top["relays"]
    if not isinstance(relays, list) or not relays or not all(isinstance(r, str) for r in relays):
        raise SpecError("relays must be a non-empty list of URLs")
    evidence = _object(
        top["evidence"], frozenset({"source", "fd"}), "evidence", required=frozenset({"source"})
    )
    try:
        source = EvidenceSource(evidence["source"])
    except ValueError:
        raise SpecError(f"unknown evidence source {evidence['source']!r}") from None
    fd = evidence.get("fd")
    if source is EvidenceSource.SIMULATED_FD and (
        isinstance(fd, bool) or not isinstance(fd, int) or fd < 3
    ):
        raise SpecError("simulated-fd evidence needs an inherited fd >= 3")
    model = _object(top["model"], _MODEL, "model", required=_MODEL - {"defaults"})
    try:
        runner = RunnerKind(model["runner"])
    except ValueError:
        raise SpecError(f"unknown runner {model['runner']!r}") from None
    sha = _text(model["sha256"], "model.sha256")
    if not is_hex64(sha):
        raise SpecError("model.sha256 must be 64 lowercase hex characters")
    defaults = model.get("defaults", {})
    if not isinstance(defaults, dict):
        raise SpecError("model.defaults must be a JSON object")
    runtime = _object(
        top["runtime"],
        frozenset({"version", "image"}),
        "runtime",
        required=frozenset({"version", "image"}),
    )
    limits_raw = _object(top.get("limits", {}), _LIMITS, "limits", required=frozenset())
    defaults_limits = Limits()
    limits = Limits(
        attestation_timeout_s=_positive(
            limits_raw.get("attestation_timeout_s", defaults_limits.attestation_timeout_s),
            "limits.attestation_timeout_s",
        ),
        idle_timeout_s=_positive(
            limits_raw.get("idle_timeout_s", defaults_limits.idle_timeout_s),
            "limits.idle_timeout_s",
        ),
        deadline_s=_positive(
            limits_raw.get("deadline_s", defaults_limits.deadline_s), "limits.deadline_s"
        ),
        max_input_bytes=int(
            _positive(
                limits_raw.get("max_input_bytes", defaults_limits.max_input_bytes),
                "limits.max_input_bytes",
            )
        ),
        max_output_tokens=int(
            _positive(
                limits_raw.get("max_output_tokens", defaults_limits.max_output_tokens),
                "limits.max_output_tokens",
            )
        ),
    )
    return JobSpec(
        request=request,
        provider=provider,
        relays=tuple(relays),
        tee=_text(top["tee"], "tee"),
        evidence_source=source,
        evidence_fd=fd if isinstance(fd, int) else None,
        model=ModelSpec(
            name=_text(model["name"], "model.name"),
            runner=runner,
            path=_text(model["path"], "model.path"),
            sha256=sha,
            defaults=defaults,
        ),
        runtime_version=_text(runtime["version"], "runtime.version"),
        runtime_image=_text(runtime["image"], "runtime.image"),
        limits=limits,
        relay_sockets=(
            _relay_sockets(top["relay_sockets"], relays) if "relay_sockets" in top else {}
        ),
    )


def build_job_spec(spec: JobSpec) -> bytes:
    """The launcher's side: serialize a spec for the container's stdin."""
    evidence: dict[str, Any] = {"source": spec.evidence_source.value}
    if spec.evidence_fd is not None:
        evidence["fd"] = spec.evidence_fd
    body = {
        "v": 1,
        "request": spec.request.to_dict(),
        "provider": spec.provider,
        "relays": list(spec.relays),
        "tee": spec.tee,
        "evidence": evidence,
        "model": {
            "name": spec.model.name,
            "runner": spec.model.runner.value,
            "path": spec.model.path,
            "sha256": spec.model.sha256,
            "defaults": dict(spec.model.defaults),
        },
        "runtime": {"version": spec.runtime_version, "image": spec.runtime_image},
        "limits": {
            "attestation_timeout_s": spec.limits.attestation_timeout_s,
            "idle_timeout_s": spec.limits.idle_timeout_s,
            "deadline_s": spec.limits.deadline_s,
            "max_input_bytes": spec.limits.max_input_bytes,
            "max_output_tokens": spec.limits.max_output_tokens,
        },
    }
    if spec.relay_sockets:
        body["relay_sockets"] = dict(spec.relay_sockets)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
