"""Every manifest under k8s/ (each overlay rendered) and every job Pod the launcher builds
validates against the official Kubernetes schemas (kubernetes-validate, strict), and says what
docs/deploy.md promises (RBAC, key Secret, NetworkPolicy selection, quotas, provider.toml)."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from attestation.initdata import ANNOTATION, decode_initdata_annotation
from dvm.node.kubernetes.pod import KubernetesConfig, build_job_pod, parse_kubernetes_config
from tests.k8s.kustomize_render import render

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("snp", "snp-gpu")
#: The oldest version the issue asks for and the newest the validator ships.
VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())


def _validate(doc: dict[str, Any]) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def _key(doc: dict[str, Any]) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def _by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {_key(d): d for d in docs}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(ROOT / "k8s" / "overlays" / request.param)


def test_every_rendered_manifest_validates(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    assert len(docs) >= 15
    for doc in docs:
        _validate(doc)


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with kustomize) not installed"
)
@pytest.mark.parametrize("name", OVERLAYS)
def test_renderer_agrees_with_kubectl_kustomize(name: str) -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / name)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    theirs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert _by_key(theirs) == _by_key(render(ROOT / "k8s" / "overlays" / name))


def test_the_node_may_only_manage_pods_in_the_jobs_namespace(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    docs = _by_key(overlay[1])
    role = docs[("Role", "cdvm-jobs", "cdvm-job-pods")]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "verbs": ["create", "get", "list", "watch", "delete"],
        }
    ]
    binding = docs[("RoleBinding", "cdvm-jobs", "cdvm-node-job-pods")]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "cdvm-node", "namespace": "cdvm"}
    ]
    cluster_role = docs[("ClusterRole", "", "cdvm-read-runtimeclasses")]
    assert cluster_role["rules"] == [
        {"apiGroups": ["node.k8s.io"], "resources": ["runtimeclasses"], "verbs": ["get"]}
    ]
    roles = [d for d in overlay[1] if d["kind"] in ("Role", "ClusterRole")]
    assert len(roles) == 2


def test_node_key_comes_from_a_secret_mounted_as_a_private_file(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    docs = _by_key(overlay[1])
    deployment = docs[("Deployment", "cdvm", "cdvm-node")]
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["key"]["secret"]["secretName"] == "cdvm-node-key"
    assert volumes["key"]["secret"]["defaultMode"] == 0o400
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["key"]["readOnly"] is True
    assert all("env" not in c or not c["env"] for c in pod["containers"])  # no key in env
    config = tomllib.loads(docs[("ConfigMap", "cdvm", "cdvm-node-config")]["data"]["provider.toml"])
    assert config["node"]["key_file"] == mounts["key"]["mountPath"] + "/nsec"
    assert pod["serviceAccountName"] == "cdvm-node"


def test_provider_config_of_each_overlay_parses(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    text = _by_key(docs)[("ConfigMap", "cdvm", "cdvm-node-config")]["data"]["provider.toml"]
    config = tomllib.loads(text)
    assert config["launcher"]["kind"] == "kubernetes"
    kube = parse_kubernetes_config(config["launcher"]["kubernetes"])
    assert kube.namespace == "cdvm-jobs"
    assert kube.offers_gpu == (name == "snp-gpu")
    assert ("sev-snp+nvidia-h100" in config["tee"]["kinds"]) == (name == "snp-gpu")


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


def test_network_policies_select_the_job_pods_the_launcher_creates(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    name, docs = overlay
    config = KubernetesConfig(image="registry.example/cdvm/job@sha256:" + "a" * 64)
    job = build_job_pod(
        config, job_id="1" * 64, provider="2" * 64, spec_json="{}", gpu=False, active_deadline_s=60
    )
    labels = job["metadata"]["labels"]
    policies = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["namespace"] == "cdvm-jobs"
    ]
    applying = [p for p in policies if _selects(p["spec"]["podSelector"], labels)]
    deny = [p for p in applying if not p["spec"].get("egress") and not p["spec"].get("ingress")]
    assert [p["metadata"]["name"] for p in deny] == ["cdvm-jobs-default-deny"]
    assert set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not any(p["spec"].get("ingress") for p in applying)  # nothing may connect in
    allowed = {p["metadata"]["name"] for p in applying if p["spec"].get("egress")}
    expected = {"cdvm-jobs-egress-dns", "cdvm-jobs-egress-relays", "cdvm-jobs-egress-amd-kds"}
    if name == "snp-gpu":
        expected.add("cdvm-jobs-egress-nvidia")
    assert allowed == expected


def test_gpu_overlay_caps_gpus(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = overlay
    quota = _by_key(docs)[("ResourceQuota", "cdvm-jobs", "cdvm-jobs")]["spec"]["hard"]
    assert quota["limits.cpu"] == "16"  # the patch merged, it did not replace
    assert ("requests.nvidia.com/pgpu" in quota) == (name == "snp-gpu")


def test_measurement_pod_validates_and_matches_the_job_vm_size() -> None:
    (pod,) = yaml.safe_load_all((ROOT / "k8s" / "measurement" / "measurement-pod.yaml").read_text())
    _validate(pod)
    docs = _by_key(render(ROOT / "k8s" / "overlays" / "snp"))
    config = tomllib.loads(docs[("ConfigMap", "cdvm", "cdvm-node-config")]["data"]["provider.toml"])
    kube = parse_kubernetes_config(config["launcher"]["kubernetes"])
    spec = pod["spec"]
    assert spec["runtimeClassName"] == kube.runtime_class
    (container,) = spec["containers"]
    assert container["image"] == kube.image
    resources = container["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": kube.cpu, "memory": kube.memory}
    assert ANNOTATION not in pod["metadata"].get("annotations", {})


@pytest.mark.parametrize("gpu", [False, True])
def test_every_job_pod_validates(gpu: bool) -> None:
    config = KubernetesConfig(
        image="registry.example/cdvm/job@sha256:" + "a" * 64,
        gpu_runtime_class="kata-qemu-nvidia-gpu-snp",
    )
    pod = build_job_pod(
        config,
        job_id="3" * 64,
        provider="4" * 64,
        spec_json='{"v":1}',
        gpu=gpu,
        active_deadline_s=1830.5,
    )
    _validate(pod)
    assert decode_initdata_annotation(pod["metadata"]["annotations"][ANNOTATION])
