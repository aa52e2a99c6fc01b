"""attestation.snp.agent_evidence: the agent's sev-crate JSON rendering back to raw bytes.

Real reports (tests/vectors/snp) are rendered by the fake agent's independent renderer
(tests/coco/fake_attestation_agent.py) and must come back byte for byte, so the signature AMD
made over them still verifies; each malformed part is refused with a ParseError.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attestation.errors import ParseError
from attestation.snp.agent_evidence import parse_agent_evidence, parse_agent_report
from attestation.snp.certtable import CertKind
from tests.coco.fake_attestation_agent import render_report

VECTORS = Path(__file__).parents[3] / "vectors" / "snp"


def _vectors() -> list[Any]:
    manifest = json.loads((VECTORS / "manifest.json").read_text())
    out = []
    for vector in manifest["vectors"]:
        if "report_file" not in vector:
            continue
        data = (VECTORS / vector["report_file"]).read_bytes()
        if vector["report_file"].endswith(".hex"):
            data = bytes.fromhex(data.decode().strip())
        offset = vector["report_offset"]
        out.append(pytest.param(data[offset : offset + 1184], id=vector["name"]))
    return out


@pytest.mark.parametrize("raw", _vectors())
def test_real_reports_come_back_byte_for_byte(raw: bytes) -> None:
    assert parse_agent_report(json.loads(json.dumps(render_report(raw)))) == raw


def _turin(raw: bytes) -> bytes:
    """A v3 report whose CPUID says family 0x1A: TCB versions in the Turin layout."""
    out = bytearray(raw)
    out[0x188] = 0x1A
    for offset in (0x38, 0x180, 0x1E0, 0x1F0):
        out[offset : offset + 8] = bytes([7, 1, 2, 3, 0, 0, 0, 9])
    return bytes(out)


def test_turin_tcb_layout() -> None:
    raw = _turin((VECTORS / "tinfoil-genoa-v3" / "report.bin").read_bytes()[:1184])
    rendered = render_report(raw)
    assert rendered["reported_tcb"] == {
        "fmc": 7,
        "bootloader": 1,
        "tee": 2,
        "snp": 3,
        "microcode": 9,
    }
    assert parse_agent_report(rendered) == raw


RAW = (VECTORS / "tinfoil-genoa-v3" / "report.bin").read_bytes()[:1184]
V2 = (VECTORS / "trustee-milan-v2" / "test-report.bin").read_bytes()


def _broken(path: tuple[str, ...], value: object, raw: bytes = RAW) -> dict[str, Any]:
    rendered = copy.deepcopy(render_report(raw))
    target = rendered
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return rendered


@pytest.mark.parametrize(
    ("rendering", "message"),
    [
        ([], "attestation_report is not an object"),
        (_broken(("version",), KeyError), "version is not a 32-bit"),
        (_broken(("version",), True), "version is not a 32-bit"),
        (_broken(("policy",), 1 << 64), "policy is not a 64-bit"),
        (_broken(("report_data",), [0] * 63), "report_data has 63 bytes"),
        (_broken(("report_data",), "00" * 64), "report_data is not an array"),
        (_broken(("chip_id",), [256] * 64), "chip_id is not a 8-bit"),
        (_broken(("current_tcb",), 3), "current_tcb is not an object"),
        (_broken(("current_tcb", "snp"), -1), "current_tcb.snp is not a 8-bit"),
        (_broken(("current_tcb", "fmc"), 4), "current_tcb.fmc is set on a pre-Turin"),
        (_broken(("current", "major"), None), "current.major"),
        (_broken(("cpuid_step",), None), "cpuid is not"),
        (_broken(("cpuid_fam_id",), 0x19, V2), "a v2 report with CPUID"),
        (_broken(("signature", "s"), [0] * 48), "signature.s has 48 bytes"),
        (_broken(("signature",), None), "signature is not an object"),
        (_broken(("_author_key_en",), 0), "older sev crate rendering"),
    ],
)
def test_malformed_renderings_are_refused(rendering: object, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_agent_report(rendering)


def test_mitigation_vectors_when_the_rendering_carries_them() -> None:
    rendered = {**render_report(RAW), "launch_mit_vector": 5, "current_mit_vector": 6}
    raw = parse_agent_report(rendered)
    assert raw[0x1F8:0x200] == (5).to_bytes(8, "little")
    assert raw[0x200:0x208] == (6).to_bytes(8, "little")


def test_evidence_and_certificates() -> None:
    body = {
        "attestation_report": render_report(RAW),
        "cert_chain": [
            {"cert_type": "VCEK", "data": [1, 2]},
            {"cert_type": "CRL", "data": [3]},
            {"cert_type": {"OTHER": "00000000-0000-0000-0000-000000000001"}, "data": []},
            {"cert_type": "VLEK", "data": [4]},
        ],
        "svsm_manifest": None,
    }
    evidence = parse_agent_evidence(body)
    assert evidence.report == RAW
    assert [(c.kind, c.data) for c in evidence.certificates] == [
        (CertKind.VCEK, b"\x01\x02"),
        (CertKind.VLEK, b"\x04"),
    ]
    assert parse_agent_evidence({**body, "cert_chain": None}).certificates == ()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x", "evidence is not an object"),
        ({"quote": "tdx"}, "no attestation_report"),
        ({"attestation_report": render_report(RAW), "cert_chain": {}}, "not a list"),
        ({"attestation_report": render_report(RAW), "cert_chain": [1]}, "not an object"),
        ({"attestation_report": render_report(RAW), "cert_chain": [{"cert_type": "PEK"}]}, "PEK"),
        (
            {"attestation_report": render_report(RAW), "cert_chain": [{"cert_type": "ARK"}]},
            "ARK is not an array",
        ),
    ],
)
def test_malformed_evidence_is_refused(body: object, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_agent_evidence(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(sorted(render_report(RAW))), json_values, max_size=6))
def test_garbage_raises_only_parse_errors(patch: dict[str, Any]) -> None:
    with contextlib.suppress(ParseError):
        parse_agent_evidence({"attestation_report": {**render_report(RAW), **patch}})
