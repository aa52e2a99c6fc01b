"""Evidence providers: who gives the container evidence for its REPORT_DATA (DESIGN §3.4, §4).

Spec: docs/launch.md §4 (the simulated PSP socket), ``attestation/evidence.py`` (item formats),
``attestation/snp/device.py`` (configfs-tsm, /dev/sev-guest, the CoCo attestation agent),
``attestation/nvidia/device.py`` (NVML); the GPU nonce is the binding digest REPORT_DATA spells
in hex (:func:`attestation.binding.gpu_nonce`, docs/protocol.md "Binding").

Contract: :class:`EvidenceProvider` is the seam: ``get_evidence(report_data)`` (64 bytes) is
blocking (the shell calls it in a worker thread) and returns the JSON evidence items for the
kind-7100 event, or raises :class:`~container.errors.EvidenceError` (exit 22). Nothing here
verifies evidence: the requester does. Providers:

* :class:`SimulatedFdProvider` -- the local launcher's simulated PSP on an inherited socket:
  write 64 bytes, read a 4-byte big-endian length and that much UTF-8 JSON (a list of items, or
  ``{"error": "..."}``); bounded size and time; the measurement is the launcher's, never ours.
* :class:`SnpProvider` -- an SEV-SNP report from the guest device; the VEK/ASK/ARK come from the
  host's certificate table, else the bundled AMD chain (ASK/ARK) and a KDS fetcher (VCEK);
  plus one ``nvidia-gpu`` item per GPU when a :class:`GpuEvidenceSource` is given.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable
from typing import Any, Protocol

from cryptography.hazmat.primitives.serialization import Encoding

from attestation.binding import gpu_nonce
from attestation.errors import AttestationError
from attestation.evidence import EvidenceType, GpuItem, SnpItem
from attestation.nvidia.device import GpuEvidenceSource, NvmlEvidenceSource
from attestation.nvidia.verify import parse_cert_chain
from attestation.snp.abi import CertKind, CertTableEntry, Product, parse_report
from attestation.snp.device import DeviceEvidence, get_report
from attestation.snp.kds import Fetcher, fetch_https, vcek_url
from attestation.snp.trust import bundled_chain

from .errors import EvidenceError, SpecError
from .launch import EvidenceSource, JobSpec

__all__ = [
    "MAX_EVIDENCE_BYTES",
    "REPORT_DATA_BYTES",
    "EvidenceProvider",
    "SimulatedFdProvider",
    "SnpProvider",
    "provider_for",
]

MAX_EVIDENCE_BYTES = 1024 * 1024
REPORT_DATA_BYTES = 64
_KNOWN_TYPES = frozenset(t.value for t in EvidenceType)


class EvidenceProvider(Protocol):
    def get_evidence(self, report_data: bytes) -> list[dict[str, Any]]:
        """Evidence items binding ``report_data``; raises EvidenceError."""
        ...


def _check_items(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise EvidenceError("the PSP answered with no evidence items")
    for item in value:
        if not isinstance(item, dict) or item.get("type") not in _KNOWN_TYPES:
            raise EvidenceError("the PSP answered with an item of unknown type")
    return value


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 65536))
        if not chunk:
            raise EvidenceError(f"the PSP closed the socket after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


class SimulatedFdProvider:
    """The simulated PSP of the local launcher, on the inherited socket ``fd`` (launch.md §4)."""

    def __init__(self, fd: int, *, timeout_s: float = 30.0) -> None:
        self._fd = fd
        self._timeout_s = timeout_s

    def get_evidence(self, report_data: bytes) -> list[dict[str, Any]]:
        if len(report_data) != REPORT_DATA_BYTES:
            raise EvidenceError(f"REPORT_DATA must be 64 bytes, not {len(report_data)}")
        try:
            sock = socket.socket(fileno=self._fd)
        except OSError as exc:
            raise EvidenceError(f"evidence fd {self._fd} is not a socket: {exc.strerror}") from None
        try:
            sock.settimeout(self._timeout_s)
            sock.sendall(report_data)
            (size,) = struct.unpack(">I", _read_exactly(sock, 4))
            if size > MAX_EVIDENCE_BYTES:
                raise EvidenceError(f"the PSP announced {size} bytes (max {MAX_EVIDENCE_BYTES})")
            raw = _read_exactly(sock, size)
        except TimeoutError:
            raise EvidenceError(f"the PSP did not answer within {self._timeout_s} s") from None
        except OSError as exc:
            raise EvidenceError(f"the PSP socket failed: {exc.strerror or exc}") from None
        finally:
            sock.close()
        try:
            answer = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise EvidenceError(f"the PSP answer ({len(raw)} bytes) is not UTF-8 JSON") from None
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            raise EvidenceError(f"the PSP refused: {answer['error'][:200]}")
        return _check_items(answer)


def _certificate(entries: tuple[CertTableEntry, ...], *kinds: CertKind) -> bytes | None:
    for entry in entries:
        if entry.kind in kinds:
            return entry.data
    return None


class SnpProvider:
    """SEV-SNP evidence from the guest device, with GPU evidence when ``gpus`` is given.

    ``get_report`` is :func:`attestation.snp.device.get_report` (a parameter so tests plug in a
    fake); ``fetch`` gets the VCEK from AMD's KDS when the host supplied no certificates.
    """

    def __init__(
        self,
        *,
        get_report: Callable[[bytes], DeviceEvidence],
        fetch: Fetcher | None = None,
        gpus: GpuEvidenceSource | None = None,
        product: Product | None = None,
    ) -> None:
        self._get_report = get_report
        self._fetch = fetch
        self._gpus = gpus
        self._product = product

    def get_evidence(self, report_data: bytes) -> list[dict[str, Any]]:
        if len(report_data) != REPORT_DATA_BYTES:
            raise EvidenceError(f"REPORT_DATA must be 64 bytes, not {len(report_data)}")
        try:
            items = [self._cpu_item(report_data).to_json()]
            if self._gpus is not None:
                for gpu in self._gpus.get_evidence(nonce=gpu_nonce(report_data)):
                    certs = parse_cert_chain(gpu.cert_chain_pem)
                    item = GpuItem(
                        report=gpu.report, certs=tuple(c.public_bytes(Encoding.DER) for c in certs)
                    )
                    items.append(item.to_json())
        except AttestationError as exc:
            raise EvidenceError(f"{type(exc).__name__}: {exc}") from None
        return items

    def _cpu_item(self, report_data: bytes) -> SnpItem:
        evidence = self._get_report(report_data)
        report = parse_report(evidence.report, product=self._product)
        if report.report_data != report_data:
            raise EvidenceError("the device returned a report for another REPORT_DATA")
        product = report.product
        if product is None:
            raise EvidenceError("the report names no product (v2 report): configure one")
        signer = report.key_info.signing_key
        table = evidence.certificates
        vek = _certificate(table, CertKind.VCEK, CertKind.VLEK)
        ask = _certificate(table, CertKind.ASK)
        ark = _certificate(table, CertKind.ARK)
        if ask is None or ark is None:
            bundled_ask, bundled_ark = bundled_chain(product, signer)
            ask = ask or bundled_ask.public_bytes(Encoding.DER)
            ark = ark or bundled_ark.public_bytes(Encoding.DER)
        if vek is None:
            if self._fetch is None:
                raise EvidenceError("the host supplied no VEK and no KDS fetcher is configured")
            vek = self._fetch(vcek_url(product, report.chip_id, report.reported_tcb))
        return SnpItem(type=EvidenceType.SEV_SNP, report=evidence.report, vek=vek, ask=ask, ark=ark)


def provider_for(spec: JobSpec) -> EvidenceProvider:
    """The provider the spec's ``evidence`` names (docs/launch.md §1, §4)."""
    if spec.evidence_source is EvidenceSource.SIMULATED_FD:
        if spec.evidence_fd is None:  # pragma: no cover - parse_job_spec requires it
            raise SpecError("simulated-fd evidence needs an fd")
        return SimulatedFdProvider(spec.evidence_fd)
    gpus = NvmlEvidenceSource() if spec.evidence_source is EvidenceSource.SEV_SNP_NVIDIA else None
    return SnpProvider(get_report=get_report, fetch=fetch_https, gpus=gpus)
