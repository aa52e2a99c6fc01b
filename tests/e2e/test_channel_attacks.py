"""Attacks on the channel of a real container (node + sandbox + simulated TEE, real relay).

After the requester verified the container, the test injects: a third party's input gift-wrapped
to the container, an input whose seal is signed by a third party while the rumor claims to be
the requester's, and a replay of the requester's own input (the same wrap published twice and
the same rumor re-wrapped). The container must answer the replayed input once, never answer the
two forgeries, and keep serving; an observer on the relay reads every output.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter

import pytest

from dvm.cdvm.channel import MessageKind, OutputState, build_input, parse_channel_rumor
from dvm.client import Chat, JobOptions, Timeouts, trust_simulated_roots
from dvm.nostr import nip44
from dvm.nostr.errors import NostrError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip17 import gift_wraps
from dvm.nostr.nip59 import GIFT_WRAP_KINDS, WRAP_KIND_EPHEMERAL, gift_wrap, unwrap
from dvm.relay import RelayPool, Subscription
from tests.integration.conftest import RelayFactory
from tests.waiting import wait_for

from .conftest import ONNX_NAME, Model, NodeFactory, pins_for

pytestmark = [pytest.mark.relay, pytest.mark.slow]


def _tensor(value: int) -> str:
    return json.dumps({"inputs": {"x": {"shape": [1, 1], "dtype": "int64", "data": [value]}}})


def _wrap(rumor: UnsignedEvent, sender: SecretKey, to: PublicKey) -> Event:
    [(_, event)] = gift_wraps(
        rumor,
        sender,
        [to],
        random_bytes=secrets.token_bytes,
        now=int(time.time()),
        include_sender=False,
        kind=WRAP_KIND_EPHEMERAL,
    )
    return event


def _mismatched_seal_wrap(rumor: UnsignedEvent, sealer: SecretKey, to: PublicKey) -> Event:
    """A seal signed by ``sealer`` around a rumor that claims another author."""
    conv = nip44.get_conversation_key(sealer, to)
    content = nip44.encrypt(rumor.to_json(), conv, nonce=secrets.token_bytes(32))
    seal = UnsignedEvent(sealer.public_key.hex(), int(time.time()), 13, (), content).sign(
        sealer, aux_rand=secrets.token_bytes(32)
    )
    return gift_wrap(
        seal,
        to,
        wrapper=SecretKey.generate(secrets.token_bytes),
        created_at=int(time.time()),
        nonce=secrets.token_bytes(32),
        aux_rand=secrets.token_bytes(32),
        kind=WRAP_KIND_EPHEMERAL,
    )


async def _caught_up(observer: RelayPool, outs: Subscription, to: PublicKey) -> list[Event]:
    """Every event ``outs`` gets until a marker the observer publishes now, marker excluded.

    The relay forwards events to a subscription in the order it received them, so once the
    marker (same kind, same ``p``) is here, so is everything the container published before.
    """
    throwaway = SecretKey.generate(secrets.token_bytes)
    marker = UnsignedEvent(
        throwaway.public_key.hex(),
        int(time.time()),
        WRAP_KIND_EPHEMERAL,
        (("p", to.hex()),),
        "marker",
    ).sign(throwaway, aux_rand=secrets.token_bytes(32))
    await observer.publish(marker)
    received: list[Event] = []

    def marker_seen() -> bool:
        while (event := outs.get_nowait()) is not None:
            received.append(event)
        return any(e.id == marker.id for e in received)

    await wait_for(marker_seen, timeout_s=30, what="the observer receives its own marker")
    return [e for e in received if e.id != marker.id]


def test_forged_and_replayed_inputs_are_ignored_by_the_container(
    relay_factory: RelayFactory, node_factory: NodeFactory, onnx_model: Model
) -> None:
    relay = relay_factory()
    node = node_factory([relay], [onnx_model])
    me = SecretKey.generate(secrets.token_bytes)
    stranger = SecretKey.generate(secrets.token_bytes)
    values = {
        name: 10**17 + secrets.randbelow(10**17) for name in ("third", "seal", "replay", "ok")
    }
    options = JobOptions(
        provider=node.key.public_key,
        relays=(relay.url,),
        model=ONNX_NAME,
        tee="simulated",
        trust=trust_simulated_roots([node.sim_root]),
        timeouts=Timeouts(attestation_s=60, answer_s=60, destroyed_s=60),
        fresh_session=False,  # the test holds the session key to read every output itself
        pins=pins_for(node, ONNX_NAME),
    )

    async def scenario() -> tuple[dict[str, str], Counter[str], list[str], int, str | None]:
        async with RelayPool([relay.url]) as observer, Chat(options, identity=me) as chat:
            container = PublicKey.from_hex(chat.verification.container)
            job = chat.job_id
            outs = await observer.subscribe(
                [
                    Filter(
                        kinds=tuple(sorted(GIFT_WRAP_KINDS)),
                        tags=(Filter.tag("p", [me.public_key.hex(), stranger.public_key.hex()]),),
                    )
                ]
            )
            assert await outs.wait_eose(timeout_s=5)  # live before the attacks are sent
            now = int(time.time())
            [third] = build_input(
                stranger.public_key, container, job, _tensor(values["third"]), created_at=now
            )
            [forged] = build_input(
                me.public_key, container, job, _tensor(values["seal"]), created_at=now
            )
            [replayed] = build_input(
                me.public_key, container, job, _tensor(values["replay"]), created_at=now
            )
            first_wrap = _wrap(replayed, me, container)
            for event in (
                _wrap(third, stranger, container),
                _mismatched_seal_wrap(forged, stranger, container),
                first_wrap,
                first_wrap,  # the very same event again
                _wrap(replayed, me, container),  # the same rumor in a fresh wrap
            ):
                await observer.publish(event)
            answer = await chat.send(_tensor(values["ok"]))
            # The container runs accepted inputs one at a time in arrival order, and every
            # injected event reached the relay before the client's own input: a wrongly accepted
            # one was answered before that input was. Once destroyed, it sends nothing more.
            outcome = await chat.end()
            received = await _caught_up(observer, outs, me.public_key)
            ids = {"third": third.id, "seal": forged.id, "replay": replayed.id}
            finals: Counter[str] = Counter()
            contents: list[str] = []
            to_stranger = 0
            for event in received:
                if stranger.public_key.hex() in event.tag_values("p"):
                    to_stranger += 1
                    continue
                try:
                    opened = unwrap(event, me, expected_sender=container)
                    message = parse_channel_rumor(opened.rumor, job=job, recipient=me.public_key)
                except NostrError:
                    continue
                if message.kind is MessageKind.OUTPUT and message.answers is not None:
                    contents.append(message.content)
                    if message.state is OutputState.FINAL:
                        finals[message.answers] += 1
            assert json.loads(answer)["outputs"]["y"]["data"] == [values["ok"]]
            return ids, finals, contents, to_stranger, outcome.result

    ids, finals, contents, to_stranger, result = asyncio.run(scenario())
    # What must be there first (the container answered, the observer saw it), then what not.
    assert finals[ids["replay"]] == 1  # answered once, not three times
    assert sum(finals.values()) == 2  # the replayed input and the client's own
    assert to_stranger == 0
    assert finals[ids["third"]] == 0
    assert finals[ids["seal"]] == 0
    assert not any(str(values["third"]) in c or str(values["seal"]) in c for c in contents)
    assert result is not None
    assert len(json.loads(result)) == 2
    log = node.log_text()
    assert str(values["third"]) not in log
    assert str(values["seal"]) not in log
