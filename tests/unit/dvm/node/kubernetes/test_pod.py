"""dvm.node.kubernetes.pod: the Kubernetes config, the job Pod, and reading Pod status (pure)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.initdata import ANNOTATION, decode_initdata_annotation
from dvm.cdvm.pod_contract import WORKLOAD_COMMAND, WORKLOAD_UID, build_initdata
from dvm.node.errors import ConfigError
from dvm.node.kubernetes.pod import (
    KubernetesConfig,
    PodPhase,
    build_job_pod,
    job_selector,
    parse_kubernetes_config,
    pod_name,
    read_pod,
)

IMAGE = "registry.example/cdvm/job@sha256:" + "a" * 64
JOB = "5" * 64
PROVIDER = "6" * 64


def _pod(config: KubernetesConfig | None = None, *, gpu: bool = False) -> dict[str, Any]:
    return build_job_pod(
        config or KubernetesConfig(image=IMAGE, gpu_runtime_class="kata-qemu-nvidia-gpu-snp"),
        job_id=JOB,
        provider=PROVIDER,
        spec_json='{"v":1}',
        gpu=gpu,
        active_deadline_s=100.2,
    )


def test_config_defaults_and_refusals() -> None:
    config = parse_kubernetes_config({"image": IMAGE})
    assert config.runtime_class == "kata-qemu-snp"
    assert not config.offers_gpu
    assert parse_kubernetes_config(
        {"image": IMAGE, "gpu_runtime_class": "kata-qemu-nvidia-gpu-snp"}
    ).offers_gpu


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "image is required"),
        ({"image": "registry.example/cdvm/job:latest"}, "digest reference"),
        ({"image": IMAGE, "runtime_class": ""}, "runtime_class must name"),
        ({"image": IMAGE, "runtime_class": "Kata_SNP"}, "DNS-1123"),
        ({"image": IMAGE, "cpu": "two"}, "quantity"),
        ({"image": IMAGE, "schedule_timeout_s": 0}, "positive"),
        ({"image": IMAGE, "gpu_resource": "pgpu"}, "domain/name"),
        ({"image": IMAGE, "colour": "blue"}, "unknown key"),
        ({"image": IMAGE, "node_name": "x" * 64}, "label value"),
    ],
)
def test_config_refuses_with_the_key_named(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_kubernetes_config(raw)


def test_gpu_pod_without_gpu_class_is_refused() -> None:
    with pytest.raises(ConfigError, match="gpu_runtime_class"):
        _pod(KubernetesConfig(image=IMAGE), gpu=True)


def test_pod_is_locked_down() -> None:
    pod = _pod()
    spec = pod["spec"]
    assert spec["runtimeClassName"] == "kata-qemu-snp"
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 101
    assert spec["automountServiceAccountToken"] is False
    assert (spec["hostNetwork"], spec["hostPID"], spec["hostIPC"]) == (False, False, False)
    assert all("hostPath" not in v for v in spec["volumes"])
    assert spec["volumes"] == [
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}}
    ]
    (container,) = spec["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == list(WORKLOAD_COMMAND)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == WORKLOAD_UID
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert not container["stdin"]
    assert not container["tty"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CDVM_JOB_SPEC"] == '{"v":1}'
    assert "nvidia.com/pgpu" not in container["resources"]["limits"]


def test_pod_labels_and_initdata() -> None:
    pod = _pod()
    meta = pod["metadata"]
    assert meta["name"] == pod_name(JOB) == "cdvm-job-" + JOB[:40]
    assert meta["labels"]["cdvm.dev/job"] == JOB[:63]
    assert meta["labels"]["cdvm.dev/node"] == "cdvm-node"
    assert meta["annotations"]["cdvm.dev/job-id"] == JOB
    assert decode_initdata_annotation(meta["annotations"][ANNOTATION]) == build_initdata(
        job_id=JOB, provider=PROVIDER, image=IMAGE
    )
    selector = dict(
        part.split("=") for part in job_selector(KubernetesConfig(image=IMAGE), JOB).split(",")
    )
    assert all(meta["labels"][k] == v for k, v in selector.items())


def test_gpu_pod() -> None:
    pod = _pod(gpu=True)
    assert pod["spec"]["runtimeClassName"] == "kata-qemu-nvidia-gpu-snp"
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/pgpu"] == resources["limits"]["nvidia.com/pgpu"] == "1"
    assert decode_initdata_annotation(pod["metadata"]["annotations"][ANNOTATION]) == build_initdata(
        job_id=JOB, provider=PROVIDER, image=IMAGE, gpu=True
    )


def _status(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "status": status}


def test_read_pod_states() -> None:
    view = read_pod(
        _status(
            phase="Pending",
            conditions=[
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "no gpu",
                }
            ],
        )
    )
    assert (view.phase, view.scheduled, view.unschedulable) == (PodPhase.PENDING, False, "no gpu")
    view = read_pod(
        _status(
            phase="Pending",
            conditions=[{"type": "PodScheduled", "status": "True"}],
            containerStatuses=[
                {
                    "name": "job",
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "m"}},
                }
            ],
        )
    )
    assert (view.scheduled, view.waiting_reason, view.waiting_message, view.started) == (
        True,
        "ImagePullBackOff",
        "m",
        False,
    )
    view = read_pod(
        _status(
            phase="Failed",
            reason="DeadlineExceeded",
            containerStatuses=[{"name": "job", "state": {"terminated": {"exitCode": 137}}}],
        )
    )
    assert (view.finished, view.pod_reason, view.exit_code, view.started) == (
        True,
        "DeadlineExceeded",
        137,
        True,
    )
    view = read_pod(
        {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Weird"}}
    )
    assert (view.phase, view.deleting, view.finished) == (PodPhase.UNKNOWN, True, False)
    other = read_pod(
        _status(phase="Running", containerStatuses=[{"name": "sidecar", "state": {"running": {}}}])
    )
    assert not other.started


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["metadata", "status", "spec"]), json_values))
def test_read_pod_never_raises_on_garbage(pod: dict[str, Any]) -> None:
    read_pod(pod)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["image", "cpu", "namespace", "runtime_class", "x"]), json_values
    )
)
def test_config_garbage_raises_only_config_errors(raw: dict[str, Any]) -> None:
    with contextlib.suppress(ConfigError):
        parse_kubernetes_config(raw)
