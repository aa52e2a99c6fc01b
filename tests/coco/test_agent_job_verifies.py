"""Acceptance (issue 9, item 2): a sev-snp job whose evidence comes through the fake attestation
agent verifies end to end; evidence for other runtime_data, another key or other claims does not.

The path is the production one from REPORT_DATA on: the container's claims and binding
(``dvm.cdvm.kind7100.report_data``), its evidence provider (``container.evidence.SnpProvider``
over ``attestation.snp.device.get_report`` with no configfs-tsm and no /dev/sev-guest, as in a
CoCo container, so the agent answers over HTTP on 127.0.0.1), the kind-7100 event the container
signs (``container.outbox.sign_attestation``) and the requester's ``verify_attestation``. The
fake agent's "firmware" is the simulated AMD signer; its ARK is pinned as AMD's Genoa root **in
this test only** (as tests/unit/dvm/client/test_verify_snp.py does), so the verifier takes the
hardware path: trust gate, chain, signature, policy, binding, HOST_DATA, TEE kind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from attestation.binding import host_data_for_initdata
from attestation.errors import DeviceError
from attestation.simulated import SimulatedTee
from attestation.snp.abi import Product
from attestation.snp.crl import CrlPolicy
from attestation.snp.device import get_report, get_report_attestation_agent
from attestation.snp.validate import DEFAULT_POLICY
from attestation.verification import Trust
from container.evidence import SnpProvider
from container.outbox import sign_attestation
from dvm.cdvm.kind7100 import Claims, ModelClaim, RuntimeClaim, report_data
from dvm.cdvm.pod_contract import build_initdata
from dvm.client import AttestationRefused, Verification, verify_attestation
from dvm.client.pins import Pins
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip90 import JobRequest, build_job_request, parse_job_request

from .fake_attestation_agent import FakeAttestationAgent, running_agent

IMAGE = "registry.example/cdvm/job@sha256:" + "ab" * 32
MODEL_SHA256 = "c" * 64
PROVIDER = SecretKey(bytes.fromhex("22" * 32)).public_key


@dataclasses.dataclass(frozen=True)
class Job:
    request: JobRequest
    container: SecretKey
    claims: Claims
    initdata: bytes


def _job() -> Job:
    user = SecretKey.generate(secrets.token_bytes)
    unsigned = build_job_request(
        requester=user.public_key,
        provider=PROVIDER,
        tee="sev-snp",
        nonce=secrets.token_bytes(32),
        created_at=int(time.time()),
        params=[("model", "gemma"), ("mode", "oneshot")],
    )
    request = parse_job_request(unsigned.sign(user, aux_rand=secrets.token_bytes(32)))
    container = SecretKey.generate(secrets.token_bytes)
    claims = Claims(
        pubkey=container.public_key.hex(),
        job=request.id,
        nonce=request.nonce,
        provider=request.provider,
        model=ModelClaim("gemma", MODEL_SHA256),
        runtime=RuntimeClaim("0.1.0", IMAGE),
    )
    initdata = build_initdata(job_id=request.id, provider=request.provider, image=IMAGE, gpu=False)
    return Job(request, container, claims, initdata)


@pytest.fixture
def job() -> Job:
    return _job()


@pytest.fixture
def agent(agent_tee: SimulatedTee, job: Job) -> Iterator[FakeAttestationAgent]:
    """The pod's agent: HOST_DATA is this job's initdata digest, as the host launched it."""
    fake = FakeAttestationAgent(agent_tee, host_data=host_data_for_initdata(job.initdata))
    with running_agent(fake) as running:
        yield running


def _trust(tee: SimulatedTee) -> Trust:
    """TEST ONLY: the simulated ARK pinned as if it were AMD's Genoa root."""
    ark = hashlib.sha256(tee.chain.der("ark")).hexdigest()
    return Trust(amd_arks={Product.GENOA: frozenset({ark})})


def _provider(agent: FakeAttestationAgent, tmp_path: Path) -> SnpProvider:
    return SnpProvider(
        get_report=lambda rd: get_report(
            rd,
            tsm_base=tmp_path / "no-configfs-tsm",
            device=tmp_path / "no-sev-guest",
            aa_url=agent.url,
        )
    )


def _verify(
    job: Job, evidence: list[dict[str, object]], tee: SimulatedTee, crl: CrlPolicy
) -> Verification:
    now = int(time.time())
    event = sign_attestation(
        job.container,
        claims=job.claims,
        recipient=PublicKey.from_hex(job.request.reply_to),
        tee=job.request.tee,
        evidence=evidence,
        expiration=now + 600,
        now=now,
        random_bytes=secrets.token_bytes,
    )
    return verify_attestation(
        event,
        request=job.request,
        container=job.container.public_key.hex(),
        policy=DEFAULT_POLICY,
        trust=_trust(tee),
        now=datetime.now(UTC),
        trusted_images=(IMAGE,),
        # The requester's pins (fail closed without them): the runtime's measurement, the model.
        pins=Pins(
            measurements=frozenset({tee.measurement.hex()}),
            model_sha256s=frozenset({MODEL_SHA256}),
        ),
        crl=crl,  # an offline CRL minted for the test's ARK: nothing is fetched
    )


def test_a_sev_snp_job_through_the_agent_verifies(
    job: Job, agent: FakeAttestationAgent, agent_crl: CrlPolicy, tmp_path: Path
) -> None:
    binding = report_data(job.claims)
    evidence = _provider(agent, tmp_path).get_evidence(binding)
    assert agent.runtime_data_seen == [binding]  # 64 hex characters, taken as text
    assert [item["type"] for item in evidence] == ["sev-snp"]
    verification = _verify(job, evidence, agent.tee, agent_crl)
    assert not verification.simulated
    assert verification.tee == "sev-snp"
    assert any(
        c.startswith("HOST_DATA = SHA-256 of this job's initdata") for c in verification.checks
    )


def _refused(
    job: Job, evidence: list[dict[str, object]], tee: SimulatedTee, crl: CrlPolicy
) -> tuple[str, ...]:
    with pytest.raises(AttestationRefused) as caught:
        _verify(job, evidence, tee, crl)
    return caught.value.reasons


def _evidence_for(
    agent: FakeAttestationAgent, tmp_path: Path, other: bytes
) -> list[dict[str, object]]:
    """What code in the same VM gets by asking the agent for ``other`` REPORT_DATA."""
    return _provider(agent, tmp_path).get_evidence(other)


def _binding_refused(reasons: tuple[str, ...]) -> bool:
    return any("BindingMismatch" in r and "not the binding" in r for r in reasons)


def test_evidence_for_tampered_runtime_data_is_refused(
    job: Job, agent: FakeAttestationAgent, agent_crl: CrlPolicy, tmp_path: Path
) -> None:
    honest = report_data(job.claims)
    tampered = (b"0" if honest[:1] != b"0" else b"1") + honest[1:]
    reasons = _refused(job, _evidence_for(agent, tmp_path, tampered), agent.tee, agent_crl)
    assert _binding_refused(reasons), reasons
    assert len(reasons) == 1, reasons  # the chain, signature, HOST_DATA and claims all pass


def test_evidence_for_a_shorter_runtime_data_is_refused(
    job: Job, agent: FakeAttestationAgent, agent_crl: CrlPolicy, tmp_path: Path
) -> None:
    """The agent zero-pads: 32 of the 64 characters give another REPORT_DATA, not a prefix match."""
    padded = report_data(job.claims)[:32].ljust(64, b"\0")
    evidence = _evidence_for(agent, tmp_path, padded)
    assert agent.runtime_data_seen[-1] == report_data(job.claims)[:32]
    reasons = _refused(job, evidence, agent.tee, agent_crl)
    assert any("not the cdvm/1 form" in r for r in reasons), reasons


def test_evidence_binding_another_key_is_refused(
    job: Job, agent: FakeAttestationAgent, agent_crl: CrlPolicy, tmp_path: Path
) -> None:
    intruder = SecretKey.generate(secrets.token_bytes)
    theirs = dataclasses.replace(job.claims, pubkey=intruder.public_key.hex())
    reasons = _refused(
        job, _evidence_for(agent, tmp_path, report_data(theirs)), agent.tee, agent_crl
    )
    assert _binding_refused(reasons), reasons


@pytest.mark.parametrize(
    "change",
    [
        {"nonce": "ee" * 32},
        {"model": ModelClaim("gemma", "d" * 64)},
        {"runtime": RuntimeClaim("0.1.0", "registry.example/evil@sha256:" + "ef" * 32)},
    ],
    ids=["nonce", "model", "image"],
)
def test_evidence_binding_other_claims_is_refused(
    job: Job,
    agent: FakeAttestationAgent,
    agent_crl: CrlPolicy,
    tmp_path: Path,
    change: dict[str, object],
) -> None:
    other = dataclasses.replace(job.claims, **change)
    reasons = _refused(
        job, _evidence_for(agent, tmp_path, report_data(other)), agent.tee, agent_crl
    )
    assert _binding_refused(reasons), reasons


def test_the_device_layer_refuses_an_answer_for_other_runtime_data(
    job: Job, agent: FakeAttestationAgent
) -> None:
    """Belt and braces: the container never forwards a report that binds something else."""
    agent_asked = report_data(job.claims)
    with running_agent(dataclasses.replace(agent, runtime_data_seen=[])) as other:
        other.snp_evidence = lambda _data: agent.snp_evidence(b"f" * 64)  # type: ignore[method-assign]
        with pytest.raises(DeviceError, match="not what was asked for"):
            get_report_attestation_agent(agent_asked, url=other.url)
