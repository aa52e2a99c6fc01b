"""attestation.snp.device against fakes: a configfs tree in tmp_path with a fake kernel, a fake
ioctl on a plain file, the fake attestation agent (tests/coco) and a canned one for malformed
answers, both on 127.0.0.1; plus a hardware test."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from attestation.errors import DeviceError
from attestation.simulated import SimulatedTee, load_or_mint
from attestation.snp import device
from attestation.snp.abi import parse_report
from attestation.snp.certtable import (
    CertKind,
    CertTableEntry,
    parse_cert_table,
    serialize_cert_table,
)
from attestation.snp.device import (
    SNP_GET_EXT_REPORT,
    ConfigfsOps,
    agent_runtime_data,
    get_report,
    get_report_attestation_agent,
    get_report_configfs,
    get_report_ioctl,
)
from attestation.snp.verify import verify_report
from tests.coco.fake_attestation_agent import FakeAttestationAgent, render_report, running_agent

VECTORS = Path(__file__).parents[3] / "vectors" / "snp"
REPORT = (VECTORS / "trustee-milan-v2" / "test-report.bin").read_bytes()
REPORT_DATA = REPORT[0x50:0x90]
VCEK = (VECTORS / "trustee-milan-v2" / "test-vcek.der").read_bytes()
TABLE = serialize_cert_table([CertTableEntry(uuid.UUID(CertKind.VCEK.value), VCEK)])


class FakeKernel(ConfigfsOps):
    """Plays configfs-tsm on a real directory: populates an entry on mkdir, bumps generation
    on every inblob write, and can simulate a concurrent writer or another provider."""

    def __init__(
        self, *, provider: str | None = "sev_guest", race: bool = False, aux: bytes | None = TABLE
    ) -> None:
        self.provider, self.race, self.aux = provider, race, aux
        self.entries: list[Path] = []
        self.inblobs: list[bytes] = []

    def make_entry(self, base: Path) -> Path:
        entry = super().make_entry(base)
        self.entries.append(entry)
        if self.provider is not None:
            (entry / "provider").write_text(self.provider + "\n")
        (entry / "generation").write_text("0\n")
        return entry

    def write(self, path: Path, data: bytes) -> None:
        super().write(path, data)
        if path.name == "inblob":
            self.inblobs.append(data)
            self._bump(path.parent)
            (path.parent / "outblob").write_bytes(REPORT)
            if self.aux is not None:
                (path.parent / "auxblob").write_bytes(self.aux)

    def read(self, path: Path) -> bytes:
        data = super().read(path)
        if path.name == "outblob" and self.race:
            self._bump(path.parent)  # another process wrote inblob meanwhile
        return data

    def remove_entry(self, entry: Path) -> None:
        for child in entry.iterdir():
            child.unlink()
        super().remove_entry(entry)

    @staticmethod
    def _bump(entry: Path) -> None:
        gen = entry / "generation"
        gen.write_text(f"{int(gen.read_text()) + 1}\n")


def test_configfs_happy_path(tmp_path: Path) -> None:
    kernel = FakeKernel()
    evidence = get_report_configfs(REPORT_DATA, base=tmp_path, ops=kernel, privlevel=0)
    assert evidence.report == REPORT
    assert evidence.source == "configfs-tsm"
    assert [e.kind for e in evidence.certificates] == [CertKind.VCEK]
    assert kernel.inblobs == [REPORT_DATA]
    assert list(tmp_path.iterdir()) == []  # the entry was removed
    assert kernel.entries[0].name.startswith("cdvm-")


def test_configfs_without_auxblob(tmp_path: Path) -> None:
    evidence = get_report_configfs(REPORT_DATA, base=tmp_path, ops=FakeKernel(aux=None))
    assert evidence.certificates == ()


def test_configfs_generation_mismatch(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="generation changed from 1 to 2"):
        get_report_configfs(REPORT_DATA, base=tmp_path, ops=FakeKernel(race=True))
    assert list(tmp_path.iterdir()) == []


def test_configfs_wrong_or_missing_provider(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="provider is 'tdx_guest'"):
        get_report_configfs(REPORT_DATA, base=tmp_path, ops=FakeKernel(provider="tdx_guest"))
    with pytest.raises(DeviceError, match="cannot read provider"):
        get_report_configfs(REPORT_DATA, base=tmp_path, ops=FakeKernel(provider=None))
    assert list(tmp_path.iterdir()) == []


def test_configfs_bad_outputs(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="malformed certificate table"):
        get_report_configfs(REPORT_DATA, base=tmp_path, ops=FakeKernel(aux=b"\x01" * 30))

    class ShortKernel(FakeKernel):
        def write(self, path: Path, data: bytes) -> None:
            super().write(path, data)
            if path.name == "inblob":
                (path.parent / "outblob").write_bytes(b"short")

    with pytest.raises(DeviceError, match="outblob is 5 bytes"):
        get_report_configfs(REPORT_DATA, base=tmp_path, ops=ShortKernel())


def test_configfs_absent_or_unwritable(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="does not exist"):
        get_report_configfs(REPORT_DATA, base=tmp_path / "nope")

    class NoMkdir(ConfigfsOps):
        def make_entry(self, base: Path) -> Path:
            raise PermissionError("read-only")

    with pytest.raises(DeviceError, match="cannot create an entry"):
        get_report_configfs(REPORT_DATA, base=tmp_path, ops=NoMkdir())

    class NoWrite(FakeKernel):
        def write(self, path: Path, data: bytes) -> None:
            raise OSError(errno.EINVAL, "busy")

    with pytest.raises(DeviceError, match="cannot write inblob"):
        get_report_configfs(REPORT_DATA, base=tmp_path, ops=NoWrite())


@pytest.mark.parametrize("bad", [b"", bytes(63), bytes(65)])
def test_report_data_must_be_64_bytes(tmp_path: Path, bad: bytes) -> None:
    with pytest.raises(DeviceError, match="exactly 64 bytes"):
        get_report(bad, tsm_base=tmp_path)


# --- ioctl ----------------------------------------------------------------------------------


class FakeSevGuest:
    """Answers SNP_GET_EXT_REPORT like the kernel: writes MSG_REPORT_RSP and the cert table
    through the addresses in the request, or asks for a larger buffer first."""

    def __init__(
        self, *, need_certs_len: int = 0, status: int = 0, fail_errno: int | None = None
    ) -> None:
        self.need, self.status, self.fail_errno = need_certs_len, status, fail_errno
        self.calls: list[tuple[int, bytes, int]] = []

    def __call__(self, fd: int, request: int, arg: Any) -> int:
        req = device._ExtReportReq.from_address(arg.req_data)
        self.calls.append((request, bytes(req.data.user_data), req.certs_len))
        if self.fail_errno is not None:
            arg.exitinfo2 = 0x27
            raise OSError(self.fail_errno, "fake failure")
        if req.certs_len < self.need:
            req.certs_len = self.need
            arg.exitinfo2 = 1 << 32
            raise OSError(errno.EIO, "certificate buffer too small")
        response = (
            self.status.to_bytes(4, "little")
            + len(REPORT).to_bytes(4, "little")
            + bytes(24)
            + REPORT
        )
        ctypes.memmove(arg.resp_data, response, len(response))
        ctypes.memmove(req.certs_address, TABLE, len(TABLE))
        return 0


def test_ioctl_number_and_struct_layout() -> None:
    assert SNP_GET_EXT_REPORT == 0xC0205302
    assert ctypes.sizeof(device._GuestRequest) == 32
    assert ctypes.sizeof(device._ReportReq) == 96
    assert device._ExtReportReq.certs_address.offset == 96


def test_ioctl_happy_path_with_a_retry(tmp_path: Path) -> None:
    fake_dev = tmp_path / "sev-guest"
    fake_dev.write_bytes(b"")
    fake = FakeSevGuest(need_certs_len=8 * 4096)
    evidence = get_report_ioctl(REPORT_DATA, device=fake_dev, ioctl=fake)
    assert evidence.report == REPORT
    assert evidence.source == "sev-guest"
    assert parse_cert_table(TABLE) == evidence.certificates
    assert [(c[0], c[1], c[2]) for c in fake.calls] == [
        (SNP_GET_EXT_REPORT, REPORT_DATA, 4 * 4096),
        (SNP_GET_EXT_REPORT, REPORT_DATA, 8 * 4096),
    ]


def test_ioctl_errors(tmp_path: Path) -> None:
    fake_dev = tmp_path / "sev-guest"
    fake_dev.write_bytes(b"")
    with pytest.raises(DeviceError, match="cannot open"):
        get_report_ioctl(REPORT_DATA, device=tmp_path / "missing")
    with pytest.raises(DeviceError, match="fw_error 0x27"):
        get_report_ioctl(REPORT_DATA, device=fake_dev, ioctl=FakeSevGuest(fail_errno=errno.EIO))
    with pytest.raises(DeviceError, match="status 0x16"):
        get_report_ioctl(REPORT_DATA, device=fake_dev, ioctl=FakeSevGuest(status=0x16))

    class WrongSize(FakeSevGuest):
        def __call__(self, fd: int, request: int, arg: Any) -> int:
            super().__call__(fd, request, arg)
            ctypes.memmove(arg.resp_data + 4, (1000).to_bytes(4, "little"), 4)
            return 0

    with pytest.raises(DeviceError, match="report_size 1000"):
        get_report_ioctl(REPORT_DATA, device=fake_dev, ioctl=WrongSize())

    class Greedy(FakeSevGuest):
        def __call__(self, fd: int, request: int, arg: Any) -> int:
            self.need = device._ExtReportReq.from_address(arg.req_data).certs_len + 4096
            return super().__call__(fd, request, arg)

    with pytest.raises(DeviceError, match="larger certificate buffer twice"):
        get_report_ioctl(REPORT_DATA, device=fake_dev, ioctl=Greedy())


# --- attestation agent ----------------------------------------------------------------------


class AgentHandler(http.server.BaseHTTPRequestHandler):
    body: bytes = b""
    status: int = 200
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        AgentHandler.seen.append(self.path)
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def agent() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AgentHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    AgentHandler.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def serve(body: object, status: int = 200) -> None:
    AgentHandler.body = json.dumps(body).encode() if not isinstance(body, bytes) else body
    AgentHandler.status = status


def canned_report(report_data: bytes) -> bytes:
    return REPORT[:0x50] + report_data + REPORT[0x90:]


def rendered(report_data: bytes, **extra: object) -> dict[str, object]:
    """The agent's body for a canned report: the sev crate rendering, no certificates."""
    return {"attestation_report": render_report(canned_report(report_data)), **extra}


WANTED = hashlib.sha256(b"a binding").hexdigest().encode()  # the cdvm/1 form: 64 hex bytes


@pytest.fixture(scope="module")
def agent_tee(tmp_path_factory: pytest.TempPathFactory) -> SimulatedTee:
    chain = load_or_mint(tmp_path_factory.mktemp("agent") / "sim", now=datetime.now(UTC))
    return SimulatedTee(chain, bytes(48))


def test_agent_gets_a_report_for_the_binding_form(agent_tee: SimulatedTee) -> None:
    with running_agent(FakeAttestationAgent(agent_tee)) as fake:
        evidence = get_report_attestation_agent(WANTED, url=fake.url)
    assert fake.runtime_data_seen == [WANTED]  # all 64 bytes, as text: no padding needed
    assert parse_report(evidence.report).report_data == WANTED
    assert evidence.source == "attestation-agent"
    assert [c.kind for c in evidence.certificates] == [CertKind.VCEK, CertKind.ASK, CertKind.ARK]
    assert evidence.certificates[0].data == agent_tee.chain.der("vcek")


def test_agent_short_text_is_zero_padded_by_the_agent(agent_tee: SimulatedTee) -> None:
    wanted = "nonce é+&=".encode().ljust(64, b"\0")
    assert agent_runtime_data(wanted) == "nonce é+&="
    with running_agent(FakeAttestationAgent(agent_tee, cert_chain=None)) as fake:
        evidence = get_report_attestation_agent(wanted, url=fake.url)
    assert fake.runtime_data_seen == ["nonce é+&=".encode()]
    assert evidence.report[0x50:0x90] == wanted
    assert evidence.certificates == ()


def test_agent_request_line(agent: str) -> None:
    serve(rendered(b"nonce-1234".ljust(64, b"\0")))
    get_report_attestation_agent(b"nonce-1234".ljust(64, b"\0"), url=agent)
    assert AgentHandler.seen == ["/aa/evidence?runtime_data=nonce-1234"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 500, "HTTP 500"),
        (b"x" * (1 << 20) + b"x", 200, "response over"),
        (b"not json", 200, "not JSON"),
        ({"quote": "tdx"}, 200, "no attestation_report"),
        ({"attestation_report": list(canned_report(WANTED))}, 200, "not an object"),
        ({"attestation_report": {"version": 2}}, 200, "guest_svn"),
        (rendered(b"n".ljust(64, b"\0")), 200, "not what was asked for"),
        (rendered(WANTED, cert_chain={}), 200, "not a list"),
        (rendered(WANTED, cert_chain=[{"cert_type": "PEK"}]), 200, "unknown cert_type"),
    ],
)
def test_agent_refusals(agent: str, body: object, status: int, message: str) -> None:
    serve(body, status)
    with pytest.raises(DeviceError, match=message):
        get_report_attestation_agent(WANTED, url=agent)


@pytest.mark.parametrize(
    "report_data",
    [bytes.fromhex(WANTED.decode()) * 2, b"\xff" * 64],  # raw bytes (the former binding form)
)
def test_agent_refuses_what_it_cannot_carry_before_sending(report_data: bytes) -> None:
    with pytest.raises(DeviceError, match="not text"):
        get_report_attestation_agent(report_data, url="http://127.0.0.1:1")


def test_agent_limits_without_a_server() -> None:
    with pytest.raises(DeviceError, match="not text"):
        get_report_attestation_agent(b"\xff" * 64)
    with pytest.raises(DeviceError, match="only http on loopback"):
        get_report_attestation_agent(WANTED, url="http://10.0.0.1:8006")
    with pytest.raises(DeviceError, match="unreachable"):
        get_report_attestation_agent(WANTED, url="http://127.0.0.1:1", timeout_s=2)


# --- selection ------------------------------------------------------------------------------


def test_selection_order(tmp_path: Path, agent: str) -> None:
    wanted = b"sel".ljust(64, b"\0")
    serve(rendered(wanted))
    evidence = get_report(
        wanted, tsm_base=tmp_path / "no-tsm", device=tmp_path / "no-dev", aa_url=agent
    )
    assert evidence.source == "attestation-agent"
    first = get_report(
        REPORT_DATA,
        tsm_base=tmp_path,
        tsm_ops=FakeKernel(),
        device=tmp_path / "no-dev",
        aa_url=agent,
    )
    assert first.source == "configfs-tsm"
    with pytest.raises(
        DeviceError, match=r"no SEV-SNP report source answered: configfs-tsm.*sev-guest"
    ) as info:
        get_report(wanted, tsm_base=tmp_path / "no-tsm", device=tmp_path / "no-dev", aa_url=None)
    assert "attestation-agent" not in str(info.value)


# --- hardware -------------------------------------------------------------------------------


@pytest.mark.sev_snp
def test_real_sev_snp_guest() -> None:
    if not (device.CONFIGFS_TSM_REPORT.is_dir() or device.SEV_GUEST_DEVICE.exists()):
        pytest.skip("no SEV-SNP guest device (configfs-tsm or /dev/sev-guest) on this machine")
    nonce = bytes(range(64))
    evidence = get_report(nonce, aa_url=None)
    vek = next(
        (e.data for e in evidence.certificates if e.kind in (CertKind.VCEK, CertKind.VLEK)), None
    )
    if vek is None:
        pytest.skip("the host supplied no VEK; fetching from AMD KDS is outside the unit tests")
    verified = verify_report(evidence.report, vek=vek, now=datetime.now(UTC))
    assert verified.report.report_data == nonce
