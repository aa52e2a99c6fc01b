"""The Kubernetes launcher against the in-process FAKE API server (tests/k8s/fake_apiserver.py).

Each test drives one Pod lifecycle through the real ``kubernetes`` client and checks the
outcome the node turns into feedback (``feedback_for_exit`` or the launch error's reason),
that the Pod the launcher created validated against the official schema (the fake refuses
anything else with 422), and that no pod is left behind.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
from kubernetes import client as k8s_client

from attestation.initdata import ANNOTATION, decode_initdata_annotation, expected_host_data
from container.launch import (
    Limits,
    ModelSpec,
    RunnerKind,
    StatusKind,
    StatusLine,
    parse_job_spec,
)
from dvm.node.errors import ConfigError
from dvm.node.kubernetes.launcher import KubernetesLauncher, KubernetesLaunchError
from dvm.node.kubernetes.pod import KubernetesConfig, build_job_pod, pod_name
from dvm.node.launcher import LaunchRequest, feedback_for_exit
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip90 import ErrorReason, FeedbackStatus, build_job_request, parse_job_request
from tests.k8s.fake_apiserver import (
    FakeCluster,
    deadline_exceeded,
    fake_apiserver,
    running,
    scheduled,
    terminated,
    unschedulable,
    waiting,
)

IMAGE = "registry.example/cdvm/job@sha256:" + "ab" * 32
NS = "cdvm-jobs"
REQUESTER = SecretKey(bytes.fromhex("11" * 32))
PROVIDER = SecretKey(bytes.fromhex("22" * 32))


def _launch(tee: str = "sev-snp", *, deadline_s: float = 30.0) -> LaunchRequest:
    unsigned = build_job_request(
        requester=REQUESTER.public_key,
        provider=PROVIDER.public_key,
        tee=tee,
        nonce=b"\x07" * 32,
        created_at=1_700_000_000,
        params=[("model", "gemma")],
    )
    request = parse_job_request(unsigned.sign(REQUESTER, aux_rand=b"\0" * 32))
    return LaunchRequest(
        request=request,
        provider=PROVIDER.public_key.hex(),
        relays=("wss://relay.example",),
        model=ModelSpec(
            name="gemma", runner=RunnerKind.LLAMA, path="/srv/gemma.gguf", sha256="c" * 64
        ),
        limits=Limits(
            attestation_timeout_s=60,
            idle_timeout_s=60,
            deadline_s=deadline_s,
            max_input_bytes=1024,
            max_output_tokens=64,
        ),
        grace_s=2,
        runtime_version="0.1.0",
        runtime_image="ignored-by-kubernetes",
    )


CONFIG = KubernetesConfig(
    image=IMAGE,
    namespace=NS,
    node_name="node-a",
    schedule_timeout_s=0.6,
    image_pull_timeout_s=0.6,
    delete_timeout_s=3.0,
    api_timeout_s=5.0,
)


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def launcher(cluster: FakeCluster) -> Iterator[KubernetesLauncher]:
    with fake_apiserver(cluster) as url:
        configuration = k8s_client.Configuration()
        configuration.host = url
        api = k8s_client.ApiClient(configuration)
        yield KubernetesLauncher(CONFIG, api_client=api, watch_window_s=0.3)
        api.close()


def _name(launch: LaunchRequest) -> str:
    return pod_name(launch.job_id)


@pytest.mark.asyncio
async def test_create_running_succeeded_deleted(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    launch = _launch()
    cluster.scripts[_name(launch)] = [(0.05, scheduled()), (0.1, running()), (0.3, terminated(0))]
    job = await launcher.launch(launch)
    assert job.handle == _name(launch)
    info = await job.wait()
    assert (info.exit_code, info.killed, info.destroyed) == (0, False, True)
    final = feedback_for_exit(info)
    assert final.status is FeedbackStatus.SUCCESS
    assert final.destroyed
    assert cluster.names() == []
    assert cluster.deleted == [_name(launch)]
    # What was created: the validated pod, its spec and its initdata.
    (pod,) = cluster.created
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    spec = parse_job_spec(env["CDVM_JOB_SPEC"].encode())
    assert spec.request.id == launch.job_id
    assert spec.runtime_image == IMAGE
    assert spec.evidence_source.value == "sev-snp"
    assert spec.model.path == "/models/gemma"
    initdata = decode_initdata_annotation(pod["metadata"]["annotations"][ANNOTATION])
    assert launch.job_id.encode() in initdata
    assert len(expected_host_data(initdata)) == 32


@pytest.mark.asyncio
async def test_failed_pod_maps_its_exit_code(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    launch = _launch()
    cluster.scripts[_name(launch)] = [(0.05, running()), (0.15, terminated(22))]
    job = await launcher.launch(launch)
    info = await job.wait()
    assert (info.exit_code, info.killed, info.destroyed) == (22, False, True)
    final = feedback_for_exit(info)
    assert (final.status, final.reason) == (FeedbackStatus.ERROR, ErrorReason.LAUNCH_FAILED)
    assert "evidence" in final.message
    assert cluster.names() == []


@pytest.mark.asyncio
async def test_image_pull_back_off_is_a_precise_launch_failure(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    launch = _launch()
    cluster.scripts[_name(launch)] = [
        (0.05, waiting("ErrImagePull", "manifest unknown")),
        (0.1, waiting("ImagePullBackOff", 'Back-off pulling image "registry.example/cdvm/job"')),
    ]
    with pytest.raises(KubernetesLaunchError, match="image pull back-off") as caught:
        await launcher.launch(launch)
    assert caught.value.reason is ErrorReason.LAUNCH_FAILED
    assert "pod deleted" in str(caught.value)
    assert cluster.names() == []


@pytest.mark.asyncio
async def test_unschedulable_is_capacity(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    launch = _launch()
    message = "0/3 nodes are available: 3 Insufficient memory."
    cluster.scripts[_name(launch)] = [(0.05, unschedulable(message))]
    with pytest.raises(KubernetesLaunchError, match="Insufficient memory") as caught:
        await launcher.launch(launch)
    assert caught.value.reason is ErrorReason.CAPACITY
    assert cluster.names() == []


@pytest.mark.asyncio
async def test_policy_refusal_fails_at_once(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    launch = _launch()
    refusal = "CreateContainerRequest is blocked by policy"
    cluster.scripts[_name(launch)] = [(0.05, waiting("CreateContainerError", refusal))]
    with pytest.raises(KubernetesLaunchError, match="blocked by policy") as caught:
        await launcher.launch(launch)
    assert caught.value.reason is ErrorReason.LAUNCH_FAILED
    assert cluster.names() == []


@pytest.mark.asyncio
async def test_deadline_exceeded_is_a_timeout(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    launch = _launch(deadline_s=1)
    cluster.scripts[_name(launch)] = [(0.05, running()), (0.2, deadline_exceeded())]
    job = await launcher.launch(launch)
    (pod,) = cluster.created
    assert pod["spec"]["activeDeadlineSeconds"] == 3  # deadline 1 s + grace 2 s
    info = await job.wait()
    assert info.killed
    assert info.destroyed
    assert "DeadlineExceeded" in info.detail
    final = feedback_for_exit(info)
    assert (final.status, final.reason) == (FeedbackStatus.ERROR, ErrorReason.TIMEOUT)
    assert cluster.names() == []


@pytest.mark.asyncio
async def test_a_pod_the_kubelet_never_ends_is_deleted_by_the_launcher(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    launch = _launch(deadline_s=0.2)
    cluster.scripts[_name(launch)] = [(0.05, running())]
    launcher.config = replace(CONFIG, delete_timeout_s=0.5)
    job = await launcher.launch(launch)
    info = await job.wait()
    assert info.killed
    assert info.destroyed
    assert feedback_for_exit(info).reason is ErrorReason.TIMEOUT
    assert cluster.names() == []


@pytest.mark.asyncio
async def test_api_forbidden(cluster: FakeCluster, launcher: KubernetesLauncher) -> None:
    cluster.forbid_create = (
        'pods is forbidden: User "system:serviceaccount:cdvm:cdvm-node" cannot create '
        'resource "pods" in API group "" in the namespace "cdvm-jobs"'
    )
    with pytest.raises(KubernetesLaunchError, match="forbidden to create pods") as caught:
        await launcher.launch(_launch())
    assert caught.value.reason is ErrorReason.LAUNCH_FAILED
    assert cluster.names() == []


@pytest.mark.asyncio
async def test_quota_exceeded_is_capacity(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    cluster.quota_exceeded = (
        'pods "cdvm-job-x" is forbidden: exceeded quota: cdvm-jobs, requested: cpu=2, '
        "used: cpu=8, limited: cpu=8"
    )
    with pytest.raises(KubernetesLaunchError, match="quota exceeded") as caught:
        await launcher.launch(_launch())
    assert caught.value.reason is ErrorReason.CAPACITY
    assert cluster.names() == []


@pytest.mark.asyncio
async def test_gpu_job_without_gpu_class_is_refused_at_request_time(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    with pytest.raises(KubernetesLaunchError, match="no GPU runtime class") as caught:
        await launcher.launch(_launch("sev-snp+nvidia-h100"))
    assert caught.value.reason is ErrorReason.UNSUPPORTED_TEE
    with pytest.raises(KubernetesLaunchError, match="not 'simulated'") as caught:
        await launcher.launch(_launch("simulated"))
    assert caught.value.reason is ErrorReason.UNSUPPORTED_TEE
    assert cluster.created == []


@pytest.mark.asyncio
async def test_gpu_job_gets_the_gpu_class_and_device(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    launcher.config = replace(CONFIG, gpu_runtime_class="kata-qemu-nvidia-gpu-snp")
    launch = _launch("sev-snp+nvidia-h100")
    cluster.scripts[_name(launch)] = [(0.05, running()), (0.1, terminated(0))]
    job = await launcher.launch(launch)
    assert (await job.wait()).destroyed
    (pod,) = cluster.created
    assert pod["spec"]["runtimeClassName"] == "kata-qemu-nvidia-gpu-snp"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/pgpu"] == "1"


@pytest.mark.asyncio
async def test_missing_runtime_class_is_refused(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    await launcher.check()
    launcher.config = replace(CONFIG, gpu_runtime_class="kata-qemu-nvidia-gpu-snp")
    with pytest.raises(ConfigError, match="kata-qemu-nvidia-gpu-snp"):
        await launcher.check()
    cluster.runtime_classes.add("kata-qemu-nvidia-gpu-snp")
    await launcher.check()


@pytest.mark.asyncio
async def test_node_restart_collects_orphaned_pods(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    old = _launch()
    orphan = build_job_pod(
        CONFIG,
        job_id=old.job_id,
        provider=old.provider,
        spec_json="{}",
        gpu=False,
        active_deadline_s=60,
    )
    cluster.add_pod(orphan, script=[(0.01, running())])
    stranger = json.loads(json.dumps(orphan))
    stranger["metadata"]["name"] = "someone-else"
    stranger["metadata"]["labels"]["cdvm.dev/node"] = "node-b"  # another node's pod
    cluster.add_pod(stranger)
    collected = await launcher.collect_orphans({})
    assert collected == [old.job_id]
    assert cluster.names() == ["someone-else"]


@pytest.mark.asyncio
async def test_deletion_not_confirmed_is_reported(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    launch = _launch()
    cluster.scripts[_name(launch)] = [(0.05, running()), (0.1, terminated(0))]
    launcher.config = replace(CONFIG, delete_timeout_s=0.5)
    job = await launcher.launch(launch)
    cluster.ignore_deletes = True
    info = await job.wait()
    assert info.exit_code == 0
    assert not info.destroyed
    final = feedback_for_exit(info)
    assert final.status is FeedbackStatus.ERROR  # never "success" without confirmed deletion
    cluster.ignore_deletes = False
    await launcher.destroy(_name(launch), job_id=launch.job_id)
    assert cluster.names() == []


@pytest.mark.asyncio
async def test_kill_deletes_the_pod(cluster: FakeCluster, launcher: KubernetesLauncher) -> None:
    launch = _launch()
    cluster.scripts[_name(launch)] = [(0.05, running())]
    job = await launcher.launch(launch)
    await job.kill()
    info = await asyncio.wait_for(job.wait(), timeout=10)
    assert info.killed
    assert info.destroyed
    assert cluster.names() == []


class _Source:
    def __init__(self, lines: list[StatusLine]) -> None:
        self.lines = lines

    async def status_lines(self, launch: LaunchRequest) -> AsyncIterator[StatusLine]:
        for line in self.lines:
            yield line
        await asyncio.sleep(3600)  # a relay subscription never ends by itself


@pytest.mark.asyncio
async def test_status_lines_come_from_the_source_and_end_with_the_pod(
    cluster: FakeCluster, launcher: KubernetesLauncher
) -> None:
    line = StatusLine(StatusKind.ATTESTED, container="c" * 64, attestation="d" * 64)
    launcher._source = _Source([line])
    launch = _launch()
    cluster.scripts[_name(launch)] = [(0.05, running()), (0.4, terminated(0))]
    job = await launcher.launch(launch)
    seen = [item async for item in job.status_lines()]
    assert seen == [line]
    assert (await job.wait()).destroyed
