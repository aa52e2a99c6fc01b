"""Forward secrecy for results (docs/protocol.md §6), through real relay processes, a real provider
node (``cdvm serve``, bubblewrap, simulated TEE) and the real container runtime.

After each job the test fetches the NIP-90 result the relay keeps, over a fresh connection, and
tries to open it with what the requester keeps: its long-term key U (the CLI's ``--key`` file,
the API's ``identity``). By default the container encrypts the result to the per-job session
key S, which the CLI and the API never write anywhere and wipe when the job ends: U fails with
our ``DecryptionError``, and the API's key object for S reads as zeros afterwards. With the
keep-readable option (``--keep-result-readable``, ``result_to_requester=True``) the request
carries ``["result-to", U]`` and U opens the stored result to the answer. The positive control
for the default case is the job itself: the client read the same result with S while it ran.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from dvm.client import JobMode, JobOptions, JobSession, Timeouts, trust_simulated_roots
from dvm.nostr import nip44
from dvm.nostr.errors import DecryptionError
from dvm.nostr.event import Event
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip19 import encode_nsec
from dvm.nostr.nip90 import JobResult, parse_job_result
from dvm.relay import RelayPool
from tests.integration.conftest import RelayFactory

from .conftest import ONNX_NAME, Model, NodeFactory, job_args, pins_for, run_cli

pytestmark = [pytest.mark.relay, pytest.mark.slow]

RESULT_KIND = 6050  # the default request kind 5050 + 1000


def _tensor(value: int) -> str:
    return json.dumps({"inputs": {"x": {"shape": [1, 1], "dtype": "int64", "data": [value]}}})


def _canary() -> int:
    return 10**17 + secrets.randbelow(8 * 10**17)


def _key_file(directory: Path) -> tuple[SecretKey, Path]:
    """The requester's long-term key U, in an nsec file as ``cdvm keygen`` writes it."""
    key = SecretKey.generate(secrets.token_bytes)
    path = directory / "requester.nsec"
    path.write_text(encode_nsec(key), encoding="ascii")
    path.chmod(0o600)
    return key, path


async def _stored_results(url: str, job: str) -> list[Event]:
    async with RelayPool([url]) as pool:
        sub = await pool.subscribe([Filter(kinds=(RESULT_KIND,), tags=(Filter.tag("e", [job]),))])
        assert await sub.wait_eose(timeout_s=10)
        found = []
        while (event := sub.get_nowait()) is not None:
            found.append(event)
    return found


def _stored_result(url: str, job: str) -> tuple[Event, JobResult]:
    """The one result of ``job`` the relay keeps, parsed (its embedded request verified)."""
    [event] = asyncio.run(_stored_results(url, job))
    return event, parse_job_result(event)


def _open(event: Event, key: SecretKey) -> str:
    conversation = nip44.get_conversation_key(key, PublicKey.from_hex(event.pubkey))
    try:
        return nip44.decrypt(event.content, conversation)
    finally:
        conversation.wipe()


def test_cli_the_stored_result_is_sealed_to_the_wiped_session_key(
    relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model, tmp_path: Path
) -> None:
    relay = relay_factory()
    node = node_factory([relay], [onnx_model])
    requester, key_file = _key_file(tmp_path)
    canary = _canary()
    run = run_cli(
        "submit",
        *job_args(node, [relay], ONNX_NAME, "--key", str(key_file), "--json"),
        stdin=_tensor(canary),
    )
    assert run.returncode == 0, run.stderr + node.log_text()[-3000:]
    doc = json.loads(run.stdout)
    assert json.loads(doc["answer"])["outputs"]["y"]["data"] == [canary]
    assert doc["result"] == doc["answer"]  # the CLI read the result, with S, during the job

    event, result = _stored_result(relay.url, doc["job"])
    assert event.pubkey == doc["container"]
    assert result.requester == requester.public_key.hex()  # the request was signed by U
    assert result.request.session is not None
    assert result.request.session != requester.public_key.hex()
    assert result.request.result_to is None
    assert result.request.result_key == result.request.session
    assert str(canary) not in event.to_json()
    with pytest.raises(DecryptionError):  # U, the one key the requester keeps, cannot open it
        _open(event, requester)


def test_cli_keep_result_readable_lets_u_open_the_stored_result(
    relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model, tmp_path: Path
) -> None:
    relay = relay_factory()
    node = node_factory([relay], [onnx_model])
    requester, key_file = _key_file(tmp_path)
    canary = _canary()
    prompt = tmp_path / "prompt.json"
    prompt.write_text(_tensor(canary), encoding="utf-8")
    args = ("--key", str(key_file), "--keep-result-readable", "--input", str(prompt), "--json")
    run = run_cli("submit", *job_args(node, [relay], ONNX_NAME, *args))
    assert run.returncode == 0, run.stderr + node.log_text()[-3000:]
    assert run.stderr == ""  # --input FILE draws no --prompt warning
    doc = json.loads(run.stdout)

    event, result = _stored_result(relay.url, doc["job"])
    assert result.request.result_to == requester.public_key.hex()
    assert result.request.session is not None  # the channel still used a fresh S
    opened = _open(event, requester)
    assert opened == doc["answer"]
    assert json.loads(opened)["outputs"]["y"]["data"] == [canary]


def test_api_wipes_the_session_key_and_u_cannot_open_the_stored_result(
    relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model
) -> None:
    relay = relay_factory()
    node = node_factory([relay], [onnx_model])
    requester = SecretKey.generate(secrets.token_bytes)
    options = JobOptions(
        provider=node.key.public_key,
        relays=(relay.url,),
        model=ONNX_NAME,
        tee="simulated",
        trust=trust_simulated_roots([node.sim_root]),
        timeouts=Timeouts.uniform(120),
        pins=pins_for(node, ONNX_NAME),
    )
    canary = _canary()
    job = JobSession(options, mode=JobMode.ONESHOT, identity=requester)

    async def run() -> str | None:
        async with job:
            await job.send(_tensor(canary))
            return (await job.finish()).result

    read_during_the_job = asyncio.run(run())
    assert read_during_the_job is not None
    assert json.loads(read_during_the_job)["outputs"]["y"]["data"] == [canary]

    session = job._session  # white box: the key object the job held for S
    assert session.reveal_bytes() == bytes(32)  # wiped when the job ended
    assert requester.reveal_bytes() != bytes(32)  # U is the caller's: kept, and tried below
    event, result = _stored_result(relay.url, job.job_id)
    assert result.request.result_key == session.public_key.hex()
    with pytest.raises(DecryptionError):
        _open(event, requester)
