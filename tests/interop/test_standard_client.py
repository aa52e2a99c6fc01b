"""Acceptance (issue 10, item 4): a standard NIP-17 client chats with a verified container.

The person's side is split as docs/standard-clients.md tells it: ``cdvm submit
--chat-in-client --key U.nsec`` (the real CLI, pinned like every e2e job) publishes the request
with U as reply-to, verifies the attestation and prints the container's npub and DM relays;
then a client that knows nothing of cdvm -- nostr-sdk (rust-nostr, test-only) with only U's
key -- reads C's kind 10050 (``nip17_extract_relay_list``), sends ``nip17_make_private_msg``
to C on exactly those relays, opens the answer with ``UnwrappedGift.from_gift_wrap`` and sends
``/end``. The answer must be one readable kind-14 message (no cdvm tag, no partials, not empty),
the end is announced in a last message, and the provider's final feedback carries
``["destroyed","true"]``. Node (``cdvm serve``, sandbox, simulated TEE) and relay are real; our
relay pool only carries nostr-sdk's events.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import nostr_sdk
import pytest

from container.plain import READY_TEXT
from dvm.nostr.event import Event
from dvm.nostr.filters import Filter
from dvm.nostr.keys import SecretKey
from dvm.nostr.nip19 import decode_npub
from dvm.relay import RelayPool, Subscription
from tests.e2e.conftest import ONNX_NAME, Model, NodeFactory, job_args, run_cli
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


@pytest.mark.parametrize("profile", [None, "strfry", "khatru", "auth"])
def test_a_nostr_sdk_client_chats_with_a_container_verified_by_chat_in_client(
    profile: str | None,
    relay_factory: RelayFactory,
    node_factory: NodeFactory,
    onnx_model: Model,
    tmp_path: Path,
) -> None:
    relay = relay_factory(profile=profile)  # tests/relay_profiles.py; None: permissive
    node = node_factory([relay], [onnx_model])
    keys = nostr_sdk.Keys.generate()
    me = keys.public_key().to_hex()
    user = SecretKey(bytes.fromhex(keys.secret_key().to_hex()))  # transport AUTH (NIP-42) only
    key_file = tmp_path / "u.nsec"
    key_file.touch(mode=0o600)
    key_file.write_text(keys.secret_key().to_bech32() + "\n")

    as_json = profile is not None  # the permissive run reads what a person reads
    extra = ["--chat-in-client", "--key", str(key_file), *(["--json"] if as_json else [])]
    cli = run_cli("submit", *job_args(node, [relay], ONNX_NAME, *extra))
    assert cli.returncode == 0, cli.stderr
    if as_json:
        printed = json.loads(cli.stdout)
        assert printed["container"] == decode_npub(printed["container_npub"]).hex()
        assert printed["simulated"] is True
    else:
        lines = cli.stdout.splitlines()
        field = {k: v for k, _, v in (line.partition(": ") for line in lines[:3])}
        printed = {
            "container_npub": field["container"],
            "relays": [field["relay"]],
            "job": field["job"],
        }
        assert "SIMULATED: not confidential" in cli.stdout
        assert "checked:" in cli.stdout
        assert keys.public_key().to_bech32() in cli.stdout  # "logged in as" the user's npub
    container = decode_npub(printed["container_npub"]).hex()
    assert printed["relays"] == [relay.url]
    job = printed["job"]
    value = 10**17 + secrets.randbelow(10**17)
    tensor = {"inputs": {"x": {"shape": [1, 1], "dtype": "int64", "data": [value]}}}

    async def scenario() -> tuple[list[str], list[list[list[str]]], list[str]]:
        # 1. C's DM relays, as a NIP-17 client finds them: its kind 10050, checked by nostr-sdk.
        async with RelayPool([relay.url], secret_key=user) as lookup:
            sub = await lookup.subscribe([Filter(kinds=(10050,), authors=(container,))])
            relay_list = _theirs(await _next(sub, 10050, timeout_s=10))
        assert relay_list.verify()
        dm_relays = [str(url) for url in nostr_sdk.nip17_extract_relay_list(relay_list)]
        assert dm_relays == printed["relays"]

        # 2. Only those relays, only U's key.
        receiver = nostr_sdk.PublicKey.parse(container)
        async with RelayPool(dm_relays, secret_key=user) as pool:
            sub = await pool.subscribe(
                [
                    Filter(kinds=(1059,), tags=(Filter.tag("p", [me]),)),
                    Filter(kinds=(7000,), tags=(Filter.tag("e", [job]),)),
                ]
            )
            await sub.wait_eose(timeout_s=5)

            async def say(text: str) -> None:
                wrap = nostr_sdk.nip17_make_private_msg(keys, receiver, text)
                await pool.publish(_ours(wrap))

            async def hear() -> nostr_sdk.UnsignedEvent:
                while True:
                    gift = await _next(sub, 1059)
                    opened = nostr_sdk.UnwrappedGift.from_gift_wrap(keys, _theirs(gift))
                    assert opened.sender().to_hex() == container
                    rumor = opened.rumor()
                    # The ready notice goes as 21059 before we spoke; a relay that mutes it
                    # (khatru-like) gets it again as 1059: readable, and the only cdvm message.
                    if rumor.content() != READY_TEXT:
                        return rumor

            texts: list[str] = []
            tags: list[list[list[str]]] = []
            await say(json.dumps(tensor))
            answer = await hear()
            await say("/end")
            farewell = await hear()
            for rumor in (answer, farewell):
                texts.append(rumor.content())
                tags.append([t.to_vec() for t in rumor.tags()])
            final: list[str] = []
            async with asyncio.timeout(60):
                async for event in sub:
                    if event.kind == 1059:  # anything after the last message is a failure
                        texts.append("<unexpected message>")
                    tag_lists = [list(t) for t in event.tags]
                    if event.kind == 7000 and ["destroyed", "true"] in tag_lists:
                        assert event.pubkey == node.key.public_key.hex()
                        final = next(t for t in tag_lists if t[0] == "status")
                        break
            return texts, tags, final

    texts, tags, final = asyncio.run(scenario())
    answer, farewell = texts[0], texts[1]
    assert json.loads(answer)["outputs"]["y"]["data"] == [value]  # one whole, readable answer
    assert "destroyed" in farewell
    assert len(texts) == 2
    for rumor_tags in tags:
        assert all(t[0] != "cdvm" for t in rumor_tags)
        assert ["p", me] in rumor_tags
    assert final[:2] == ["status", "success"]


def test_chat_in_client_needs_the_users_key_and_takes_no_input(tmp_path: Path) -> None:
    common = ["--provider", "ab" * 32, "--relay", "ws://127.0.0.1:9", "--model", ONNX_NAME]
    common += ["--tee", "simulated", "--trust-config", str(tmp_path / "none.toml")]
    no_key = run_cli("submit", "--chat-in-client", *common, timeout_s=60)
    assert no_key.returncode == 2
    assert "--key" in no_key.stderr
    with_input = run_cli(
        "submit", "--chat-in-client", "--prompt", "x", *common, "--key", "k", timeout_s=60
    )
    assert with_input.returncode == 2
    assert "not allowed with" in with_input.stderr


def test_chat_in_client_fails_closed_and_prints_nothing_to_chat_with(
    relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model, tmp_path: Path
) -> None:
    relay = relay_factory()
    node = node_factory([relay], [onnx_model])
    key_file = tmp_path / "u.nsec"
    key_file.touch(mode=0o600)
    key_file.write_text(nostr_sdk.Keys.generate().secret_key().to_bech32() + "\n")
    args = job_args(node, [relay], ONNX_NAME, "--chat-in-client", "--key", str(key_file))
    measurement = args.index("--measurement")
    del args[measurement : measurement + 2]  # the measurement is not pinned: refuse
    cli = run_cli("submit", *args)
    assert cli.returncode == 1
    assert "REFUSED" in cli.stderr
    assert "measurement" in cli.stderr
    assert cli.stdout == ""  # no npub, no relay: nothing a client could use
