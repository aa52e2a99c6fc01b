"""Interop: a requester written with nostr-sdk (rust-nostr, test-only) runs a job on our node.

Everything the requester *makes* comes from nostr-sdk: its keys, the signed job request, the
kind-14 rumors and their standard NIP-17 / NIP-59 gift wraps (kind 1059, built by
``nip59_make_gift_wrap``), and the opening of the container's answers
(``UnwrappedGift.from_gift_wrap``), and the decryption of the NIP-90 result (``nip44_decrypt``
with its own U: a request without a ``session`` tag gets its result encrypted to U,
docs/protocol.md §6). It parses the container's kind-7100 event with nostr-sdk (id and
signature checked there), then verifies the evidence with our ``attestation`` package before
sending anything. Our relay pool is only the transport. The node is real (``cdvm serve``,
sandbox, simulated TEE), as is the relay.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime

import nostr_sdk
import pytest

from attestation.evidence import parse_bundle
from attestation.verification import Expected, Trust, verify_evidence
from dvm.nostr.event import Event
from dvm.nostr.filters import Filter
from dvm.relay import RelayPool, Subscription
from tests.e2e.conftest import ONNX_NAME, Model, NodeFactory
from tests.integration.conftest import RelayFactory

pytestmark = [pytest.mark.relay, pytest.mark.slow]


def _ours(event: nostr_sdk.Event) -> Event:
    return Event.from_json(event.as_json())


def _theirs(event: Event) -> nostr_sdk.Event:
    return nostr_sdk.Event.from_json(event.to_json())


async def _next(sub: Subscription, kind: int, timeout_s: float = 60) -> Event:
    async with asyncio.timeout(timeout_s):
        async for event in sub:
            if event.kind == kind:
                return event
    raise AssertionError("subscription ended")


def test_a_nostr_sdk_requester_verifies_and_chats_over_nip17(
    relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model
) -> None:
    relay = relay_factory()
    node = node_factory([relay], [onnx_model])
    keys = nostr_sdk.Keys.generate()
    me = keys.public_key().to_hex()
    provider = node.key.public_key.hex()
    nonce = secrets.token_hex(32)
    value = 10**17 + secrets.randbelow(10**17)
    request = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(5050), "")
        .tags(
            [
                nostr_sdk.Tag.parse(t)
                for t in (
                    ["p", provider],
                    ["tee", "simulated"],
                    ["nonce", nonce],
                    ["param", "model", ONNX_NAME],
                    ["param", "mode", "chat"],
                )
            ]
        )
        .finalize(keys)
    )
    job = request.id().to_hex()
    trust = Trust(simulated_roots=(node.sim_root.read_bytes(),))

    async def scenario() -> tuple[str, list[list[str]], bool, str]:
        async with RelayPool([relay.url]) as pool:
            sub = await pool.subscribe(
                [
                    Filter(kinds=(7000, 7100, 6050), tags=(Filter.tag("e", [job]),)),
                    Filter(kinds=(1059,), tags=(Filter.tag("p", [me]),)),
                ]
            )
            await sub.wait_eose(timeout_s=5)
            await pool.publish(_ours(request))
            container = ""
            attestation: nostr_sdk.Event | None = None
            async with asyncio.timeout(60):
                async for event in sub:
                    if event.kind == 7000 and event.pubkey == provider:
                        named = [t[1] for t in event.tags if t[0] == "container"]
                        container = named[0] if named else container
                    if event.kind == 7100:
                        attestation = _theirs(event)
                    if container and attestation is not None:
                        break
            assert attestation is not None
            assert attestation.verify()  # nostr-sdk checks the id and the signature
            assert attestation.author().to_hex() == container
            bundle = parse_bundle(attestation.content())
            verified = verify_evidence(
                bundle,
                now=datetime.now(UTC),
                trust=trust,
                expected=Expected(
                    job=job, nonce=nonce, provider=provider, container_pubkey=container
                ),
            )
            assert verified.simulated

            receiver = nostr_sdk.PublicKey.parse(container)

            def wrap(text: str) -> Event:
                rumor = (
                    nostr_sdk.EventBuilder(nostr_sdk.Kind(14), text)
                    .tags([nostr_sdk.Tag.parse(["p", container]), nostr_sdk.Tag.parse(["e", job])])
                    .finalize_unsigned(keys.public_key())
                    .ensure_id()
                )
                return _ours(nostr_sdk.nip59_make_gift_wrap(keys, receiver, rumor))

            tensor = {"inputs": {"x": {"shape": [1, 1], "dtype": "int64", "data": [value]}}}
            await pool.publish(wrap(json.dumps(tensor)))
            answer = ""
            cdvm_tags: list[list[str]] = []
            while True:
                gift = await _next(sub, 1059)
                opened = nostr_sdk.UnwrappedGift.from_gift_wrap(keys, _theirs(gift))
                assert opened.sender().to_hex() == container
                rumor = opened.rumor()
                tags = [t.to_vec() for t in rumor.tags()]
                cdvm = [t for t in tags if t[0] == "cdvm"]
                cdvm_tags += cdvm
                if cdvm and cdvm[0][1] == "output":
                    answer += rumor.content()
                    if cdvm[0][-1] == "final":
                        break
            await pool.publish(wrap("/end"))
            destroyed = False
            result = ""
            async with asyncio.timeout(60):
                async for event in sub:
                    if event.kind == 6050 and event.pubkey == container:
                        result = nostr_sdk.nip44_decrypt(
                            keys.secret_key(), receiver, _theirs(event).content()
                        )
                    if event.kind == 7000 and ["destroyed", "true"] in [
                        list(t) for t in event.tags
                    ]:
                        destroyed = list(next(t for t in event.tags if t[0] == "status")[:2]) == [
                            "status",
                            "success",
                        ]
                        break
            return answer, cdvm_tags, destroyed, result

    answer, cdvm_tags, destroyed, result = asyncio.run(scenario())
    assert json.loads(answer)["outputs"]["y"]["data"] == [value]
    assert json.loads(result) == [answer]  # a chat's result: the JSON array of its answers
    assert any(t[1] == "output" for t in cdvm_tags)
    assert destroyed
