"""``cdvm serve`` with ``launcher.kind = "kubernetes"``: the config, the start, one job.

Config: the ``[launcher.kubernetes]`` table is required and parsed, the local launcher's keys
are refused, TEE kinds the launcher cannot run are refused with the reason, model files are not
needed on the node (they are in the job image), and the shipped configs (the example and both
k8s overlays) parse. Start: ``run_serve`` reaches the FAKE API server (tests/k8s/fake_apiserver.py)
through a kubeconfig file, refuses to start when the RuntimeClass is missing (``cdvm serve``
exits 1 with the class's name), collects orphaned pods, announces the models from the config,
and runs a job pod to ``success``; with the production trust, a simulated attestation never
makes the node name a container.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import secrets
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from attestation.initdata import ANNOTATION, decode_initdata_annotation
from attestation.simulated import SimulatedChain, SimulatedTee
from dvm.cdvm.kind7100 import Claims, ModelClaim, RuntimeClaim, build_attestation
from dvm.cli.serve import run_serve
from dvm.node.config import LauncherKind, NodeConfig, load_config, parse_config
from dvm.node.errors import ConfigError
from dvm.node.kubernetes.pod import build_job_pod, pod_name
from dvm.nostr.event import Event
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip89 import HANDLER_KIND, parse_handler
from dvm.nostr.nip90 import (
    FEEDBACK_KIND,
    FeedbackStatus,
    JobFeedback,
    build_job_request,
    parse_job_feedback,
)
from dvm.relay import BackoffPolicy, RelayPool
from tests.integration.conftest import RelayProcess
from tests.k8s.fake_apiserver import FakeCluster, fake_apiserver, running, scheduled, terminated
from tests.k8s.kustomize_render import render
from tests.unit.dvm.node.conftest import key
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[4]
IMAGE = "registry.example/cdvm/job@sha256:" + "ab" * 32
MODEL_SHA256 = "5e" * 32
FAST = BackoffPolicy(initial_s=0.1, factor=2.0, max_s=0.5)


def kube_document(tmp_path: Path, *, relays: list[str] | None = None) -> dict[str, Any]:
    """A valid Kubernetes-launcher document; the model has no file anywhere."""
    key_file = tmp_path / "provider.nsec"
    key_file.write_text(key(1).reveal_hex() + "\n", encoding="ascii")
    key_file.chmod(0o600)
    return {
        "node": {
            "key_file": str(key_file),
            "data_dir": str(tmp_path / "data"),
            "relays": relays or ["ws://127.0.0.1:1"],
        },
        "tee": {"kinds": ["sev-snp"]},
        "launcher": {"kind": "kubernetes", "kubernetes": {"image": IMAGE}},
        "limits": {"grace_s": 2, "deadline_s": 60},
        "models": [{"name": "gemma", "runner": "llama", "sha256": MODEL_SHA256}],
    }


def _with(doc: dict[str, Any], dotted: str, value: object) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    target: Any = doc
    parts = dotted.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    last: Any = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return doc


# --- config ----------------------------------------------------------------------------------


def test_the_kubernetes_table_is_parsed_into_the_launcher_config(tmp_path: Path) -> None:
    doc = _with(kube_document(tmp_path), "launcher.kubernetes.kubeconfig", "kube/config")
    config = parse_config(doc, base_dir=tmp_path)
    assert config.launcher.kind is LauncherKind.KUBERNETES
    kube = config.launcher.kubernetes
    assert kube is not None
    assert (kube.image, kube.runtime_class, kube.namespace) == (IMAGE, "kata-qemu-snp", "cdvm-jobs")
    assert kube.kubeconfig == str(tmp_path / "kube" / "config")  # relative to the config file
    (model,) = config.models
    assert (model.name, model.sha256, model.path) == ("gemma", MODEL_SHA256, Path("/models/gemma"))


def test_the_local_launcher_has_no_kubernetes_config(
    document: dict[str, Any], tmp_path: Path
) -> None:
    assert parse_config(document, base_dir=tmp_path).launcher.kubernetes is None


@pytest.mark.parametrize(
    ("dotted", "value", "message"),
    [
        ("launcher.kubernetes", None, "launcher.kubernetes is required when launcher.kind"),
        ("launcher.kubernetes", "image", "launcher.kubernetes must be a table"),
        ("launcher.kubernetes.image", None, "launcher.kubernetes.image is required"),
        ("launcher.kubernetes.image", "registry.example/job:latest", "without a tag"),
        ("launcher.kubernetes.colour", "blue", "launcher.kubernetes has unknown key(s)"),
        ("launcher.kubernetes.runtime_class", "", "must name the Confidential Containers"),
        ("launcher.bwrap", "bwrap", "launcher.bwrap apply to the local launcher only"),
        ("launcher.memory_bytes", 1 << 30, "launcher.memory_bytes apply to the local launcher"),
        (
            "tee.kinds",
            ["simulated"],
            (
                "the kubernetes launcher offers only sev-snp, sev-snp+nvidia-h100, not "
                "'simulated' (simulated evidence is not confidential and runs only under the "
                "local launcher)"
            ),
        ),
        (
            "tee.kinds",
            ["sev-snp", "sev-snp+nvidia-h100"],
            "offers sev-snp+nvidia-h100 but launcher.kubernetes.gpu_runtime_class is not set",
        ),
        ("models.0.path", "/srv/models/gemma.gguf", "baked into the job image at /models/gemma"),
    ],
)
def test_kubernetes_config_errors_are_clear(
    tmp_path: Path, dotted: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(kube_document(tmp_path), dotted, value), base_dir=tmp_path)
    assert message in str(info.value)


def test_hardware_tees_are_refused_under_the_local_launcher(
    document: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(document, "tee.kinds", ["sev-snp"]), base_dir=tmp_path)
    assert "not 'sev-snp' (hardware TEEs need the kubernetes launcher)" in str(info.value)
    kube_table = {"image": IMAGE}
    with pytest.raises(ConfigError, match=r"launcher\.kind is 'local'"):
        parse_config(_with(document, "launcher.kubernetes", kube_table), base_dir=tmp_path)


def test_gpu_tee_with_a_gpu_runtime_class_and_the_in_image_model_path(tmp_path: Path) -> None:
    doc = _with(kube_document(tmp_path), "tee.kinds", ["sev-snp", "sev-snp+nvidia-h100"])
    doc = _with(doc, "launcher.kubernetes.gpu_runtime_class", "kata-qemu-nvidia-gpu-snp")
    doc = _with(doc, "models.0.path", "/models/gemma")
    config = parse_config(doc, base_dir=tmp_path)
    assert config.tee.kinds == ("sev-snp", "sev-snp+nvidia-h100")
    assert config.models[0].path == Path("/models/gemma")


def _write_toml(path: Path, doc: dict[str, Any]) -> None:
    lines: list[str] = []

    def value(v: object) -> str:
        if isinstance(v, str):
            return '"' + v + '"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(value(i) for i in v) + "]"
        return str(v)

    def table(name: str, body: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        nested = {k: v for k, v in body.items() if isinstance(v, dict)}
        lines.extend(f"{k} = {value(v)}" for k, v in body.items() if k not in nested)
        for sub, inner in nested.items():
            table(f"{name}.{sub}", inner)

    for name, body in doc.items():
        if name == "models":
            for model in body:
                lines.append("[[models]]")
                lines.extend(f"{k} = {value(v)}" for k, v in model.items())
        else:
            table(name, body)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_load_config_needs_no_model_file_under_kubernetes(tmp_path: Path) -> None:
    doc = kube_document(tmp_path)
    config_file = tmp_path / "provider.toml"
    _write_toml(config_file, doc)
    config = load_config(config_file)
    assert config.models[0].sha256 == MODEL_SHA256
    # The key file is still checked.
    Path(doc["node"]["key_file"]).chmod(0o644)
    with pytest.raises(ConfigError, match=r"node\.key_file"):
        load_config(config_file)


def test_the_example_kubernetes_config_parses() -> None:
    path = ROOT / "examples" / "provider-kubernetes.toml"
    config = parse_config(tomllib.loads(path.read_text(encoding="utf-8")), base_dir=path.parent)
    assert config.launcher.kind is LauncherKind.KUBERNETES
    assert config.tee.kinds == ("sev-snp",)
    assert config.models[0].path == Path("/models/gemma-3-270m")


@pytest.mark.parametrize("overlay", ["snp", "snp-gpu"])
def test_each_overlays_provider_config_parses_as_a_whole(overlay: str) -> None:
    docs = render(ROOT / "k8s" / "overlays" / overlay)
    (config_map,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "cdvm-node-config"
    ]
    data = tomllib.loads(config_map["data"]["provider.toml"])
    config = parse_config(data, base_dir=Path("/etc/cdvm"))
    kube = config.launcher.kubernetes
    assert kube is not None
    assert kube.offers_gpu == (overlay == "snp-gpu")


# --- run_serve against the fake API server ---------------------------------------------------


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: fake\n  cluster:\n    server: {server}\n"
        "users:\n"
        "- name: nobody\n  user: {}\n"
        "contexts:\n"
        "- name: fake\n  context:\n    cluster: fake\n    user: nobody\n    namespace: cdvm-jobs\n"
        "current-context: fake\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def server(cluster: FakeCluster) -> Iterator[str]:
    with fake_apiserver(cluster) as url:
        yield url


def serve_config(tmp_path: Path, server: str, relays: list[str] | None = None) -> NodeConfig:
    doc = kube_document(tmp_path, relays=relays)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig.yaml", server)
    doc = _with(doc, "launcher.kubernetes.kubeconfig", str(kubeconfig))
    doc = _with(doc, "launcher.kubernetes.node_name", "node-serve")
    for name, seconds in (("schedule_timeout_s", 5), ("delete_timeout_s", 5), ("api_timeout_s", 5)):
        doc = _with(doc, f"launcher.kubernetes.{name}", seconds)
    return parse_config(doc, base_dir=tmp_path)


@pytest.mark.asyncio
async def test_serve_refuses_to_start_without_the_runtime_class(
    tmp_path: Path, cluster: FakeCluster, server: str
) -> None:
    cluster.runtime_classes = set()
    config = serve_config(tmp_path, server)  # its relay does not exist: never contacted
    with pytest.raises(ConfigError, match="RuntimeClass 'kata-qemu-snp' does not exist"):
        await asyncio.wait_for(run_serve(config, key(1), stop=asyncio.Event()), timeout=30)
    assert cluster.created == []


def test_cdvm_serve_exits_1_with_the_missing_class_named(
    tmp_path: Path, cluster: FakeCluster, server: str
) -> None:
    cluster.runtime_classes = set()
    doc = _with(kube_document(tmp_path), "launcher.kubernetes.kubeconfig", "kubeconfig.yaml")
    write_kubeconfig(tmp_path / "kubeconfig.yaml", server)
    _write_toml(tmp_path / "provider.toml", doc)
    done = subprocess.run(
        [sys.executable, "-m", "dvm.cli", "serve", "--config", str(tmp_path / "provider.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1, done.stderr
    assert "RuntimeClass 'kata-qemu-snp' does not exist in the cluster" in done.stderr


@contextlib.asynccontextmanager
async def serving(config: NodeConfig) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_serve(config, key(1), stop=stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def _simulated_attestation(
    container: SecretKey,
    job_id: str,
    request_nonce: str,
    pod: dict[str, Any],
    chain: SimulatedChain,
) -> Event:
    initdata = decode_initdata_annotation(pod["metadata"]["annotations"][ANNOTATION])
    claims = Claims(
        pubkey=container.public_key.hex(),
        job=job_id,
        nonce=request_nonce,
        provider=key(1).public_key.hex(),
        model=ModelClaim("gemma", MODEL_SHA256),
        runtime=RuntimeClaim("0.1.0", IMAGE),
    )
    item = SimulatedTee(chain, bytes(48)).attest(
        container_pubkey=bytes.fromhex(container.public_key.hex()),
        claims=claims.to_dict(),
        initdata=initdata,
    )
    now = int(time.time())
    return build_attestation(
        claims=claims,
        recipient=PublicKey.from_hex(key(2).public_key.hex()),
        tee="sev-snp",
        expiration=now + 600,
        evidence=[item.to_json()],
        initdata=None,
        created_at=now,
    ).sign(container, aux_rand=secrets.token_bytes(32))


@pytest.mark.relay
@pytest.mark.asyncio
async def test_serve_collects_orphans_announces_and_runs_a_job_pod(
    tmp_path: Path,
    cluster: FakeCluster,
    server: str,
    relay: RelayProcess,
    simulated_chain: SimulatedChain,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="dvm.node.kubernetes.relay_status")
    config = serve_config(tmp_path, server, [relay.url])
    kube = config.launcher.kubernetes
    assert kube is not None
    orphan = build_job_pod(
        kube,
        job_id="0e" * 32,
        provider=key(1).public_key.hex(),
        spec_json="{}",
        gpu=False,
        active_deadline_s=60,
    )
    cluster.add_pod(orphan, script=[(0.01, running())])
    requester = key(2)
    unsigned = build_job_request(
        requester=requester.public_key,
        provider=key(1).public_key,
        tee="sev-snp",
        nonce=secrets.token_bytes(32),
        created_at=int(time.time()),
        params=[("model", "gemma")],
    )
    job = unsigned.sign(requester, aux_rand=secrets.token_bytes(32))
    name = pod_name(job.id)
    cluster.scripts[name] = [(0.05, scheduled()), (0.1, running())]
    seen: list[JobFeedback] = []
    async with RelayPool([relay.url], secret_key=requester, backoff=FAST) as pool:
        handlers = await pool.subscribe(
            [Filter(kinds=(HANDLER_KIND,), authors=(key(1).public_key.hex(),))]
        )
        feedback = await pool.subscribe(
            [Filter(kinds=(FEEDBACK_KIND,), tags=(Filter.tag("e", [job.id]),))]
        )
        async with serving(config):
            async with asyncio.timeout(20):
                announcement = parse_handler(await anext(handlers))
            assert announcement.tee == ("sev-snp",)
            assert [(m.name, m.runner, m.sha256) for m in announcement.models] == [
                ("gemma", "llama", MODEL_SHA256)
            ]
            assert orphan["metadata"]["name"] in cluster.deleted  # collected before announcing
            await pool.publish(job)
            async with asyncio.timeout(20):
                seen.append(parse_job_feedback(await anext(feedback)))
            pod = await wait_for(
                lambda: next((p for p in cluster.created if p["metadata"]["name"] == name), None),
                timeout_s=20,
                what=f"the job pod {name} is created",
            )
            # A perfect simulated attestation: production trust (AMD roots only) refuses it.
            container = SecretKey.generate(secrets.token_bytes)
            nonce = job.tag_values("nonce")[0]
            attestation = _simulated_attestation(container, job.id, nonce, pod, simulated_chain)
            await pool.publish(attestation)
            # The node saw it, its claims matched this job, and the trust gate refused the
            # evidence; only then can "no container named" below mean anything.
            refusal = await wait_for(
                lambda: next(
                    (
                        r.getMessage()
                        for r in caplog.records
                        if f"ignoring kind-7100 event {attestation.id}" in r.getMessage()
                    ),
                    None,
                ),
                timeout_s=20,
                what=f"the node checks and ignores the simulated attestation {attestation.id}",
            )
            # Evidence is checked only once every claim matched the job (relay_status module).
            assert "evidence: UntrustedRoot" in refusal, refusal
            cluster.set_status("cdvm-jobs", name, terminated(0))
            async with asyncio.timeout(20):
                while seen[-1].status is FeedbackStatus.PROCESSING:
                    seen.append(parse_job_feedback(await anext(feedback)))
    assert [(f.status, f.container, f.destroyed) for f in seen] == [
        (FeedbackStatus.PROCESSING, None, False),
        (FeedbackStatus.SUCCESS, None, True),
    ]
    assert cluster.names() == []
    assert name in cluster.deleted
