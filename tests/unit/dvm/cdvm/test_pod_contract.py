"""dvm.cdvm.pod_contract: cdvm/1's per-job initdata document and the agent policy it carries."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable
from typing import Any

import pytest

from attestation.binding import host_data_for_initdata
from attestation.errors import BindingMismatch, ParseError
from attestation.initdata import encode_initdata_annotation, expected_host_data
from dvm.cdvm.pod_contract import (
    JOB_SPEC_ENV,
    WORKLOAD_COMMAND,
    WORKLOAD_ENV,
    WORKLOAD_UID,
    build_initdata,
    check_image_reference,
    verify_job_initdata,
)

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
        (False, "d781daafec2525f1a9dd61e349ec2266a4e4c82f9b515bbf5135c4d6521da5e7"),
        (True, "a8efcca55b2e1f449fe0d091699881f40c726f8692b2bc550cda4173f38c7279"),
    ],
)
def test_known_answer_host_data(gpu: bool, digest: str) -> None:
    # The document is part of the wire contract: requesters of one version rebuild the bytes
    # the launcher of another put on the pod. These digests may change only with the protocol.
    assert expected_host_data(_doc(gpu=gpu)).hex() == digest
    assert host_data_for_initdata(_doc(gpu=gpu)).hex() == digest


def test_job_spec_variable_is_the_containers() -> None:
    assert JOB_SPEC_ENV == "CDVM_JOB_SPEC"
    assert f'startswith(e, "{JOB_SPEC_ENV}=")' in _policy()


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


# --- the agent policy -------------------------------------------------------------------------


def _policy(**overrides: Any) -> str:
    return str(tomllib.loads(_doc(**overrides).decode())["data"]["policy.rego"])


def _default(policy: str, request: str) -> str:
    found = re.search(rf"^default {request} := (true|false)$", policy, re.MULTILINE)
    assert found is not None, request
    return found.group(1)


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
        "CreateContainerRequest",  # only by the rules that pin the image
    ],
)
def test_policy_text_denies_the_endpoints(request_name: str) -> None:
    assert _default(_policy(), request_name) == "false"


def test_policy_text_pins_image_command_and_user() -> None:
    policy = _policy()
    assert f'image := "{IMAGE}"' in policy
    assert f"uid := {WORKLOAD_UID}" in policy
    assert 'annotations["io.kubernetes.cri.image-name"] == image' in policy
    assert "every s in pulls { s.source == image }" in policy
    assert "input.OCI.Process.Args == command" in policy
    command = re.search(r"^command := (\[.*\])$", policy, re.MULTILINE)
    assert command is not None
    assert json.loads(command.group(1)) == list(WORKLOAD_COMMAND)


# OPA evaluation with rego-cpp (PyPI regopy) when it is installed.


def _workload_request() -> dict[str, Any]:
    spec = {"v": 1, "request": {"id": JOB}, "provider": PROVIDER}
    return {
        "container_id": "c" * 64,
        "OCI": {
            "Annotations": {
                "io.kubernetes.cri.container-type": "container",
                "io.kubernetes.cri.image-name": IMAGE,
                "io.kubernetes.cri.sandbox-namespace": "cdvm-jobs",
            },
            "Root": {"Readonly": True, "Path": "/run/kata-containers/c/rootfs"},
            "Process": {
                "Args": list(WORKLOAD_COMMAND),
                "User": {"UID": WORKLOAD_UID, "GID": WORKLOAD_UID},
                "Terminal": False,
                "Env": [
                    *WORKLOAD_ENV,
                    "HOSTNAME=cdvm-job-abc",
                    "KUBERNETES_SERVICE_HOST=10.0.0.1",
                    "CDVM_JOB_SPEC=" + json.dumps(spec),
                ],
            },
            "Mounts": [{"destination": d} for d in ("/proc", "/dev", "/etc/hosts", "/tmp")],
            "Linux": {"Devices": []},
        },
        "storages": [
            {"driver": "image_guest_pull", "source": IMAGE, "fstype": "overlay"},
            {"driver": "ephemeral", "source": "tmpfs", "mount_point": "/run/x/tmp"},
        ],
        "devices": [],
    }


def _allowed(request_name: str, request: dict[str, Any], **overrides: Any) -> bool:
    regopy = pytest.importorskip("regopy")
    interpreter = regopy.Interpreter()
    interpreter.add_module("policy.rego", _policy(**overrides))
    interpreter.set_input_term(json.dumps(request))
    # A query whose value is false reads as "undefined" in rego-cpp; ask for the package.
    output = str(interpreter.query("data.agent_policy"))
    assert output.startswith('{"expressions":'), output
    return bool(json.loads(output)["expressions"][0][request_name])


def test_opa_allows_the_workload_the_launcher_starts() -> None:
    assert _allowed("CreateContainerRequest", _workload_request())


def test_opa_allows_the_sandbox_container() -> None:
    sandbox = {
        "OCI": {"Annotations": {"io.kubernetes.cri.container-type": "sandbox"}},
        "storages": [],
    }
    assert _allowed("CreateContainerRequest", sandbox)


def test_opa_rejects_an_exec_request() -> None:
    exec_request = {
        "container_id": "c" * 64,
        "exec_id": "e" * 64,
        "process": {"Args": ["/bin/sh"], "Env": [], "Cwd": "/"},
    }
    assert not _allowed("ExecProcessRequest", exec_request)
    assert not _allowed("ReadStreamRequest", {"container_id": "c" * 64, "len": 4096})
    assert not _allowed("SetPolicyRequest", {"policy": "package agent_policy"})


def _spec_env(job: str, provider: str) -> str:
    return "CDVM_JOB_SPEC=" + json.dumps({"request": {"id": job}, "provider": provider})


EVIL = "registry.example/evil@sha256:" + "9" * 64
Mutation = Callable[[dict[str, Any]], None]
_MUTATIONS: dict[str, Mutation] = {
    "other image name": lambda r: r["OCI"]["Annotations"].update(
        {"io.kubernetes.cri.image-name": EVIL}
    ),
    "other pulled image": lambda r: r.update(
        storages=[{"driver": "image_guest_pull", "source": EVIL}]
    ),
    "host-supplied rootfs": lambda r: r.update(storages=[]),
    "host block device": lambda r: r["storages"].append({"driver": "blk", "source": "00/01"}),
    "other command": lambda r: r["OCI"]["Process"].update(Args=["/bin/sh", "-c", "env"]),
    "root user": lambda r: r["OCI"]["Process"].update(User={"UID": 0, "GID": 0}),
    "writable root": lambda r: r["OCI"]["Root"].update(Readonly=False),
    "terminal": lambda r: r["OCI"]["Process"].update(Terminal=True),
    "host mount": lambda r: r["OCI"]["Mounts"].append({"destination": "/models"}),
    "PYTHONPATH": lambda r: r["OCI"]["Process"]["Env"].append("PYTHONPATH=/tmp/evil"),
    "other job": lambda r: r["OCI"]["Process"].update(
        Env=[*WORKLOAD_ENV, _spec_env("8" * 64, PROVIDER)]
    ),
    "other provider": lambda r: r["OCI"]["Process"].update(
        Env=[*WORKLOAD_ENV, _spec_env(JOB, "8" * 64)]
    ),
    "two job specs": lambda r: r["OCI"]["Process"]["Env"].append(_spec_env(JOB, PROVIDER)),
    "no job spec": lambda r: r["OCI"]["Process"].update(Env=list(WORKLOAD_ENV)),
    "device": lambda r: r.update(devices=[{"container_path": "/dev/sda"}]),
}


@pytest.mark.parametrize("name", sorted(_MUTATIONS))
def test_opa_rejects_a_workload_that_is_not_this_job(name: str) -> None:
    request = _workload_request()
    _MUTATIONS[name](request)
    assert not _allowed("CreateContainerRequest", request)


def test_opa_gpu_policy_admits_only_nvidia_devices() -> None:
    gpu_request = _workload_request()
    gpu_request["devices"] = [{"container_path": "/dev/nvidia0"}]
    gpu_request["OCI"]["Linux"]["Devices"] = [{"Path": "/dev/nvidiactl"}]
    assert _allowed("CreateContainerRequest", gpu_request, gpu=True)
    assert not _allowed("CreateContainerRequest", gpu_request)
    other = _workload_request()
    other["devices"] = [{"container_path": "/dev/sda"}]
    assert not _allowed("CreateContainerRequest", other, gpu=True)


def test_opa_pull_and_copy_rules() -> None:
    assert _allowed("PullImageRequest", {"image": IMAGE})
    assert not _allowed("PullImageRequest", {"image": "registry.example/evil@sha256:" + "9" * 64})
    base = "/run/kata-containers/shared/containers/"
    assert _allowed("CopyFileRequest", {"path": base + "abc-hosts"})
    assert not _allowed("CopyFileRequest", {"path": base + "../../etc/passwd"})
    assert not _allowed("CopyFileRequest", {"path": "/etc/passwd"})
