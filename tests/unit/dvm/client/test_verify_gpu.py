"""dvm.client.verify for sev-snp+nvidia-h100 jobs: the GPU measurements are a pinned value.

The evidence is a GPU job's bundle: a sev-snp-typed report signed by the test's simulated
installation (its ARK pinned as an AMD root **in this test only**, as in test_verify_snp.py), with
HOST_DATA of this job's GPU initdata, and an ``nvidia-gpu`` item from a fake H100 minted here
(tests/unit/dvm/client/fake_gpu.py; its root passed as ``Trust.nvidia_roots``) answering the
binding digest as nonce. So the verifier takes the hardware path end to end and the GPU's
measurement blocks, compared with what the requester pinned (a flag, or a trusted publisher's
kind-37100 ``gpu`` entry), decide.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time
from datetime import UTC, datetime

import pytest

from attestation.binding import gpu_nonce
from attestation.evidence import EvidenceType
from attestation.simulated import SimulatedTee
from attestation.snp.abi import Product, parse_report
from attestation.snp.crl import CrlPolicy
from attestation.snp.validate import DEFAULT_POLICY, TcbFloor
from attestation.verification import Trust
from dvm.cdvm.kind7100 import Claims, ModelClaim, RuntimeClaim, build_attestation
from dvm.cdvm.pod_contract import build_initdata
from dvm.cdvm.refs import (
    GpuReference,
    LaunchInputs,
    LaunchMeasurement,
    ModelHash,
    ReferenceValues,
    RimRef,
    SourceRef,
    build_reference_event,
    parse_reference_event,
)
from dvm.client import AttestationRefused, Verification, verify_attestation
from dvm.client.pins import PinKind, Pins
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip19 import encode_npub
from dvm.nostr.nip90 import JobRequest, build_job_request, parse_job_request

from .fake_gpu import DRIVER, VBIOS, FakeGpu, mint_gpu

TEE = "sev-snp+nvidia-h100"
IMAGE = "registry.example/cdvm/job@sha256:" + "ab" * 32
MODEL_SHA256 = "c" * 64
PROVIDER = SecretKey(bytes.fromhex("22" * 32)).public_key
PUBLISHER = SecretKey(bytes.fromhex("55" * 32))
A, B, C = (bytes([b]) * 48 for b in (0xA1, 0xB2, 0xC3))
HONEST = {1: A, 2: B, 3: C}
ENTRY = GpuReference(
    "GH100",
    DRIVER,
    VBIOS,
    ((1, (A.hex(),)), (2, (B.hex(),)), (3, (C.hex(),))),
    (RimRef("driver-rim", "0d" * 32), RimRef("vbios-rim", "0b" * 32)),
)


@pytest.fixture(scope="module")
def gpu() -> FakeGpu:
    return mint_gpu()


def _request() -> JobRequest:
    user = SecretKey.generate(secrets.token_bytes)
    unsigned = build_job_request(
        requester=user.public_key,
        provider=PROVIDER,
        tee=TEE,
        nonce=secrets.token_bytes(32),
        created_at=int(time.time()),
        params=[("model", "gemma"), ("mode", "oneshot")],
    )
    return parse_job_request(unsigned.sign(user, aux_rand=secrets.token_bytes(32)))


def _verify(
    sim_tee: SimulatedTee,
    crl: CrlPolicy,
    gpu: FakeGpu,
    pins: Pins,
    *,
    blocks: dict[int, bytes] = HONEST,
) -> Verification:
    request = _request()
    container = SecretKey.generate(secrets.token_bytes)
    claims = Claims(
        pubkey=container.public_key.hex(),
        job=request.id,
        nonce=request.nonce,
        provider=request.provider,
        model=ModelClaim("gemma", MODEL_SHA256),
        runtime=RuntimeClaim("0.1.0", IMAGE),
    )
    initdata = build_initdata(job_id=request.id, provider=request.provider, image=IMAGE, gpu=True)
    item = sim_tee.attest(
        container_pubkey=bytes.fromhex(container.public_key.hex()),
        claims=claims.to_dict(),
        initdata=initdata,
    )
    item = dataclasses.replace(item, type=EvidenceType.SEV_SNP)
    nonce = gpu_nonce(parse_report(item.report, product=Product.GENOA).report_data)
    now = int(time.time())
    event = build_attestation(
        claims=claims,
        recipient=PublicKey.from_hex(request.reply_to),
        tee=TEE,
        expiration=now + 600,
        evidence=[item.to_json(), gpu.item(nonce, blocks).to_json()],
        initdata=None,
        created_at=now,
    ).sign(container, aux_rand=secrets.token_bytes(32))
    trust = Trust(
        amd_arks={Product.GENOA: frozenset({hashlib.sha256(sim_tee.chain.der("ark")).hexdigest()})},
        nvidia_roots=(gpu.root,),
    )
    return verify_attestation(
        event,
        request=request,
        container=container.public_key.hex(),
        policy=DEFAULT_POLICY,
        trust=trust,
        now=datetime.now(UTC),
        trusted_images=(IMAGE,),
        pins=pins,
        crl=crl,
    )


def _pins(sim_tee: SimulatedTee, **kw: object) -> Pins:
    return Pins(
        measurements=frozenset({sim_tee.measurement.hex()}),
        model_sha256s=frozenset({MODEL_SHA256}),
        **kw,  # type: ignore[arg-type]
    )


def _publisher_pins(sim_tee: SimulatedTee) -> Pins:
    values = ReferenceValues(
        release="gpu/0.4.0",
        tee=TEE,
        runtime_version="0.4.0",
        images=(IMAGE,),
        measurements=(
            LaunchMeasurement(
                sim_tee.measurement.hex(),
                Product.GENOA,
                3,
                "EPYC-Genoa",
                LaunchInputs("01" * 32, "02" * 32, None, "04" * 32),
            ),
        ),
        min_tcb=((Product.GENOA, TcbFloor(snp=0)),),
        models=(ModelHash("gemma", MODEL_SHA256),),
        recipe="recompute",
        source=SourceRef("https://example.org/cdvm.git", "5" * 40),
        gpu=(ENTRY,),
    )
    unsigned = build_reference_event(values, publisher=PUBLISHER.public_key, created_at=1000)
    ref = parse_reference_event(unsigned.sign(PUBLISHER, aux_rand=bytes(32)))
    return Pins(references=(ref,), trusted_publishers=frozenset({ref.publisher}))


def test_matching_gpu_measurements_pinned_by_flag_are_accepted(
    sim_tee: SimulatedTee, crl: CrlPolicy, gpu: FakeGpu
) -> None:
    verification = _verify(sim_tee, crl, gpu, _pins(sim_tee, gpu_measurements=(ENTRY.expected(),)))
    assert verification.tee == "sev-snp+nvidia-gpu"  # what the evidence is
    assert (
        f"GPU measurements are pinned with --gpu-measurements: 1 GPU(s): driver {DRIVER}, "
        f"VBIOS {VBIOS}" in verification.checks
    )
    assert [p.kind for p in verification.pins if p.by_flag] == list(PinKind)
    # the verifier's "not compared / mode not established" note would be false now
    assert not [w for w in verification.warnings if w.startswith("GPU measurements")]


def test_matching_gpu_measurements_of_a_trusted_publisher_are_accepted(
    sim_tee: SimulatedTee, crl: CrlPolicy, gpu: FakeGpu
) -> None:
    verification = _verify(sim_tee, crl, gpu, _publisher_pins(sim_tee))
    npub = encode_npub(PUBLISHER.public_key)
    assert any(
        c.startswith(f"GPU measurements match reference values published by {npub}")
        for c in verification.checks
    )
    assert all(p.publishers == (PUBLISHER.public_key.hex(),) for p in verification.pins)


@pytest.mark.parametrize("by", ["flag", "publisher"])
def test_mismatching_gpu_blocks_are_refused_listing_each_block(
    sim_tee: SimulatedTee, crl: CrlPolicy, gpu: FakeGpu, by: str
) -> None:
    pins = (
        _pins(sim_tee, gpu_measurements=(ENTRY.expected(),))
        if by == "flag"
        else _publisher_pins(sim_tee)
    )
    devtools = {1: A, 2: C}  # block 2 differs, block 3 is missing: not the measured CC config
    with pytest.raises(AttestationRefused) as caught:
        _verify(sim_tee, crl, gpu, pins, blocks=devtools)
    reasons = caught.value.reasons
    assert len(reasons) == 1, reasons
    assert reasons[0].startswith("GPU measurements (1 GPU(s)")
    assert "measurement block 2: saw c3c3" in reasons[0]
    assert "measurement block 3: saw absent" in reasons[0]
    assert "measurement block 1" not in reasons[0]


def test_unpinned_gpu_measurements_refuse_unless_accepted_loudly(
    sim_tee: SimulatedTee, crl: CrlPolicy, gpu: FakeGpu
) -> None:
    with pytest.raises(AttestationRefused) as caught:
        _verify(sim_tee, crl, gpu, _pins(sim_tee))
    (reason,) = caught.value.reasons
    assert "--gpu-measurements FILE" in reason
    assert "cdvm trust add NPUB" in reason
    loud = _verify(sim_tee, crl, gpu, _pins(sim_tee, accept_unpinned=frozenset({PinKind.GPU})))
    assert any(w.startswith("UNPINNED GPU measurements accepted") for w in loud.warnings)
    # and the verifier's note stays: nothing established the GPU's CC mode
    assert any(w.startswith("GPU measurements not compared") for w in loud.warnings)
