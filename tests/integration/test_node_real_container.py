"""One job through the real container runtime (``python -m container``) under bubblewrap.

No requester talks to the container here (the client's end-to-end tests do): the container
attests through the launcher's simulated PSP, nobody uses the attestation, and it destroys
itself at ``attestation_timeout_s`` (exit 10) -> ``error`` ``timeout`` + destroyed. The kind-7100
event it published names the container key the node reported.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
from pathlib import Path

import pytest

from attestation.simulated import load_or_mint
from dvm.node.config import parse_config
from dvm.node.local.launcher import bubblewrap_usable
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip90 import ErrorReason, FeedbackStatus
from dvm.relay import RelayPool

from .conftest import RelayProcess
from .test_node_feedback import (
    FAST,
    feedback_until_final,
    job_feedback,
    provider_key,
    request,
    running_node,
    wait_announced,
    write_setup,
)

pytestmark = [
    pytest.mark.relay,
    pytest.mark.asyncio,
    pytest.mark.skipif(not bubblewrap_usable("bwrap"), reason="bubblewrap unusable"),
]
ATTESTATION_KIND = 7100


@pytest.fixture(scope="module")
def tee_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tee") / "chain"
    load_or_mint(path, now=dt.datetime.now(dt.UTC))
    return path


def _onnx_model(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "identity",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())


async def test_real_container_attests_and_is_destroyed(
    relay: RelayProcess, tmp_path: Path, tee_dir: Path
) -> None:
    doc = write_setup(tmp_path, [relay.url], tee_dir, attestation_timeout_s=4)
    del doc["launcher"]["runtime_root"]  # the installed runtime
    model = tmp_path / "identity.onnx"
    _onnx_model(model)
    doc["models"] = [
        {
            "name": "identity",
            "runner": "onnx",
            "path": str(model),
            "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        }
    ]
    config, provider = parse_config(doc, base_dir=tmp_path), provider_key(doc)
    requester = SecretKey.generate(secrets.token_bytes)
    async with RelayPool([relay.url], secret_key=requester, backoff=FAST) as pool:
        async with running_node(config, provider):
            await wait_announced(pool, provider)
            job = request(requester, provider, "identity", params=[("mode", "oneshot")])
            sub = await job_feedback(pool, job)
            await pool.publish(job)
            seen = await feedback_until_final(sub, timeout_s=60)
        containers = {f.container for f in seen if f.container}
        assert len(containers) == 1, [(f.status, f.content) for f in seen]
        final = seen[-1]
        assert (final.status, final.reason, final.destroyed) == (
            FeedbackStatus.ERROR,
            ErrorReason.TIMEOUT,
            True,
        )
        attestations = await pool.subscribe(
            [Filter(kinds=(ATTESTATION_KIND,), tags=(Filter.tag("e", [job.id]),))]
        )
        async with asyncio.timeout(10):
            attestation = await anext(attestations)
        assert attestation.pubkey in containers
