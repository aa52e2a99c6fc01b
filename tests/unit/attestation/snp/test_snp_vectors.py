"""Known-answer tests: real AMD SEV-SNP reports and certificates (tests/vectors/snp).

Expected values come from ``manifest.json`` (see SOURCES.md there). Every report marked valid
must verify with its own VEK at a time inside the VEK's validity, decode to the manifest's
fields, and be refused once tampered with.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attestation.errors import (
    ChainError,
    ExtensionMismatch,
    PolicyViolation,
    SignatureInvalid,
    UntrustedRoot,
)
from attestation.snp.abi import Product, TcbVersion, parse_report, serialize_report
from attestation.snp.trust import DEFAULT_TRUSTED_ARKS, bundled_chain
from attestation.snp.validate import DEFAULT_POLICY, validate
from attestation.snp.vek import load_certificates, parse_vek_extensions
from attestation.snp.verify import check_vek_extensions, verify_chain, verify_report

VECTORS = Path(__file__).parents[3] / "vectors" / "snp"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))
REPORTS = [v for v in MANIFEST["vectors"] if v.get("expected") == "valid"]
CHAIN_ONLY = [v for v in MANIFEST["vectors"] if "report_file" not in v]


def report_bytes(v: dict[str, Any]) -> bytes:
    raw: bytes = (VECTORS / str(v["report_file"])).read_bytes()
    if v["report_file"].endswith(".hex"):
        raw = bytes.fromhex(raw.decode("ascii").strip())
    start = int(v["report_offset"])
    return raw[start : start + 1184]


def vek_cert(v: dict[str, Any]) -> x509.Certificate:
    # Azure's THIM PEM carries VCEK, ASK and ARK together: the VEK is the first.
    return load_certificates((VECTORS / v["vek_file"]).read_bytes())[0]


def vek_der(v: dict[str, Any]) -> bytes:
    return vek_cert(v).public_bytes(serialization.Encoding.DER)


def inside_validity(v: dict[str, Any]) -> dt.datetime:
    return vek_cert(v).not_valid_before_utc + dt.timedelta(days=1)


def ext_dict(cert: x509.Certificate) -> dict[str, Any]:
    ext = parse_vek_extensions(cert)
    out: dict[str, Any] = {"structVersion": ext.struct_version, "productName": ext.product_name}
    out.update(ext.spl)
    if ext.hw_id is not None:
        out["hwID"] = ext.hw_id.hex()
    if ext.csp_id is not None:
        out["cspID"] = ext.csp_id
    return out


def ids(vs: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vs]


def test_manifest_has_the_expected_cases() -> None:
    assert len(REPORTS) == 10
    assert {v["product"] for v in REPORTS} == {"Milan", "Genoa"}
    assert {v["signer"] for v in REPORTS} == {"VCEK", "VLEK"}
    assert {v["version"] for v in REPORTS} == {2, 3}


@pytest.mark.parametrize("v", REPORTS, ids=ids(REPORTS))
def test_report_verifies_and_decodes_to_the_manifest(v: dict[str, Any]) -> None:
    chain = (VECTORS / v["chain_file"]).read_bytes()
    verified = verify_report(report_bytes(v), vek=vek_der(v), chain=chain, now=inside_validity(v))
    r = verified.report
    assert verified.product == Product(v["product"])
    assert verified.signer.value == v["signer"]
    assert verified.ark_sha256 == v["ark_sha256"]
    assert r.version == v["version"]
    assert r.measurement.hex() == v["measurement"]
    assert r.report_data.hex() == v["report_data"]
    assert r.host_data.hex() == v["host_data"]
    assert r.policy.encode() == int(v["policy"], 16)
    assert (r.policy.debug, r.policy.smt, r.policy.migrate_ma) == (
        v["debug"],
        v["smt"],
        v["migrate_ma"],
    )
    assert r.vmpl == v["vmpl"]
    assert r.reported_tcb == TcbVersion(**v["reported_tcb"])
    assert r.reported_tcb.encode().to_bytes(8, "little").hex() == v["reported_tcb_hex_le"]
    assert r.platform_info.encode() == v["platform_info"]
    assert (str(r.cpuid) if r.cpuid else None) == v["cpuid_fam_mod_step"]
    assert str(r.current_version) == v["fw_version"]
    assert r.chip_id.hex() == v["chip_id"]
    assert ext_dict(vek_cert(v)) == v["vek_extensions"]


@pytest.mark.parametrize("v", REPORTS, ids=ids(REPORTS))
def test_report_verifies_against_the_pinned_bundled_chain(v: dict[str, Any]) -> None:
    verified = verify_report(report_bytes(v), vek=vek_der(v), now=inside_validity(v))
    assert verified.ark_sha256 in DEFAULT_TRUSTED_ARKS[verified.product]


@pytest.mark.parametrize("v", REPORTS, ids=ids(REPORTS))
def test_serializer_reproduces_the_bytes(v: dict[str, Any]) -> None:
    raw = report_bytes(v)
    assert serialize_report(parse_report(raw, product=Product(v["product"]))) == raw


@pytest.mark.parametrize("v", REPORTS, ids=ids(REPORTS))
def test_default_policy(v: dict[str, Any]) -> None:
    verified = verify_report(report_bytes(v), vek=vek_der(v), now=inside_validity(v))
    if not v["debug"]:
        validate(verified, DEFAULT_POLICY)
        return
    with pytest.raises(PolicyViolation) as info:
        validate(verified, DEFAULT_POLICY)
    assert [f.field for f in info.value.failures] == ["policy.debug"]
    assert info.value.failures[0].seen == "1"


def test_go_sev_guest_report_is_the_debug_one() -> None:
    (gsg,) = [v for v in REPORTS if v["name"] == "gsg-milan-v2-debug"]
    assert gsg["debug"] is True


def test_vlek_report_fails_today_because_the_vlek_expired() -> None:
    (v,) = [v for v in REPORTS if v["signer"] == "VLEK"]
    today = dt.datetime.now(dt.UTC)
    with pytest.raises(ChainError, match=r"VEK 'SEV-VLEK' expired on 2025-12-10"):
        verify_report(report_bytes(v), vek=vek_der(v), now=today)
    verified = verify_report(report_bytes(v), vek=vek_der(v), now=inside_validity(v))
    assert verified.csp_id == v["vek_extensions"]["cspID"]


def test_report_is_refused_before_the_vek_was_issued() -> None:
    v = REPORTS[0]
    with pytest.raises(ChainError, match="not valid before"):
        verify_report(
            report_bytes(v), vek=vek_der(v), now=inside_validity(v) - dt.timedelta(days=2)
        )


# --- tampering ------------------------------------------------------------------------------


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


@pytest.mark.parametrize("v", REPORTS, ids=ids(REPORTS))
@pytest.mark.parametrize(
    ("offset", "what"),
    [
        (0x04, "guest_svn"),
        (0x50, "report_data"),
        (0x90, "measurement"),
        (0xC0, "host_data"),
        (0x1A0, "chip_id"),
    ],
)
def test_flipped_signed_byte_is_refused(v: dict[str, Any], offset: int, what: str) -> None:
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_report(flip(report_bytes(v), offset), vek=vek_der(v), now=inside_validity(v))


@pytest.mark.parametrize("v", REPORTS, ids=ids(REPORTS))
@pytest.mark.parametrize("offset", [0x2A0, 0x2A0 + 47, 0x2E8, 0x2E8 + 10])
def test_flipped_signature_byte_is_refused(v: dict[str, Any], offset: int) -> None:
    with pytest.raises(SignatureInvalid):
        verify_report(flip(report_bytes(v), offset), vek=vek_der(v), now=inside_validity(v))


@pytest.mark.parametrize("v", REPORTS, ids=ids(REPORTS))
def test_flipped_vek_byte_breaks_the_chain(v: dict[str, Any]) -> None:
    der = vek_der(v)
    # The last byte lies in the ASK's RSA-PSS signature over the VEK; the SPL bytes in its TBS.
    with pytest.raises(ChainError, match="signature does not verify"):
        verify_report(report_bytes(v), vek=flip(der, len(der) - 1), now=inside_validity(v))
    snp_spl_oid = bytes.fromhex("060a2b060104019c78010303")  # 1.3.6.1.4.1.3704.1.3.3
    at = der.index(snp_spl_oid) + len(snp_spl_oid) + 4  # OCTET STRING hdr, INTEGER hdr -> value
    with pytest.raises(ChainError, match="signature does not verify"):
        verify_report(report_bytes(v), vek=flip(der, at), now=inside_validity(v))


def _other_chip(v: dict[str, Any]) -> dict[str, Any]:
    return next(
        o
        for o in REPORTS
        if o["product"] == v["product"] and o["signer"] == "VCEK" and o["chip_id"] != v["chip_id"]
    )


@pytest.mark.parametrize("v", REPORTS, ids=ids(REPORTS))
def test_another_chips_vek_is_refused(v: dict[str, Any]) -> None:
    other = _other_chip(v)
    now = max(inside_validity(v), inside_validity(other))
    if v["signer"] == "VLEK":
        with pytest.raises(ExtensionMismatch, match="KEY_INFO says VLEK"):
            verify_report(report_bytes(v), vek=vek_der(other), now=now)
        return
    with pytest.raises(SignatureInvalid):
        verify_report(report_bytes(v), vek=vek_der(other), now=now)


@pytest.mark.parametrize("v", REPORTS, ids=ids(REPORTS))
@pytest.mark.parametrize("component", ["bl", "tee", "snp", "ucode"])
def test_changed_reported_tcb_is_refused(v: dict[str, Any], component: str) -> None:
    raw = report_bytes(v)
    byte = {"bl": 0, "tee": 1, "snp": 6, "ucode": 7}[component]
    with pytest.raises(SignatureInvalid):
        verify_report(flip(raw, 0x180 + byte), vek=vek_der(v), now=inside_validity(v))
    # Even with a signature that held, the VEK's SPL extensions would disagree:
    report = parse_report(raw, product=Product(v["product"]))
    tcb = report.reported_tcb
    changed = dataclasses.replace(
        report, reported_tcb=dataclasses.replace(tcb, **{component: getattr(tcb, component) + 1})
    )
    ext = parse_vek_extensions(vek_cert(v))
    check_vek_extensions(
        report, ext, product=Product(v["product"]), signer=report.key_info.signing_key
    )
    name = {"bl": "blSPL", "tee": "teeSPL", "snp": "snpSPL", "ucode": "ucodeSPL"}[component]
    with pytest.raises(ExtensionMismatch, match=name):
        check_vek_extensions(
            changed, ext, product=Product(v["product"]), signer=report.key_info.signing_key
        )


@pytest.mark.parametrize("v", REPORTS, ids=ids(REPORTS))
def test_wrong_product_chain_is_an_untrusted_root(v: dict[str, Any]) -> None:
    other = {"Milan": Product.GENOA, "Genoa": Product.MILAN}[v["product"]]
    ask, ark = bundled_chain(
        other, parse_report(report_bytes(v), product=Product(v["product"])).key_info.signing_key
    )
    pems = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (ask, ark))
    with pytest.raises(UntrustedRoot, match=f"not pinned for {v['product']}"):
        verify_report(report_bytes(v), vek=vek_der(v), chain=pems, now=inside_validity(v))


# --- chain-only certificates ----------------------------------------------------------------


@pytest.mark.parametrize("v", CHAIN_ONLY, ids=ids(CHAIN_ONLY))
def test_chain_only_certificates(v: dict[str, Any]) -> None:
    cert = vek_cert(v)
    ask, ark = load_certificates((VECTORS / v["chain_file"]).read_bytes())
    product = Product(ark.subject.rfc4514_string().split("ARK-")[1].split(",")[0])
    now = cert.not_valid_before_utc + dt.timedelta(days=1)
    assert ext_dict(cert) == v["vek_extensions"]
    if v["expected"] == "chain valid":
        assert verify_chain(cert, ask, ark, product=product, now=now) == v["ark_sha256"]
    else:
        with pytest.raises(ChainError, match="VEK 'SEV-VCEK' signature does not verify"):
            verify_chain(cert, ask, ark, product=product, now=now)


def test_turin_vcek_has_an_8_byte_hwid_and_fmc_spl() -> None:
    (v,) = [v for v in CHAIN_ONLY if "turin" in v["name"]]
    ext = parse_vek_extensions(vek_cert(v))
    assert ext.hw_id is not None
    assert len(ext.hw_id) == 8
    assert ext.spl["fmcSPL"] == v["vek_extensions"]["fmcSPL"]
