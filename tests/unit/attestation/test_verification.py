"""verify_evidence / verify_snp_item: the trust gate, every check, every failure listed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from attestation.binding import binding_digest
from attestation.chain_cache import ChainCache
from attestation.errors import (
    BindingMismatch,
    ChainError,
    ExtensionMismatch,
    ParseError,
    PolicyViolation,
    SignatureInvalid,
    UntrustedRoot,
)
from attestation.evidence import SIMULATED_LABEL, EvidenceType, GpuItem, SnpItem, build_bundle
from attestation.nvidia.reference import ExpectedGpuMeasurements
from attestation.simulated import SimulatedChain, SimulatedTee, mint_chain
from attestation.snp.abi import KeyInfo, Product, SigningKey, parse_report, serialize_report
from attestation.snp.validate import Policy
from attestation.snp.vek import load_certificate
from attestation.snp.verify import verify_report
from attestation.verification import (
    EvidenceRejected,
    Expected,
    Trust,
    item_product,
    snp_item_from_certs,
    verify_evidence,
    verify_snp_item,
)

SNP = Path(__file__).parents[2] / "vectors" / "snp"
GPU = Path(__file__).parents[2] / "vectors" / "gpu" / "nvidia-hopper"
MANIFEST = json.loads((SNP / "manifest.json").read_text())
MINTED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOW = MINTED + dt.timedelta(days=30)
MEASUREMENT = hashlib.sha384(b"runtime files").digest()
PUBKEY = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
CLAIMS: dict[str, Any] = {
    "pubkey": PUBKEY,
    "job": "aa" * 32,
    "nonce": "bb" * 32,
    "provider": "cc" * 32,
    "model": {"name": "gemma", "sha256": "dd" * 32},
    "runtime": {"version": "0.1.0", "image": "img"},
}
EXPECTED = Expected(
    job="aa" * 32,
    nonce="bb" * 32,
    provider="cc" * 32,
    container_pubkey=PUBKEY,
    model_sha256="dd" * 32,
)


@pytest.fixture(scope="module")
def chain() -> SimulatedChain:
    return mint_chain(now=MINTED)


@pytest.fixture(scope="module")
def trust(chain: SimulatedChain) -> Trust:
    return Trust(simulated_roots=(chain.pem("ark"),))


def attest(chain: SimulatedChain, claims: dict[str, Any] = CLAIMS, **kw: Any) -> SnpItem:
    tee = SimulatedTee(chain, kw.pop("measurement", MEASUREMENT))
    return tee.attest(container_pubkey=bytes.fromhex(claims["pubkey"]), claims=claims, **kw)


def reasons(exc: pytest.ExceptionInfo[EvidenceRejected]) -> list[type[Exception]]:
    return [type(e) for e in exc.value.errors]


def test_simulated_evidence_verifies_when_trusted(chain: SimulatedChain, trust: Trust) -> None:
    bundle = build_bundle(claims=CLAIMS, evidence=[attest(chain, initdata=b"i")], initdata=b"i")
    result = verify_evidence(
        bundle,
        Policy(measurements=frozenset({MEASUREMENT})),
        now=NOW,
        trust=trust,
        expected=EXPECTED,
    )
    assert result.label == SIMULATED_LABEL
    assert result.simulated
    assert result.warnings[0].startswith(SIMULATED_LABEL)
    assert result.claims == CLAIMS
    assert result.container_pubkey == PUBKEY
    assert result.tee == "simulated"
    assert result.snp.report.measurement == MEASUREMENT
    assert result.initdata == b"i"
    assert not any(
        w.startswith(("HOST_DATA", "REPORT_DATA", "measurement")) for w in result.warnings
    )
    assert not any("not compared" in w for w in result.warnings)


def test_warnings_say_what_was_not_checked(chain: SimulatedChain, trust: Trust) -> None:
    bundle = build_bundle(claims=CLAIMS, evidence=[attest(chain)], initdata=None)
    result = verify_evidence(
        bundle, now=NOW, trust=trust, expected=Expected(job=None, nonce=None, provider=None)
    )
    text = "\n".join(result.warnings)
    for name in ("job", "nonce", "provider", "pubkey", "model.sha256"):
        assert f"claims.{name} not compared" in text
    assert "measurement not pinned" in text
    assert "no initdata" in text


def test_refused_without_explicit_trust(chain: SimulatedChain) -> None:
    bundle = build_bundle(claims=CLAIMS, evidence=[attest(chain)], initdata=None)
    with pytest.raises(UntrustedRoot, match="refused unless its root is trusted explicitly") as exc:
        verify_evidence(bundle, now=NOW, trust=Trust(), expected=EXPECTED)
    assert SIMULATED_LABEL in str(exc.value)
    other = Trust(simulated_roots=(mint_chain(now=MINTED).pem("ark"),))
    with pytest.raises(UntrustedRoot):
        verify_evidence(bundle, now=NOW, trust=other, expected=EXPECTED)


def test_simulated_root_never_passes_as_sev_snp(chain: SimulatedChain, trust: Trust) -> None:
    item = dataclasses.replace(attest(chain), type=EvidenceType.SEV_SNP)
    bundle = build_bundle(claims=CLAIMS, evidence=[item], initdata=None)
    with pytest.raises(UntrustedRoot, match="simulated root"):
        verify_evidence(bundle, now=NOW, trust=trust, expected=EXPECTED)


def real_item(
    name: str, kind: EvidenceType = EvidenceType.SEV_SNP
) -> tuple[dict[str, Any], SnpItem]:
    v = next(x for x in MANIFEST["vectors"] if x["name"] == name)
    raw = (SNP / v["report_file"]).read_bytes()
    if v["report_file"].endswith(".hex"):
        raw = bytes.fromhex(raw.decode().strip())
    report = raw[v["report_offset"] : v["report_offset"] + 1184]
    certs = [(SNP / v["vek_file"]).read_bytes(), (SNP / v["chain_file"]).read_bytes()]
    item = snp_item_from_certs(report, certs, trust=Trust())
    return v, dataclasses.replace(item, type=kind)


def test_unknown_root_as_sev_snp() -> None:
    _, item = real_item("trustee-milan-v2")
    with pytest.raises(UntrustedRoot, match="no pinned AMD root"):
        verify_snp_item(item, now=NOW, trust=Trust(amd_arks={}))


def test_amd_evidence_typed_simulated_is_refused() -> None:
    _, item = real_item("trustee-milan-v2", EvidenceType.SIMULATED)
    with pytest.raises(UntrustedRoot, match="simulated evidence"):
        verify_snp_item(item, now=NOW, trust=Trust())


@pytest.mark.parametrize(
    "v", [v for v in MANIFEST["vectors"] if v.get("expected") == "valid"], ids=lambda v: v["name"]
)
def test_real_reports_agree_with_the_snp_verifier(v: dict[str, Any]) -> None:
    _, item = real_item(v["name"])
    now = load_certificate(item.vek).not_valid_before_utc + dt.timedelta(days=1)
    reference = verify_report(item.report, now=now, vek=item.vek, chain=(item.ask, item.ark))
    policy = Policy(allow_debug=True)
    assert verify_snp_item(item, policy, now=now, trust=Trust()) == reference
    assert item_product(item) == Product(v["product"])


def test_debug_report_fails_the_default_policy() -> None:
    _, item = real_item("gsg-milan-v2-debug")
    with pytest.raises(EvidenceRejected) as exc:
        verify_snp_item(item, now=dt.datetime(2025, 1, 1, tzinfo=dt.UTC), trust=Trust())
    assert reasons(exc) == [PolicyViolation]
    assert "policy.debug" in str(exc.value)
    assert not exc.value.simulated


def test_expired_vlek_fails_the_chain_only() -> None:
    _, item = real_item("trustee-milan-vlek-v3")
    with pytest.raises(EvidenceRejected, match="expired") as exc:
        verify_snp_item(item, now=dt.datetime(2026, 6, 1, tzinfo=dt.UTC), trust=Trust())
    assert reasons(exc) == [ChainError]


@pytest.mark.parametrize("name", ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"])
def test_negative_vceks_fail_chain_signature_and_extensions(name: str) -> None:
    v, _ = real_item("trustee-milan-v2")
    report = (SNP / v["report_file"]).read_bytes()[:1184]
    certs = [(SNP / "negative" / name).read_bytes(), (SNP / v["chain_file"]).read_bytes()]
    item = snp_item_from_certs(report, certs, trust=Trust())
    with pytest.raises(EvidenceRejected) as exc:
        verify_snp_item(item, now=dt.datetime(2025, 1, 1, tzinfo=dt.UTC), trust=Trust())
    assert reasons(exc) == [ChainError, SignatureInvalid, ExtensionMismatch]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("job", "ab" * 32),
        ("nonce", "ab" * 32),
        ("provider", "ab" * 32),
        ("pubkey", "c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"),
    ],
)
def test_each_changed_claim_is_refused(
    chain: SimulatedChain, trust: Trust, field: str, value: str
) -> None:
    claims = {**CLAIMS, field: value}
    bundle = build_bundle(claims=claims, evidence=[attest(chain, claims)], initdata=None)
    with pytest.raises(EvidenceRejected, match=f"claims.{field} is {value}") as exc:
        verify_evidence(bundle, now=NOW, trust=trust, expected=EXPECTED)
    assert exc.value.simulated
    assert str(exc.value).startswith(SIMULATED_LABEL)


def test_changed_model_is_refused(chain: SimulatedChain, trust: Trust) -> None:
    claims = {**CLAIMS, "model": {"name": "gemma", "sha256": "ee" * 32}}
    bundle = build_bundle(claims=claims, evidence=[attest(chain, claims)], initdata=None)
    with pytest.raises(EvidenceRejected, match=r"claims\.model\.sha256"):
        verify_evidence(bundle, now=NOW, trust=trust, expected=EXPECTED)


def test_claims_swapped_after_attesting_break_the_binding(
    chain: SimulatedChain, trust: Trust
) -> None:
    claims = {**CLAIMS, "job": "ab" * 32}
    bundle = build_bundle(claims=claims, evidence=[attest(chain)], initdata=None)
    with pytest.raises(EvidenceRejected) as exc:
        verify_evidence(bundle, now=NOW, trust=trust, expected=EXPECTED)
    assert reasons(exc) == [BindingMismatch, BindingMismatch]  # binding, then claims.job


def test_all_failures_are_listed(chain: SimulatedChain, trust: Trust) -> None:
    bundle = build_bundle(claims=CLAIMS, evidence=[attest(chain)], initdata=None)
    wrong = Expected(job="01" * 32, nonce="02" * 32, provider="03" * 32, host_data=b"\x01" * 32)
    policy = Policy(measurements=frozenset({b"\x00" * 48}))
    with pytest.raises(EvidenceRejected) as exc:
        verify_evidence(bundle, policy, now=NOW, trust=trust, expected=wrong)
    text = str(exc.value)
    for part in ("measurement", "HOST_DATA", "claims.job", "claims.nonce", "claims.provider"):
        assert part in text
    assert len(exc.value.errors) == 5


def test_runtime_change_fails_a_pinned_measurement(chain: SimulatedChain, trust: Trust) -> None:
    item = attest(chain, measurement=hashlib.sha384(b"changed runtime").digest())
    bundle = build_bundle(claims=CLAIMS, evidence=[item], initdata=None)
    policy = Policy(measurements=frozenset({MEASUREMENT}))
    with pytest.raises(EvidenceRejected, match="measurement") as exc:
        verify_evidence(bundle, policy, now=NOW, trust=trust, expected=EXPECTED)
    assert reasons(exc) == [PolicyViolation]


def test_host_data_must_match_initdata(chain: SimulatedChain, trust: Trust) -> None:
    bundle = build_bundle(claims=CLAIMS, evidence=[attest(chain, initdata=b"a")], initdata=b"b")
    with pytest.raises(EvidenceRejected, match="not SHA-256 of the bundle's initdata"):
        verify_evidence(bundle, now=NOW, trust=trust, expected=EXPECTED)
    good = build_bundle(claims=CLAIMS, evidence=[attest(chain, initdata=b"a")], initdata=b"a")
    with pytest.raises(EvidenceRejected, match="initdata differs"):
        verify_evidence(
            good, now=NOW, trust=trust, expected=dataclasses.replace(EXPECTED, initdata=b"c")
        )
    pinned = hashlib.sha256(b"a").digest()
    result = verify_evidence(
        good,
        now=NOW,
        trust=trust,
        expected=dataclasses.replace(EXPECTED, host_data=pinned, initdata=b"a"),
    )
    assert result.snp.report.host_data == pinned


def test_expected_host_data_without_initdata_is_checked_and_not_warned(
    chain: SimulatedChain, trust: Trust
) -> None:
    # Under CoCo the requester rebuilds the job's initdata itself and passes only its digest:
    # the report's HOST_DATA is compared, so "not pinned" / "not checked" notes would be false.
    bundle = build_bundle(claims=CLAIMS, evidence=[attest(chain, initdata=b"a")], initdata=None)
    pinned = hashlib.sha256(b"a").digest()
    result = verify_evidence(
        bundle, now=NOW, trust=trust, expected=dataclasses.replace(EXPECTED, host_data=pinned)
    )
    assert not [w for w in result.warnings if "HOST_DATA" in w]
    with pytest.raises(EvidenceRejected, match="HOST_DATA"):
        verify_evidence(
            bundle,
            now=NOW,
            trust=trust,
            expected=dataclasses.replace(EXPECTED, host_data=hashlib.sha256(b"b").digest()),
        )
    plain = verify_evidence(bundle, now=NOW, trust=trust, expected=EXPECTED)
    assert any("HOST_DATA" in w for w in plain.warnings)


def test_expired_chain_skips_policy(chain: SimulatedChain, trust: Trust) -> None:
    bundle = build_bundle(claims=CLAIMS, evidence=[attest(chain)], initdata=None)
    late = MINTED + dt.timedelta(days=8 * 365)
    policy = Policy(measurements=frozenset({b"\x00" * 48}))
    with pytest.raises(EvidenceRejected, match="expired") as exc:
        verify_evidence(bundle, policy, now=late, trust=trust, expected=EXPECTED)
    assert reasons(exc) == [ChainError]


def resign(chain: SimulatedChain, item: SnpItem, **changes: Any) -> SnpItem:
    report = dataclasses.replace(parse_report(item.report), **changes)
    return dataclasses.replace(item, report=serialize_report(report))


def test_unsigned_and_wrong_signer_reports(chain: SimulatedChain, trust: Trust) -> None:
    item = attest(chain)
    unsigned = resign(chain, item, key_info=KeyInfo(signing_key=SigningKey.NONE))
    with pytest.raises(EvidenceRejected, match="unsigned") as exc:
        verify_snp_item(unsigned, now=NOW, trust=trust)
    assert SignatureInvalid in reasons(exc)
    vlek = resign(chain, item, key_info=KeyInfo(signing_key=SigningKey.VLEK))
    with pytest.raises(EvidenceRejected, match="KEY_INFO says VLEK") as exc:
        verify_snp_item(vlek, now=NOW, trust=trust)


def test_v2_report_needs_a_product(chain: SimulatedChain, trust: Trust) -> None:
    v2 = resign(chain, attest(chain), version=2, cpuid=None, product=None)
    with pytest.raises(ChainError, match="cannot tell the product"):
        verify_snp_item(v2, now=NOW, trust=trust)
    hinted = dataclasses.replace(v2, product=Product.GENOA)
    assert item_product(hinted) == Product.GENOA
    with pytest.raises(EvidenceRejected, match="signature"):
        verify_snp_item(hinted, now=NOW, trust=trust)


def test_naive_now_is_refused(chain: SimulatedChain, trust: Trust) -> None:
    bundle = build_bundle(claims=CLAIMS, evidence=[attest(chain)], initdata=None)
    naive = dt.datetime(2026, 2, 1)
    with pytest.raises(ValueError, match="timezone"):
        verify_evidence(bundle, now=naive, trust=trust, expected=EXPECTED)
    with pytest.raises(ValueError, match="timezone"):
        verify_snp_item(bundle.cpu, now=naive, trust=trust)


def test_cache_is_used_across_verifications(chain: SimulatedChain, trust: Trust) -> None:
    cache = ChainCache()
    bundle = build_bundle(claims=CLAIMS, evidence=[attest(chain)], initdata=None)
    for _ in range(3):
        verify_evidence(bundle, now=NOW, trust=trust, expected=EXPECTED, cache=cache)
    assert (cache.misses, cache.hits) == (1, 2)


# --- snp_item_from_certs -------------------------------------------------------------------


def test_certs_from_a_pem_bundle_and_from_the_vek_alone() -> None:
    v, full = real_item("trustee-azure-milan-hcl")
    raw = (SNP / v["report_file"]).read_bytes()[32 : 32 + 1184]
    thim = snp_item_from_certs(raw, [(SNP / v["vek_file"]).read_bytes()], trust=Trust())
    assert thim == full  # VCEK + ASK + ARK in one PEM file, in any order
    vek_only = snp_item_from_certs(raw, [full.vek], trust=Trust())
    assert (vek_only.ask, vek_only.ark) == (full.ask, full.ark)  # the bundled Milan chain


def test_certs_that_cannot_be_sorted(chain: SimulatedChain) -> None:
    item = attest(chain)
    with pytest.raises(ParseError, match="one VCEK or VLEK"):
        snp_item_from_certs(item.report, [item.ask, item.ark], trust=Trust())
    with pytest.raises(ParseError, match="one ASK and one ARK"):
        snp_item_from_certs(item.report, [item.vek, item.ark, item.ark], trust=Trust())
    v2 = resign(chain, item, version=2, cpuid=None, product=None)
    with pytest.raises(ParseError, match="cannot tell the product"):
        snp_item_from_certs(v2.report, [item.vek], trust=Trust())


def test_simulated_chain_is_recognised(chain: SimulatedChain, trust: Trust) -> None:
    item = attest(chain)
    loose = [item.ark, item.vek, item.ask]
    assert snp_item_from_certs(item.report, loose, trust=trust).type == EvidenceType.SIMULATED
    assert snp_item_from_certs(item.report, loose, trust=Trust()).type == EvidenceType.SIMULATED


# --- GPU evidence --------------------------------------------------------------------------


def _cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    name = lambda s: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, s)])  # noqa: E731
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(MINTED)
        .not_valid_after(MINTED + dt.timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    return builder.sign(signer, hashes.SHA384())


def fake_gpu(nonce: bytes, *, opaque: bytes = b"") -> tuple[GpuItem, x509.Certificate]:
    """A fake H100 (test-only): root -> leaf chain and an SPDM report signed by the leaf."""
    root_key, leaf_key = (
        ec.generate_private_key(ec.SECP384R1()),
        ec.generate_private_key(ec.SECP384R1()),
    )
    root = _cert("FAKE GPU ROOT", root_key, "FAKE GPU ROOT", root_key, ca=True)
    leaf = _cert("FAKE GPU LEAF", leaf_key, "FAKE GPU ROOT", root_key, ca=False)
    request = bytes([0x11, 0xE0, 0x01, 0xFF]) + nonce + b"\x00"
    value = b"\x5a" * 48
    dmtf = bytes([0x01]) + len(value).to_bytes(2, "little") + value
    block = bytes([1, 0x01]) + len(dmtf).to_bytes(2, "little") + dmtf
    response = bytes([0x11, 0x60, 0, 0, 1]) + len(block).to_bytes(3, "little") + block
    response += b"\x22" * 32 + len(opaque).to_bytes(2, "little") + opaque
    r, s = decode_dss_signature(leaf_key.sign(request + response, ec.ECDSA(hashes.SHA384())))
    report = request + response + r.to_bytes(48, "big") + s.to_bytes(48, "big")
    der = serialization.Encoding.DER
    return GpuItem(report, (leaf.public_bytes(der), root.public_bytes(der))), root


def test_gpu_evidence_bound_by_the_nonce(chain: SimulatedChain, trust: Trust) -> None:
    gpu, root = fake_gpu(binding_digest(bytes.fromhex(CLAIMS["pubkey"]), CLAIMS))
    bundle = build_bundle(claims=CLAIMS, evidence=[attest(chain), gpu], initdata=None)
    gpu_trust = dataclasses.replace(trust, nvidia_roots=(root,))
    result = verify_evidence(bundle, now=NOW, trust=gpu_trust, expected=EXPECTED)
    assert result.tee == "simulated+nvidia-gpu"
    assert result.gpus[0].nonce == binding_digest(bytes.fromhex(CLAIMS["pubkey"]), CLAIMS)
    assert any(w.startswith("GPU measurements not compared") for w in result.warnings)
    stale, root2 = fake_gpu(b"\x01" * 32)
    bundle = build_bundle(claims=CLAIMS, evidence=[attest(chain), stale], initdata=None)
    with pytest.raises(EvidenceRejected, match="nvidia-gpu item 0") as exc:
        verify_evidence(
            bundle,
            now=NOW,
            trust=dataclasses.replace(trust, nvidia_roots=(root2,)),
            expected=EXPECTED,
        )
    assert reasons(exc) == [BindingMismatch]


def _gpu_bundle(chain: SimulatedChain, trust: Trust, *, opaque: bytes = b"") -> tuple:
    gpu, root = fake_gpu(binding_digest(bytes.fromhex(CLAIMS["pubkey"]), CLAIMS), opaque=opaque)
    bundle = build_bundle(claims=CLAIMS, evidence=[attest(chain), gpu], initdata=None)
    return bundle, dataclasses.replace(trust, nvidia_roots=(root,))


def test_gpu_measurements_compared_when_expected(chain: SimulatedChain, trust: Trust) -> None:
    bundle, gpu_trust = _gpu_bundle(chain, trust)
    pinned = dataclasses.replace(
        EXPECTED, gpu_measurements=ExpectedGpuMeasurements(blocks={1: (b"\x5a" * 48,)})
    )
    result = verify_evidence(bundle, now=NOW, trust=gpu_trust, expected=pinned)
    assert not any(w.startswith("GPU measurements") for w in result.warnings)
    other = dataclasses.replace(
        EXPECTED,
        gpu_measurements=ExpectedGpuMeasurements(blocks={1: (b"\x01" * 48,), 9: (b"\x01" * 48,)}),
    )
    with pytest.raises(EvidenceRejected) as exc:
        verify_evidence(bundle, now=NOW, trust=gpu_trust, expected=other)
    assert reasons(exc) == [PolicyViolation]
    violation = exc.value.errors[0]
    assert isinstance(violation, PolicyViolation)
    assert [f.field for f in violation.failures] == [
        "nvidia-gpu item 0: GPU measurement block 1",
        "nvidia-gpu item 0: GPU measurement block 9",
    ]


def test_gpu_stating_a_non_cc_mode_is_rejected(chain: SimulatedChain, trust: Trust) -> None:
    ppcie = (36).to_bytes(2, "little") + (1).to_bytes(2, "little") + b"\x02"
    bundle, gpu_trust = _gpu_bundle(chain, trust, opaque=ppcie)
    with pytest.raises(EvidenceRejected, match="nvidia-gpu item 0: FEATURE_FLAG") as exc:
        verify_evidence(bundle, now=NOW, trust=gpu_trust, expected=EXPECTED)
    assert reasons(exc) == [PolicyViolation]


def test_nvidia_sample_is_not_bound_to_this_job(chain: SimulatedChain, trust: Trust) -> None:
    report = bytes.fromhex((GPU / "hopperAttestationReport.txt").read_text().strip())
    certs = x509.load_pem_x509_certificates((GPU / "hopperCertChain.txt").read_bytes())
    sample = GpuItem(report, tuple(c.public_bytes(serialization.Encoding.DER) for c in certs))
    bundle = build_bundle(claims=CLAIMS, evidence=[attest(chain), sample], initdata=None)
    with pytest.raises(EvidenceRejected, match="nonce") as exc:
        verify_evidence(bundle, now=NOW, trust=trust, expected=EXPECTED)
    assert reasons(exc) == [BindingMismatch]


def test_sev_snp_under_a_caller_pinned_root_has_no_label(chain: SimulatedChain) -> None:
    # A caller may pin its own AMD-shaped test root (go-sev-guest's fake signer does the same);
    # then the evidence is plain sev-snp: same checks, no simulated label.
    item = dataclasses.replace(attest(chain), type=EvidenceType.SEV_SNP)
    bundle = build_bundle(claims=CLAIMS, evidence=[item], initdata=None)
    pinned = Trust(amd_arks={Product.GENOA: frozenset({hashlib.sha256(item.ark).hexdigest()})})
    result = verify_evidence(bundle, now=NOW, trust=pinned, expected=EXPECTED)
    assert result.label is None
    assert result.tee == "sev-snp"
    assert not any(SIMULATED_LABEL in w for w in result.warnings)
