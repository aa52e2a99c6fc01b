"""Known answers of NVIDIA's Hopper sample report (nvtrust samples; tests/vectors/gpu/README.md)."""

from __future__ import annotations

from attestation.nvidia.spdm import MEASUREMENTS_CODE, OpaqueFieldType, parse_gpu_report


def test_sample_request(sample_report: bytes, spdm) -> None:
    report = parse_gpu_report(sample_report)
    assert report.request.raw == sample_report[:37]
    assert report.request.nonce == spdm.sample_nonce
    assert (report.request.param1, report.request.operation, report.request.slot_id) == (1, 0xFF, 0)


def test_sample_response(sample_report: bytes) -> None:
    resp = parse_gpu_report(sample_report).response
    assert resp.version == 0x11
    assert sample_report[38] == MEASUREMENTS_CODE
    assert len(resp.blocks) == 64
    assert [b.index for b in resp.blocks] == list(range(1, 65))
    assert all(len(b.value) == 48 and b.value_type == 0x01 for b in resp.blocks)
    assert resp.block(2).value.hex().startswith("8048dfd18fe229bf")  # type: ignore[union-attr]
    assert resp.nonce.hex().startswith("b4b8a06a")
    assert resp.nonce.hex().endswith("cf640985")
    assert sum(4 + len(f.value) for f in resp.opaque_fields) == 422
    assert resp.driver_version == "550.90.07"
    assert resp.vbios_version == "96.00.9f.00.01"
    assert resp.opaque(OpaqueFieldType.NVDEC0_STATUS) == b"\x55"
    assert len(resp.signature) == 96
    assert len(sample_report) == 37 + len(resp.signed_part) + 96 == 4117
