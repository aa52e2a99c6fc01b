"""attestation.nvidia.device: the NVML seam, with a fake pynvml module and a real-GPU test."""

from __future__ import annotations

import datetime
import importlib.util
import sys
import types

import pytest

from attestation.errors import DeviceError
from attestation.nvidia.device import GpuEvidence, GpuEvidenceSource, NvmlEvidenceSource
from attestation.nvidia.verify import verify_gpu_evidence

NONCE = bytes(range(32))


class FakeNvmlError(Exception):
    pass


def _fake_nvml(
    report: bytes,
    chain: bytes,
    *,
    fail_at: str | None = None,
    count: int = 1,
    cc_state: object | None = None,
):
    """A fake pynvml; by default the system is in CC mode (ccFeature 1, devToolsMode 0)."""
    calls: list[str] = []
    state = cc_state or types.SimpleNamespace(environment=2, ccFeature=1, devToolsMode=0)

    def step(name: str) -> None:
        calls.append(name)
        if name == fail_at:
            raise FakeNvmlError(name)

    def report_call(handle, nonce):
        step("report")
        assert nonce == NONCE
        return types.SimpleNamespace(
            attestationReport=report + b"\x00" * 64, attestationReportSize=len(report)
        )

    def cert_call(handle):
        step("cert")
        return types.SimpleNamespace(
            attestationCertChain=chain + b"\x00" * 8, attestationCertChainSize=len(chain)
        )

    module = types.SimpleNamespace(
        NVMLError=FakeNvmlError,
        nvmlInit=lambda: step("init"),
        nvmlShutdown=lambda: step("shutdown"),
        nvmlSystemGetConfComputeState=lambda: step("cc_state") or state,
        nvmlDeviceGetCount=lambda: count,
        nvmlDeviceGetHandleByIndex=lambda i: step("handle") or i,
        nvmlDeviceGetConfComputeGpuAttestationReport=report_call,
        nvmlDeviceGetConfComputeGpuCertificate=cert_call,
    )
    return module, calls


def _install(monkeypatch, module) -> NvmlEvidenceSource:
    monkeypatch.setitem(sys.modules, "fake_pynvml_for_tests", module)
    return NvmlEvidenceSource(module_name="fake_pynvml_for_tests")


def test_fake_nvml_yields_the_evidence(monkeypatch) -> None:
    module, calls = _fake_nvml(b"REPORT", b"CHAIN", count=2)
    source: GpuEvidenceSource = _install(monkeypatch, module)
    evidence = source.get_evidence(nonce=NONCE)
    assert evidence == (GpuEvidence(0, b"REPORT", b"CHAIN"), GpuEvidence(1, b"REPORT", b"CHAIN"))
    assert calls[0] == "init"
    assert calls[-1] == "shutdown"


@pytest.mark.parametrize("fail_at", ["init", "cc_state", "handle", "report", "cert"])
def test_nvml_failures_become_device_errors(monkeypatch, fail_at: str) -> None:
    module, calls = _fake_nvml(b"R", b"C", fail_at=fail_at)
    with pytest.raises(DeviceError, match=r"NVML call nvml.*failed: FakeNvmlError"):
        _install(monkeypatch, module).get_evidence(nonce=NONCE)
    assert fail_at == "init" or calls[-1] == "shutdown"


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"ccFeature": 0, "devToolsMode": 0}, r"confidential computing is off .*ccFeature 0"),
        ({"ccFeature": 1, "devToolsMode": 1}, r"devtools mode \(NVML devToolsMode 1\)"),
        ({"ccFeature": 1}, "unreadable confidential-computing state"),
        ({"ccFeature": "on", "devToolsMode": 0}, "unreadable confidential-computing state"),
    ],
)
def test_cc_off_or_devtools_is_refused_before_any_report(monkeypatch, state, message) -> None:
    module, calls = _fake_nvml(b"R", b"C", cc_state=types.SimpleNamespace(**state))
    with pytest.raises(DeviceError, match=message):
        _install(monkeypatch, module).get_evidence(nonce=NONCE)
    assert calls == ["init", "cc_state", "shutdown"]


def test_binding_without_cc_calls_is_device_error(monkeypatch) -> None:
    module, _ = _fake_nvml(b"R", b"C")
    del module.nvmlDeviceGetConfComputeGpuAttestationReport
    with pytest.raises(DeviceError, match="AttributeError"):
        _install(monkeypatch, module).get_evidence(nonce=NONCE)


def test_empty_buffers_and_no_gpu(monkeypatch) -> None:
    module, _ = _fake_nvml(b"", b"C")
    with pytest.raises(DeviceError, match="empty attestation report of GPU 0"):
        _install(monkeypatch, module).get_evidence(nonce=NONCE)
    module, _ = _fake_nvml(b"R", b"C")
    module.nvmlDeviceGetConfComputeGpuCertificate = lambda h: types.SimpleNamespace(
        attestationCertChain=None, attestationCertChainSize=3
    )
    with pytest.raises(DeviceError, match="unreadable certificate chain"):
        _install(monkeypatch, module).get_evidence(nonce=NONCE)
    module, _ = _fake_nvml(b"R", b"C", count=0)
    with pytest.raises(DeviceError, match="no GPU"):
        _install(monkeypatch, module).get_evidence(nonce=NONCE)


def test_missing_binding_and_bad_nonce() -> None:
    source = NvmlEvidenceSource(module_name="no_such_nvml_module_anywhere")
    with pytest.raises(DeviceError, match="32"):
        source.get_evidence(nonce=b"short")
    with pytest.raises(DeviceError, match="not installed"):
        source.get_evidence(nonce=NONCE)


def test_fake_evidence_feeds_the_verifier(monkeypatch, sample_report, sample_chain_pem, spdm):
    """Evidence shaped as NVML returns it verifies end to end (NVIDIA's sample as the GPU)."""
    module, _ = _fake_nvml(sample_report, sample_chain_pem)
    module.nvmlDeviceGetConfComputeGpuAttestationReport = lambda h, n: types.SimpleNamespace(
        attestationReport=sample_report, attestationReportSize=len(sample_report)
    )
    (evidence,) = _install(monkeypatch, module).get_evidence(nonce=NONCE)
    verified = verify_gpu_evidence(
        evidence.report,
        evidence.cert_chain_pem,
        expected_nonce=spdm.sample_nonce,
        now=spdm.sample_now,
    )
    assert verified.driver_version == "550.90.07"


@pytest.mark.gpu
def test_live_gpu_evidence_verifies() -> None:
    """On an H100 in CC mode with pynvml installed: fresh evidence verifies to NVIDIA's root."""
    if importlib.util.find_spec("pynvml") is None:
        pytest.skip("pynvml is not installed")
    source = NvmlEvidenceSource()
    try:
        evidence = source.get_evidence(nonce=NONCE)
    except DeviceError as exc:
        pytest.skip(f"no GPU in confidential-computing mode: {exc}")
    now = datetime.datetime.now(tz=datetime.UTC)
    for item in evidence:
        verified = verify_gpu_evidence(
            item.report, item.cert_chain_pem, expected_nonce=NONCE, now=now
        )
        assert verified.nonce == NONCE
