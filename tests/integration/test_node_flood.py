"""The provider node under a flood, and NIP-90 niceties, against real relay processes.

Issue 10 acceptance: 1,000 junk requests from fresh keys leave no ledger row, get refusal
feedback only within the documented node-wide rate, and a genuine request (with the proof of
work the node asks for under load) is still served. Also: a NIP-09 deletion by the requester
cancels a running job (``error`` ``cancelled``, container destroyed), and feedback also goes to
the request's ``relays``. The container is the fake runtime (tests/unit/dvm/node/fake_runtime).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest

from dvm.node.config import parse_config
from dvm.node.ledger import JobLedger, JobState
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip09 import build_deletion
from dvm.nostr.nip13 import mine
from dvm.nostr.nip90 import (
    FEEDBACK_KIND,
    ErrorReason,
    FeedbackStatus,
    build_job_request,
    parse_job_feedback,
)
from dvm.relay import RelayPool

from .conftest import RelayFactory, RelayProcess
from .test_node_feedback import (
    FAST,
    feedback_until_final,
    job_feedback,
    provider_key,
    request,
    running_node,
    tee_dir,
    wait_announced,
    write_setup,
)

pytestmark = [pytest.mark.relay, pytest.mark.asyncio]
__all__ = ["tee_dir"]  # the fixture, shared with test_node_feedback

JUNK = 1000
FEEDBACK_BURST = 10
FEEDBACK_PER_MINUTE = 30.0
LOAD_POW_BITS = 8
LOAD_THRESHOLD = 50


def _junk(provider: SecretKey, variant: int, now: int) -> Event:
    """One request of the flood, from a fresh key; each variant is refused by a cheap check."""
    key = SecretKey.generate(secrets.token_bytes)
    p = ("p", provider.public_key.hex())
    base: tuple[tuple[str, ...], ...] = (p, ("tee", "simulated"), ("nonce", secrets.token_hex(32)))
    model = ("param", "model", "ok")
    if variant == 0:  # a kind the node does not serve
        unsigned = UnsignedEvent(key.public_key.hex(), now, 5051, (*base, model), "")
    elif variant == 1:  # expired (NIP-40)
        tags = (*base, model, ("expiration", str(now - 5)))
        unsigned = UnsignedEvent(key.public_key.hex(), now, 5050, tags, "")
    elif variant == 2:  # oversized
        unsigned = UnsignedEvent(
            key.public_key.hex(), now, 5050, (*base, model, ("x", "y" * 5000)), ""
        )
    else:  # well formed, without the proof of work the node asks for once it is under load
        unsigned = build_job_request(
            requester=key.public_key,
            provider=provider.public_key,
            tee="simulated",
            nonce=secrets.token_bytes(32),
            created_at=now,
            params=[("model", "ok")],
        )
    return unsigned.sign(key, aux_rand=secrets.token_bytes(32))


async def _stored_feedback(relay: RelayProcess, provider: SecretKey) -> list[Event]:
    async with RelayPool([relay.url], backoff=FAST) as pool:
        sub = await pool.subscribe(
            [Filter(kinds=(FEEDBACK_KIND,), authors=(provider.public_key.hex(),), limit=5000)],
            queue_maxsize=5000,
        )
        assert await sub.wait_eose(timeout_s=20)
        events = []
        while (event := sub.get_nowait()) is not None:
            events.append(event)
        await sub.close()
    return events


async def test_a_flood_of_junk_from_fresh_keys_leaves_no_trace_and_a_genuine_job_is_served(
    relay: RelayProcess, tmp_path: Path, tee_dir: Path
) -> None:
    doc = write_setup(
        tmp_path,
        [relay.url],
        tee_dir,
        max_request_bytes=4096,
        refusal_feedback_burst=FEEDBACK_BURST,
        refusal_feedback_per_minute=FEEDBACK_PER_MINUTE,
        load_pow_bits=LOAD_POW_BITS,
        load_refusals_per_minute=LOAD_THRESHOLD,
    )
    config, provider = parse_config(doc, base_dir=tmp_path), provider_key(doc)
    requester = SecretKey.generate(secrets.token_bytes)
    now = int(time.time())
    # The three cheaply refused kinds first (they put the node under load), then the
    # well-formed ones without proof of work: the relay forwards them in this order.
    variants = [i % 3 for i in range(JUNK * 3 // 4)] + [3] * (JUNK - JUNK * 3 // 4)
    junk = [_junk(provider, variant, now) for variant in variants]
    async with (
        RelayPool([relay.url], secret_key=requester, backoff=FAST) as pool,
        running_node(config, provider),
    ):
        await wait_announced(pool, provider)
        started = time.monotonic()
        for i in range(0, JUNK, 50):  # bounded: 50 in flight at a time
            await asyncio.gather(*(pool.publish(event) for event in junk[i : i + 50]))
        # The genuine requester does the work the announcement says the node asks under load
        # (its refusal without it would not even be answered: the feedback budget is spent).
        unsigned = build_job_request(
            requester=requester.public_key,
            provider=provider.public_key,
            tee="simulated",
            nonce=secrets.token_bytes(32),
            created_at=int(time.time()),
            params=[("model", "ok")],
        )
        genuine = mine(unsigned, LOAD_POW_BITS).sign(requester, aux_rand=secrets.token_bytes(32))
        sub = await job_feedback(pool, genuine)
        await pool.publish(genuine)
        final = (await feedback_until_final(sub))[-1]
        assert (final.status, final.destroyed) == (FeedbackStatus.SUCCESS, True)
        elapsed_s = time.monotonic() - started
    assert elapsed_s < 60
    junk_ids = {event.id for event in junk}
    with JobLedger.in_data_dir(config.data_dir) as ledger:
        assert not any(ledger.get(job_id) for job_id in junk_ids)
        assert ledger.count() == 1  # the genuine job
        record = ledger.get(genuine.id)
        assert record is not None
        assert record.state is JobState.FINISHED
    answered = [
        e for e in await _stored_feedback(relay, provider) if e.tag_values("e")[0] in junk_ids
    ]
    allowed = FEEDBACK_BURST + FEEDBACK_PER_MINUTE * elapsed_s / 60.0
    assert 1 <= len(answered) <= allowed, (len(answered), allowed)
    assert all(parse_job_feedback(e).status is FeedbackStatus.ERROR for e in answered)


async def test_a_deletion_by_the_requester_cancels_a_running_job(
    relay: RelayProcess, tmp_path: Path, tee_dir: Path
) -> None:
    doc = write_setup(tmp_path, [relay.url], tee_dir)
    config, provider = parse_config(doc, base_dir=tmp_path), provider_key(doc)
    requester, stranger = (SecretKey.generate(secrets.token_bytes) for _ in range(2))
    async with (
        RelayPool([relay.url], secret_key=requester, backoff=FAST) as pool,
        running_node(config, provider),
    ):
        await wait_announced(pool, provider)
        job = request(requester, provider, "hang")
        sub = await job_feedback(pool, job)
        await pool.publish(job)
        async with asyncio.timeout(20):
            while parse_job_feedback(await anext(sub)).container is None:
                pass  # wait for the container to attest
        # A deletion by someone else is not the requester's: ignored (NIP-09: author only).
        forged = build_deletion(
            author_hex=stranger.public_key.hex(), created_at=int(time.time()), event_ids=[job.id]
        ).sign(stranger, aux_rand=secrets.token_bytes(32))
        await pool.publish(forged)
        deletion = build_deletion(
            author_hex=requester.public_key.hex(),
            created_at=int(time.time()),
            event_ids=[job.id],
            kinds=[job.kind],
            reason="changed my mind",
        ).sign(requester, aux_rand=secrets.token_bytes(32))
        await pool.publish(deletion)
        final = (await feedback_until_final(sub))[-1]
    assert (final.status, final.reason, final.destroyed) == (
        FeedbackStatus.ERROR,
        ErrorReason.CANCELLED,
        True,
    )
    assert deletion.id in final.content
    with JobLedger.in_data_dir(config.data_dir) as ledger:
        record = ledger.get(job.id)
        assert record is not None
        assert (record.state, record.reason) == (JobState.FAILED, "cancelled")


async def test_feedback_also_goes_to_the_requests_relays(
    relay: RelayProcess, relay_factory: RelayFactory, tmp_path: Path, tee_dir: Path
) -> None:
    extra = relay_factory()
    doc = write_setup(tmp_path, [relay.url], tee_dir)
    config, provider = parse_config(doc, base_dir=tmp_path), provider_key(doc)
    requester = SecretKey.generate(secrets.token_bytes)
    async with (
        RelayPool([relay.url], secret_key=requester, backoff=FAST) as pool,
        RelayPool([extra.url], secret_key=requester, backoff=FAST) as elsewhere,
        running_node(config, provider),
    ):
        await wait_announced(pool, provider)
        job = request(requester, provider, "ok", relays=[extra.url, "ws://127.0.0.1:1"])
        sub = await job_feedback(elsewhere, job)  # read where only the request said
        await pool.publish(job)
        seen = await feedback_until_final(sub)
    assert [f.status for f in seen][-1] is FeedbackStatus.SUCCESS
    assert seen[-1].destroyed
