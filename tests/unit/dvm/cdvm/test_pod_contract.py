"""dvm.cdvm.pod_contract: cdvm/1's per-job initdata document and the agent policy it carries."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from typing import Any

import pytest

from attestation.binding import host_data_for_initdata
from attestation.errors import BindingMismatch, ParseError
from attestation.initdata import encode_initdata_annotation, expected_host_data
from dvm.cdvm.pod_contract import (
    JOB_SPEC_ENV,
    SCRATCH_MOUNT,
    SCRATCH_VOLUME,
    WORKLOAD_COMMAND,
    WORKLOAD_CONTAINER,
    WORKLOAD_ENV,
    WORKLOAD_UID,
    build_initdata,
    check_image_reference,
    job_pod_name,
    verify_job_initdata,
)
from dvm.node.kubernetes.pod import CONTAINER_NAME, KubernetesConfig, build_job_pod, pod_name

JOB = "1" * 64
PROVIDER = "2" * 64
IMAGE = "registry.example:5000/cdvm/job@sha256:" + "3" * 64


def _doc(**overrides: Any) -> bytes:
    args: dict[str, Any] = {"job_id": JOB, "provider": PROVIDER, "image": IMAGE}
    args.update(overrides)
    return build_initdata(**args)


def test_document_is_coco_initdata_naming_job_provider_and_image() -> None:
    table = tomllib.loads(_doc().decode())
    assert table["version"] == "0.1.0"
    assert table["algorithm"] == "sha256"
    data = table["data"]
    assert data["cdvm_job"] == JOB
    assert data["cdvm_provider"] == PROVIDER
    assert data["cdvm_image"] == IMAGE
    assert data["policy.rego"].startswith("package agent_policy\n")
    assert all(isinstance(v, str) for v in data.values())


def test_build_is_deterministic() -> None:
    assert _doc() == _doc()
    assert encode_initdata_annotation(_doc()) == encode_initdata_annotation(_doc())


def test_host_data_is_sha256_of_the_toml_as_the_client_expects() -> None:
    doc = _doc()
    assert expected_host_data(doc) == hashlib.sha256(doc).digest()
    assert expected_host_data(doc) == host_data_for_initdata(doc)
    assert len(expected_host_data(doc)) == 32


@pytest.mark.parametrize(
    ("gpu", "digest"),
    [
        (False, "cfbea47f33e4ec66404c828b79458b8e619091b3c80578eb2dee2a081eea309d"),
        (True, "82c90384bc3a795172329e6289508ff33eac29f382b119e6f7a82dfecc25892e"),
    ],
)
def test_known_answer_host_data(gpu: bool, digest: str) -> None:
    # The document is part of the wire contract: requesters of one version rebuild the bytes
    # the launcher of another put on the pod. These digests may change only with the protocol.
    assert expected_host_data(_doc(gpu=gpu)).hex() == digest
    assert host_data_for_initdata(_doc(gpu=gpu)).hex() == digest


def test_job_spec_variable_is_the_containers() -> None:
    assert JOB_SPEC_ENV == "CDVM_JOB_SPEC"
    assert f'job_spec_prefix := "{JOB_SPEC_ENV}="' in _policy()


@pytest.mark.parametrize(
    "change",
    [
        {"image": "registry.example:5000/cdvm/job@sha256:" + "4" * 64},
        {"job_id": "5" * 64},
        {"provider": "6" * 64},
        {"gpu": True},
    ],
)
def test_changing_image_job_or_provider_changes_host_data(change: dict[str, Any]) -> None:
    assert expected_host_data(_doc(**change)) != expected_host_data(_doc())


def test_verify_job_initdata_accepts_only_this_jobs_document() -> None:
    verify_job_initdata(_doc(), job_id=JOB, provider=PROVIDER, image=IMAGE)
    with pytest.raises(BindingMismatch, match="initdata job"):
        verify_job_initdata(_doc(job_id="7" * 64), job_id=JOB, provider=PROVIDER, image=IMAGE)
    with pytest.raises(BindingMismatch, match="initdata provider"):
        verify_job_initdata(_doc(provider="7" * 64), job_id=JOB, provider=PROVIDER, image=IMAGE)
    with pytest.raises(BindingMismatch, match="initdata image"):
        verify_job_initdata(
            _doc(image="registry.example/x@sha256:" + "7" * 64),
            job_id=JOB,
            provider=PROVIDER,
            image=IMAGE,
        )
    # Same fields, different policy (a GPU document for a CPU job): still refused.
    with pytest.raises(BindingMismatch, match="differs"):
        verify_job_initdata(_doc(gpu=True), job_id=JOB, provider=PROVIDER, image=IMAGE)


@pytest.mark.parametrize(
    "image",
    [
        "registry.example/cdvm/job:latest",
        "registry.example/cdvm/job:v1@sha256:" + "3" * 64,
        "cdvm/job@sha256:" + "3" * 64,  # no registry: docker.io normalisation would rewrite it
        "registry.example/cdvm/job@sha256:" + "3" * 63,
        "registry.example/cdvm/job@sha512:" + "3" * 128,
        "registry.example/Cdvm/job@sha256:" + "3" * 64,
        'registry.example/cdvm/job"@sha256:' + "3" * 64,
    ],
)
def test_tags_and_malformed_references_are_refused(image: str) -> None:
    with pytest.raises(ParseError, match="digest reference"):
        check_image_reference(image)
    with pytest.raises(ParseError):
        _doc(image=image)


def test_bad_job_or_provider_is_refused() -> None:
    with pytest.raises(ParseError, match="job id"):
        _doc(job_id="X" * 64)
    with pytest.raises(ParseError, match="provider"):
        _doc(provider="2" * 63)


# --- the agent policy text (evaluated by both engines in test_agent_policy.py) ---------------


def _policy(**overrides: Any) -> str:
    return str(tomllib.loads(_doc(**overrides).decode())["data"]["policy.rego"])


def _default(policy: str, request: str) -> str:
    found = re.search(rf"^default {request} := (true|false)$", policy, re.MULTILINE)
    assert found is not None, request
    return found.group(1)


def _constant(policy: str, name: str) -> Any:
    found = re.search(rf"^{name} := (.*)$", policy, re.MULTILINE)
    assert found is not None, name
    return json.loads(found.group(1).replace("{", "[").replace("}", "]"))


@pytest.mark.parametrize(
    "request_name",
    [
        "ExecProcessRequest",  # kubectl exec
        "ReadStreamRequest",  # kubectl logs / attach output
        "WriteStreamRequest",  # attach stdin
        "CloseStdinRequest",
        "TtyWinResizeRequest",
        "SetPolicyRequest",  # the policy cannot be swapped after launch
        "AllowRequestsFailingPolicy",
        "StartTracingRequest",
        "GetMetricsRequest",
        "AddSwapRequest",
        "SetGuestDateTimeRequest",
        "ReseedRandomDevRequest",
        "CreateSandboxRequest",  # only by the rule that refuses hooks, modules, shared PID ns
        "CreateContainerRequest",  # only by the rules that pin the pause and the workload
        "CopyFileRequest",  # only by the rule that admits the four /etc and log files
    ],
)
def test_policy_text_denies_the_endpoints(request_name: str) -> None:
    assert _default(_policy(), request_name) == "false"


def test_policy_text_names_this_job_and_its_pod() -> None:
    policy = _policy()
    assert _constant(policy, "image") == IMAGE
    assert _constant(policy, "job") == JOB
    assert _constant(policy, "provider") == PROVIDER
    assert _constant(policy, "pod_name") == job_pod_name(JOB) == "cdvm-job-" + JOB[:40]
    assert _constant(policy, "container_name") == WORKLOAD_CONTAINER
    assert _constant(policy, "command") == list(WORKLOAD_COMMAND)
    assert _constant(policy, "uid") == WORKLOAD_UID
    assert sorted(_constant(policy, "env_exact")) == sorted(WORKLOAD_ENV)
    assert _constant(policy, "job_spec_prefix") == JOB_SPEC_ENV + "="
    assert _constant(policy, "scratch_mount") == SCRATCH_MOUNT
    assert _constant(policy, "scratch_source").endswith("/" + SCRATCH_VOLUME)
    assert _constant(policy, "gpu") is False
    assert _constant(_policy(gpu=True), "gpu") is True


def test_the_pod_the_launcher_builds_is_the_pod_the_policy_names() -> None:
    config = KubernetesConfig(image=IMAGE)
    pod = build_job_pod(
        config, job_id=JOB, provider=PROVIDER, spec_json="{}", gpu=False, active_deadline_s=60
    )
    assert pod["metadata"]["name"] == pod_name(JOB) == job_pod_name(JOB)
    (container,) = pod["spec"]["containers"]
    assert container["name"] == CONTAINER_NAME == WORKLOAD_CONTAINER
    assert container["image"] == IMAGE
    assert container["command"] == list(WORKLOAD_COMMAND)
    assert container["volumeMounts"] == [{"name": SCRATCH_VOLUME, "mountPath": SCRATCH_MOUNT}]
    assert [v["name"] for v in pod["spec"]["volumes"]] == [SCRATCH_VOLUME]
    assert pod["spec"]["volumes"][0]["emptyDir"]["medium"] == "Memory"
    # What the policy requires of the workload, the pod asks of the runtime.
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert (security["runAsUser"], security["runAsGroup"]) == (WORKLOAD_UID, WORKLOAD_UID)
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["spec"]["shareProcessNamespace"] is False
    assert not any(container.get(k) for k in ("stdin", "tty"))
