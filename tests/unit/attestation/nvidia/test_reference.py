"""attestation.nvidia.reference: expected blocks (from RIMs or JSON), every failing block listed."""

from __future__ import annotations

import contextlib
import datetime

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from attestation.errors import ParseError, PolicyViolation
from attestation.nvidia.reference import (
    ExpectedGpuMeasurements,
    expected_from_rims,
    parse_expected_measurements,
    validate_gpu_measurements,
)
from attestation.nvidia.rim import parse_rim
from attestation.nvidia.verify import verify_gpu_evidence

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
NONCE = bytes(32)
A, B, C = b"\xaa" * 48, b"\xbb" * 48, b"\xcc" * 48
# NVIDIA's sample against the shipped (non-matching) RIMs, as SPDM block indices (RIM + 1):
# the RIM-index outcome is pinned in test_rim.py; NVDEC0 is disabled, so block 36 is skipped.
SAMPLE_FAILING_BLOCKS = [2, 3, 4, 8, 10, 12, 22, 23, 26, 27, 28, 30, 31, 32, 33, 35, 37, 38, 40, 41]


def _verified(spdm, signer, blocks, opaque=b""):
    report = spdm.signed_report(signer, NONCE, blocks, opaque=opaque)
    return verify_gpu_evidence(
        report,
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in signer.chain),
        expected_nonce=NONCE,
        now=NOW,
        trusted_roots=[signer.root],
    )


def _fields(exc: pytest.ExceptionInfo[PolicyViolation]) -> list[str]:
    return [f.field for f in exc.value.failures]


def test_sample_against_shipped_rims_lists_every_failing_block(
    sample_report, sample_chain_pem, driver_rim_xml, vbios_rim_xml, spdm
) -> None:
    verified = verify_gpu_evidence(
        sample_report, sample_chain_pem, expected_nonce=spdm.sample_nonce, now=spdm.sample_now
    )
    expected = expected_from_rims(parse_rim(driver_rim_xml), parse_rim(vbios_rim_xml))
    assert len(expected.blocks) == 12 + 21  # active VBIOS + active driver golden values
    assert (expected.driver_version, expected.vbios_version) == ("545.00", "96.00.5e.00.01")
    with pytest.raises(PolicyViolation) as exc:
        validate_gpu_measurements(verified, expected)
    blocks = [f"GPU measurement block {i}" for i in SAMPLE_FAILING_BLOCKS]
    assert _fields(exc) == [*blocks, "GPU driver_version", "GPU vbios_version"]
    block_2 = exc.value.failures[0]
    assert block_2.seen == verified.block(2).value.hex()  # type: ignore[union-attr]
    assert block_2.wanted == " or ".join(v.hex() for v in expected.blocks[2])


def test_all_match_passes_and_nvdec0_rule(spdm, fake_signer) -> None:
    blocks = [spdm.block(1, A), spdm.block(36, B)]
    expected = ExpectedGpuMeasurements(blocks={1: (C, A), 36: (A,)})
    disabled = _verified(spdm, fake_signer, blocks, opaque=spdm.tlv(11, b"\x55"))
    validate_gpu_measurements(disabled, expected)  # block 36 is NVDEC0's, decoder off: skipped
    enabled = _verified(spdm, fake_signer, blocks, opaque=spdm.tlv(11, b"\xaa"))
    with pytest.raises(PolicyViolation) as exc:
        validate_gpu_measurements(enabled, expected)
    assert _fields(exc) == ["GPU measurement block 36"]


def test_absent_and_different_blocks_and_versions_all_listed(spdm, fake_signer) -> None:
    opaque = spdm.tlv(3, b"550.90.07\x00")
    verified = _verified(spdm, fake_signer, [spdm.block(1, A), spdm.block(3, B)], opaque=opaque)
    expected = ExpectedGpuMeasurements(
        blocks={3: (A,), 1: (A,), 2: (A,)}, driver_version="550.90.07", vbios_version="96.00"
    )
    with pytest.raises(PolicyViolation) as exc:
        validate_gpu_measurements(verified, expected)
    assert _fields(exc) == [
        "GPU measurement block 2",
        "GPU measurement block 3",
        "GPU vbios_version",
    ]
    assert [f.seen for f in exc.value.failures] == ["absent", B.hex(), "None"]


def test_conflicting_rims_refused(spdm) -> None:
    def rim(*indices: int) -> bytes:
        swid, sha = (
            "http://standards.iso.org/iso/19770/-2/2015/schema.xsd",
            ("http://www.w3.org/2001/04/xmlenc#sha384"),
        )
        body = "".join(
            f'<s:Resource type="Measurement" index="{i}" active="True" alternatives="1" '
            f'h:Hash0="{"11" * 48}" size="48"/>'
            for i in indices
        )
        return (
            f'<SoftwareIdentity xmlns="{swid}" xmlns:s="{swid}" xmlns:h="{sha}" tagId="t">'
            f'<s:Meta colloquialVersion="1"/><s:Payload>{body}</s:Payload></SoftwareIdentity>'
        ).encode()

    with pytest.raises(PolicyViolation) as exc:
        expected_from_rims(parse_rim(rim(1, 2, 3)), parse_rim(rim(2, 3, 4)))
    assert _fields(exc) == ["RIM index 2", "RIM index 3"]


@pytest.mark.parametrize(
    "blocks",
    [{}, {0: (A,)}, {255: (A,)}, {1: ()}, {1: (b"short",)}],
)
def test_expected_measurements_refuse_nonsense(blocks) -> None:
    with pytest.raises(ValueError, match="expected"):
        ExpectedGpuMeasurements(blocks=blocks)


def test_parse_expected_measurements() -> None:
    expected = parse_expected_measurements(
        {
            "measurements": {"2": A.hex().upper(), "1": [B.hex(), C.hex()]},
            "driver_version": "550.90.07",
            "vbios_version": "96.00.9F.00.01",
            "sources": ["driver RIM", "vbios RIM"],
        }
    )
    assert dict(expected.blocks) == {1: (B, C), 2: (A,)}
    assert list(expected.blocks) == [1, 2]
    assert expected.vbios_version == "96.00.9f.00.01"
    assert expected.sources == ("driver RIM", "vbios RIM")
    assert parse_expected_measurements({"measurements": {"7": A.hex()}}).driver_version is None


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "not a JSON object"),
        ({}, "no 'measurements'"),
        ({"measurements": {}}, "no 'measurements'"),
        ({"measurements": {"x": A.hex()}}, "not a decimal block index"),
        ({"measurements": {"0": A.hex()}}, "outside 1..254"),
        ({"measurements": {"1": []}}, "accepts no value"),
        ({"measurements": {"1": "ab"}}, "not 96 hex digits"),
        ({"measurements": {"1": "zz" * 48}}, "not 96 hex digits"),
        ({"measurements": {"1": A.hex()}, "driver_version": 5}, "driver_version is not"),
        ({"measurements": {"1": A.hex()}, "sources": "x"}, "'sources' is not"),
    ],
)
def test_parse_expected_measurements_refused(obj, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_expected_measurements(obj)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=100),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@given(st.dictionaries(st.sampled_from(["measurements", "driver_version", "sources"]), _JSON))
def test_garbage_json_raises_only_parse_error(obj) -> None:
    with contextlib.suppress(ParseError):
        parse_expected_measurements(obj)
