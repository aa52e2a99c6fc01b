"""Canaries: plaintext, secret keys and conversation keys never reach the logs.

A gift-wrapped message travels through a real relay and the pool with every logger of ours at
DEBUG; the captured records (messages, arguments and exception text) are searched for the
plaintext, both secret keys (hex and nsec) and the NIP-44 conversation keys.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import pytest

from dvm.nostr import nip17, nip19, nip44, nip59
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.relay import RelayPool

from .conftest import RelayProcess

pytestmark = [pytest.mark.relay, pytest.mark.asyncio]


async def test_plaintext_and_keys_never_logged(
    relay: RelayProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice = SecretKey.generate(secrets.token_bytes)
    bob = SecretKey.generate(secrets.token_bytes)
    canary = f"canary-{secrets.token_hex(16)}"
    now = int(time.time())
    rumor = nip17.build_chat_rumor(
        sender=alice.public_key, receivers=[bob.public_key], content=canary, created_at=now
    )
    wraps = nip17.gift_wraps(
        rumor, alice, [bob.public_key], random_bytes=secrets.token_bytes, now=now
    )
    async with RelayPool([relay.url], secret_key=bob) as pool:
        sub = await pool.subscribe(
            [Filter(kinds=(nip59.GIFT_WRAP_KIND,), tags=(Filter.tag("p", [bob.public_key.hex()]),))]
        )
        assert await sub.wait_eose(timeout_s=10)
        for _, wrap in wraps:
            await pool.publish(wrap)
        async with asyncio.timeout(10):
            event = await anext(sub)
        opened = nip59.unwrap(event, bob)
        assert opened.rumor.content == canary

    conversation = nip44.get_conversation_key(alice, bob.public_key)
    secrets_to_find = [
        canary,
        alice.reveal_hex(),
        bob.reveal_hex(),
        nip19.encode_nsec(alice),
        nip19.encode_nsec(bob),
        conversation.reveal_bytes().hex(),
    ]
    assert caplog.records, "the pool logged nothing: the canary check would be vacuous"
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        for secret in secrets_to_find:
            assert secret not in text, f"a secret reached the log via {record.name}"
