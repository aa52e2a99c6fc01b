"""A test-side provider P and its per-job container C, built from ``dvm.nostr`` and the
simulated TEE, talking to a real relay: enough of the protocol to drive ``dvm.client``, and
a place to misbehave on purpose (``Tamper``) for the attack tests.

Named as what it is: a fake. The real node and container are tested end to end in tests/e2e.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from attestation.evidence import EvidenceType, SnpItem
from attestation.simulated import SimulatedTee
from dvm.cdvm.channel import MessageKind, OutputState, build_output, parse_channel_rumor
from dvm.cdvm.chunks import ChunkBuffer, parse_chunk_tag
from dvm.cdvm.kind7100 import Claims, ModelClaim, RuntimeClaim, build_attestation
from dvm.cdvm.pod_contract import build_initdata
from dvm.client.pins import Pins
from dvm.nostr import nip44
from dvm.nostr.errors import NostrError
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip17 import gift_wraps
from dvm.nostr.nip59 import GIFT_WRAP_KINDS, WRAP_KIND_EPHEMERAL, unwrap
from dvm.nostr.nip90 import (
    FeedbackStatus,
    JobRequest,
    build_job_feedback,
    build_job_result,
    parse_job_request,
)
from dvm.relay import RelayPool

MODEL_SHA256 = "ab" * 32
#: What a requester pins to accept this fake's containers: the model above and the measurement
#: of the session's simulated TEE (tests/unit/dvm/client/conftest.py, SHA-384 of b"fake runtime").
PINS = Pins(
    measurements=frozenset({hashlib.sha384(b"fake runtime").hexdigest()}),
    model_sha256s=frozenset({MODEL_SHA256}),
)
MEASUREMENT_OFFSET = 0x90  # AMD 56860 Table 23: MEASUREMENT, 48 bytes


@dataclass(frozen=True)
class Tamper:
    """How the fake misbehaves. The default is an honest provider."""

    nonce: str | None = None  # claims.nonce (the report is bound to the lie)
    other_job: str | None = None  # claims.job and its report are another job's; e tag is ours
    provider: PublicKey | None = None  # claims.provider and the provider tag
    flip_report: bool = False  # one bit of the MEASUREMENT flipped after signing
    impostor_attestation: bool = False  # an honest-looking attestation by another key, first
    impostor_feedback: bool = False  # feedback signed by someone else naming another container
    skip_success: bool = False  # never publish the final feedback
    #: run "under Confidential Containers": this image in the claims, a sev-snp-typed item whose
    #: HOST_DATA is the digest of the job's initdata (the test pins the simulated ARK as AMD's)
    coco_image: str | None = None


def _now() -> int:
    return int(time.time())


@dataclass
class FakeProvider:
    url: str
    tee: SimulatedTee
    tamper: Tamper = field(default_factory=Tamper)
    answer: Callable[[str], str] = lambda text: f"echo: {text}"
    key: SecretKey = field(default_factory=lambda: SecretKey.generate(secrets.token_bytes))
    wraps_received: int = 0
    wrap_ids: list[str] = field(default_factory=list)  # every wrap to a container, in order
    containers: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _pool: RelayPool | None = None

    @property
    def pubkey(self) -> PublicKey:
        return self.key.public_key

    async def __aenter__(self) -> FakeProvider:
        self._pool = RelayPool([self.url])
        await self._pool.start()
        sub = await self._pool.subscribe(
            [Filter(kinds=(5050,), tags=(Filter.tag("p", [self.pubkey.hex()]),))]
        )
        await sub.wait_eose(timeout_s=5)

        async def serve() -> None:
            async for event in sub:
                self._tasks.append(asyncio.create_task(self._job(parse_job_request(event))))

        self._tasks.append(asyncio.create_task(serve()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pool is not None:
            await self._pool.close()

    async def probe(self, container: str) -> str:
        """Publish a stranger's gift wrap to ``container``; its id, to wait for on the far side.

        Relays deliver in order, so once the container saw the probe it has seen every wrap
        published before it: the test can then assert what it did *not* receive, no sleep.
        """
        assert self._pool is not None
        stranger = SecretKey.generate(secrets.token_bytes)
        rumor = UnsignedEvent(stranger.public_key.hex(), _now(), 14, (), "probe")
        [(_, wrap)] = gift_wraps(
            rumor,
            stranger,
            [PublicKey.from_hex(container)],
            random_bytes=secrets.token_bytes,
            now=_now(),
            include_sender=False,
            kind=WRAP_KIND_EPHEMERAL,
        )
        await self._pool.publish(wrap)
        return wrap.id

    async def _publish(self, unsigned: UnsignedEvent, key: SecretKey) -> Event:
        assert self._pool is not None
        event = unsigned.sign(key, aux_rand=secrets.token_bytes(32))
        await self._pool.publish(event)
        return event

    def _attestation(self, request: JobRequest, container: SecretKey) -> UnsignedEvent:
        t = self.tamper
        claims = Claims(
            pubkey=container.public_key.hex(),
            job=t.other_job or request.id,
            nonce=t.nonce or request.nonce,
            provider=(t.provider or self.pubkey).hex(),
            model=ModelClaim(request.model or "none", MODEL_SHA256),
            runtime=RuntimeClaim("0.1.0", t.coco_image or "fake"),
        )
        initdata = (
            None
            if t.coco_image is None
            else build_initdata(
                job_id=claims.job,
                provider=claims.provider,
                image=t.coco_image,
                gpu=request.tee == "sev-snp+nvidia-h100",
            )
        )
        item = self.tee.attest(
            container_pubkey=bytes.fromhex(container.public_key.hex()),
            claims=claims.to_dict(),
            initdata=initdata,
        )
        if t.coco_image is not None:
            item = replace(item, type=EvidenceType.SEV_SNP)
        if t.flip_report:
            raw = bytearray(item.report)
            raw[MEASUREMENT_OFFSET] ^= 0x01
            item = SnpItem(item.type, bytes(raw), item.vek, item.ask, item.ark)
        unsigned = build_attestation(
            claims=claims,
            recipient=PublicKey.from_hex(request.reply_to),
            tee=request.tee,
            expiration=_now() + 600,
            evidence=[item.to_json()],
            initdata=None,
            created_at=_now(),
        )
        if t.other_job is None:
            return unsigned
        tags = tuple(("e", request.id) if tag[0] == "e" else tag for tag in unsigned.tags)
        return replace(unsigned, tags=tags)

    async def _job(self, request: JobRequest) -> None:
        assert self._pool is not None
        container = SecretKey.generate(secrets.token_bytes)
        self.containers.append(container.public_key.hex())
        requester = PublicKey.from_hex(request.requester)
        reply_to = PublicKey.from_hex(request.reply_to)
        inbox = await self._pool.subscribe(
            [
                Filter(
                    kinds=tuple(sorted(GIFT_WRAP_KINDS)),
                    tags=(Filter.tag("p", [container.public_key.hex()]),),
                )
            ]
        )
        await inbox.wait_eose(timeout_s=5)
        if self.tamper.impostor_feedback:
            stranger = SecretKey.generate(secrets.token_bytes)
            other = SecretKey.generate(secrets.token_bytes)
            await self._publish(
                build_job_feedback(
                    author=stranger.public_key,
                    request_id=request.id,
                    requester=requester,
                    status=FeedbackStatus.PROCESSING,
                    container=other.public_key,
                    created_at=_now(),
                ),
                stranger,
            )
        if self.tamper.impostor_attestation:
            impostor = SecretKey.generate(secrets.token_bytes)
            await self._publish(self._attestation(request, impostor), impostor)
        await self._publish(
            build_job_feedback(
                author=self.pubkey,
                request_id=request.id,
                requester=requester,
                status=FeedbackStatus.PROCESSING,
                container=container.public_key,
                created_at=_now(),
            ),
            self.key,
        )
        await self._publish(self._attestation(request, container), container)
        answers: list[str] = []
        chunks = ChunkBuffer()
        first_piece: dict[str, str] = {}
        oneshot = request.param("mode") == "oneshot"
        async for wrap in inbox:
            self.wraps_received += 1
            self.wrap_ids.append(wrap.id)
            try:
                opened = unwrap(wrap, container, expected_sender=reply_to)
                message = parse_channel_rumor(
                    opened.rumor, job=request.id, recipient=container.public_key
                )
            except NostrError:
                continue
            if message.kind is MessageKind.INPUT:
                chunk = parse_chunk_tag(opened.rumor.tags)
                content, input_id = message.content, message.rumor_id
                if chunk is not None:
                    if chunk.index == 0:
                        first_piece[chunk.digest] = message.rumor_id
                    whole = chunks.add(chunk, message.content)
                    if whole is None:
                        continue
                    content, input_id = whole, first_piece.pop(chunk.digest)
                self.inputs.append(content)
                text = self.answer(content)
                answers.append(text)
                half = len(text) // 2
                parts = [(text[:half], OutputState.PARTIAL), (text[half:], OutputState.FINAL)]
                for seq, (piece, state) in reversed(list(enumerate(parts))):  # out of order
                    for rumor in build_output(
                        container.public_key,
                        reply_to,
                        request.id,
                        piece,
                        answers=input_id,
                        seq=seq,
                        state=state,
                        created_at=_now(),
                    ):
                        for _, event in gift_wraps(
                            rumor,
                            container,
                            [reply_to],
                            random_bytes=secrets.token_bytes,
                            now=_now(),
                            include_sender=False,
                            kind=opened.wrap_kind,
                        ):
                            await self._pool.publish(event)
            if message.kind is MessageKind.END or (oneshot and answers):
                break
        content = answers[0] if oneshot else json.dumps(answers)
        # to the request's result key: S, or U with ["result-to", U] (docs/protocol.md §6)
        conv = nip44.get_conversation_key(container, PublicKey.from_hex(request.result_key))
        ciphertext = nip44.encrypt(content, conv, nonce=secrets.token_bytes(32))
        await self._publish(
            build_job_result(
                request, author=container.public_key, ciphertext=ciphertext, created_at=_now()
            ),
            container,
        )
        if not self.tamper.skip_success:
            await self._publish(
                build_job_feedback(
                    author=self.pubkey,
                    request_id=request.id,
                    requester=requester,
                    status=FeedbackStatus.SUCCESS,
                    destroyed=True,
                    created_at=_now(),
                ),
                self.key,
            )
        container.wipe()
