"""Malformed gift wraps against a running container and a waiting client (issue 10).

Real relay process, real node (``cdvm serve``, local launcher, sandbox, simulated TEE), real
container, the real client library. Once the requester has verified the container, a stranger
publishes one malformed wrap of every kind in :data:`tests.hostile_wraps.MALFORMED_KINDS`
(lone surrogates in the seal's and in the rumor's JSON, invalid UTF-8 after decryption, deep
nesting, huge numbers, NaN, wrong types, repeated keys, a seal with a bad signature, a rumor
whose pubkey is not the seal's, an oversized field, truncated and non-base64 payloads, a wrong
NIP-44 version byte), each in both wrap kinds, to the container key C and to the requester's
session key, while the requester waits for an answer. Before issue 10 the first lone surrogate
killed the container's read task (the job was destroyed with exit 1) and the client's.

Both must ignore every one (the container logs each by wrap id) and finish normally: both
answers arrive, ``/end`` ends the job, the node reports the container destroyed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time

import pytest

from dvm.client import Chat, JobOptions, JobOutcome, Timeouts, trust_simulated_roots
from dvm.nostr.event import Event
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip59 import GIFT_WRAP_KIND, WRAP_KIND_EPHEMERAL
from dvm.relay import RelayPool
from tests.hostile_wraps import MALFORMED_KINDS, malformed_wraps
from tests.integration.conftest import RelayFactory
from tests.waiting import wait_for_blocking

from .conftest import ONNX_NAME, Model, NodeFactory, pins_for

pytestmark = [pytest.mark.relay, pytest.mark.slow]


def _tensor(value: int) -> str:
    return json.dumps({"inputs": {"x": {"shape": [1, 1], "dtype": "int64", "data": [value]}}})


def _attacks(victim: PublicKey, impersonate: PublicKey, job: str) -> list[Event]:
    stranger = SecretKey.generate(secrets.token_bytes)
    now = int(time.time())
    return [
        wrap
        for kind in (WRAP_KIND_EPHEMERAL, GIFT_WRAP_KIND)
        for wrap in malformed_wraps(
            victim, attacker=stranger, impersonate=impersonate, job=job, now=now, kind=kind
        ).values()
    ]


def test_malformed_wraps_leave_the_container_and_the_client_working(
    relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model
) -> None:
    assert len(MALFORMED_KINDS) >= 10
    relay = relay_factory()
    node = node_factory([relay], [onnx_model])
    me = SecretKey.generate(secrets.token_bytes)
    first, second = (10**17 + secrets.randbelow(10**17) for _ in range(2))
    options = JobOptions(
        provider=node.key.public_key,
        relays=(relay.url,),
        model=ONNX_NAME,
        tee="simulated",
        trust=trust_simulated_roots([node.sim_root]),
        timeouts=Timeouts(attestation_s=60, answer_s=60, destroyed_s=60),
        fresh_session=False,  # the session key is `me`: the attacks to the client name it
        pins=pins_for(node, ONNX_NAME),
    )

    async def scenario() -> tuple[list[Event], list[Event], dict[str, int], JobOutcome, str, str]:
        async with RelayPool([relay.url]) as attacker, Chat(options, identity=me) as chat:
            container = PublicKey.from_hex(chat.verification.container)
            to_container = _attacks(container, me.public_key, chat.job_id)
            to_client = _attacks(me.public_key, container, chat.job_id)
            # The client is waiting for its first answer while the attacks arrive.
            pending = asyncio.create_task(chat.send(_tensor(first)))
            results = await asyncio.gather(
                *(attacker.publish(e) for e in [*to_container, *to_client])
            )
            refused = [r.event_id for r in results if not r.ok]
            assert not refused, [r.relays for r in results if not r.ok]
            answer_first = await pending
            # Published after every attack was accepted by the relay, which forwards in order:
            # this answer proves both sides went through all of them and carried on.
            answer_second = await chat.send(_tensor(second))
            ignored = chat.ignored
            outcome = await chat.end()
            return to_container, to_client, ignored, outcome, answer_first, answer_second

    to_container, to_client, ignored, outcome, answer_first, answer_second = asyncio.run(scenario())
    destroyed, ok = outcome.destroyed, outcome.ok
    assert json.loads(answer_first)["outputs"]["y"]["data"] == [first]
    assert json.loads(answer_second)["outputs"]["y"]["data"] == [second]
    assert destroyed
    dropped_by_client = sum(v for k, v in ignored.items() if k.startswith("wrap: "))
    assert dropped_by_client >= len(to_client), ignored
    # The container logs each ignored wrap by id: every attack reached it and was dropped.
    wait_for_blocking(
        lambda: all(f"ignored gift wrap {e.id}" in node.log_text() for e in to_container),
        timeout_s=30,
        what="the container logs every malformed wrap as ignored",
        details=node.log_text,
    )
    log = node.log_text()
    assert "UnicodeEncodeError" not in log
    assert "Traceback" not in log
    assert ok
