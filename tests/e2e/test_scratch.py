"""The container's scratch while a job is live and after it: the canary never lands in a file
there, and the scratch is gone with the job.

Sandboxed, the scratch is the sandbox's private tmpfs at ``/tmp``, reached from outside through
``/proc/<pid>/root/tmp`` while the container runs. Unsandboxed (``allow_unsandboxed``), it is a
``cdvm-job-*`` directory under the node's ``TMPDIR``. Both are searched mid-chat, after an
input was answered, and again after the job.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from dvm.client import Chat, JobOptions, Timeouts, trust_simulated_roots
from tests.integration.conftest import RelayFactory
from tests.waiting import wait_for_blocking

from .conftest import ONNX_NAME, Model, Node, NodeFactory, files_containing, pins_for

pytestmark = [pytest.mark.relay, pytest.mark.slow]


def _container_roots(node: Node) -> list[Path]:
    """The ``/tmp`` of each live ``python -m container`` process under the node."""
    roots = []
    for pid in node.children():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(cmdline[0].decode()).name.startswith("python") and b"container" in cmdline[1:5]:
            roots.append(Path(f"/proc/{pid}/root/tmp"))
    return roots


@pytest.mark.parametrize("sandboxed", [True, False], ids=["bubblewrap", "unsandboxed"])
def test_scratch_never_holds_the_canary_and_is_gone_after(
    relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model, sandboxed: bool
) -> None:
    relay = relay_factory()
    launcher = "" if sandboxed else 'allow_unsandboxed = true\nbwrap = "/nonexistent/bwrap"'
    node = node_factory([relay], [onnx_model], launcher=launcher)
    canary = 10**17 + secrets.randbelow(10**17)
    tensor = json.dumps({"inputs": {"x": {"shape": [1, 1], "dtype": "int64", "data": [canary]}}})
    options = JobOptions(
        provider=node.key.public_key,
        relays=(relay.url,),
        model=ONNX_NAME,
        tee="simulated",
        trust=trust_simulated_roots([node.sim_root]),
        timeouts=Timeouts(attestation_s=60, answer_s=60, destroyed_s=60),
        pins=pins_for(node, ONNX_NAME),
    )

    async def scenario() -> tuple[list[Path], list[Path], bool]:
        async with Chat(options) as chat:
            answer = await chat.send(tensor)
            assert str(canary) in answer
            live_roots = _container_roots(node) if sandboxed else []  # else: the host's /tmp
            scratch_dirs = [p for p in node.tmp_dir.iterdir() if p.name.startswith("cdvm-job-")]
            searched = live_roots + scratch_dirs
            hits = [h for root in searched for h in files_containing(root, str(canary).encode())]
            outcome = await chat.end()
        return searched, hits, outcome.destroyed

    searched, hits, destroyed = asyncio.run(scenario())
    assert searched, "the live scratch was found and searched"
    assert hits == []
    assert destroyed
    # Destroyed (asserted above) is the positive fact; the process tree then empties.
    wait_for_blocking(
        lambda: node.children() == [],
        timeout_s=10,
        what="the container's processes are gone",
        details=lambda: repr(node.children()),
    )
    assert node.children() == []
    assert [p for p in searched if p.exists() and not str(p).startswith("/proc/")] == []
    assert [p for p in node.tmp_dir.iterdir() if p.name.startswith("cdvm-job-")] == []
    if not sandboxed:
        assert "WITHOUT a sandbox" in node.log_text()
