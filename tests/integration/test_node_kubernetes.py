"""The provider node with the Kubernetes launcher: a real relay, the FAKE API server.

``ProviderNode`` + ``KubernetesLauncher`` (the real ``kubernetes`` client) against
tests/k8s/fake_apiserver.py (it validates every created Pod against the official schema and
plays the cluster from a script) and a real ``nostr-relay``. The test plays the job container:
it reads the pod's initdata annotation (what Kata hashes into HOST_DATA) and publishes the
kind-7100 attestation with SIMULATED evidence whose root only this test trusts (production
trusts the pinned AMD roots only). Checked: feedback ``processing`` → ``processing`` with
``["container", C]`` (never an impostor's key) → pod deleted and the deletion confirmed →
``success`` with ``["destroyed","true"]``; an image pull back-off → ``error`` ``launch-failed``
with the kubelet's reason; ``DeadlineExceeded`` → ``error`` ``timeout`` saying so; an exceeded
quota → ``error`` ``capacity``; no pod left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes import client as k8s_client

from attestation.initdata import ANNOTATION, decode_initdata_annotation
from attestation.simulated import SimulatedChain, SimulatedTee, mint_chain
from attestation.verification import Trust
from dvm.cdvm.kind7100 import Claims, ModelClaim, RuntimeClaim, build_attestation
from dvm.node.config import NodeConfig, parse_config
from dvm.node.kubernetes.launcher import KubernetesLauncher
from dvm.node.kubernetes.pod import pod_name
from dvm.node.kubernetes.relay_status import RelayStatusSource
from dvm.node.ledger import JobLedger, JobState
from dvm.node.node import ProviderNode
from dvm.nostr.event import Event
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip90 import (
    FEEDBACK_KIND,
    ErrorReason,
    FeedbackStatus,
    JobFeedback,
    build_job_request,
    parse_job_feedback,
)
from dvm.relay import BackoffPolicy, RelayPool, Subscription
from tests.k8s.fake_apiserver import (
    FakeCluster,
    deadline_exceeded,
    fake_apiserver,
    running,
    scheduled,
    terminated,
    waiting,
)
from tests.waiting import wait_for

from .conftest import RelayProcess

pytestmark = [pytest.mark.relay, pytest.mark.asyncio]

IMAGE = "registry.example/cdvm/job@sha256:" + "ab" * 32
NS = "cdvm-jobs"
MODEL_SHA256 = "5e" * 32
FAST = BackoffPolicy(initial_s=0.1, factor=2.0, max_s=0.5)
QUOTA_MESSAGE = (
    'pods "cdvm-job" is forbidden: exceeded quota: cdvm-jobs, requested: limits.cpu=2, '
    "used: limits.cpu=16, limited: limits.cpu=16"
)


@pytest.fixture(scope="module")
def chain() -> SimulatedChain:
    return mint_chain(now=dt.datetime.now(dt.UTC))


def provider_config(tmp_path: Path, relay_url: str, provider: SecretKey) -> NodeConfig:
    key_file = tmp_path / "provider.key"
    key_file.write_text(provider.reveal_hex() + "\n", encoding="ascii")
    key_file.chmod(0o600)
    doc: dict[str, Any] = {
        "node": {
            "key_file": str(key_file),
            "data_dir": str(tmp_path / "node-data"),
            "relays": [relay_url],
        },
        "tee": {"kinds": ["sev-snp"]},
        "launcher": {
            "kind": "kubernetes",
            "kubernetes": {
                "image": IMAGE,
                "namespace": NS,
                "node_name": "node-it",
                "schedule_timeout_s": 5,
                "image_pull_timeout_s": 0.6,
                "delete_timeout_s": 5,
                "api_timeout_s": 5,
            },
        },
        "limits": {"grace_s": 2, "deadline_s": 60},
        # No path: the model is in the job image, not on this machine.
        "models": [{"name": "gemma", "runner": "llama", "sha256": MODEL_SHA256}],
    }
    return parse_config(doc, base_dir=tmp_path)


@dataclass
class Setup:
    cluster: FakeCluster
    provider: SecretKey
    requester: SecretKey
    pool: RelayPool  # the requester's
    config: NodeConfig


@contextlib.asynccontextmanager
async def running_node(
    config: NodeConfig, provider: SecretKey, api: k8s_client.ApiClient, trust: Trust
) -> AsyncIterator[None]:
    kube = config.launcher.kubernetes
    assert kube is not None
    stop = asyncio.Event()
    async with RelayPool(config.relays, secret_key=provider, backoff=FAST) as pool:
        launcher = KubernetesLauncher(
            kube,
            api_client=api,
            status_source=RelayStatusSource(pool, image=kube.image, trust=trust),
            watch_window_s=0.3,
        )
        with JobLedger.in_data_dir(config.data_dir) as ledger:
            node = ProviderNode(
                config,
                secret_key=provider,
                launcher=launcher,
                ledger=ledger,
                runtime_version="0.1.0",
                runtime_image=kube.image,
                pool=pool,
            )
            task = asyncio.create_task(node.run(stop))
            async with asyncio.timeout(20):
                await node.ready.wait()
            try:
                yield
            finally:
                stop.set()
                await asyncio.wait_for(task, timeout=30)


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def api(cluster: FakeCluster) -> Iterator[k8s_client.ApiClient]:
    with fake_apiserver(cluster) as url:
        configuration = k8s_client.Configuration()
        configuration.host = url
        client = k8s_client.ApiClient(configuration)
        yield client
        client.close()


@pytest_asyncio.fixture
async def setup(
    relay: RelayProcess,
    tmp_path: Path,
    cluster: FakeCluster,
    api: k8s_client.ApiClient,
    chain: SimulatedChain,
) -> AsyncIterator[Setup]:
    provider = SecretKey.generate(secrets.token_bytes)
    requester = SecretKey.generate(secrets.token_bytes)
    config = provider_config(tmp_path, relay.url, provider)
    trust = Trust(simulated_roots=(chain.pem("ark"),))  # TEST ONLY
    async with (
        RelayPool([relay.url], secret_key=requester, backoff=FAST) as pool,
        running_node(config, provider, api, trust),
    ):
        yield Setup(cluster, provider, requester, pool, config)


def job_request(setup: Setup) -> Event:
    unsigned = build_job_request(
        requester=setup.requester.public_key,
        provider=setup.provider.public_key,
        tee="sev-snp",
        nonce=secrets.token_bytes(32),
        created_at=int(time.time()),
        params=[("model", "gemma")],
    )
    return unsigned.sign(setup.requester, aux_rand=secrets.token_bytes(32))


async def feedback_sub(setup: Setup, job: Event) -> Subscription:
    return await setup.pool.subscribe(
        [Filter(kinds=(FEEDBACK_KIND,), tags=(Filter.tag("e", [job.id]),))]
    )


async def next_feedback(sub: Subscription, timeout_s: float = 20) -> JobFeedback:
    async with asyncio.timeout(timeout_s):
        return parse_job_feedback(await anext(sub))


async def wait_for_pod(cluster: FakeCluster, name: str) -> dict[str, Any]:
    return await wait_for(
        lambda: next((p for p in cluster.created if p["metadata"]["name"] == name), None),
        timeout_s=20,
        what=f"the job pod {name} is created",
    )


def play_container(
    container: SecretKey, job: Event, pod: dict[str, Any], chain: SimulatedChain, *, nonce: str
) -> Event:
    """The kind-7100 the job container would publish: HOST_DATA from the pod's annotation."""
    initdata = decode_initdata_annotation(pod["metadata"]["annotations"][ANNOTATION])
    claims = Claims(
        pubkey=container.public_key.hex(),
        job=job.id,
        nonce=nonce,
        provider=job.tag_values("p")[0],
        model=ModelClaim("gemma", MODEL_SHA256),
        runtime=RuntimeClaim("0.1.0", IMAGE),
    )
    item = SimulatedTee(chain, bytes(48)).attest(
        container_pubkey=bytes.fromhex(container.public_key.hex()),
        claims=claims.to_dict(),
        initdata=initdata,
    )
    now = int(time.time())
    unsigned = build_attestation(
        claims=claims,
        recipient=PublicKey.from_hex(job.pubkey),
        tee="sev-snp",
        expiration=now + 600,
        evidence=[item.to_json()],
        initdata=None,
        created_at=now,
    )
    return unsigned.sign(container, aux_rand=secrets.token_bytes(32))


async def test_a_job_pod_attests_runs_and_is_destroyed(setup: Setup, chain: SimulatedChain) -> None:
    job = job_request(setup)
    name = pod_name(job.id)
    setup.cluster.scripts[name] = [(0.05, scheduled()), (0.15, running())]
    sub = await feedback_sub(setup, job)
    await setup.pool.publish(job)
    first = await next_feedback(sub)
    assert (first.status, first.container) == (FeedbackStatus.PROCESSING, None)
    pod = await wait_for_pod(setup.cluster, name)  # created, and valid (else the fake says 422)
    assert pod["spec"]["runtimeClassName"] == "kata-qemu-snp"
    nonce = job.tag_values("nonce")[0]
    # An impostor answers first: a valid-looking attestation with a wrong nonce.
    impostor = SecretKey.generate(secrets.token_bytes)
    await setup.pool.publish(play_container(impostor, job, pod, chain, nonce="00" * 32))
    container = SecretKey.generate(secrets.token_bytes)
    await setup.pool.publish(play_container(container, job, pod, chain, nonce=nonce))
    attested = await next_feedback(sub)
    assert attested.status is FeedbackStatus.PROCESSING
    assert attested.container == container.public_key.hex()
    assert setup.cluster.names() == [name]  # still running
    setup.cluster.set_status(NS, name, terminated(0))
    final = await next_feedback(sub)
    assert (final.status, final.destroyed) == (FeedbackStatus.SUCCESS, True)
    assert final.container == container.public_key.hex()
    assert setup.cluster.names() == []
    assert setup.cluster.deleted == [name]
    assert ("GET", f"/api/v1/namespaces/{NS}/pods/{name}") in setup.cluster.requests
    with JobLedger.in_data_dir(setup.config.data_dir) as ledger:
        record = ledger.get(job.id)
    assert record is not None
    assert (record.state, record.container, record.handle) == (
        JobState.FINISHED,
        container.public_key.hex(),
        name,
    )


async def test_image_pull_back_off_is_launch_failed_with_the_reason(setup: Setup) -> None:
    job = job_request(setup)
    name = pod_name(job.id)
    message = f'Back-off pulling image "{IMAGE}": not found'
    setup.cluster.scripts[name] = [
        (0.05, scheduled()),
        (0.1, waiting("ImagePullBackOff", message)),
    ]
    sub = await feedback_sub(setup, job)
    await setup.pool.publish(job)
    assert (await next_feedback(sub)).status is FeedbackStatus.PROCESSING
    final = await next_feedback(sub)
    assert (final.status, final.reason) == (FeedbackStatus.ERROR, ErrorReason.LAUNCH_FAILED)
    assert "ImagePullBackOff" in final.event.content
    assert "Back-off pulling image" in final.event.content
    assert "pod deleted" in final.event.content
    assert setup.cluster.names() == []
    assert setup.cluster.deleted == [name]


async def test_deadline_exceeded_is_timeout_with_the_kubelets_reason(setup: Setup) -> None:
    job = job_request(setup)
    name = pod_name(job.id)
    setup.cluster.scripts[name] = [
        (0.05, scheduled()),
        (0.1, running()),
        (0.6, deadline_exceeded()),
    ]
    sub = await feedback_sub(setup, job)
    await setup.pool.publish(job)
    assert (await next_feedback(sub)).status is FeedbackStatus.PROCESSING
    final = await next_feedback(sub)
    assert (final.status, final.reason, final.destroyed) == (
        FeedbackStatus.ERROR,
        ErrorReason.TIMEOUT,
        True,
    )
    assert "activeDeadlineSeconds reached (DeadlineExceeded)" in final.event.content
    assert setup.cluster.names() == []


async def test_exceeded_quota_is_capacity(setup: Setup) -> None:
    setup.cluster.quota_exceeded = QUOTA_MESSAGE
    job = job_request(setup)
    sub = await feedback_sub(setup, job)
    await setup.pool.publish(job)
    assert (await next_feedback(sub)).status is FeedbackStatus.PROCESSING
    final = await next_feedback(sub)
    assert (final.status, final.reason) == (FeedbackStatus.ERROR, ErrorReason.CAPACITY)
    assert "exceeded quota" in final.event.content
    assert setup.cluster.created == []
    assert setup.cluster.names() == []
    with JobLedger.in_data_dir(setup.config.data_dir) as ledger:
        record = ledger.get(job.id)
    assert record is not None
    assert (record.state, record.reason) == (JobState.FAILED, "capacity")
