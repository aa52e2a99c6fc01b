"""The Kubernetes launcher's pure half: its config, the job Pod manifest, and reading Pod status.

Specs: Kubernetes core/v1 Pod (https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/),
Pod lifecycle (phases, ``PodScheduled``/``Unschedulable``, container waiting reasons such as
``ImagePullBackOff``, ``DeadlineExceeded``); Confidential Containers (``runtimeClassName``
``kata-qemu-snp`` / ``kata-qemu-nvidia-gpu-snp``, the ``cc_init_data`` annotation); DESIGN §4;
docs/launch.md §1 (the job spec in ``CDVM_JOB_SPEC``) and docs/deploy.md.

Contract (no I/O): :func:`parse_kubernetes_config` turns the ``[launcher.kubernetes]`` table into
a :class:`KubernetesConfig` or raises :class:`ConfigError` naming the key (a tagged image, an
empty runtime class, requests that are not limits are refused here). :func:`build_job_pod`
returns the one Pod of a job as a plain dict that validates against the official schema
(tests check it with ``kubernetes-validate``): image by digest, ``restartPolicy: Never``,
``activeDeadlineSeconds``, no service-account token, no host namespaces or host paths, a
read-only root, a non-root user, every capability dropped (evidence comes from the CoCo
attestation agent on the guest's loopback, which needs none), requests equal to limits (they
size the VM, and the vCPU count is part of the SNP measurement), the job and node labels used
for garbage collection, the job spec in the environment (never a secret: docs/launch.md) and the
per-job initdata annotation (:mod:`dvm.cdvm.pod_contract`). :func:`read_pod` condenses a Pod's
status into a :class:`PodView` the launcher decides on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from attestation.errors import ParseError
from attestation.initdata import ANNOTATION, encode_initdata_annotation
from dvm.cdvm.pod_contract import (
    JOB_SPEC_ENV,
    WORKLOAD_COMMAND,
    WORKLOAD_ENV,
    WORKLOAD_UID,
    build_initdata,
    check_image_reference,
)

from ..errors import ConfigError

__all__ = [
    "APP_LABEL",
    "CONTAINER_NAME",
    "FATAL_WAITING",
    "JOB_ID_ANNOTATION",
    "JOB_LABEL",
    "MODELS_DIR",
    "NODE_LABEL",
    "PULL_WAITING",
    "KubernetesConfig",
    "PodPhase",
    "PodView",
    "build_job_pod",
    "job_selector",
    "node_selector",
    "parse_kubernetes_config",
    "pod_name",
    "read_pod",
]

APP_LABEL = "app.kubernetes.io/name"
JOB_LABEL = "cdvm.dev/job"
NODE_LABEL = "cdvm.dev/node"
JOB_ID_ANNOTATION = "cdvm.dev/job-id"
CONTAINER_NAME = "job"
#: Where the job image holds its models (container/Containerfile bakes them in by digest).
MODELS_DIR = "/models"
_SCRATCH_MOUNT = "/tmp"  # noqa: S108 - the pod's private memory-backed scratch, not a host path
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?")
_RESOURCE_NAME = re.compile(
    r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    """``[launcher.kubernetes]`` of provider.toml (docs/deploy.md lists every key)."""

    image: str
    namespace: str = "cdvm-jobs"
    node_name: str = "cdvm-node"
    runtime_class: str = "kata-qemu-snp"
    gpu_runtime_class: str | None = None
    gpu_resource: str = "nvidia.com/pgpu"
    cpu: str = "2"
    memory: str = "8Gi"
    scratch_size: str = "512Mi"
    kubeconfig: str | None = None
    schedule_timeout_s: float = 300.0
    image_pull_timeout_s: float = 900.0
    delete_timeout_s: float = 120.0
    api_timeout_s: float = 30.0

    @property
    def offers_gpu(self) -> bool:
        return self.gpu_runtime_class is not None


_KEYS = frozenset(KubernetesConfig.__dataclass_fields__)


def _text(raw: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config key launcher.kubernetes.{key} must be a non-empty string")
    return value


def _required(raw: Mapping[str, Any], key: str, default: str) -> str:
    value = _text(raw, key, default)
    if value is None:  # pragma: no cover - a default is always given
        raise ConfigError(f"config key launcher.kubernetes.{key} is required")
    return value


def _seconds(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"config key launcher.kubernetes.{key} must be a positive number")
    return float(value)


def _dns_label(value: str, key: str) -> str:
    if not _DNS1123_LABEL.fullmatch(value):
        raise ConfigError(
            f"config key launcher.kubernetes.{key} must be a DNS-1123 label "
            "(lowercase letters, digits and '-', at most 63 characters)"
        )
    return value


def parse_kubernetes_config(raw: Mapping[str, Any]) -> KubernetesConfig:
    """Check the ``[launcher.kubernetes]`` table; raise :class:`ConfigError` naming the key."""
    if not isinstance(raw, Mapping):
        raise ConfigError("config key launcher.kubernetes must be a table")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"config table launcher.kubernetes has unknown key(s): {unknown}")
    if "image" not in raw:
        raise ConfigError("config key launcher.kubernetes.image is required (name@sha256:...)")
    d = KubernetesConfig(image="")
    image = _required(raw, "image", "")
    try:
        check_image_reference(image)
    except ParseError as exc:
        raise ConfigError(f"config key launcher.kubernetes.image: {exc}") from None
    if "runtime_class" in raw and not raw["runtime_class"]:
        raise ConfigError(
            "config key launcher.kubernetes.runtime_class must name the Confidential "
            "Containers RuntimeClass (for example kata-qemu-snp)"
        )
    runtime_class = _dns_label(_required(raw, "runtime_class", d.runtime_class), "runtime_class")
    gpu_class = _text(raw, "gpu_runtime_class", None)
    if gpu_class is not None:
        _dns_label(gpu_class, "gpu_runtime_class")
    gpu_resource = _required(raw, "gpu_resource", d.gpu_resource)
    if not _RESOURCE_NAME.fullmatch(gpu_resource):
        raise ConfigError("config key launcher.kubernetes.gpu_resource must be domain/name")
    for key in ("cpu", "memory", "scratch_size"):
        if not _QUANTITY.fullmatch(_required(raw, key, getattr(d, key))):
            raise ConfigError(
                f"config key launcher.kubernetes.{key} must be a Kubernetes quantity (2, 500m, 8Gi)"
            )
    node_name = _required(raw, "node_name", d.node_name)
    if len(node_name) > 63 or not _LABEL_VALUE.fullmatch(node_name):
        raise ConfigError("config key launcher.kubernetes.node_name must be a label value")
    return KubernetesConfig(
        image=image,
        namespace=_dns_label(_required(raw, "namespace", d.namespace), "namespace"),
        node_name=node_name,
        runtime_class=runtime_class,
        gpu_runtime_class=gpu_class,
        gpu_resource=gpu_resource,
        cpu=_required(raw, "cpu", d.cpu),
        memory=_required(raw, "memory", d.memory),
        scratch_size=_required(raw, "scratch_size", d.scratch_size),
        kubeconfig=_text(raw, "kubeconfig", None),
        schedule_timeout_s=_seconds(raw, "schedule_timeout_s", d.schedule_timeout_s),
        image_pull_timeout_s=_seconds(raw, "image_pull_timeout_s", d.image_pull_timeout_s),
        delete_timeout_s=_seconds(raw, "delete_timeout_s", d.delete_timeout_s),
        api_timeout_s=_seconds(raw, "api_timeout_s", d.api_timeout_s),
    )


def pod_name(job_id: str) -> str:
    """``cdvm-job-`` and the first 40 hex digits of the job id (a DNS-1123 label)."""
    return f"cdvm-job-{job_id[:40]}"


def node_selector(config: KubernetesConfig) -> str:
    """Label selector of every job pod this node started (garbage collection)."""
    return f"{APP_LABEL}=cdvm-job,{NODE_LABEL}={config.node_name}"


def job_selector(config: KubernetesConfig, job_id: str) -> str:
    return f"{node_selector(config)},{JOB_LABEL}={job_id[:63]}"


def _env(spec_json: str) -> list[dict[str, str]]:
    env = []
    for entry in WORKLOAD_ENV:
        name, _, value = entry.partition("=")
        env.append({"name": name, "value": value})
    env.append({"name": JOB_SPEC_ENV, "value": spec_json})
    return env


def build_job_pod(
    config: KubernetesConfig,
    *,
    job_id: str,
    provider: str,
    spec_json: str,
    gpu: bool,
    active_deadline_s: float,
) -> dict[str, Any]:
    """The Pod of one job (see the module docstring for what each setting is for)."""
    if gpu and config.gpu_runtime_class is None:
        raise ConfigError(
            "a GPU TEE job needs launcher.kubernetes.gpu_runtime_class "
            "(for example kata-qemu-nvidia-gpu-snp)"
        )
    initdata = build_initdata(job_id=job_id, provider=provider, image=config.image, gpu=gpu)
    quantities: dict[str, str] = {"cpu": config.cpu, "memory": config.memory}
    if gpu:
        quantities[config.gpu_resource] = "1"
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": config.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(WORKLOAD_COMMAND),
        "env": _env(spec_json),
        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": WORKLOAD_UID,
            "runAsGroup": WORKLOAD_UID,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "scratch", "mountPath": _SCRATCH_MOUNT}],
        "stdin": False,
        "tty": False,
        "terminationMessagePolicy": "File",
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(job_id),
            "namespace": config.namespace,
            "labels": {
                APP_LABEL: "cdvm-job",
                "app.kubernetes.io/managed-by": "cdvm-node",
                JOB_LABEL: job_id[:63],
                NODE_LABEL: config.node_name,
            },
            "annotations": {
                ANNOTATION: encode_initdata_annotation(initdata),
                JOB_ID_ANNOTATION: job_id,
            },
        },
        "spec": {
            "runtimeClassName": config.gpu_runtime_class if gpu else config.runtime_class,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": max(1, math.ceil(active_deadline_s)),
            "terminationGracePeriodSeconds": 5,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "hostNetwork": False,
            "hostPID": False,
            "hostIPC": False,
            "shareProcessNamespace": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": WORKLOAD_UID,
                "runAsGroup": WORKLOAD_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                {
                    "name": "scratch",
                    "emptyDir": {"medium": "Memory", "sizeLimit": config.scratch_size},
                }
            ],
        },
    }


# --- reading a Pod's status ---------------------------------------------------------------


class PodPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


#: Waiting reasons that never clear by themselves: fail the launch at once.
FATAL_WAITING = frozenset(
    {"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError"}
)
#: Waiting reasons of a pull that the kubelet retries; fatal after ``image_pull_timeout_s``.
PULL_WAITING = frozenset({"ImagePullBackOff", "ErrImagePull"})


@dataclass(frozen=True, slots=True)
class PodView:
    """What the launcher needs from a Pod object (``status`` of core/v1)."""

    phase: PodPhase
    deleting: bool = False
    unschedulable: str | None = None
    scheduled: bool = False
    waiting_reason: str | None = None
    waiting_message: str = ""
    started: bool = False
    exit_code: int | None = None
    terminated_reason: str | None = None
    pod_reason: str | None = None
    pod_message: str = ""

    @property
    def finished(self) -> bool:
        return self.phase in (PodPhase.SUCCEEDED, PodPhase.FAILED)


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def read_pod(pod: Mapping[str, Any]) -> PodView:
    """Condense a Pod (as the API returns it, a JSON object) into a :class:`PodView`."""
    metadata = _dict(pod.get("metadata"))
    status = _dict(pod.get("status"))
    try:
        phase = PodPhase(status.get("phase", "Pending"))
    except ValueError:
        phase = PodPhase.UNKNOWN
    unschedulable = None
    scheduled = False
    for condition in _list(status.get("conditions")):
        cond = _dict(condition)
        if cond.get("type") != "PodScheduled":
            continue
        if cond.get("status") == "True":
            scheduled = True
        elif cond.get("reason") == "Unschedulable":
            unschedulable = str(cond.get("message") or "no node fits the pod")
    waiting_reason = None
    waiting_message = ""
    started = False
    exit_code = None
    terminated_reason = None
    for raw in _list(status.get("containerStatuses")):
        cstatus = _dict(raw)
        if cstatus.get("name") != CONTAINER_NAME:
            continue
        state = _dict(cstatus.get("state"))
        if "running" in state:
            started = True
        if "terminated" in state:
            terminated = _dict(state["terminated"])
            started = True
            code = terminated.get("exitCode")
            exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
            terminated_reason = terminated.get("reason")
        if "waiting" in state:
            waiting = _dict(state["waiting"])
            waiting_reason = waiting.get("reason")
            waiting_message = str(waiting.get("message") or "")
    return PodView(
        phase=phase,
        deleting=metadata.get("deletionTimestamp") is not None,
        unschedulable=unschedulable,
        scheduled=scheduled,
        waiting_reason=waiting_reason if isinstance(waiting_reason, str) else None,
        waiting_message=waiting_message[:500],
        started=started,
        exit_code=exit_code,
        terminated_reason=terminated_reason if isinstance(terminated_reason, str) else None,
        pod_reason=status.get("reason") if isinstance(status.get("reason"), str) else None,
        pod_message=str(status.get("message") or "")[:500],
    )
