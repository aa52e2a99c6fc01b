"""Get GPU evidence from a live NVIDIA GPU in confidential-computing mode: the only I/O here.

API: NVML ``nvmlDeviceGetConfComputeGpuAttestationReport`` and
``nvmlDeviceGetConfComputeGpuCertificate`` (NVIDIA Management Library reference, "Confidential
Computing" functions; https://docs.nvidia.com/deploy/nvml-api/), reached through the
``pynvml`` / ``nvidia-ml-py`` binding, which is **not** a dependency: it is imported lazily, on
first use, and its absence is a :class:`~attestation.errors.DeviceError` like any other failure.

Before asking for evidence the source reads the system's confidential-computing state
(``nvmlSystemGetConfComputeState``: ``ccFeature``, ``devToolsMode``) and refuses, with distinct
``DeviceError`` messages, when CC is off or in devtools mode, as NVIDIA's local verifier checks
it before attesting (nvtrust ``cc_admin.init_nvml``; it only logs devtools, we refuse). This is
the provider's own fail-early check: NVML's answer is unsigned and comes from the host's
driver, so a remote verifier never relies on it (see :mod:`attestation.nvidia.verify`).

Contract: one seam, :class:`GpuEvidenceSource`. ``get_evidence(nonce=...)`` returns the raw
attestation report (GET_MEASUREMENTS request || signed MEASUREMENTS response) and the PEM
certificate chain, unparsed and unverified; feed them to
:func:`attestation.nvidia.verify.verify_gpu_evidence`. Every failure of the driver, the binding
or the device surfaces as ``DeviceError`` naming the GPU index and the NVML call, never as a
``pynvml`` exception. Tests plug a fake source into the same Protocol.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol

from attestation.errors import DeviceError
from attestation.nvidia.spdm import NONCE_SIZE_BYTES

__all__ = ["GpuEvidence", "GpuEvidenceSource", "NvmlEvidenceSource"]


@dataclass(frozen=True, slots=True)
class GpuEvidence:
    """Raw evidence of one GPU: the attestation report bytes and its PEM certificate chain."""

    gpu_index: int
    report: bytes
    cert_chain_pem: bytes


class GpuEvidenceSource(Protocol):
    """Anything that can get fresh evidence for a 32-byte nonce from each GPU it manages."""

    def get_evidence(self, *, nonce: bytes) -> tuple[GpuEvidence, ...]:
        """Evidence from every GPU, each report over ``nonce``; raises DeviceError."""
        ...


def _require_cc_on(state: Any) -> None:
    """Refuse a system whose NVML CC state is not "on" (off, or devtools), one reason each."""
    try:
        cc_feature, devtools = int(state.ccFeature), int(state.devToolsMode)
    except (AttributeError, TypeError, ValueError) as exc:
        raise DeviceError("NVML returned an unreadable confidential-computing state") from exc
    if cc_feature == 0:
        raise DeviceError("confidential computing is off on this system (NVML ccFeature 0)")
    if devtools != 0:
        raise DeviceError(
            "confidential computing is in devtools mode (NVML devToolsMode "
            f"{devtools}): profiling and debugging are open, refused"
        )


def _buffer(raw: Any, size: Any, what: str) -> bytes:
    try:
        data = bytes(raw[: int(size)])
    except (TypeError, ValueError) as exc:
        raise DeviceError(f"NVML returned an unreadable {what}") from exc
    if not data:
        raise DeviceError(f"NVML returned an empty {what}")
    return data


class NvmlEvidenceSource:
    """Evidence through NVML (``pynvml``), imported only when evidence is first asked for."""

    def __init__(self, *, module_name: str = "pynvml") -> None:
        self._module_name = module_name

    def _nvml(self) -> Any:
        try:
            return importlib.import_module(self._module_name)
        except ImportError as exc:
            raise DeviceError(
                f"{self._module_name} is not installed: no NVML, no GPU evidence"
            ) from exc

    def get_evidence(self, *, nonce: bytes) -> tuple[GpuEvidence, ...]:
        if len(nonce) != NONCE_SIZE_BYTES:
            raise DeviceError(f"GPU nonce is {len(nonce)} bytes, NVML wants 32")
        nvml = self._nvml()
        # NVMLError for driver/device failures; OSError when libnvidia-ml cannot be loaded;
        # AttributeError when the binding predates the confidential-computing calls.
        failures: tuple[type[BaseException], ...] = (
            getattr(nvml, "NVMLError", OSError),
            OSError,
            AttributeError,
        )
        call = "nvmlInit"
        try:
            nvml.nvmlInit()
            try:
                call = "nvmlSystemGetConfComputeState"
                _require_cc_on(nvml.nvmlSystemGetConfComputeState())
                call = "nvmlDeviceGetCount"
                count = int(nvml.nvmlDeviceGetCount())
                evidence: list[GpuEvidence] = []
                for index in range(count):
                    call = f"nvmlDeviceGetHandleByIndex({index})"
                    handle = nvml.nvmlDeviceGetHandleByIndex(index)
                    call = f"nvmlDeviceGetConfComputeGpuAttestationReport({index})"
                    report = nvml.nvmlDeviceGetConfComputeGpuAttestationReport(handle, nonce)
                    call = f"nvmlDeviceGetConfComputeGpuCertificate({index})"
                    cert = nvml.nvmlDeviceGetConfComputeGpuCertificate(handle)
                    evidence.append(
                        GpuEvidence(
                            gpu_index=index,
                            report=_buffer(
                                report.attestationReport,
                                report.attestationReportSize,
                                f"attestation report of GPU {index}",
                            ),
                            cert_chain_pem=_buffer(
                                cert.attestationCertChain,
                                cert.attestationCertChainSize,
                                f"certificate chain of GPU {index}",
                            ),
                        )
                    )
            finally:
                nvml.nvmlShutdown()
        except failures as exc:
            raise DeviceError(f"NVML call {call} failed: {type(exc).__name__}") from exc
        if not evidence:
            raise DeviceError("NVML reports no GPU")
        return tuple(evidence)
