"""dvm.client.verify for Confidential Containers jobs: HOST_DATA of this job's initdata, image pins.

The evidence is sev-snp-shaped: a report signed by the test's simulated installation, carrying a
chosen HOST_DATA (``SimulatedTee.attest(initdata=...)``), in an item typed ``sev-snp``. The
simulated ARK is pinned as an AMD root **in this test only** (``_trust``), so the verifier takes
the hardware path end to end (trust gate, chain, signature, policy, REPORT_DATA binding, the TEE
kind check) and the initdata check is what decides. Production never pins a simulated ARK.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import secrets
import time
from datetime import UTC, datetime

import pytest

from attestation.evidence import EvidenceType
from attestation.initdata import ANNOTATION, expected_host_data, parse_initdata
from attestation.simulated import SimulatedTee
from attestation.snp.abi import Product
from attestation.snp.crl import CrlPolicy
from attestation.snp.validate import DEFAULT_POLICY
from attestation.verification import Trust
from dvm.cdvm.kind7100 import Claims, ModelClaim, RuntimeClaim, build_attestation
from dvm.cdvm.pod_contract import build_initdata
from dvm.client import AttestationRefused, Verification, verify_attestation
from dvm.client.pins import Pins
from dvm.client.verify import expected_initdata
from dvm.node.kubernetes.pod import KubernetesConfig, build_job_pod
from dvm.nostr.event import Event
from dvm.nostr.keys import PublicKey, SecretKey
from dvm.nostr.nip90 import JobRequest, build_job_request, parse_job_request

IMAGE = "registry.example/cdvm/job@sha256:" + "ab" * 32
OTHER_IMAGE = "registry.example/cdvm/job@sha256:" + "cd" * 32
MODEL_SHA256 = "c" * 64
PROVIDER = SecretKey(bytes.fromhex("22" * 32)).public_key
OTHER_PROVIDER = SecretKey(bytes.fromhex("33" * 32)).public_key.hex()
OTHER_JOB = "44" * 32


def _request(*, tee: str = "sev-snp") -> JobRequest:
    user = SecretKey.generate(secrets.token_bytes)
    unsigned = build_job_request(
        requester=user.public_key,
        provider=PROVIDER,
        tee=tee,
        nonce=secrets.token_bytes(32),
        created_at=int(time.time()),
        params=[("model", "gemma"), ("mode", "oneshot")],
    )
    return parse_job_request(unsigned.sign(user, aux_rand=secrets.token_bytes(32)))


@dataclasses.dataclass(frozen=True)
class Launch:
    """How the crafted pod was launched; every field defaults to this job's honest values."""

    image: str = IMAGE  # claims.runtime.image
    host_image: str | None = None  # the image of the initdata HOST_DATA is the digest of
    host_job: str | None = None
    host_provider: str | None = None
    gpu: bool = False
    no_initdata: bool = False  # HOST_DATA all zero: a pod launched without initdata
    bundle_initdata: bytes | None = None  # the document the bundle carries (default: none)
    simulated: bool = False  # keep the item typed simulated (a local-launcher job)


def _attest(sim_tee: SimulatedTee, request: JobRequest, launch: Launch) -> tuple[Event, str]:
    container = SecretKey.generate(secrets.token_bytes)
    claims = Claims(
        pubkey=container.public_key.hex(),
        job=request.id,
        nonce=request.nonce,
        provider=request.provider,
        model=ModelClaim("gemma", MODEL_SHA256),
        runtime=RuntimeClaim("0.1.0", launch.image),
    )
    initdata = build_initdata(
        job_id=launch.host_job or request.id,
        provider=launch.host_provider or request.provider,
        image=launch.host_image or launch.image,
        gpu=launch.gpu,
    )
    item = sim_tee.attest(
        container_pubkey=bytes.fromhex(container.public_key.hex()),
        claims=claims.to_dict(),
        initdata=None if launch.no_initdata else initdata,
    )
    if not launch.simulated:
        item = dataclasses.replace(item, type=EvidenceType.SEV_SNP)
    now = int(time.time())
    unsigned = build_attestation(
        claims=claims,
        recipient=PublicKey.from_hex(request.reply_to),
        tee=request.tee,
        expiration=now + 600,
        evidence=[item.to_json()],
        initdata=launch.bundle_initdata,
        created_at=now,
    )
    return unsigned.sign(container, aux_rand=secrets.token_bytes(32)), container.public_key.hex()


def _trust(item_ark: bytes, crl: CrlPolicy) -> Trust:
    """TEST ONLY: the simulated ARK pinned as if it were AMD's Genoa root; ``crl`` (an offline
    CRL minted for that ARK) is what ``_verify`` passes as the client's revocation policy."""
    return Trust(
        amd_arks={Product.GENOA: frozenset({hashlib.sha256(item_ark).hexdigest()})}, crl=crl
    )


@pytest.fixture
def trust(sim_tee: SimulatedTee, crl: CrlPolicy) -> Trust:
    return _trust(sim_tee.chain.der("ark"), crl)


def _pins(sim_tee: SimulatedTee) -> Pins:
    """The measurement and model this test's container shows (the image is pinned apart)."""
    return Pins(
        measurements=frozenset({sim_tee.measurement.hex()}),
        model_sha256s=frozenset({MODEL_SHA256}),
    )


def _verify(
    sim_tee: SimulatedTee,
    trust: Trust,
    launch: Launch = Launch(),
    *,
    tee: str = "sev-snp",
    trusted_images: tuple[str, ...] = (IMAGE,),
) -> Verification:
    request = _request(tee=tee)
    event, container = _attest(sim_tee, request, launch)
    return verify_attestation(
        event,
        request=request,
        container=container,
        policy=DEFAULT_POLICY,
        trust=trust,
        now=datetime.now(UTC),
        trusted_images=trusted_images,
        pins=_pins(sim_tee),
        crl=trust.crl,
    )


def _refused(
    sim_tee: SimulatedTee,
    trust: Trust,
    launch: Launch,
    *,
    tee: str = "sev-snp",
    trusted_images: tuple[str, ...] = (IMAGE,),
) -> tuple[str, ...]:
    with pytest.raises(AttestationRefused) as caught:
        _verify(sim_tee, trust, launch, tee=tee, trusted_images=trusted_images)
    return caught.value.reasons


def test_host_data_of_this_jobs_initdata_is_accepted(sim_tee: SimulatedTee, trust: Trust) -> None:
    verification = _verify(sim_tee, trust)
    assert not verification.simulated
    assert verification.tee == "sev-snp"
    assert any(
        c.startswith("HOST_DATA = SHA-256 of this job's initdata") for c in verification.checks
    )
    assert f"image is pinned with --trust-image: {IMAGE}" in verification.checks
    # The policy note "HOST_DATA not pinned" would be false: the job's HOST_DATA was compared.
    assert not [w for w in verification.warnings if w.startswith("HOST_DATA")]


@pytest.mark.parametrize(
    "launch",
    [
        pytest.param(Launch(host_job=OTHER_JOB), id="another-job"),
        pytest.param(Launch(host_provider=OTHER_PROVIDER), id="another-provider"),
        pytest.param(Launch(host_image=OTHER_IMAGE), id="another-image"),
        pytest.param(Launch(gpu=True), id="the-gpu-policy"),
        pytest.param(Launch(no_initdata=True), id="no-initdata"),
    ],
)
def test_host_data_of_any_other_initdata_is_refused(
    sim_tee: SimulatedTee, trust: Trust, launch: Launch
) -> None:
    reasons = _refused(sim_tee, trust, launch)
    assert any(
        r.startswith("HOST_DATA is not the digest of this job's initdata") for r in reasons
    ), reasons
    assert any(r.startswith("BindingMismatch: HOST_DATA") for r in reasons), reasons


def test_a_gpu_job_expects_the_gpu_initdata(sim_tee: SimulatedTee, trust: Trust) -> None:
    # No GPU evidence can be crafted here, so the TEE kind check refuses both; what differs is
    # whether HOST_DATA is the digest of the GPU job's initdata.
    tee = "sev-snp+nvidia-h100"
    with_gpu = _refused(sim_tee, trust, Launch(gpu=True), tee=tee)
    without_gpu = _refused(sim_tee, trust, Launch(gpu=False), tee=tee)
    assert any("the request asked for sev-snp+nvidia-h100" in r for r in with_gpu)
    assert not [r for r in with_gpu if "HOST_DATA" in r], with_gpu
    assert any(r.startswith("HOST_DATA is not the digest") for r in without_gpu), without_gpu


@pytest.mark.parametrize("images", [(OTHER_IMAGE,), ()], ids=["another-image", "no-image-pin"])
def test_an_image_nobody_pinned_is_refused(
    sim_tee: SimulatedTee, trust: Trust, images: tuple[str, ...]
) -> None:
    reasons = _refused(sim_tee, trust, Launch(), trusted_images=images)
    assert len(reasons) == 1, reasons  # the report itself is this job's: HOST_DATA is fine
    assert reasons[0].startswith(f"image {IMAGE} is not pinned: ")
    assert f"--trust-image {IMAGE}" in reasons[0]
    assert "cdvm trust add" in reasons[0]


def test_a_trusted_image_is_accepted_and_named(sim_tee: SimulatedTee, trust: Trust) -> None:
    verification = _verify(sim_tee, trust, trusted_images=(OTHER_IMAGE, IMAGE))
    assert f"image is pinned with --trust-image: {IMAGE}" in verification.checks
    assert [p.kind.value for p in verification.pins if p.by_flag] == [
        "measurement",
        "image",
        "model",
    ]


def test_a_tagged_image_claim_is_refused(sim_tee: SimulatedTee, trust: Trust) -> None:
    tagged = "registry.example/cdvm/job:latest"
    # The report carries the HOST_DATA of a digest image; the claim names a tag.
    reasons = _refused(sim_tee, trust, Launch(image=tagged, host_image=IMAGE))
    assert any(f"claims.runtime.image {tagged!r} is not a digest reference" in r for r in reasons)


def test_a_bundle_carrying_this_jobs_initdata_is_accepted(
    sim_tee: SimulatedTee, trust: Trust
) -> None:
    request = _request()
    document = expected_initdata(request, image=IMAGE)
    event, container = _attest(sim_tee, request, Launch(bundle_initdata=document))
    verification = verify_attestation(
        event,
        request=request,
        container=container,
        policy=DEFAULT_POLICY,
        trust=trust,
        now=datetime.now(UTC),
        trusted_images=(IMAGE,),
        pins=_pins(sim_tee),
        crl=trust.crl,
    )
    assert any(c.startswith("HOST_DATA") for c in verification.checks)


def test_a_bundle_carrying_another_jobs_initdata_is_refused(
    sim_tee: SimulatedTee, trust: Trust
) -> None:
    other = build_initdata(job_id=OTHER_JOB, provider=PROVIDER.hex(), image=IMAGE)
    # HOST_DATA is the digest of the carried document: consistent, but not this job's.
    reasons = _refused(sim_tee, trust, Launch(host_job=OTHER_JOB, bundle_initdata=other))
    assert any(
        r.startswith("the bundle's initdata is not this job's: initdata job is") for r in reasons
    ), reasons
    assert any(r.startswith("HOST_DATA is not the digest") for r in reasons)


def test_simulated_jobs_have_no_initdata_or_image_check(sim_tee: SimulatedTee) -> None:
    request = _request(tee="simulated")
    # The local launcher's image is no digest and its report carries no HOST_DATA.
    event, container = _attest(
        sim_tee, request, Launch(image="local", host_image=IMAGE, no_initdata=True, simulated=True)
    )
    verification = verify_attestation(
        event,
        request=request,
        container=container,
        policy=DEFAULT_POLICY,
        trust=Trust(simulated_roots=(sim_tee.chain.pem("ark"),)),
        now=datetime.now(UTC),
        trusted_images=(IMAGE,),
        pins=_pins(sim_tee),
    )
    assert verification.simulated
    assert not [c for c in verification.checks if "HOST_DATA" in c or "image" in c]
    assert [p.kind.value for p in verification.pins] == ["measurement", "model"]
    assert "no initdata: HOST_DATA (the launch configuration) is not checked" in (
        verification.warnings
    )


def test_the_client_rebuilds_the_launchers_initdata_byte_for_byte() -> None:
    for tee, gpu in (("sev-snp", False), ("sev-snp+nvidia-h100", True)):
        request = _request(tee=tee)
        config = KubernetesConfig(image=IMAGE, gpu_runtime_class="kata-qemu-nvidia-gpu-snp")
        pod = build_job_pod(
            config,
            job_id=request.id,
            provider=request.provider,
            spec_json="{}",
            gpu=gpu,
            active_deadline_s=60,
        )
        annotation = pod["metadata"]["annotations"][ANNOTATION]
        on_the_pod = gzip.decompress(base64.b64decode(annotation))
        ours = expected_initdata(request, image=IMAGE)
        assert ours == on_the_pod
        assert parse_initdata(ours).data["cdvm_job"] == request.id
        assert expected_host_data(ours) == hashlib.sha256(on_the_pod).digest()
