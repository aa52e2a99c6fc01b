"""``python -m container`` end to end against a real relay, with a test-side simulated PSP.

The test plays the launcher (job spec on stdin, the PSP on an inherited socketpair fd, scratch
under a private ``$TMPDIR``) and the requester (our own ``dvm.nostr`` + ``dvm.relay``): it
receives the kind-7100 event, verifies the simulated evidence with ``attestation``, sends
inputs over gift wraps, reads the outputs and the NIP-90 result, and checks the exit code, the
status lines, that the scratch dir is gone, and that canaries never reach stdout/stderr.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from attestation.evidence import parse_bundle
from attestation.simulated import SimulatedChain, SimulatedTee, mint_chain
from attestation.snp.abi import REPORT_SIZE_BYTES
from attestation.verification import Expected, Trust, verify_evidence
from container.launch import EvidenceSource, JobSpec, Limits, ModelSpec, RunnerKind, build_job_spec
from dvm.cdvm.channel import (
    ChannelMessage,
    MessageKind,
    OutputState,
    build_end,
    build_input,
    parse_channel_rumor,
)
from dvm.cdvm.kind7100 import ATTESTATION_KIND, parse_attestation
from dvm.nostr import nip44, nip59
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip17 import gift_wraps
from dvm.nostr.nip90 import build_job_request, parse_job_result
from dvm.relay import RelayPool, Subscription

from .conftest import RelayProcess

pytestmark = pytest.mark.relay

REPO = Path(__file__).resolve().parents[2]
MEASUREMENT = hashlib.sha384(b"test runtime").digest()


@pytest.fixture(scope="module")
def chain() -> SimulatedChain:
    return mint_chain(now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))


class Psp:
    """The launcher's simulated PSP on one end of a socketpair (docs/launch.md §4)."""

    def __init__(self, chain: SimulatedChain) -> None:
        self.tee = SimulatedTee(chain, MEASUREMENT)
        self.chain = chain
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.requests = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with self.ours:
            while True:
                data = b""
                while len(data) < 64:
                    chunk = self.ours.recv(64 - len(data))
                    if not chunk:
                        return
                    data += chunk
                self.requests += 1
                report = self.tee.report(report_data=data)
                assert len(report) == REPORT_SIZE_BYTES
                item = {
                    "type": "simulated",
                    "report": _b64(report),
                    "vek": _b64(self.chain.der("vcek")),
                    "ask": _b64(self.chain.der("ask")),
                    "ark": _b64(self.chain.der("ark")),
                }
                body = json.dumps([item]).encode()
                self.ours.sendall(struct.pack(">I", len(body)) + body)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def onnx_double_model(path: Path) -> str:
    """y = x + x over float32 [1, N]; returns its sha256."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Job:
    process: subprocess.Popen[bytes]
    requester: SecretKey
    job_id: str
    nonce: str
    provider: str
    scratch_parent: Path
    psp: Psp
    stdout: bytes = b""
    stderr: bytes = b""
    outputs: list[str] = field(default_factory=list)

    def finish(self, timeout_s: float = 30) -> int:
        self.stdout, self.stderr = self.process.communicate(timeout=timeout_s)
        return self.process.returncode

    @property
    def status_lines(self) -> list[dict[str, str]]:
        return [json.loads(line) for line in self.stdout.decode().splitlines()]


def start_job(
    tmp_path: Path,
    relay: RelayProcess,
    chain: SimulatedChain,
    *,
    params: tuple[tuple[str, str], ...] = (),
    limits: Limits | None = None,
) -> Job:
    requester = SecretKey.generate(secrets.token_bytes)
    provider = SecretKey.generate(secrets.token_bytes)
    nonce = secrets.token_bytes(32)
    request = build_job_request(
        requester=requester.public_key,
        provider=provider.public_key,
        tee="simulated",
        nonce=nonce,
        created_at=int(time.time()),
        params=(("model", "double"), *params),
    ).sign(requester, aux_rand=secrets.token_bytes(32))
    model_path = tmp_path / "double.onnx"
    sha = onnx_double_model(model_path)
    psp = Psp(chain)
    fd = psp.theirs.fileno()
    spec = JobSpec(
        request=request,
        provider=provider.public_key.hex(),
        relays=(relay.url,),
        tee="simulated",
        evidence_source=EvidenceSource.SIMULATED_FD,
        evidence_fd=fd,
        model=ModelSpec("double", RunnerKind.ONNX, str(model_path), sha),
        runtime_version="test",
        runtime_image="local",
        limits=limits or Limits(attestation_timeout_s=20, idle_timeout_s=20, deadline_s=60),
    )
    scratch_parent = tmp_path / "tmp"
    scratch_parent.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TMPDIR": str(scratch_parent),
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "container"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
        pass_fds=(fd,),
    )
    psp.theirs.close()  # the child holds its own copy
    assert process.stdin is not None
    process.stdin.write(build_job_spec(spec))
    process.stdin.close()
    process.stdin = None
    return Job(
        process, requester, request.id, nonce.hex(), provider.public_key.hex(), scratch_parent, psp
    )


class Requester:
    """The test's requester: our own dvm.nostr + dvm.relay."""

    def __init__(self, pool: RelayPool, job: Job, chain: SimulatedChain) -> None:
        self.pool = pool
        self.job = job
        self.chain = chain
        self.container: PublicKey | None = None
        self.wraps: Subscription | None = None

    async def open(self) -> None:
        me = self.job.requester.public_key.hex()
        self.wraps = await self.pool.subscribe(
            [Filter(kinds=(1059, 21059), tags=(Filter.tag("p", [me]),))]
        )
        assert await self.wraps.wait_eose(timeout_s=5)

    async def attestation(self, timeout_s: float = 20) -> PublicKey:
        sub = await self.pool.subscribe(
            [Filter(kinds=(ATTESTATION_KIND,), tags=(Filter.tag("e", [self.job.job_id]),))]
        )
        async with asyncio.timeout(timeout_s):
            event = await anext(aiter(sub))
        att = parse_attestation(event)
        verified = verify_evidence(
            parse_bundle(event.content),
            now=dt.datetime.now(dt.UTC),
            trust=Trust(simulated_roots=(self.chain.der("ark"),)),
            expected=Expected(
                job=self.job.job_id, nonce=self.job.nonce, provider=self.job.provider
            ),
        )
        assert verified.simulated
        assert verified.container_pubkey == att.container
        self.container = PublicKey.from_hex(att.container)
        return self.container

    async def send(
        self, rumors: list[UnsignedEvent], *, kind: int = 21059, sender: SecretKey | None = None
    ) -> list[Event]:
        assert self.container is not None
        sent: list[Event] = []
        for rumor in rumors:
            for _, wrap in gift_wraps(
                rumor,
                sender or self.job.requester,
                [self.container],
                random_bytes=secrets.token_bytes,
                now=int(time.time()),
                include_sender=False,
                kind=kind,
                max_backdate_s=0,
            ):
                await self.pool.publish(wrap)
                sent.append(wrap)
        return sent

    async def send_input(self, text: str, *, kind: int = 21059) -> str:
        assert self.container is not None
        rumors = build_input(
            self.job.requester.public_key,
            self.container,
            self.job.job_id,
            text,
            created_at=int(time.time()),
        )
        await self.send(rumors, kind=kind)
        return rumors[0].id

    async def next_message(self, timeout_s: float = 20) -> tuple[int, ChannelMessage]:
        assert self.wraps is not None
        assert self.container is not None
        async with asyncio.timeout(timeout_s):
            async for wrap in self.wraps:
                opened = nip59.unwrap(wrap, self.job.requester, expected_sender=self.container)
                return opened.wrap_kind, parse_channel_rumor(
                    opened.rumor, job=self.job.job_id, recipient=self.job.requester.public_key
                )
        raise AssertionError("subscription ended")

    async def answer(self, input_id: str) -> tuple[str, int]:
        """Collect outputs for ``input_id`` until the final one; returns text and wrap kind."""
        parts: dict[int, str] = {}
        while True:
            kind, msg = await self.next_message()
            if msg.kind is MessageKind.READY:
                continue
            assert msg.kind is MessageKind.OUTPUT, msg.kind
            assert msg.answers == input_id
            assert msg.seq is not None
            parts[msg.seq] = msg.content
            if msg.state is OutputState.FINAL:
                assert sorted(parts) == list(range(len(parts)))
                return "".join(parts[i] for i in range(len(parts))), kind

    async def result(self, timeout_s: float = 20) -> str:
        assert self.container is not None
        sub = await self.pool.subscribe(
            [Filter(kinds=(6050,), tags=(Filter.tag("e", [self.job.job_id]),))]
        )
        async with asyncio.timeout(timeout_s):
            event: Event = await anext(aiter(sub))
        parsed = parse_job_result(event)
        assert event.pubkey == self.container.hex()
        key = nip44.get_conversation_key(self.job.requester, self.container)
        return nip44.decrypt(parsed.content, key)


def tensor(values: list[float]) -> str:
    return json.dumps(
        {"inputs": {"x": {"shape": [1, len(values)], "dtype": "float32", "data": values}}}
    )


def assert_clean(job: Job, *canaries: str) -> None:
    assert not any(job.scratch_parent.iterdir()), "the scratch dir was left behind"
    for canary in canaries:
        assert canary.encode() not in job.stdout
        assert canary.encode() not in job.stderr


@pytest.fixture
def cleanup() -> Iterator[list[Job]]:
    jobs: list[Job] = []
    yield jobs
    for job in jobs:
        if job.process.poll() is None:
            job.process.kill()
            job.process.communicate(timeout=10)


@pytest.mark.asyncio
async def test_oneshot_onnx_job(
    tmp_path: Path, relay: RelayProcess, chain: SimulatedChain, cleanup: list[Job]
) -> None:
    job = start_job(tmp_path, relay, chain, params=(("mode", "oneshot"),))
    cleanup.append(job)
    in_canary, out_canary = 7391.8125, "14783.625"
    async with RelayPool([relay.url]) as pool:
        requester = Requester(pool, job, chain)
        await requester.open()
        await requester.attestation()
        input_id = await requester.send_input(tensor([1.5, in_canary]))
        text, kind = await requester.answer(input_id)
        result = await requester.result()
    assert kind == 21059
    assert json.loads(text) == {
        "outputs": {"y": {"shape": [1, 2], "dtype": "float32", "data": [3.0, 14783.625]}}
    }
    assert result == text  # one-shot: the result is the answer itself
    assert await asyncio.to_thread(job.finish) == 0
    statuses = [line["status"] for line in job.status_lines]
    assert statuses[0] == "attested"
    assert statuses[-2:] == ["delivered", "destroying"]
    assert "ready" in statuses
    assert job.status_lines[-1]["reason"] == "oneshot"
    assert job.psp.requests == 1
    assert_clean(job, str(in_canary), out_canary)


@pytest.mark.asyncio
async def test_chat_onnx_job_with_nip17_wraps_and_bad_input(
    tmp_path: Path, relay: RelayProcess, chain: SimulatedChain, cleanup: list[Job]
) -> None:
    job = start_job(tmp_path, relay, chain)
    cleanup.append(job)
    text_canary = "CANARY-" + secrets.token_hex(8)
    async with RelayPool([relay.url]) as pool:
        requester = Requester(pool, job, chain)
        await requester.open()
        await requester.attestation()
        await requester.send_input(json.dumps({"inputs": {}, "note": text_canary}), kind=1059)
        kind, msg = await requester.next_message()
        while msg.kind is MessageKind.READY:
            kind, msg = await requester.next_message()
        assert msg.kind is MessageKind.ERROR
        assert msg.reason is not None
        assert msg.reason.value == "bad-input"
        assert kind == 1059  # answered in the kind we used
        first = await requester.send_input(tensor([1.0]), kind=1059)
        a1, _ = await requester.answer(first)
        # Attacks: a third party's input and a replay of an earlier wrap get no answer at all
        # (answer() below fails on any output that does not answer `second`).
        stranger = SecretKey.generate(secrets.token_bytes)
        assert requester.container is not None
        await requester.send(
            build_input(
                stranger.public_key,
                requester.container,
                job.job_id,
                tensor([9.0]),
                created_at=int(time.time()),
            ),
            sender=stranger,
        )
        rumors = build_input(
            job.requester.public_key,
            requester.container,
            job.job_id,
            tensor([5.0]),
            created_at=int(time.time()),
        )
        wraps = await requester.send(rumors)
        a_mid, _ = await requester.answer(rumors[0].id)
        for wrap in wraps:  # the same wraps again: a replay
            await pool.publish(wrap)
        second = await requester.send_input(tensor([2.0, 3.0]))
        a2, kind2 = await requester.answer(second)
        assert kind2 == 21059
        assert job.requester is not None
        assert requester.container is not None
        await requester.send(
            [
                build_end(
                    job.requester.public_key,
                    requester.container,
                    job.job_id,
                    created_at=int(time.time()),
                )
            ]
        )
        result = await requester.result()
    assert json.loads(result) == [a1, a_mid, a2]
    assert json.loads(a2)["outputs"]["y"]["data"] == [4.0, 6.0]
    assert await asyncio.to_thread(job.finish) == 0
    assert job.status_lines[-1] == {"status": "destroying", "reason": "end"}
    log = job.stderr.decode()
    assert "not the expected sender" in log  # the stranger's wrap, logged by ids only
    # The replay is dropped by id before the inbox sees it (the pool de-duplicates); the
    # inbox's own replay check is unit-tested.
    assert_clean(job, text_canary)


@pytest.mark.asyncio
async def test_attestation_unused_times_out(
    tmp_path: Path, relay: RelayProcess, chain: SimulatedChain, cleanup: list[Job]
) -> None:
    job = start_job(tmp_path, relay, chain, limits=Limits(attestation_timeout_s=1.0))
    cleanup.append(job)
    assert await asyncio.to_thread(job.finish) == 10
    assert job.status_lines[0]["status"] == "attested"
    assert job.status_lines[-1] == {"status": "destroying", "reason": "attestation-timeout"}
    assert_clean(job)


@pytest.mark.asyncio
async def test_idle_times_out(
    tmp_path: Path, relay: RelayProcess, chain: SimulatedChain, cleanup: list[Job]
) -> None:
    job = start_job(
        tmp_path, relay, chain, limits=Limits(attestation_timeout_s=20, idle_timeout_s=1.5)
    )
    cleanup.append(job)
    async with RelayPool([relay.url]) as pool:
        requester = Requester(pool, job, chain)
        await requester.open()
        await requester.attestation()
        input_id = await requester.send_input(tensor([1.0]))
        await requester.answer(input_id)
        _kind, msg = await requester.next_message()
        assert msg.kind is MessageKind.ERROR
        assert msg.reason is not None
        assert msg.reason.value == "timeout"
    assert await asyncio.to_thread(job.finish) == 11
    assert job.status_lines[-1] == {"status": "destroying", "reason": "idle-timeout"}
    assert_clean(job)


def test_malformed_spec_exits_20(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "container"],
        input=b'{"v": 1}',
        capture_output=True,
        env={"PATH": os.environ.get("PATH", ""), "TMPDIR": str(scratch), "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 20
    assert json.loads(done.stdout) == {"status": "destroying", "reason": "error"}
    assert not any(scratch.iterdir())
