"""attestation.nvidia.rim: parsing (hardened), comparison with a report, policy."""

from __future__ import annotations

import contextlib
import datetime

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from attestation.errors import AttestationError, ParseError, PolicyViolation
from attestation.nvidia.rim import (
    MAX_RIM_SIZE_BYTES,
    MeasurementStatus,
    Rim,
    RimPolicy,
    compare_measurements,
    parse_rim,
    validate_measurements,
)
from attestation.nvidia.verify import verify_gpu_evidence

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
SWID = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
SHA = "http://www.w3.org/2001/04/xmlenc#sha384"
H = {n: f"{n:02x}" * 48 for n in range(8)}


def _resource(index, active="True", hashes=(H[1],), size="48", extra="") -> str:
    attrs = " ".join(f'h:Hash{i}="{h}"' for i, h in enumerate(hashes))
    return (
        f'<s:Resource type="Measurement" index="{index}" active="{active}" '
        f'alternatives="{len(hashes)}" {attrs} name="M{index}" size="{size}" {extra}/>'
    )


def _rim(*resources: str, version: str = "1.2.3", head: str = "") -> bytes:
    body = "".join(resources)
    return (
        f'{head}<SoftwareIdentity xmlns="{SWID}" xmlns:s="{SWID}" xmlns:h="{SHA}" tagId="t1">'
        f'<s:Meta colloquialVersion="{version}" product="GH100"/>'
        f"<s:Payload>{body}</s:Payload></SoftwareIdentity>"
    ).encode()


def _report(spdm, signer, blocks, opaque=b""):
    nonce = bytes(32)
    evidence = spdm.signed_report(signer, nonce, blocks, opaque=opaque)
    return verify_gpu_evidence(
        evidence,
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in signer.chain),
        expected_nonce=nonce,
        now=NOW,
        trusted_roots=[signer.root],
    )


# --- parsing ----------------------------------------------------------------------------------


def test_parse_shipped_rims(driver_rim_xml: bytes, vbios_rim_xml: bytes) -> None:
    driver, vbios = parse_rim(driver_rim_xml), parse_rim(vbios_rim_xml)
    assert driver.colloquial_version == "545.00"
    assert vbios.colloquial_version == "96.00.5e.00.01"
    assert driver.product == vbios.product == "GH100"
    assert len([m for m in driver.measurements if m.active]) == 21
    assert len([m for m in vbios.measurements if m.active]) == 12
    by_index = {m.index: m for m in vbios.measurements}
    assert len(by_index[12].alternatives) == 4
    assert by_index[12].alternatives[1].hex().startswith("758af96044c700f9")
    assert len(driver.signer_chain_der) == 4  # L4 signer, L3, GH100 CA, CoRIM root


def test_parse_minimal_rim() -> None:
    rim = parse_rim(_rim(_resource(3, hashes=(H[1], H[2])), _resource(4, active="False")))
    assert rim.tag_id == "t1"
    assert [(m.index, m.active) for m in rim.measurements] == [(3, True), (4, False)]
    assert rim.measurements[0].alternatives == (bytes.fromhex(H[1]), bytes.fromhex(H[2]))
    assert rim.signer_chain_der == ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_rim(_resource(1), head='<!DOCTYPE x [<!ENTITY a "b">]>'), "DOCTYPE or ENTITY"),
        (_rim(_resource(1), head='<!doctype x SYSTEM "file:///etc/passwd">'), "DOCTYPE"),
        (b"<a>\xff</a>", "not UTF-8"),
        (b"<a>" + b" " * MAX_RIM_SIZE_BYTES + b"</a>", "limit"),
        (b"<SoftwareIdentity", "not well-formed"),
        (b"<a/>", "root is 'a'"),
        (_rim().replace(b"<s:Payload></s:Payload>", b""), "0 Payload"),
        (_rim(), "no measurements"),
        (_rim(_resource(1), _resource(1)), "index twice"),
        (_rim(_resource(1, active="true")), "active='true'"),
        (_rim(_resource("+1")), "small decimal"),
        (_rim(_resource("\u0661")), "small decimal"),
        (_rim(_resource(1, size="32")), "of 32 bytes"),
        (_rim(_resource(1, hashes=())), "0 alternatives"),
        (_rim(_resource(1, hashes=("zz" * 48,))), "not hex"),
        (_rim(_resource(1, hashes=("ab" * 47,))), "47 bytes"),
        (_rim(_resource(1, extra=f'h:Hash5="{H[5]}"')), r"Hash attributes \[0, 5\]"),
        (_rim('<s:Resource type="File" index="1"/>'), "not a Measurement"),
        (_rim(_resource(1)).replace(b'tagId="t1"', b""), "lacks attribute 'tagId'"),
        (_rim(_resource(1), version=""), "colloquialVersion"),
    ],
)
def test_parse_refused(data: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_rim(data)


def test_billion_laughs_refused_without_expansion() -> None:
    entities = "".join(f'<!ENTITY l{i} "&l{i - 1};&l{i - 1};">' for i in range(1, 30))
    bomb = f'<!DOCTYPE r [<!ENTITY l0 "ha">{entities}]><r>&l29;</r>'.encode()
    with pytest.raises(ParseError, match="DOCTYPE"):
        parse_rim(bomb)


def test_bad_signer_certificate_base64() -> None:
    sig = (
        '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:KeyInfo><ds:X509Data>'
        "<ds:X509Certificate>@@@</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"
    )
    data = _rim(_resource(1)).replace(b"</SoftwareIdentity>", sig.encode() + b"</SoftwareIdentity>")
    with pytest.raises(ParseError, match="not base64"):
        parse_rim(data)


@given(st.binary(max_size=400))
def test_garbage_bytes_raise_only_our_errors(data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        parse_rim(data)


@given(st.text(max_size=200))
def test_garbage_xml_ish_text_raises_only_our_errors(text: str) -> None:
    with contextlib.suppress(AttestationError):
        parse_rim(_rim(_resource(1)).replace(b"M1", text.encode("utf-8", "replace")))


# --- the shipped pair against the sample report -------------------------------------------------


DRIVER_MATCHED = (23, 24, 28, 33, 38)  # 35 also matches, but NVDEC0 is disabled: skipped
DRIVER_MISMATCHED = (7, 21, 22, 25, 26, 27, 29, 30, 31, 32, 34, 36, 37, 39, 40)
VBIOS_MATCHED = (0, 4, 5, 6, 8, 10, 12)
VBIOS_MISMATCHED = (1, 2, 3, 9, 11)


@pytest.fixture(scope="module")
def sample_comparison(sample_report, sample_chain_pem, driver_rim_xml, vbios_rim_xml, spdm):
    verified = verify_gpu_evidence(
        sample_report, sample_chain_pem, expected_nonce=spdm.sample_nonce, now=spdm.sample_now
    )
    return compare_measurements(
        verified, driver_rim=parse_rim(driver_rim_xml), vbios_rim=parse_rim(vbios_rim_xml)
    )


def test_shipped_rims_do_not_match_the_sample(sample_comparison) -> None:
    c = sample_comparison
    assert c.matched == tuple(sorted(DRIVER_MATCHED + VBIOS_MATCHED))
    assert c.mismatched == tuple(sorted(DRIVER_MISMATCHED + VBIOS_MISMATCHED))
    assert c.skipped == (35,)
    assert c.missing == ()
    assert c.conflicts == ()
    assert c.rim_signature_checked is False
    by_index = {r.rim_index: r for r in c.results}
    assert by_index[7].source == "driver"
    assert by_index[7].block_index == 8
    assert by_index[1].source == "vbios"
    assert by_index[1].seen is not None
    assert by_index[1].seen not in by_index[1].wanted


def test_shipped_rims_fail_policy_with_indices_and_versions(sample_comparison) -> None:
    with pytest.raises(PolicyViolation) as caught:
        validate_measurements(sample_comparison)
    fields = [f.field for f in caught.value.failures]
    expected = [
        f"measurement[{i}] (SPDM block {i + 1}, {'vbios' if i in VBIOS_MISMATCHED else 'driver'})"
        for i in sorted(DRIVER_MISMATCHED + VBIOS_MISMATCHED)
    ]
    assert fields == [*expected, "driver_version", "vbios_version"]
    versions = {f.field: (f.seen, f.wanted) for f in caught.value.failures[-2:]}
    assert versions == {
        "driver_version": ("550.90.07", "545.00"),
        "vbios_version": ("96.00.9f.00.01", "96.00.5e.00.01"),
    }


# --- synthetic reports: every status and policy knob ------------------------------------------


def test_all_statuses_and_policy(spdm, fake_signer) -> None:
    report = _report(
        spdm,
        fake_signer,
        [
            spdm.block(1, bytes.fromhex(H[1])),  # rim 0: matched (second alternative)
            spdm.block(2, bytes.fromhex(H[3])),  # rim 1: mismatched
            spdm.block(36, bytes.fromhex(H[4])),  # rim 35: NVDEC0 enabled -> compared, matched
        ],
        opaque=spdm.tlv(3, b"1.2.3\x00") + spdm.tlv(6, bytes.fromhex("009f009601000000")),
    )
    driver = parse_rim(
        _rim(_resource(0, hashes=(H[0], H[1])), _resource(1), _resource(2), _resource(9, "False"))
    )
    vbios = parse_rim(_rim(_resource(35, hashes=(H[4],)), _resource(2), version="96.00.9F.00.01"))
    c = compare_measurements(report, driver_rim=driver, vbios_rim=vbios)
    statuses = [(r.rim_index, r.source, r.status) for r in c.results]
    assert statuses == [
        (0, "driver", MeasurementStatus.MATCHED),
        (1, "driver", MeasurementStatus.MISMATCHED),
        (2, "driver", MeasurementStatus.CONFLICT),
        (2, "vbios", MeasurementStatus.CONFLICT),
        (35, "vbios", MeasurementStatus.MATCHED),
    ]
    with pytest.raises(PolicyViolation) as caught:
        validate_measurements(c, RimPolicy(require_rim_signature=True))
    assert [f.field.split(" ")[0] for f in caught.value.failures] == [
        "measurement[1]",
        "measurement[2]",
        "measurement[2]",
        "rim_signature_checked",
    ]
    assert caught.value.failures[1].wanted == "active in one RIM only"


def test_missing_block_and_allow_missing(spdm, fake_signer) -> None:
    report = _report(spdm, fake_signer, [spdm.block(1, bytes.fromhex(H[1]))])
    rim = parse_rim(_rim(_resource(0), _resource(5)))
    empty_vbios = parse_rim(_rim(_resource(9, "False")))
    c = compare_measurements(report, driver_rim=rim, vbios_rim=empty_vbios)
    assert (c.matched, c.missing) == ((0,), (5,))
    with pytest.raises(PolicyViolation) as caught:
        validate_measurements(c, RimPolicy(require_version_match=False))
    assert [(f.field.split(" ")[0], f.seen) for f in caught.value.failures] == [
        ("measurement[5]", "missing")
    ]
    validate_measurements(c, RimPolicy(allow_missing=True, require_version_match=False))
    with pytest.raises(PolicyViolation, match="driver_version: saw None"):
        validate_measurements(c, RimPolicy(allow_missing=True))


def test_matching_rims_pass(spdm, fake_signer) -> None:
    report = _report(
        spdm,
        fake_signer,
        [spdm.block(1, bytes.fromhex(H[1])), spdm.block(36, bytes.fromhex(H[6]))],
        opaque=spdm.tlv(3, b"1.2.3\x00")
        + spdm.tlv(6, bytes.fromhex("009f009601000000"))
        + spdm.tlv(11, b"\x55"),
    )
    driver = parse_rim(_rim(_resource(0), _resource(35, hashes=(H[7],))))
    vbios = parse_rim(_rim(_resource(9, "False"), version="96.00.9f.00.01"))
    c = compare_measurements(report, driver_rim=driver, vbios_rim=vbios)
    assert (c.matched, c.skipped) == ((0,), (35,))
    assert isinstance(driver, Rim)
    validate_measurements(c)
