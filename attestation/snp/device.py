"""Get an SEV-SNP report from inside the guest: configfs-tsm, then /dev/sev-guest, then the CoCo
attestation agent. The only module of the package that touches devices.

Sources: Linux ``Documentation/ABI/testing/configfs-tsm-report`` (``/sys/kernel/config/tsm/report``:
mkdir an entry, write ``inblob``, read ``outblob``/``auxblob``, compare ``generation`` to detect
a concurrent writer, ``provider`` names the backend); Linux ``include/uapi/linux/sev-guest.h``
(``SNP_GET_EXT_REPORT`` = _IOWR('S', 0x2, struct snp_guest_request_ioctl)); AMD 56860
"MSG_REPORT_RSP" (status u32, report_size u32, 24 reserved bytes, then the report); the
Confidential Containers guest-components REST API (``GET /aa/evidence?runtime_data=...`` on
127.0.0.1:8006, enabled in Kata guests by the kernel parameter
``agent.guest_components_rest_api=all`` or ``=attestation``).

Contract: :func:`get_report` tries the three sources in that order and returns
:class:`DeviceEvidence` (the raw 1184-byte report and the certificate table when the source
gives one) or raises :class:`~attestation.errors.DeviceError` listing why each source failed.
Paths and the URL are parameters so tests can point them at a fake tree or a local server.
Nothing here verifies anything: pass the result to :func:`attestation.snp.verify.verify_report`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import http.client
import json
import os
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attestation.errors import DeviceError, ParseError

from .abi import REPORT_SIZE_BYTES, CertTableEntry, parse_cert_table
from .agent_evidence import parse_agent_evidence

__all__ = [
    "CONFIGFS_TSM_REPORT",
    "DEFAULT_AA_URL",
    "SEV_GUEST_DEVICE",
    "ConfigfsOps",
    "DeviceEvidence",
    "agent_runtime_data",
    "get_report",
    "get_report_attestation_agent",
    "get_report_configfs",
    "get_report_ioctl",
]

CONFIGFS_TSM_REPORT = Path("/sys/kernel/config/tsm/report")
SEV_GUEST_DEVICE = Path("/dev/sev-guest")
DEFAULT_AA_URL = "http://127.0.0.1:8006"
_REPORT_DATA_BYTES = 64
_MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class DeviceEvidence:
    """A raw report, the certificates the host supplied (may be empty), and where it came from."""

    report: bytes
    certificates: tuple[CertTableEntry, ...]
    source: str


def _check_report_data(report_data: bytes) -> None:
    if not isinstance(report_data, bytes) or len(report_data) != _REPORT_DATA_BYTES:
        raise DeviceError("report_data must be exactly 64 bytes")


def _certs(aux: bytes, source: str) -> tuple[CertTableEntry, ...]:
    try:
        return parse_cert_table(aux)
    except ParseError as exc:
        raise DeviceError(f"{source}: malformed certificate table: {exc}") from None


# --- configfs-tsm --------------------------------------------------------------------------


class ConfigfsOps:
    """The four filesystem operations configfs-tsm needs, on the real filesystem.

    A seam, not an abstraction: tests subclass it to play the kernel on a tree in a temporary
    directory (populating an entry's attributes on mkdir, bumping ``generation`` on writes).
    """

    def make_entry(self, base: Path) -> Path:
        return Path(tempfile.mkdtemp(prefix="cdvm-", dir=base))

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def write(self, path: Path, data: bytes) -> None:
        path.write_bytes(data)

    def remove_entry(self, entry: Path) -> None:
        entry.rmdir()  # configfs removes the attribute files with the directory


def get_report_configfs(
    report_data: bytes,
    *,
    base: Path = CONFIGFS_TSM_REPORT,
    privlevel: int | None = None,
    ops: ConfigfsOps | None = None,
) -> DeviceEvidence:
    """One report through configfs-tsm. A fresh entry directory per call, removed afterwards."""
    _check_report_data(report_data)
    fs = ops or ConfigfsOps()
    if not base.is_dir():
        raise DeviceError(f"configfs-tsm: {base} does not exist")
    try:
        entry = fs.make_entry(base)
    except OSError as exc:
        raise DeviceError(f"configfs-tsm: cannot create an entry under {base}: {exc}") from None

    def read(name: str) -> bytes:
        try:
            return fs.read(entry / name)
        except OSError as exc:
            raise DeviceError(f"configfs-tsm: cannot read {name}: {exc}") from None

    def write(name: str, data: bytes) -> None:
        try:
            fs.write(entry / name, data)
        except OSError as exc:
            raise DeviceError(f"configfs-tsm: cannot write {name}: {exc}") from None

    try:
        provider = read("provider").decode(errors="replace").strip()
        if provider != "sev_guest":
            raise DeviceError(f"configfs-tsm: provider is {provider!r}, not 'sev_guest'")
        if privlevel is not None:
            write("privlevel", str(privlevel).encode())
        write("inblob", report_data)
        before = read("generation").strip()
        outblob = read("outblob")
        auxblob = read("auxblob") if (entry / "auxblob").exists() else b""
        after = read("generation").strip()
        if before != after:
            raise DeviceError(
                f"configfs-tsm: generation changed from {before.decode(errors='replace')} to "
                f"{after.decode(errors='replace')} while reading (another writer used the entry)"
            )
    finally:
        with contextlib.suppress(OSError):
            fs.remove_entry(entry)
    if len(outblob) != REPORT_SIZE_BYTES:
        raise DeviceError(f"configfs-tsm: outblob is {len(outblob)} bytes, not {REPORT_SIZE_BYTES}")
    return DeviceEvidence(outblob, _certs(auxblob, "configfs-tsm"), "configfs-tsm")


# --- /dev/sev-guest ioctl ------------------------------------------------------------------


class _ReportReq(ctypes.Structure):
    _fields_ = (
        ("user_data", ctypes.c_uint8 * 64),
        ("vmpl", ctypes.c_uint32),
        ("rsvd", ctypes.c_uint8 * 28),
    )


class _ExtReportReq(ctypes.Structure):
    _fields_ = (
        ("data", _ReportReq),
        ("certs_address", ctypes.c_uint64),
        ("certs_len", ctypes.c_uint32),
    )


class _GuestRequest(ctypes.Structure):
    _fields_ = (
        ("msg_version", ctypes.c_uint8),
        ("req_data", ctypes.c_uint64),
        ("resp_data", ctypes.c_uint64),
        ("exitinfo2", ctypes.c_uint64),
    )


def _iowr(kind: str, number: int, size: int) -> int:
    read_write = 3
    return read_write << 30 | size << 16 | ord(kind) << 8 | number


SNP_GET_EXT_REPORT = _iowr("S", 0x2, ctypes.sizeof(_GuestRequest))
_RESPONSE_BYTES = 4000  # struct snp_report_resp
_VMM_ERR_INVALID_LEN = 1  # certificate buffer too small; certs_len holds the size needed
_PAGE_BYTES = 4096
_MSG_REPORT_RSP_HEADER = 0x20

IoctlFn = Callable[[int, int, Any], Any]


def get_report_ioctl(
    report_data: bytes,
    *,
    device: Path = SEV_GUEST_DEVICE,
    vmpl: int = 0,
    ioctl: IoctlFn = fcntl.ioctl,
) -> DeviceEvidence:
    """One extended report through ``SNP_GET_EXT_REPORT``; retries once with a larger
    certificate buffer when the host says the first was too small."""
    _check_report_data(report_data)
    try:
        fd = os.open(device, os.O_RDWR)
    except OSError as exc:
        raise DeviceError(f"sev-guest: cannot open {device}: {exc}") from None
    try:
        certs_len = 4 * _PAGE_BYTES
        for _attempt in range(2):
            certs = ctypes.create_string_buffer(certs_len)
            response = ctypes.create_string_buffer(_RESPONSE_BYTES)
            req = _ExtReportReq(certs_address=ctypes.addressof(certs), certs_len=certs_len)
            req.data.user_data[:] = list(report_data)
            req.data.vmpl = vmpl
            guest = _GuestRequest(
                msg_version=1, req_data=ctypes.addressof(req), resp_data=ctypes.addressof(response)
            )
            try:
                ioctl(fd, SNP_GET_EXT_REPORT, guest)
            except OSError as exc:
                vmm_error = guest.exitinfo2 >> 32
                if (
                    exc.errno == errno.EIO
                    and vmm_error == _VMM_ERR_INVALID_LEN
                    and req.certs_len > certs_len
                ):
                    certs_len = req.certs_len
                    continue
                fw_error = guest.exitinfo2 & 0xFFFFFFFF
                raise DeviceError(
                    f"sev-guest: SNP_GET_EXT_REPORT failed: {exc} "
                    f"(fw_error {fw_error:#x}, vmm_error {vmm_error:#x})"
                ) from None
            return _ioctl_evidence(response.raw, certs.raw)
        raise DeviceError("sev-guest: the host asked for a larger certificate buffer twice")
    finally:
        os.close(fd)


def _ioctl_evidence(response: bytes, certs: bytes) -> DeviceEvidence:
    status = int.from_bytes(response[0:4], "little")
    size = int.from_bytes(response[4:8], "little")
    if status != 0:
        raise DeviceError(f"sev-guest: MSG_REPORT_RSP status {status:#x}")
    if size != REPORT_SIZE_BYTES:
        raise DeviceError(f"sev-guest: MSG_REPORT_RSP report_size {size}, not {REPORT_SIZE_BYTES}")
    report = response[_MSG_REPORT_RSP_HEADER : _MSG_REPORT_RSP_HEADER + size]
    return DeviceEvidence(report, _certs(certs, "sev-guest"), "sev-guest")


# --- Confidential Containers attestation agent ---------------------------------------------


def agent_runtime_data(report_data: bytes) -> str:
    """The ``runtime_data`` text that makes the agent put exactly ``report_data`` in the report.

    The agent (docs/protocol.md "Binding") takes the UTF-8 bytes of the query value, refuses
    more than 64 and zero-pads fewer to 64. So the 64 bytes it can produce are UTF-8 text
    followed by zero padding; anything else (the cdvm/1 binding is 64 ASCII hex bytes, always
    text) raises :class:`DeviceError` before anything is sent.
    """
    _check_report_data(report_data)
    text = report_data.rstrip(b"\0")
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        raise DeviceError(
            "attestation-agent: this REPORT_DATA is not text, and the agent takes runtime_data "
            "as text (the cdvm/1 binding is 64 hex characters: use attestation.binding)"
        ) from None


def get_report_attestation_agent(
    report_data: bytes, *, url: str = DEFAULT_AA_URL, timeout_s: float = 10.0
) -> DeviceEvidence:
    """A report through the CoCo attestation agent's REST API (``GET /aa/evidence``).

    Sends :func:`agent_runtime_data` as the ``runtime_data`` query parameter (no ``encoding``
    parameter, which only newer API servers know), reads the agent's ``SnpEvidence`` JSON and
    rebuilds the raw report from its field-by-field rendering
    (:func:`attestation.snp.agent_evidence.parse_agent_evidence`); the report's REPORT_DATA must
    be what was asked for (an SVSM-backed agent binds a digest instead, and is refused here).
    """
    runtime_data = agent_runtime_data(report_data)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "http" or parsed.hostname not in ("127.0.0.1", "localhost"):
        raise DeviceError(f"attestation-agent: only http on loopback is supported, got {url!r}")
    query = urllib.parse.urlencode({"runtime_data": runtime_data})
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=timeout_s)
    try:
        conn.request("GET", f"/aa/evidence?{query}")
        response = conn.getresponse()
        body = response.read(_MAX_BODY_BYTES + 1)
    except OSError as exc:
        raise DeviceError(f"attestation-agent: {url} unreachable: {exc}") from None
    finally:
        conn.close()
    if response.status != 200:
        raise DeviceError(f"attestation-agent: HTTP {response.status}")
    if len(body) > _MAX_BODY_BYTES:
        raise DeviceError(f"attestation-agent: response over {_MAX_BODY_BYTES} bytes")
    try:
        evidence = parse_agent_evidence(json.loads(body))
    except (ValueError, RecursionError):
        raise DeviceError("attestation-agent: response is not JSON") from None
    except ParseError as exc:
        raise DeviceError(f"attestation-agent: {exc}") from None
    if evidence.report[0x50:0x90] != report_data:
        raise DeviceError("attestation-agent: the report's REPORT_DATA is not what was asked for")
    return DeviceEvidence(evidence.report, evidence.certificates, "attestation-agent")


# --- selection -----------------------------------------------------------------------------


def get_report(
    report_data: bytes,
    *,
    tsm_base: Path = CONFIGFS_TSM_REPORT,
    tsm_ops: ConfigfsOps | None = None,
    device: Path = SEV_GUEST_DEVICE,
    aa_url: str | None = DEFAULT_AA_URL,
    timeout_s: float = 10.0,
) -> DeviceEvidence:
    """configfs-tsm, else /dev/sev-guest, else the attestation agent (``aa_url=None`` skips it).

    The first source that answers wins; if all fail the error lists each reason.
    """
    _check_report_data(report_data)
    reasons = []
    attempts: list[Callable[[], DeviceEvidence]] = [
        lambda: get_report_configfs(report_data, base=tsm_base, ops=tsm_ops),
        lambda: get_report_ioctl(report_data, device=device),
    ]
    if aa_url is not None:
        attempts.append(
            lambda: get_report_attestation_agent(report_data, url=aa_url, timeout_s=timeout_s)
        )
    for attempt in attempts:
        try:
            return attempt()
        except DeviceError as exc:
            reasons.append(str(exc))
    raise DeviceError("no SEV-SNP report source answered: " + "; ".join(reasons))
