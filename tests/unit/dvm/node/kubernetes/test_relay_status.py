"""The node's check of a container's kind-7100 attestation, and the relay status source.

``check_attestation`` is driven with crafted events: a valid one (simulated evidence whose root
the TEST trusts; production trusts the pinned AMD roots only) and impostors (another signer
claiming the job, a wrong nonce, provider, recipient, TEE, model or image, an expired event,
evidence under an untrusted root, a replayed report bound to another key, a genuine report of
another job's pod). ``RelayStatusSource`` runs against a real ``nostr-relay`` process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestation.simulated import SimulatedChain, SimulatedTee, mint_chain
from attestation.verification import Trust
from container.launch import Limits, ModelSpec, RunnerKind, StatusKind, StatusLine
from dvm.cdvm.kind7100 import (
    ATTESTATION_KIND,
    Claims,
    ModelClaim,
    RuntimeClaim,
    build_attestation,
)
from dvm.cdvm.pod_contract import build_initdata
from dvm.node.errors import AttestationIgnored
from dvm.node.kubernetes import relay_status
from dvm.node.kubernetes.relay_status import (
    RelayStatusSource,
    check_attestation,
    expected_job_host_data,
)
from dvm.node.launcher import LaunchRequest
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.filters import Filter
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.messages import Reason
from dvm.nostr.nip90 import build_job_request, parse_job_request
from dvm.relay import BackoffPolicy, PoolClosedError, RelayPool, Subscription
from tests.integration.conftest import RelayProcess
from tests.waiting import wait_for

IMAGE = "registry.example/cdvm/job@sha256:" + "ab" * 32
OTHER_IMAGE = "registry.example/cdvm/job@sha256:" + "cd" * 32
MODEL_SHA256 = "c" * 64
REQUESTER = SecretKey(bytes.fromhex("11" * 32))
PROVIDER = SecretKey(bytes.fromhex("22" * 32))
OTHER_PROVIDER = SecretKey(bytes.fromhex("33" * 32))
MEASUREMENT = bytes(range(48))
FAST = BackoffPolicy(initial_s=0.1, factor=2.0, max_s=0.5)


def _launch(*, nonce: bytes = b"\x07" * 32, tee: str = "sev-snp") -> LaunchRequest:
    unsigned = build_job_request(
        requester=REQUESTER.public_key,
        provider=PROVIDER.public_key,
        tee=tee,
        nonce=nonce,
        created_at=int(time.time()),
        params=[("model", "gemma")],
    )
    request = parse_job_request(unsigned.sign(REQUESTER, aux_rand=secrets.token_bytes(32)))
    return LaunchRequest(
        request=request,
        provider=PROVIDER.public_key.hex(),
        relays=("ws://127.0.0.1:1",),
        model=ModelSpec(
            name="gemma", runner=RunnerKind.LLAMA, path="/models/gemma", sha256=MODEL_SHA256
        ),
        limits=Limits(
            attestation_timeout_s=60,
            idle_timeout_s=60,
            deadline_s=60,
            max_input_bytes=1024,
            max_output_tokens=64,
        ),
        grace_s=2,
        runtime_version="0.1.0",
        runtime_image=IMAGE,
    )


@dataclasses.dataclass(frozen=True)
class Craft:
    """What a crafted attestation says; every field defaults to the honest container's value."""

    job: str | None = None
    nonce: str | None = None
    provider: str | None = None
    recipient: str | None = None
    tee: str = "sev-snp"
    model_name: str = "gemma"
    model_sha256: str = MODEL_SHA256
    image: str = IMAGE
    expires_in_s: int = 3600
    #: the initdata whose digest the report's HOST_DATA carries (default: this job's)
    initdata: bytes | None = None
    no_initdata: bool = False
    #: bind the report to this key instead of the signer's (a replayed report)
    bound_key: SecretKey | None = None


def craft(
    signer: SecretKey, launch: LaunchRequest, chain: SimulatedChain, spec: Craft = Craft()
) -> Event:
    """A kind-7100 event signed by ``signer`` with simulated evidence from ``chain``."""
    job = spec.job or launch.job_id
    provider = spec.provider or launch.provider
    claims = Claims(
        pubkey=signer.public_key.hex(),
        job=job,
        nonce=spec.nonce or launch.request.nonce,
        provider=provider,
        model=ModelClaim(spec.model_name, spec.model_sha256),
        runtime=RuntimeClaim("0.1.0", spec.image),
    )
    initdata = spec.initdata or build_initdata(job_id=job, provider=provider, image=spec.image)
    bound = spec.bound_key or signer
    bound_claims = dataclasses.replace(claims, pubkey=bound.public_key.hex())
    item = SimulatedTee(chain, MEASUREMENT).attest(
        container_pubkey=bytes.fromhex(bound.public_key.hex()),
        claims=bound_claims.to_dict(),
        initdata=None if spec.no_initdata else initdata,
    )
    now = int(time.time())
    unsigned = build_attestation(
        claims=claims,
        recipient=PublicKey.from_hex(spec.recipient or launch.request.reply_to),
        tee=spec.tee,
        expiration=now + spec.expires_in_s,
        evidence=[item.to_json()],
        initdata=None,
        created_at=now,
    )
    return unsigned.sign(signer, aux_rand=secrets.token_bytes(32))


def trust_of(chain: SimulatedChain) -> Trust:
    """TEST ONLY: the simulated root trusted explicitly."""
    return Trust(simulated_roots=(chain.pem("ark"),))


def _check(event: Event, launch: LaunchRequest, chain: SimulatedChain) -> str:
    return check_attestation(
        event, launch, image=IMAGE, trust=trust_of(chain), now=dt.datetime.now(dt.UTC)
    )


@pytest.fixture(scope="module")
def rogue_chain() -> SimulatedChain:
    """A second simulated installation: evidence under it chains to an untrusted root."""
    return mint_chain(now=dt.datetime.now(dt.UTC))


# --- check_attestation ---------------------------------------------------------------------------


def test_the_job_containers_attestation_names_its_key(simulated_chain: SimulatedChain) -> None:
    launch, container = _launch(), SecretKey.generate(secrets.token_bytes)
    event = craft(container, launch, simulated_chain)
    assert _check(event, launch, simulated_chain) == container.public_key.hex()


def test_expected_host_data_is_that_of_this_jobs_initdata() -> None:
    for tee, gpu in (("sev-snp", False), ("sev-snp+nvidia-h100", True)):
        launch = _launch(tee=tee)
        document = build_initdata(
            job_id=launch.job_id, provider=launch.provider, image=IMAGE, gpu=gpu
        )
        assert expected_job_host_data(launch, image=IMAGE) == hashlib.sha256(document).digest()
        assert (
            expected_job_host_data(launch, image=OTHER_IMAGE) != hashlib.sha256(document).digest()
        )


@pytest.mark.parametrize(
    ("spec_of", "reason"),
    [
        (lambda launch: Craft(nonce="ee" * 32), "claims.nonce is"),
        (lambda launch: Craft(provider=OTHER_PROVIDER.public_key.hex()), "provider is"),
        (lambda launch: Craft(recipient=OTHER_PROVIDER.public_key.hex()), "recipient (p tag)"),
        (lambda launch: Craft(tee="sev-snp+nvidia-h100"), "tee tag is"),
        (lambda launch: Craft(model_name="other"), "claims.model.name is"),
        (lambda launch: Craft(model_sha256="d" * 64), "claims.model.sha256 is"),
        (lambda launch: Craft(image=OTHER_IMAGE), "claims.runtime.image is"),
        (lambda launch: Craft(job="ff" * 32), "job (e tag) is"),
        (lambda launch: Craft(expires_in_s=-10), "it expired at"),
    ],
)
def test_claims_that_do_not_match_the_request_are_ignored_before_verification(
    simulated_chain: SimulatedChain, spec_of: Callable[[LaunchRequest], Craft], reason: str
) -> None:
    launch = _launch()
    event = craft(SecretKey.generate(secrets.token_bytes), launch, simulated_chain, spec_of(launch))
    with pytest.raises(AttestationIgnored) as info:
        _check(event, launch, simulated_chain)
    assert any(r.startswith(reason) for r in info.value.reasons), info.value.reasons
    assert info.value.evidence_checked is False
    assert info.value.event_id == event.id


def test_evidence_under_an_untrusted_root_is_ignored(
    simulated_chain: SimulatedChain, rogue_chain: SimulatedChain
) -> None:
    launch = _launch()
    event = craft(SecretKey.generate(secrets.token_bytes), launch, rogue_chain)
    with pytest.raises(AttestationIgnored, match="UntrustedRoot") as info:
        _check(event, launch, simulated_chain)
    assert info.value.evidence_checked is True


def test_simulated_evidence_is_refused_by_the_default_trust(
    simulated_chain: SimulatedChain,
) -> None:
    launch = _launch()
    event = craft(SecretKey.generate(secrets.token_bytes), launch, simulated_chain)
    with pytest.raises(AttestationIgnored, match="UntrustedRoot"):
        check_attestation(event, launch, image=IMAGE, trust=Trust(), now=dt.datetime.now(dt.UTC))


def test_another_signer_replaying_the_containers_report_is_ignored(
    simulated_chain: SimulatedChain,
) -> None:
    """The impostor signs with its own key D but carries a report bound to C: binding fails."""
    launch = _launch()
    container, impostor = (SecretKey.generate(secrets.token_bytes) for _ in range(2))
    event = craft(impostor, launch, simulated_chain, Craft(bound_key=container))
    with pytest.raises(AttestationIgnored) as info:
        _check(event, launch, simulated_chain)
    assert info.value.evidence_checked is True
    assert any("BindingMismatch" in r or "REPORT_DATA" in r for r in info.value.reasons)


def test_a_report_of_another_jobs_pod_is_ignored(simulated_chain: SimulatedChain) -> None:
    """Genuine evidence whose HOST_DATA is the initdata of another job (or of no initdata)."""
    launch = _launch()
    other = build_initdata(job_id="ee" * 32, provider=launch.provider, image=IMAGE)
    for spec in (Craft(initdata=other), Craft(no_initdata=True)):
        event = craft(SecretKey.generate(secrets.token_bytes), launch, simulated_chain, spec)
        with pytest.raises(AttestationIgnored, match="HOST_DATA"):
            _check(event, launch, simulated_chain)


def test_an_unparsable_7100_is_ignored(simulated_chain: SimulatedChain) -> None:
    launch = _launch()
    signer = SecretKey.generate(secrets.token_bytes)
    unsigned = UnsignedEvent(
        signer.public_key.hex(), int(time.time()), ATTESTATION_KIND, (("e", launch.job_id),), "{}"
    )
    event = unsigned.sign(signer, aux_rand=bytes(32))
    with pytest.raises(AttestationIgnored, match="does not parse as a cdvm/1 attestation"):
        _check(event, launch, simulated_chain)


_TAG = st.lists(st.text(max_size=70), min_size=1, max_size=3).map(tuple)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content=st.one_of(
        st.text(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=10,
        ).map(lambda v: json.dumps({"v": 1, "claims": v, "evidence": v})),
    ),
    tags=st.lists(_TAG, max_size=6),
)
def test_garbage_events_raise_only_attestation_ignored(
    simulated_chain: SimulatedChain, content: str, tags: list[tuple[str, ...]]
) -> None:
    launch = _launch(nonce=b"\x09" * 32)
    signer = SecretKey(bytes.fromhex("44" * 32))
    all_tags = (("e", launch.job_id), *tags)
    unsigned = UnsignedEvent(
        signer.public_key.hex(), 1_700_000_000, ATTESTATION_KIND, all_tags, content
    )
    event = unsigned.sign(signer, aux_rand=bytes(32))
    with pytest.raises(AttestationIgnored):
        _check(event, launch, simulated_chain)


def test_garbage_evidence_in_a_well_formed_event_raises_only_attestation_ignored(
    simulated_chain: SimulatedChain,
) -> None:
    """Claims all right, evidence items that do not parse: the bundle parser's error is ours."""
    launch = _launch()
    signer = SecretKey.generate(secrets.token_bytes)
    good = craft(signer, launch, simulated_chain)
    body: dict[str, Any] = json.loads(good.content)
    body["evidence"] = [{"type": "simulated", "report": "AAAA", "vek": "", "ask": "", "ark": ""}]
    unsigned = UnsignedEvent(good.pubkey, good.created_at, good.kind, good.tags, json.dumps(body))
    event = unsigned.sign(signer, aux_rand=bytes(32))
    with pytest.raises(AttestationIgnored, match="evidence: ParseError") as info:
        _check(event, launch, simulated_chain)
    assert info.value.evidence_checked is True


# --- RelayStatusSource against a real relay ---------------------------------------------------


async def _publish(relay: RelayProcess, *events: Event) -> None:
    async with RelayPool([relay.url], backoff=FAST) as pool:
        for event in events:
            await pool.publish(event)


@pytest.mark.relay
@pytest.mark.asyncio
async def test_source_yields_the_verified_container_and_ignores_impostors(
    relay: RelayProcess,
    simulated_chain: SimulatedChain,
    rogue_chain: SimulatedChain,
    caplog: pytest.LogCaptureFixture,
) -> None:
    launch = _launch(nonce=secrets.token_bytes(32))
    container = SecretKey.generate(secrets.token_bytes)
    impostors = [
        # another signer claiming the job with evidence under its own (untrusted) root
        craft(SecretKey.generate(secrets.token_bytes), launch, rogue_chain),
        # a wrong nonce, and a wrong provider, with otherwise valid evidence
        craft(
            SecretKey.generate(secrets.token_bytes), launch, simulated_chain, Craft(nonce="ab" * 32)
        ),
        craft(
            SecretKey.generate(secrets.token_bytes),
            launch,
            simulated_chain,
            Craft(provider=OTHER_PROVIDER.public_key.hex()),
        ),
        # the container's own report, re-signed by someone else
        craft(
            SecretKey.generate(secrets.token_bytes),
            launch,
            simulated_chain,
            Craft(bound_key=container),
        ),
    ]
    await _publish(relay, *impostors)  # stored before the node subscribes
    valid = craft(container, launch, simulated_chain)
    caplog.set_level(logging.WARNING, logger="dvm.node.kubernetes.relay_status")
    async with RelayPool([relay.url], secret_key=PROVIDER, backoff=FAST) as pool:
        source = RelayStatusSource(pool, image=IMAGE, trust=trust_of(simulated_chain))
        lines = source.status_lines(launch)
        first = asyncio.ensure_future(anext(lines))

        def ignored_ids() -> set[str]:
            return {
                impostor.id
                for impostor in impostors
                for record in caplog.records
                if "ignoring kind-7100" in record.getMessage()
                and impostor.id in record.getMessage()
            }

        # The impostors arrive first and are each examined and ignored; only then is the absence
        # of a status line meaningful.
        await wait_for(
            lambda: len(ignored_ids()) == len(impostors),
            timeout_s=20,
            what="the node ignores every impostor",
        )
        assert not first.done()
        await _publish(relay, valid)  # published while the node watches
        line = await asyncio.wait_for(first, timeout=20)
        assert line.kind is StatusKind.ATTESTED
        assert line.container == container.public_key.hex()
        assert line.attestation == valid.id
        with pytest.raises(StopAsyncIteration):  # one attested line, then the source ends
            await asyncio.wait_for(anext(lines), timeout=5)
    ignored = [r.getMessage() for r in caplog.records if "ignoring kind-7100" in r.getMessage()]
    for impostor in impostors:
        assert any(impostor.id in m and impostor.pubkey in m for m in ignored), impostor.id
    assert not any(valid.id in m for m in ignored)


def _flood(
    launch: LaunchRequest, simulated_chain: SimulatedChain, rogue_chain: SimulatedChain, n: int
) -> list[Event]:
    """``n`` impostors built from public data: half with wrong claims (refused at the claims
    stage), half with perfect claims and evidence under an untrusted root (refused only by the
    evidence stage, so each costs a verification)."""
    wrong_claims = [
        craft(
            SecretKey.generate(secrets.token_bytes),
            launch,
            simulated_chain,
            Craft(nonce=secrets.token_hex(32)),
        )
        for _ in range(n // 2)
    ]
    untrusted = [
        craft(SecretKey.generate(secrets.token_bytes), launch, rogue_chain)
        for _ in range(n - n // 2)
    ]
    return [event for pair in zip(wrong_claims, untrusted, strict=True) for event in pair]


@pytest.mark.relay
@pytest.mark.asyncio
async def test_64_impostors_published_before_the_genuine_one_do_not_stop_the_source(
    relay: RelayProcess,
    simulated_chain: SimulatedChain,
    rogue_chain: SimulatedChain,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 10 acceptance: the source used to give up after 32 failed verifications."""
    launch = _launch(nonce=secrets.token_bytes(32))
    container = SecretKey.generate(secrets.token_bytes)
    impostors = _flood(launch, simulated_chain, rogue_chain, 64)
    valid = craft(container, launch, simulated_chain)
    await _publish(relay, *impostors)
    await _publish(relay, valid)  # every impostor is older and stored first
    caplog.set_level(logging.WARNING, logger="dvm.node.kubernetes.relay_status")
    async with RelayPool([relay.url], secret_key=PROVIDER, backoff=FAST) as pool:
        # the default verification budget (a burst of 16, then 4 per second)
        source = RelayStatusSource(pool, image=IMAGE, trust=trust_of(simulated_chain))
        async with asyncio.timeout(60):  # 64 impostors at 4 evidence checks/s, then C's line
            lines = [line async for line in source.status_lines(launch)]
    assert [(line.container, line.attestation) for line in lines] == [
        (container.public_key.hex(), valid.id)
    ]
    ignored = [r.getMessage() for r in caplog.records if "ignoring kind-7100" in r.getMessage()]
    assert not any(valid.id in m for m in ignored)


@pytest.mark.relay
@pytest.mark.asyncio
async def test_each_event_is_examined_once_and_evidence_work_is_rate_bounded(
    relay: RelayProcess,
    simulated_chain: SimulatedChain,
    rogue_chain: SimulatedChain,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A tiny queue drops events while the source waits for verification tokens; it asks the
    relays again, skips what it examined, and finds the genuine event (published first)."""
    launch = _launch(nonce=secrets.token_bytes(32))
    container = SecretKey.generate(secrets.token_bytes)
    valid = craft(container, launch, simulated_chain)
    impostors = _flood(launch, simulated_chain, rogue_chain, 24)
    await _publish(relay, valid, *impostors)
    caplog.set_level(logging.INFO, logger="dvm.node.kubernetes.relay_status")
    async with RelayPool([relay.url], secret_key=PROVIDER, backoff=FAST, queue_maxsize=4) as pool:
        source = RelayStatusSource(
            pool, image=IMAGE, trust=trust_of(simulated_chain), verify_burst=1, verify_per_s=20.0
        )
        async with asyncio.timeout(60):  # the source ends after its one attested line
            lines = [line async for line in source.status_lines(launch)]
    assert [line.container for line in lines] == [container.public_key.hex()]
    ignored = [r.getMessage() for r in caplog.records if "ignoring kind-7100" in r.getMessage()]
    for impostor in impostors:  # at most once each, whatever was dropped and re-sent
        assert sum(impostor.id in m for m in ignored) <= 1


@pytest.mark.relay
@pytest.mark.asyncio
async def test_source_with_the_default_trust_never_names_a_simulated_container(
    relay: RelayProcess, simulated_chain: SimulatedChain, caplog: pytest.LogCaptureFixture
) -> None:
    """Production trust (pinned AMD roots only): even a perfect simulated attestation is ignored."""
    launch = _launch(nonce=secrets.token_bytes(32))
    event = craft(SecretKey.generate(secrets.token_bytes), launch, simulated_chain)
    await _publish(relay, event)
    caplog.set_level(logging.WARNING, logger="dvm.node.kubernetes.relay_status")
    async with RelayPool([relay.url], secret_key=PROVIDER, backoff=FAST) as pool:
        source = RelayStatusSource(pool, image=IMAGE)
        lines = source.status_lines(launch)
        first = asyncio.ensure_future(anext(lines))
        # The positive fact first: the node examined this very event and refused its root ...
        refusal = await wait_for(
            lambda: next(
                (
                    r.getMessage()
                    for r in caplog.records
                    if "ignoring kind-7100" in r.getMessage() and event.id in r.getMessage()
                ),
                None,
            ),
            timeout_s=20,
            what="the node ignores the simulated attestation",
        )
        assert "UntrustedRoot" in refusal
        # ... and only then the absence: no container was named for it.
        assert not first.done()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await lines.aclose()


class _ScriptedPool:
    """A pool whose subscriptions the test drives (the relay's CLOSED, then events)."""

    def __init__(self) -> None:
        self.subs: list[Subscription] = []
        self.closed = False

    async def subscribe(self, filters: list[Filter]) -> Subscription:
        if self.closed:
            raise PoolClosedError("closed")

        async def on_close(_: Subscription) -> None:
            return None

        sub = Subscription(
            f"s{len(self.subs)}",
            tuple(filters),
            frozenset({"ws://r"}),
            queue_maxsize=16,
            dedup_capacity=16,
            on_close=on_close,
        )
        self.subs.append(sub)
        return sub


@pytest.mark.asyncio
async def test_a_subscription_the_relays_close_is_asked_again(
    simulated_chain: SimulatedChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_status, "RESUBSCRIBE_AFTER_S", 0.01)
    launch = _launch(nonce=secrets.token_bytes(32))
    container = SecretKey.generate(secrets.token_bytes)
    valid = craft(container, launch, simulated_chain)
    pool = _ScriptedPool()
    source = RelayStatusSource(
        pool,  # type: ignore[arg-type]  # the one method the source uses
        image=IMAGE,
        trust=trust_of(simulated_chain),
    )
    first = asyncio.ensure_future(anext(source.status_lines(launch)))
    await wait_for(lambda: len(pool.subs) == 1, timeout_s=5, what="the first subscription")
    pool.subs[0]._mark_closed("ws://r", Reason.parse("rate-limited: slow down"))
    await wait_for(lambda: len(pool.subs) == 2, timeout_s=5, what="a second subscription")
    pool.subs[1]._deliver(valid)
    line = await asyncio.wait_for(first, timeout=5)
    assert line.container == container.public_key.hex()


@pytest.mark.asyncio
async def test_the_watch_ends_quietly_when_the_pool_closes(
    simulated_chain: SimulatedChain,
) -> None:
    launch = _launch(nonce=secrets.token_bytes(32))
    pool = _ScriptedPool()
    source = RelayStatusSource(pool, image=IMAGE)  # type: ignore[arg-type]
    lines = asyncio.ensure_future(_collect(source.status_lines(launch)))
    await wait_for(lambda: len(pool.subs) == 1, timeout_s=5, what="the subscription")
    pool.closed = True
    await pool.subs[0].close()  # what RelayPool.close does to its subscriptions
    assert await asyncio.wait_for(lines, timeout=5) == []
    assert len(pool.subs) == 1


async def _collect(lines: AsyncIterator[StatusLine]) -> list[StatusLine]:
    return [line async for line in lines]
