"""Evidence providers against fakes: the simulated PSP socket protocol, SEV-SNP and GPU paths."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from attestation.errors import DeviceError
from attestation.evidence import parse_bundle
from attestation.nvidia.device import GpuEvidence
from attestation.simulated import SimulatedChain, SimulatedTee, mint_chain
from attestation.snp.abi import CertKind, CertTableEntry
from attestation.snp.device import DeviceEvidence, get_report
from container.errors import EvidenceError
from container.evidence import SimulatedFdProvider, SnpProvider
from tests.coco.fake_attestation_agent import FakeAttestationAgent, running_agent

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
REPORT_DATA = bytes(range(64))
BINDING = hashlib.sha256(b"a binding").hexdigest().encode()  # the cdvm/1 form (64 hex bytes)


@pytest.fixture(scope="module")
def chain() -> SimulatedChain:
    return mint_chain(now=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))


@pytest.fixture(scope="module")
def tee(chain: SimulatedChain) -> SimulatedTee:
    return SimulatedTee(chain, hashlib.sha384(b"runtime").digest())


Server = Callable[[socket.socket], None]


@pytest.fixture
def psp() -> Iterator[Callable[[Server], int]]:
    """``serve(handler) -> fd``: the container's end of a socketpair; the handler plays the PSP."""
    threads: list[threading.Thread] = []
    ends: list[socket.socket] = []

    def serve(handler: Server) -> int:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ends.append(ours)
        thread = threading.Thread(target=handler, args=(ours,), daemon=True)
        thread.start()
        threads.append(thread)
        return theirs.detach()

    yield serve
    for end in ends:
        end.close()
    for thread in threads:
        thread.join(timeout=5)


def answer(body: bytes) -> Server:
    def handler(sock: socket.socket) -> None:
        got = b""
        while len(got) < 64:
            chunk = sock.recv(64)
            if not chunk:
                return
            got += chunk
        sock.sendall(struct.pack(">I", len(body)) + body)

    return handler


def test_simulated_fd_round_trip(psp: Callable[[Server], int], tee: SimulatedTee) -> None:
    seen: list[bytes] = []

    def handler(sock: socket.socket) -> None:
        data = sock.recv(64)
        seen.append(data)
        report = tee.report(report_data=data)
        body = json.dumps(
            [{"type": "simulated", "report": report.hex(), "vek": "", "ask": "", "ark": ""}]
        ).encode()
        sock.sendall(struct.pack(">I", len(body)) + body)

    items = SimulatedFdProvider(psp(handler)).get_evidence(REPORT_DATA)
    assert seen == [REPORT_DATA]
    assert items[0]["type"] == "simulated"
    assert bytes.fromhex(items[0]["report"])[0x50:0x90] == REPORT_DATA  # REPORT_DATA offset


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": "no more reports for this job"}', "refused: no more reports"),
        (b"[]", "no evidence items"),
        (b'[{"type": "tpm"}]', "unknown type"),
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{", "not UTF-8 JSON"),
    ],
)
def test_simulated_fd_refusals(psp: Callable[[Server], int], body: bytes, message: str) -> None:
    with pytest.raises(EvidenceError, match=message):
        SimulatedFdProvider(psp(answer(body))).get_evidence(REPORT_DATA)


def test_simulated_fd_oversized_answer(psp: Callable[[Server], int]) -> None:
    def handler(sock: socket.socket) -> None:
        sock.recv(64)
        sock.sendall(struct.pack(">I", 1 << 30))

    with pytest.raises(EvidenceError, match="announced"):
        SimulatedFdProvider(psp(handler)).get_evidence(REPORT_DATA)


def test_simulated_fd_closed_early(psp: Callable[[Server], int]) -> None:
    def handler(sock: socket.socket) -> None:
        sock.recv(64)
        sock.sendall(struct.pack(">I", 100) + b"[")
        sock.shutdown(socket.SHUT_RDWR)

    with pytest.raises(EvidenceError, match="closed the socket after 1 of 100"):
        SimulatedFdProvider(psp(handler)).get_evidence(REPORT_DATA)


def test_simulated_fd_timeout(psp: Callable[[Server], int]) -> None:
    release = threading.Event()

    def handler(sock: socket.socket) -> None:
        sock.recv(64)
        release.wait(5)

    try:
        with pytest.raises(EvidenceError, match="did not answer"):
            SimulatedFdProvider(psp(handler), timeout_s=0.2).get_evidence(REPORT_DATA)
    finally:
        release.set()


def test_simulated_fd_bad_fd_and_bad_report_data() -> None:
    with pytest.raises(EvidenceError, match="64 bytes"):
        SimulatedFdProvider(99).get_evidence(b"short")
    with pytest.raises(EvidenceError, match="not a socket"):
        SimulatedFdProvider(987654).get_evidence(REPORT_DATA)


# --- SEV-SNP, with the simulated signer standing in for the PSP --------------------------------


def table(chain: SimulatedChain, *which: str) -> tuple[CertTableEntry, ...]:
    kinds = {"vcek": CertKind.VCEK, "ask": CertKind.ASK, "ark": CertKind.ARK}
    return tuple(CertTableEntry(uuid.UUID(kinds[w].value), chain.der(w)) for w in which)


def fake_device(
    tee: SimulatedTee, certificates: tuple[CertTableEntry, ...]
) -> Callable[[bytes], DeviceEvidence]:
    def get_report(report_data: bytes) -> DeviceEvidence:
        return DeviceEvidence(tee.report(report_data=report_data), certificates, "fake")

    return get_report


CLAIMS = {
    "pubkey": "11" * 32,
    "job": "22" * 32,
    "nonce": "33" * 32,
    "provider": "44" * 32,
    "model": {"name": "m", "sha256": "55" * 32},
    "runtime": {"version": "1", "image": "i"},
}


def test_snp_item_with_the_hosts_certificates(tee: SimulatedTee, chain: SimulatedChain) -> None:
    provider = SnpProvider(get_report=fake_device(tee, table(chain, "vcek", "ask", "ark")))
    items = provider.get_evidence(REPORT_DATA)
    bundle = parse_bundle(
        json.dumps({"v": 1, "claims": CLAIMS, "evidence": items, "initdata": None})
    )
    assert bundle.cpu.type.value == "sev-snp"
    assert bundle.cpu.vek == chain.der("vcek")
    assert bundle.cpu.ark == chain.der("ark")


def test_snp_fetches_the_vcek_and_uses_the_bundled_amd_chain(
    tee: SimulatedTee, chain: SimulatedChain
) -> None:
    urls: list[str] = []

    def fetch(url: str) -> bytes:
        urls.append(url)
        return chain.der("vcek")

    items = SnpProvider(get_report=fake_device(tee, ()), fetch=fetch).get_evidence(REPORT_DATA)
    assert urls
    assert urls[0].startswith("https://kdsintf.amd.com/vcek/v1/Genoa/")
    bundle = parse_bundle(
        json.dumps({"v": 1, "claims": CLAIMS, "evidence": items, "initdata": None})
    )
    assert bundle.cpu.ark != chain.der("ark")  # the real AMD Genoa ARK, from the package


def test_snp_without_certificates_or_fetcher_fails(tee: SimulatedTee) -> None:
    with pytest.raises(EvidenceError, match="no VEK"):
        SnpProvider(get_report=fake_device(tee, ())).get_evidence(REPORT_DATA)


def test_snp_report_for_other_data_is_refused(tee: SimulatedTee, chain: SimulatedChain) -> None:
    def get_report(report_data: bytes) -> DeviceEvidence:
        return DeviceEvidence(tee.report(report_data=bytes(64)), table(chain, "vcek"), "fake")

    with pytest.raises(EvidenceError, match="another REPORT_DATA"):
        SnpProvider(get_report=get_report).get_evidence(REPORT_DATA)


def test_snp_device_errors_become_evidence_errors() -> None:
    def get_report(report_data: bytes) -> DeviceEvidence:
        raise DeviceError("no SEV-SNP report source answered")

    with pytest.raises(EvidenceError, match="DeviceError"):
        SnpProvider(get_report=get_report).get_evidence(REPORT_DATA)


class FakeGpus:
    def __init__(self) -> None:
        self.nonces: list[bytes] = []

    def get_evidence(self, *, nonce: bytes) -> tuple[GpuEvidence, ...]:
        self.nonces.append(nonce)
        hopper = VECTORS / "gpu" / "nvidia-hopper"
        report = bytes.fromhex((hopper / "hopperAttestationReport.txt").read_text().strip())
        chain = (hopper / "hopperCertChain.txt").read_bytes()
        return (GpuEvidence(0, report, chain),)


def test_gpu_evidence_is_added_with_the_report_data_nonce(
    tee: SimulatedTee, chain: SimulatedChain
) -> None:
    gpus = FakeGpus()
    provider = SnpProvider(
        get_report=fake_device(tee, table(chain, "vcek", "ask", "ark")), gpus=gpus
    )
    items = provider.get_evidence(BINDING)
    assert gpus.nonces == [bytes.fromhex(BINDING.decode())]  # the digest the hex spells
    assert [i["type"] for i in items] == ["sev-snp", "nvidia-gpu"]
    assert len(items[1]["certs"]) == 5
    bundle = parse_bundle(
        json.dumps({"v": 1, "claims": CLAIMS, "evidence": items, "initdata": None})
    )
    assert len(bundle.gpus) == 1


def test_gpu_nonce_needs_the_binding_form(tee: SimulatedTee, chain: SimulatedChain) -> None:
    provider = SnpProvider(
        get_report=fake_device(tee, table(chain, "vcek", "ask", "ark")), gpus=FakeGpus()
    )
    with pytest.raises(EvidenceError, match="not 64 lowercase hex"):
        provider.get_evidence(REPORT_DATA)


def test_snp_item_through_the_attestation_agent(
    tee: SimulatedTee, chain: SimulatedChain, tmp_path: Path
) -> None:
    """No configfs-tsm, no /dev/sev-guest (a CoCo container): the agent path answers."""
    with running_agent(FakeAttestationAgent(tee)) as agent:
        provider = SnpProvider(
            get_report=lambda rd: get_report(
                rd, tsm_base=tmp_path / "no-tsm", device=tmp_path / "no-dev", aa_url=agent.url
            )
        )
        items = provider.get_evidence(BINDING)
    assert agent.runtime_data_seen == [BINDING]
    bundle = parse_bundle(
        json.dumps({"v": 1, "claims": CLAIMS, "evidence": items, "initdata": None})
    )
    assert bundle.cpu.report[0x50:0x90] == BINDING
    assert bundle.cpu.vek == chain.der("vcek")
