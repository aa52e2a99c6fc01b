"""dvm.cdvm.jobcheck: the one "this kind-7100 event attests this job" check, both stages.

Evidence is made by a simulated installation minted for this module. For ``sev-snp`` jobs the
item is typed ``sev-snp`` and the simulated ARK is pinned as if it were AMD's Genoa root **in
this test only** (:func:`_amd_trust`), so the hardware path runs end to end and HOST_DATA decides.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from attestation.errors import Failure, PolicyViolation, SignatureInvalid
from attestation.evidence import EvidenceType
from attestation.simulated import SimulatedChain, SimulatedTee, load_or_mint
from attestation.snp.abi import Product
from attestation.snp.validate import DEFAULT_POLICY
from attestation.verification import EvidenceRejected, Trust
from dvm.cdvm.jobcheck import (
    ExpectedJob,
    check_claims,
    check_evidence,
    describe_error,
    job_initdata,
)
from dvm.cdvm.kind7100 import (
    ATTESTATION_KIND,
    Attestation,
    Claims,
    ModelClaim,
    RuntimeClaim,
    build_attestation,
)
from dvm.cdvm.pod_contract import build_initdata
from dvm.nostr.event import Event, UnsignedEvent
from dvm.nostr.keys import PublicKey, SecretKey

NOW = dt.datetime.now(dt.UTC)
T = int(NOW.timestamp())
IMAGE = "registry.example/cdvm/job@sha256:" + "ab" * 32
OTHER_IMAGE = "registry.example/cdvm/job@sha256:" + "cd" * 32
MODEL_SHA256 = "c" * 64
CONTAINER = SecretKey(bytes.fromhex("44" * 32))
PROVIDER = SecretKey(bytes.fromhex("22" * 32)).public_key.hex()
RECIPIENT = SecretKey(bytes.fromhex("11" * 32)).public_key.hex()
STRANGER = SecretKey(bytes.fromhex("33" * 32)).public_key.hex()
MEASUREMENT = bytes(range(48))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> SimulatedChain:
    return load_or_mint(Path(tmp_path_factory.mktemp("jobcheck")) / "chain", now=NOW)


def _amd_trust(chain: SimulatedChain) -> Trust:
    """TEST ONLY: the simulated ARK pinned as if it were AMD's Genoa root."""
    return Trust(
        amd_arks={Product.GENOA: frozenset({hashlib.sha256(chain.der("ark")).hexdigest()})}
    )


def _expected(**overrides: Any) -> ExpectedJob:
    fields: dict[str, Any] = {
        "job_id": "aa" * 32,
        "provider": PROVIDER,
        "nonce": "bb" * 32,
        "recipient": RECIPIENT,
        "tee": "sev-snp",
        "model_name": "gemma",
    }
    fields.update(overrides)
    return ExpectedJob(**fields)


@dataclasses.dataclass(frozen=True)
class Craft:
    """What the event says, where it differs from the expected job."""

    claims: dict[str, Any] = dataclasses.field(default_factory=dict)
    recipient: str = RECIPIENT
    tee: str = "sev-snp"
    expires_at: int = T + 600
    evidence_type: EvidenceType = EvidenceType.SEV_SNP
    initdata: bytes | None = None  # HOST_DATA's document (default: this job's)
    bundle_initdata: bytes | None = None


def _event(chain: SimulatedChain, expected: ExpectedJob, craft: Craft = Craft()) -> Event:
    fields: dict[str, Any] = {
        "pubkey": CONTAINER.public_key.hex(),
        "job": expected.job_id,
        "nonce": expected.nonce,
        "provider": expected.provider,
        "model": ModelClaim("gemma", MODEL_SHA256),
        "runtime": RuntimeClaim("0.1.0", IMAGE),
    }
    fields.update(craft.claims)
    claims = Claims(**fields)
    initdata = craft.initdata or build_initdata(
        job_id=expected.job_id, provider=expected.provider, image=IMAGE
    )
    item = SimulatedTee(chain, MEASUREMENT).attest(
        container_pubkey=CONTAINER.public_key.raw, claims=claims.to_dict(), initdata=initdata
    )
    item = dataclasses.replace(item, type=craft.evidence_type)
    unsigned = build_attestation(
        claims=claims,
        recipient=PublicKey.from_hex(craft.recipient),
        tee=craft.tee,
        expiration=craft.expires_at,
        evidence=[item.to_json()],
        initdata=craft.bundle_initdata,
        created_at=T,
    )
    return unsigned.sign(CONTAINER, aux_rand=bytes(32))


def _parsed(event: Event, expected: ExpectedJob) -> Attestation:
    claimed = check_claims(event, expected, now=T)
    assert claimed.attestation is not None, claimed.reasons
    return claimed.attestation


# --- stage 1: claims ---------------------------------------------------------------------------


def test_the_jobs_attestation_passes_both_stages(chain: SimulatedChain) -> None:
    expected = _expected(
        container=CONTAINER.public_key.hex(), model_sha256=MODEL_SHA256, image=IMAGE
    )
    event = _event(chain, expected)
    claimed = check_claims(event, expected, now=T)
    assert claimed.reasons == ()
    assert claimed.attestation is not None
    evidence = check_evidence(
        claimed.attestation, expected, trust=_amd_trust(chain), policy=DEFAULT_POLICY, now=NOW
    )
    assert evidence.passed, (evidence.reasons, evidence.errors)
    assert evidence.verified is not None
    assert evidence.verified.tee == "sev-snp"
    assert evidence.initdata == build_initdata(
        job_id=expected.job_id, provider=PROVIDER, image=IMAGE
    )


@pytest.mark.parametrize(
    ("expected", "reason"),
    [
        (_expected(job_id="cc" * 32), "job (e tag) is"),
        (_expected(provider=STRANGER), "provider is"),
        (_expected(nonce="dd" * 32), "claims.nonce is"),
        (_expected(recipient=STRANGER), "recipient (p tag) is"),
        (_expected(tee="sev-snp+nvidia-h100"), "tee tag is"),
        (_expected(model_name="other"), "claims.model.name is"),
        (_expected(model_name=None), "claims.model.name is 'gemma', expected None"),
        (_expected(model_sha256="d" * 64), "claims.model.sha256 is"),
        (_expected(image=OTHER_IMAGE), "claims.runtime.image is"),
        (_expected(container=STRANGER), "attestation "),
    ],
)
def test_each_claim_that_is_not_this_jobs_is_a_reason(
    chain: SimulatedChain, expected: ExpectedJob, reason: str
) -> None:
    # The event is the honest one of the default job; the expectation differs in one field.
    event = _event(chain, _expected())
    claimed = check_claims(event, expected, now=T)
    assert claimed.attestation is not None
    assert len(claimed.reasons) == 1, claimed.reasons
    assert claimed.reasons[0].startswith(reason), claimed.reasons


def test_every_failed_claim_is_listed(chain: SimulatedChain) -> None:
    event = _event(chain, _expected(), Craft(recipient=STRANGER, tee="simulated", expires_at=T))
    reasons = check_claims(event, _expected(nonce="dd" * 32), now=T).reasons
    assert [r.split(" ", 1)[0] for r in reasons] == ["claims.nonce", "recipient", "tee", "it"]
    assert "addressed to another key" in reasons[1]
    assert reasons[3] == f"it expired at {T} (NIP-40)"


def test_expiry_is_nip40s_comparison(chain: SimulatedChain) -> None:
    event = _event(chain, _expected(), Craft(expires_at=T + 1))
    assert check_claims(event, _expected(), now=T).reasons == ()
    assert check_claims(event, _expected(), now=T + 1).reasons == (
        f"it expired at {T + 1} (NIP-40)",
    )


def test_an_event_that_does_not_parse_has_no_attestation() -> None:
    unsigned = UnsignedEvent(CONTAINER.public_key.hex(), T, ATTESTATION_KIND, (), "{}")
    event = unsigned.sign(CONTAINER, aux_rand=bytes(32))
    claimed = check_claims(event, _expected(container=STRANGER), now=T)
    assert claimed.attestation is None
    assert claimed.reasons[0].startswith("attestation ")  # the signer is still reported
    assert claimed.reasons[1].startswith("the event does not parse as a cdvm/1 attestation: ")


# --- stage 2: evidence -------------------------------------------------------------------------


def _evidence(chain: SimulatedChain, expected: ExpectedJob, craft: Craft = Craft()) -> Any:
    event = _event(chain, _expected(), craft)
    return check_evidence(
        _parsed(event, _expected()),
        expected,
        trust=_amd_trust(chain),
        policy=DEFAULT_POLICY,
        now=NOW,
    )


def test_a_report_of_another_jobs_pod_is_refused(chain: SimulatedChain) -> None:
    other = build_initdata(job_id="ee" * 32, provider=PROVIDER, image=IMAGE)
    evidence = _evidence(chain, _expected(), Craft(initdata=other, bundle_initdata=other))
    assert not evidence.passed
    assert any(
        r.startswith("HOST_DATA is not the digest of this job's initdata") for r in evidence.reasons
    )
    assert any(
        r.startswith("the bundle's initdata is not this job's: initdata job is")
        for r in evidence.reasons
    )
    assert any(e.startswith("BindingMismatch: HOST_DATA") for e in evidence.errors)


def test_the_gpu_flag_comes_from_the_tee_kind(chain: SimulatedChain) -> None:
    gpu_doc = build_initdata(job_id="aa" * 32, provider=PROVIDER, image=IMAGE, gpu=True)
    assert (
        job_initdata(job_id="aa" * 32, provider=PROVIDER, image=IMAGE, tee="sev-snp+nvidia-h100")
        == gpu_doc
    )
    # A GPU job whose pod carries the GPU document: HOST_DATA matches, GPU evidence is missing.
    evidence = _evidence(chain, _expected(tee="sev-snp+nvidia-h100"), Craft(initdata=gpu_doc))
    assert evidence.kind_mismatch == (
        "the evidence is sev-snp, the request asked for sev-snp+nvidia-h100"
    )
    assert evidence.reasons == ()
    assert evidence.errors == ()
    assert evidence.passed  # the node's question; the requester refuses on kind_mismatch
    # The same pod checked as a CPU job: its HOST_DATA is not that job's.
    cpu = _evidence(chain, _expected(), Craft(initdata=gpu_doc))
    assert any(r.startswith("HOST_DATA is not the digest") for r in cpu.reasons)


def test_simulated_evidence_for_a_sev_snp_job_is_refused(chain: SimulatedChain) -> None:
    evidence = _evidence(chain, _expected(), Craft(evidence_type=EvidenceType.SIMULATED))
    assert evidence.kind_mismatch == "the evidence is simulated, the request asked for sev-snp"
    assert any("UntrustedRoot" in e for e in evidence.errors)  # not an explicitly trusted root
    assert evidence.verified is None


def test_an_image_that_is_not_a_digest_reference_cannot_be_checked(chain: SimulatedChain) -> None:
    event = _event(chain, _expected(), Craft(claims={"runtime": RuntimeClaim("0.1.0", "x:latest")}))
    evidence = check_evidence(
        _parsed(event, _expected()),
        _expected(),
        trust=_amd_trust(chain),
        policy=DEFAULT_POLICY,
        now=NOW,
    )
    assert evidence.initdata is None
    assert any("is not a digest reference" in r for r in evidence.reasons)


def test_simulated_jobs_have_no_initdata(chain: SimulatedChain) -> None:
    expected = _expected(tee="simulated")
    event = _event(chain, expected, Craft(tee="simulated", evidence_type=EvidenceType.SIMULATED))
    trust = Trust(simulated_roots=(chain.pem("ark"),))
    evidence = check_evidence(
        _parsed(event, expected), expected, trust=trust, policy=DEFAULT_POLICY, now=NOW
    )
    assert evidence.passed, (evidence.reasons, evidence.errors)
    assert evidence.initdata is None


def test_evidence_that_does_not_parse_is_an_error(chain: SimulatedChain) -> None:
    good = _event(chain, _expected())
    body = json.loads(good.content)
    body["evidence"] = [{"type": "sev-snp", "report": "AAAA", "vek": "", "ask": "", "ark": ""}]
    unsigned = UnsignedEvent(good.pubkey, good.created_at, good.kind, good.tags, json.dumps(body))
    event = unsigned.sign(CONTAINER, aux_rand=bytes(32))
    evidence = check_evidence(
        _parsed(event, _expected()),
        _expected(),
        trust=_amd_trust(chain),
        policy=DEFAULT_POLICY,
        now=NOW,
    )
    assert evidence.verified is None
    assert [e.split(":")[0] for e in evidence.errors] == ["ParseError"]


def test_describe_error_lists_policy_failures_one_by_one() -> None:
    failures = [Failure("debug", "true", "false"), Failure("smt", "on", "off")]
    rejected = EvidenceRejected(
        [PolicyViolation(failures), SignatureInvalid("bad")], simulated=False
    )
    assert describe_error(rejected) == [
        "policy: debug: saw true, wanted false",
        "policy: smt: saw on, wanted off",
        "SignatureInvalid: bad",
    ]
