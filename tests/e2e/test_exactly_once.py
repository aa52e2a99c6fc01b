"""Each request launches exactly one container: when two relays deliver it, and when the node
is killed mid-job and restarts (its intake looks back ``since_lookback_s`` and sees the request
again; the ledger must keep it from launching twice).

The evidence is public and counted from outside: every feedback event of the job on every relay
(distinct ``["container", C]`` values) and the node's log lines for the job's launches.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal

import pytest

from dvm.client import Chat, JobOptions, Timeouts, trust_simulated_roots
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip90 import FEEDBACK_KIND, JobFeedback, parse_job_feedback
from dvm.relay import RelayPool
from tests.integration.conftest import RelayFactory
from tests.waiting import wait_for_blocking

from .conftest import ONNX_NAME, Model, Node, NodeFactory, job_args, pins_for, run_cli

pytestmark = [pytest.mark.relay, pytest.mark.slow]


async def _all_feedback(urls: list[str], job: str) -> list[JobFeedback]:
    async with RelayPool(urls) as pool:
        sub = await pool.subscribe([Filter(kinds=(FEEDBACK_KIND,), tags=(Filter.tag("e", [job]),))])
        assert await sub.wait_eose(timeout_s=10)
        found = []
        while (event := sub.get_nowait()) is not None:
            found.append(parse_job_feedback(event))
        return found


def _attested_lines(node: Node, job: str) -> int:
    return sum(1 for line in node.log_text().splitlines() if f"job {job}: status attested" in line)


def test_a_request_delivered_by_two_relays_launches_one_container(
    relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model
) -> None:
    relays = [relay_factory(), relay_factory()]
    node = node_factory(relays, [onnx_model])
    tensor = json.dumps({"inputs": {"x": {"shape": [1, 1], "dtype": "int64", "data": [5]}}})
    result = run_cli("submit", *job_args(node, relays, ONNX_NAME, "--prompt", tensor, "--json"))
    assert result.returncode == 0, result.stderr + node.log_text()[-2000:]
    doc = json.loads(result.stdout)
    feedback = asyncio.run(_all_feedback([r.url for r in relays], doc["job"]))
    containers = {f.container for f in feedback if f.container is not None}
    assert containers == {doc["container"]}
    assert _attested_lines(node, doc["job"]) == 1
    assert sum(1 for f in feedback if f.destroyed) == 1


def test_a_node_restart_mid_job_does_not_launch_it_again(
    relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model
) -> None:
    relay = relay_factory()
    node = node_factory([relay], [onnx_model])
    options = JobOptions(
        provider=node.key.public_key,
        relays=(relay.url,),
        model=ONNX_NAME,
        tee="simulated",
        trust=trust_simulated_roots([node.sim_root]),
        timeouts=Timeouts(attestation_s=60, answer_s=10, destroyed_s=5),
        pins=pins_for(node, ONNX_NAME),
    )

    async def open_then_crash() -> tuple[str, str]:
        chat = Chat(options, identity=SecretKey.generate(secrets.token_bytes))
        await chat.start()
        try:
            assert node.process is not None
            os.kill(node.process.pid, signal.SIGKILL)  # the node only: a crash, not a shutdown
            node.process.wait(timeout=10)
            return chat.job_id, chat.verification.container
        finally:
            await chat.close()

    job, container = asyncio.run(open_then_crash())
    before = len(node.log_text())
    node.start()
    # The restarted intake re-reads the last since_lookback_s seconds and sees the request
    # again (the node's log wording, docs/node.md): only after that can the absences below
    # (no second attestation, no second container) mean anything.
    wait_for_blocking(
        lambda: f"job {job}: already in the ledger" in node.log_text()[before:],
        timeout_s=30,
        what="the restarted node sees the request again",
        details=lambda: node.log_text()[before:],
    )
    after_restart = node.log_text()[before:]
    assert f"job {job}: already in the ledger" in after_restart
    feedback = asyncio.run(_all_feedback([relay.url], job))
    containers = {f.container for f in feedback if f.container is not None}
    assert containers == {container}
    assert f"job {job}: status attested" not in after_restart
    assert _attested_lines(node, job) == 1
    final = [f for f in feedback if f.status.value == "error"]
    assert final, "the orphaned job gets error feedback on restart"
