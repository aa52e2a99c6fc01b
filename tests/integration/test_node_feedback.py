"""The provider node against real relay processes, with a fake container (stdlib script).

The node runs in-process (``run_serve``) or as ``cdvm serve`` (restart test); requests are
published and feedback read by a requester's own relay pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from attestation.simulated import load_or_mint
from dvm.cli.serve import run_serve
from dvm.node.config import NodeConfig, parse_config
from dvm.node.ledger import JobLedger, JobState
from dvm.node.node import ProviderNode
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip09 import DELETION_KIND
from dvm.nostr.nip89 import HANDLER_KIND, parse_handler
from dvm.nostr.nip90 import (
    FEEDBACK_KIND,
    ErrorReason,
    FeedbackStatus,
    JobFeedback,
    build_job_request,
    parse_job_feedback,
)
from dvm.relay import BackoffPolicy, RelayPool, Subscription
from tests.unit.dvm.node.fake_runtime import FAKE_RUNTIME
from tests.waiting import wait_for

from .conftest import RelayFactory, RelayProcess

pytestmark = [pytest.mark.relay, pytest.mark.asyncio]

G_X = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
FAST = BackoffPolicy(initial_s=0.1, factor=2.0, max_s=0.5)
MODELS = ("ok", "slow", "hang", "exit-21")


@pytest.fixture(scope="module")
def tee_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tee") / "chain"
    load_or_mint(path, now=dt.datetime.now(dt.UTC))
    return path


def write_setup(tmp_path: Path, relays: list[str], tee_dir: Path, **limits: Any) -> dict[str, Any]:
    provider = SecretKey.generate(secrets.token_bytes)
    key_file = tmp_path / "provider.key"
    key_file.write_text(provider.reveal_hex() + "\n", encoding="ascii")
    key_file.chmod(0o600)
    models = []
    for name in MODELS:
        path = tmp_path / f"{name}.bin"
        path.write_bytes(f"fake model {name}".encode())
        models.append(
            {
                "name": name,
                "runner": "onnx",
                "path": str(path),
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        )
    return {
        "node": {
            "key_file": str(key_file),
            "data_dir": str(tmp_path / "node-data"),
            "relays": relays,
        },
        "tee": {"kinds": ["simulated"], "simulated_dir": str(tee_dir)},
        "launcher": {"runtime_root": str(FAKE_RUNTIME)},
        "limits": {"grace_s": 2, "deadline_s": 30, **limits},
        "models": models,
    }


def provider_key(doc: dict[str, Any]) -> SecretKey:
    return SecretKey.from_hex(Path(doc["node"]["key_file"]).read_text(encoding="ascii").strip())


def request(requester: SecretKey, provider: SecretKey, model: str, **kwargs: Any) -> Event:
    unsigned = build_job_request(
        requester=requester.public_key,
        provider=provider.public_key,
        tee=kwargs.pop("tee", "simulated"),
        nonce=secrets.token_bytes(32),
        created_at=int(time.time()),
        params=[("model", model), *kwargs.pop("params", [])],
        **kwargs,
    )
    return unsigned.sign(requester, aux_rand=secrets.token_bytes(32))


@contextlib.asynccontextmanager
async def running_node(config: NodeConfig, key: SecretKey) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_serve(config, key, stop=stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


async def wait_announced(pool: RelayPool, provider: SecretKey) -> Event:
    sub = await pool.subscribe(
        [Filter(kinds=(HANDLER_KIND,), authors=(provider.public_key.hex(),))]
    )
    try:
        async with asyncio.timeout(30):
            return await anext(sub)
    finally:
        await sub.close()


async def feedback_until_final(sub: Subscription, timeout_s: float = 30) -> list[JobFeedback]:
    seen: list[JobFeedback] = []
    async with asyncio.timeout(timeout_s):
        async for event in sub:
            feedback = parse_job_feedback(event)
            seen.append(feedback)
            if feedback.status in (FeedbackStatus.SUCCESS, FeedbackStatus.ERROR):
                return seen
    return seen


async def job_feedback(pool: RelayPool, job: Event) -> Subscription:
    return await pool.subscribe([Filter(kinds=(FEEDBACK_KIND,), tags=(Filter.tag("e", [job.id]),))])


async def test_feedback_sequence_of_a_successful_job(
    relay: RelayProcess, tmp_path: Path, tee_dir: Path
) -> None:
    doc = write_setup(tmp_path, [relay.url], tee_dir)
    config, provider = parse_config(doc, base_dir=tmp_path), provider_key(doc)
    requester = SecretKey.generate(secrets.token_bytes)
    async with RelayPool([relay.url], secret_key=requester, backoff=FAST) as pool:
        async with running_node(config, provider):
            announcement = parse_handler(await wait_announced(pool, provider))
            assert announcement.tee == ("simulated",)
            assert {m.name for m in announcement.models} == set(MODELS)
            job = request(requester, provider, "ok")
            sub = await job_feedback(pool, job)
            await pool.publish(job)
            seen = await feedback_until_final(sub)
        statuses = [(f.status, f.container, f.destroyed) for f in seen]
        assert statuses == [
            (FeedbackStatus.PROCESSING, None, False),
            (FeedbackStatus.PROCESSING, G_X, False),
            (FeedbackStatus.SUCCESS, G_X, True),
        ]
        assert all(f.provider == provider.public_key.hex() for f in seen)
        assert all(f.requester == requester.public_key.hex() for f in seen)
        deletions = await pool.subscribe(
            [Filter(kinds=(DELETION_KIND,), authors=(provider.public_key.hex(),))]
        )
        async with asyncio.timeout(10):
            deletion = await anext(deletions)
        assert f"{HANDLER_KIND}:{provider.public_key.hex()}:cdvm" in deletion.tag_values("a")
    with JobLedger.in_data_dir(config.data_dir) as ledger:
        record = ledger.get(job.id)
        assert record is not None
        assert (record.state, record.container) == (JobState.FINISHED, G_X)


async def test_malformed_requests_get_reasons_and_the_node_keeps_serving(
    relay: RelayProcess, tmp_path: Path, tee_dir: Path
) -> None:
    doc = write_setup(tmp_path, [relay.url], tee_dir, max_request_bytes=4096, rate_limit_burst=20)
    config, provider = parse_config(doc, base_dir=tmp_path), provider_key(doc)
    requester = SecretKey.generate(secrets.token_bytes)
    now = int(time.time())
    no_nonce = UnsignedEvent(
        requester.public_key.hex(),
        now,
        5050,
        (("p", provider.public_key.hex()), ("tee", "simulated"), ("param", "model", "ok")),
        "",
    ).sign(requester, aux_rand=secrets.token_bytes(32))
    cases = [
        (no_nonce, ErrorReason.BAD_REQUEST),
        (request(requester, provider, "ok", tee="sev-snp"), ErrorReason.UNSUPPORTED_TEE),
        (request(requester, provider, "gpt-9"), ErrorReason.UNSUPPORTED_MODEL),
        (
            request(requester, provider, "ok", extra_tags=[("pad", "x" * 5000)]),
            ErrorReason.BAD_REQUEST,
        ),
        # NIP-40: expired before the node sees it (the relay stores and forwards it all the same).
        (request(requester, provider, "ok", expiration=now - 1), ErrorReason.BAD_REQUEST),
        (request(requester, provider, "exit-21"), ErrorReason.LAUNCH_FAILED),
    ]
    async with (
        RelayPool([relay.url], secret_key=requester, backoff=FAST) as pool,
        running_node(config, provider),
    ):
        await wait_announced(pool, provider)
        for event, reason in cases:
            sub = await job_feedback(pool, event)
            await pool.publish(event)
            final = (await feedback_until_final(sub))[-1]
            assert (final.status, final.reason) == (FeedbackStatus.ERROR, reason), event.id
            await sub.close()
        good = request(requester, provider, "ok")
        sub = await job_feedback(pool, good)
        await pool.publish(good)
        final = (await feedback_until_final(sub))[-1]
        assert (final.status, final.destroyed) == (FeedbackStatus.SUCCESS, True)


async def test_rate_limit_refuses_a_burst(
    relay: RelayProcess, tmp_path: Path, tee_dir: Path
) -> None:
    doc = write_setup(tmp_path, [relay.url], tee_dir, rate_limit_burst=1, rate_limit_per_minute=1)
    config, provider = parse_config(doc, base_dir=tmp_path), provider_key(doc)
    requester = SecretKey.generate(secrets.token_bytes)
    async with (
        RelayPool([relay.url], secret_key=requester, backoff=FAST) as pool,
        running_node(config, provider),
    ):
        await wait_announced(pool, provider)
        first, second = request(requester, provider, "ok"), request(requester, provider, "ok")
        subs = [await job_feedback(pool, first), await job_feedback(pool, second)]
        await pool.publish(first)
        await pool.publish(second)
        finals = [(await feedback_until_final(sub))[-1] for sub in subs]
    assert finals[0].status is FeedbackStatus.SUCCESS
    assert (finals[1].status, finals[1].reason) == (FeedbackStatus.ERROR, ErrorReason.RATE_LIMITED)


async def test_capacity_and_shutdown_kill(
    relay: RelayProcess, tmp_path: Path, tee_dir: Path
) -> None:
    doc = write_setup(tmp_path, [relay.url], tee_dir, max_concurrent_jobs=1, grace_s=0.5)
    config, provider = parse_config(doc, base_dir=tmp_path), provider_key(doc)
    requester = SecretKey.generate(secrets.token_bytes)
    async with RelayPool([relay.url], secret_key=requester, backoff=FAST) as pool:
        hang = request(requester, provider, "hang")
        hang_sub = await job_feedback(pool, hang)
        async with running_node(config, provider):
            await wait_announced(pool, provider)
            await pool.publish(hang)
            async with asyncio.timeout(20):
                first = parse_job_feedback(await anext(hang_sub))
            assert first.status is FeedbackStatus.PROCESSING
            busy = request(requester, provider, "ok")
            busy_sub = await job_feedback(pool, busy)
            await pool.publish(busy)
            final = (await feedback_until_final(busy_sub))[-1]
            assert (final.status, final.reason) == (FeedbackStatus.ERROR, ErrorReason.CAPACITY)
        # stopping the node killed the hanging job after the grace period
        final = (await feedback_until_final(hang_sub))[-1]
        assert (final.status, final.reason, final.destroyed) == (
            FeedbackStatus.ERROR,
            ErrorReason.TIMEOUT,
            True,
        )


async def test_a_slot_is_free_once_the_requester_sees_the_final_feedback(
    relay: RelayProcess, tmp_path: Path, tee_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With one slot, a requester that starts its next job the moment it reads `success` must
    # not be refused with `capacity`: the slot is released when the container is gone, before
    # the final feedback is published. Publishing is made to linger after the relay stored
    # the final feedback (as when a second, slow relay has not answered yet), which is exactly
    # when a requester already sees `success`. It lingers until the test ends, so every next
    # job is certainly screened while the previous job's publication is still under way.
    original = ProviderNode._publish
    release = asyncio.Event()
    lingering: list[str] = []  # job ids whose `success` publication is held

    async def linger(self: ProviderNode, unsigned: UnsignedEvent, *args: Any) -> None:
        success = ("status", "success") in [t[:2] for t in unsigned.tags]
        if success:
            lingering.append(next(t[1] for t in unsigned.tags if t[0] == "e"))
        await original(self, unsigned, *args)
        if success:
            await release.wait()

    monkeypatch.setattr(ProviderNode, "_publish", linger)
    doc = write_setup(tmp_path, [relay.url], tee_dir, max_concurrent_jobs=1)
    config, provider = parse_config(doc, base_dir=tmp_path), provider_key(doc)
    requester = SecretKey.generate(secrets.token_bytes)
    async with (
        RelayPool([relay.url], secret_key=requester, backoff=FAST) as pool,
        running_node(config, provider),
    ):
        await wait_announced(pool, provider)
        try:
            jobs = []
            for _ in range(3):
                job = request(requester, provider, "ok")
                sub = await job_feedback(pool, job)
                await pool.publish(job)
                final = (await feedback_until_final(sub))[-1]
                assert (final.status, final.destroyed) == (FeedbackStatus.SUCCESS, True), final
                jobs.append(job.id)
            # Each `success` was seen while its publication still lingered.
            assert lingering == jobs
        finally:
            release.set()  # the node's shutdown waits for the job tasks


async def test_graceful_shutdown_lets_a_running_job_finish(
    relay: RelayProcess, tmp_path: Path, tee_dir: Path
) -> None:
    doc = write_setup(tmp_path, [relay.url], tee_dir, grace_s=10)
    config, provider = parse_config(doc, base_dir=tmp_path), provider_key(doc)
    requester = SecretKey.generate(secrets.token_bytes)
    async with RelayPool([relay.url], secret_key=requester, backoff=FAST) as pool:
        slow = request(requester, provider, "slow")
        sub = await job_feedback(pool, slow)
        async with running_node(config, provider):
            await wait_announced(pool, provider)
            await pool.publish(slow)
            async with asyncio.timeout(20):
                await anext(sub)  # processing: launched; now stop the node
        final = (await feedback_until_final(sub))[-1]
        assert (final.status, final.destroyed) == (FeedbackStatus.SUCCESS, True)


async def test_two_relays_deliver_one_request_and_one_container_starts(
    relay_factory: RelayFactory,
    tmp_path: Path,
    tee_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = relay_factory(), relay_factory()
    doc = write_setup(tmp_path, [first.url, second.url], tee_dir)
    config, provider = parse_config(doc, base_dir=tmp_path), provider_key(doc)
    requester = SecretKey.generate(secrets.token_bytes)
    caplog.set_level(logging.INFO, logger="dvm.node")
    async with (
        RelayPool([first.url, second.url], secret_key=requester, backoff=FAST) as pool,
        running_node(config, provider),
    ):
        await wait_announced(pool, provider)
        job = request(requester, provider, "ok")
        sub = await job_feedback(pool, job)
        result = await pool.publish(job)
        assert len(result.accepted_by) == 2
        final = (await feedback_until_final(sub))[-1]
        assert final.status is FeedbackStatus.SUCCESS
    started = [r for r in caplog.records if "container started" in r.getMessage()]
    assert len(started) == 1


def _serve(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "dvm.cli", "serve", "--config", str(config_path)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _toml(doc: dict[str, Any]) -> str:
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    lines: list[str] = []
    for section in ("node", "tee", "launcher", "limits"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in doc[section].items()]
    for model in doc["models"]:
        lines.append("[[models]]")
        lines += [f"{k} = {value(v)}" for k, v in model.items()]
    return "\n".join(lines) + "\n"


async def test_node_restart_mid_job_launches_exactly_one_container(
    relay: RelayProcess, tmp_path: Path, tee_dir: Path
) -> None:
    doc = write_setup(tmp_path, [relay.url], tee_dir)
    config_path = tmp_path / "provider.toml"
    config_path.write_text(_toml(doc), encoding="utf-8")
    provider = provider_key(doc)
    requester = SecretKey.generate(secrets.token_bytes)
    log = tmp_path / "node.log"
    node = _serve(config_path, log)
    try:
        async with RelayPool([relay.url], secret_key=requester, backoff=FAST) as pool:
            await wait_announced(pool, provider)
            job = request(requester, provider, "hang")
            sub = await job_feedback(pool, job)
            await pool.publish(job)
            async with asyncio.timeout(20):
                while True:
                    feedback = parse_job_feedback(await anext(sub))
                    if feedback.container is not None:
                        break
            os.killpg(node.pid, signal.SIGKILL)  # a crash, mid-job
            node.wait(timeout=10)
            before = log.stat().st_size
            node = _serve(config_path, log)  # the relay re-delivers the request (lookback)
            final = (await feedback_until_final(sub))[-1]
            assert (final.status, final.reason) == (FeedbackStatus.ERROR, ErrorReason.LAUNCH_FAILED)
            assert final.container == G_X
            # The restarted intake saw the request again and the ledger kept it from launching:
            # only after that can "one container started" below mean anything.
            await wait_for(
                lambda: (
                    f"job {job.id}: already in the ledger, not launched again"
                    in log.read_bytes()[before:].decode("utf-8", "replace")
                ),
                timeout_s=30,
                what="the restarted node sees the request again",
                details=lambda: log.read_text(encoding="utf-8", errors="replace"),
            )
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            node.wait()
    text = log.read_text(encoding="utf-8")
    assert text.count("container started") == 1, text
    assert "already in the ledger, not launched again" in text
    with JobLedger.in_data_dir(tmp_path / "node-data") as ledger:
        record = ledger.get(job.id)
        assert record is not None
        assert (record.state, record.reason) == (JobState.FAILED, "node-restart")
