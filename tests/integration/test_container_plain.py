"""The container runtime and a standard NIP-17 peer, in-process against a real relay.

:func:`container.job.run_job` runs in this process with a **fake streaming runner** (named as
such: it emits its answer in many small pieces, as llama.cpp does, so the cdvm protocol would
stream partials) and a fake evidence provider built on the real simulated TEE. The peer uses
our ``dvm.nostr`` to send plain kind-14 rumors (only ``["p", C]``: no ``e``, no ``cdvm`` tag) in
1059 wraps, as Amethyst or nostr-sdk do. Checked: C's kind 10050 names the spec's relays and
expires with the attestation; a stranger's plain message is ignored; each answer is ONE
readable message replying to its input (never a partial, never empty); a NIP-17 reply to an
answer is an input too; ``/end`` brings the "session ended" message, the result, and exit 0.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import io
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from attestation.simulated import SimulatedChain, SimulatedTee, mint_chain
from container.job import run_job
from container.launch import (
    EvidenceSource,
    ExitCode,
    JobSpec,
    Limits,
    ModelSpec,
    RunnerKind,
    build_job_spec,
)
from container.plain import EMPTY_ANSWER_TEXT, ENDED_TEXT
from dvm.cdvm.kind7100 import ATTESTATION_KIND, parse_attestation
from dvm.nostr import nip59
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip17 import build_chat_rumor, gift_wraps
from dvm.nostr.nip17_relays import RELAY_LIST_KIND, parse_relay_list
from dvm.nostr.nip90 import build_job_request
from dvm.relay import RelayPool, Subscription

from .conftest import RelayProcess

pytestmark = pytest.mark.relay

PIECES = 40  # more than one streaming batch (16 pieces): a cdvm peer would get partials


class FakeStreamingRunner:
    """Fake (test-only): answers ``"echo: " + text`` in one-character pieces; "silence" -> ""."""

    def run(self, text: str, *, emit: Callable[[str], None], cancel: threading.Event) -> str:
        answer = "" if text == "silence" else ("echo: " + text).ljust(PIECES, ".")
        for piece in answer:
            emit(piece)
        return answer

    def close(self) -> None:
        pass


class FakeEvidence:
    """Fake provider (test-only) over the real simulated TEE, as the launcher's PSP answers."""

    def __init__(self, chain: SimulatedChain) -> None:
        self._tee = SimulatedTee(chain, hashlib.sha384(b"test runtime").digest())
        self._chain = chain

    def get_evidence(self, report_data: bytes) -> list[dict[str, Any]]:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode("ascii")

        return [
            {
                "type": "simulated",
                "report": b64(self._tee.report(report_data=report_data)),
                "vek": b64(self._chain.der("vcek")),
                "ask": b64(self._chain.der("ask")),
                "ark": b64(self._chain.der("ark")),
            }
        ]


def _spec(relay: RelayProcess, user: SecretKey, tmp_path: Path) -> JobSpec:
    provider = SecretKey.generate(secrets.token_bytes)
    request = build_job_request(  # no session key: the container talks to U (chat-in-client)
        requester=user.public_key,
        provider=provider.public_key,
        tee="simulated",
        nonce=secrets.token_bytes(32),
        created_at=int(time.time()),
        params=(("model", "fake"), ("mode", "chat")),
    ).sign(user, aux_rand=secrets.token_bytes(32))
    model = tmp_path / "fake.bin"
    model.write_bytes(b"fake model (never loaded: the loader is the fake runner)")
    return JobSpec(
        request=request,
        provider=provider.public_key.hex(),
        relays=(relay.url,),
        tee="simulated",
        evidence_source=EvidenceSource.SIMULATED_FD,
        evidence_fd=3,  # never opened: the evidence provider is the fake below
        model=ModelSpec("fake", RunnerKind.LLAMA, str(model), hashlib.sha256(b"x").hexdigest()),
        runtime_version="test",
        runtime_image="local",
        limits=Limits(attestation_timeout_s=20, idle_timeout_s=20, deadline_s=60),
    )


def _plain_wrap(
    sender: SecretKey, container: PublicKey, text: str, reply_to: str | None = None
) -> tuple[str, Event]:
    """A standard client's message: a kind-14 rumor with ``["p", C]`` (and ``["e", id]`` when
    it is a NIP-17 reply), in a 1059 wrap."""
    rumor = build_chat_rumor(
        sender=sender.public_key,
        receivers=[container],
        content=text,
        created_at=int(time.time()),
        reply_to=reply_to,
    )
    ((_, wrap),) = gift_wraps(
        rumor,
        sender,
        [container],
        random_bytes=secrets.token_bytes,
        now=int(time.time()),
        include_sender=False,
    )
    assert wrap.kind == nip59.GIFT_WRAP_KIND
    return rumor.id, wrap


async def _next(sub: Subscription, timeout_s: float = 20) -> Event:
    async with asyncio.timeout(timeout_s):
        return await anext(aiter(sub))


def test_a_plain_nip17_peer_gets_one_readable_message_per_answer_and_an_end_notice(
    relay: RelayProcess, tmp_path: Path
) -> None:
    chain = mint_chain(now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    user = SecretKey.generate(secrets.token_bytes)
    stranger = SecretKey.generate(secrets.token_bytes)
    spec = _spec(relay, user, tmp_path)
    status = io.StringIO()

    async def scenario() -> tuple[int, Event, list[UnsignedEvent], list[str]]:
        async with RelayPool([relay.url]) as pool:
            job_events = await pool.subscribe(
                [Filter(kinds=(ATTESTATION_KIND,), tags=(Filter.tag("e", [spec.request.id]),))]
            )
            inbox = await pool.subscribe(
                [Filter(kinds=(1059,), tags=(Filter.tag("p", [user.public_key.hex()]),))]
            )
            await inbox.wait_eose(timeout_s=5)
            job = asyncio.create_task(
                run_job(
                    build_job_spec(spec),
                    status=status,
                    providers=lambda _: FakeEvidence(chain),
                    load=lambda _spec, _params: FakeStreamingRunner(),
                )
            )
            container = PublicKey.from_hex(parse_attestation(await _next(job_events)).container)
            lists = await pool.subscribe(
                [Filter(kinds=(RELAY_LIST_KIND,), authors=(container.hex(),))]
            )
            relay_list = await _next(lists)
            await pool.publish(_plain_wrap(stranger, container, "not yours")[1])
            asked: list[str] = []
            heard: list[UnsignedEvent] = []
            for text in ("hello", "silence", "/end"):
                # "silence" is the client's "reply" to the first answer (NIP-17 e tag)
                reply_to = heard[0].id if text == "silence" else None
                rumor_id, wrap = _plain_wrap(user, container, text, reply_to)
                asked.append(rumor_id)
                await pool.publish(wrap)
                heard.append(nip59.unwrap(await _next(inbox), user).rumor)
            code = await asyncio.wait_for(job, timeout=30)
            return code, relay_list, heard, asked

    code, relay_list, heard, asked = asyncio.run(scenario())
    assert code == ExitCode.OK
    # C's kind 10050: the spec's relays, signed by C, expiring with the attestation.
    assert parse_relay_list(relay_list) == spec.relays
    expiration = relay_list.first_tag("expiration")
    assert expiration is not None
    assert int(expiration[1]) > int(time.time())
    # One readable message per answer (40 streamed pieces: no partial bubble), then the end.
    texts = [r.content for r in heard]
    assert texts == ["echo: hello".ljust(PIECES, "."), EMPTY_ANSWER_TEXT, ENDED_TEXT]
    for rumor in heard:
        assert rumor.kind == 14
        assert rumor.pubkey == relay_list.pubkey
        assert ("p", user.public_key.hex()) in rumor.tags
        assert all(tag[0] not in ("cdvm", "chunk") for tag in rumor.tags)
    # Each answer replies (NIP-17 ``e``) to the input it answers; the end notice to nothing.
    assert [r.first_tag("e") for r in heard] == [("e", asked[0]), ("e", asked[1]), None]
