"""A FAKE CoCo attestation agent REST API for tests: ``GET /aa/evidence`` on 127.0.0.1.

It is a model, written from the guest-components source (docs/protocol.md "Binding" cites the
files), of what the container talks to inside a CoCo pod:

* the API server (``api-server-rest/src/router.rs``, ``utils.rs``): loopback callers only (403
  otherwise); the query string parsed as ``application/x-www-form-urlencoded`` into a map (the
  last of repeated keys wins, invalid UTF-8 replaced); ``runtime_data`` missing is 400; without
  ``encoding`` the value's UTF-8 bytes are the runtime data, ``encoding=base64`` is URL-safe
  base64 without padding, any other encoding or bad base64 is 400; other paths and methods are
  404; an attester error is 500 with its message; success is 200 ``application/octet-stream``
  whose body is the attester's evidence JSON;
* the attestation agent (``attestation-agent/src/lib.rs``) passes the bytes to the attester
  unchanged;
* the SNP attester (``attester/src/snp/mod.rs``): more than 64 bytes is an error, fewer are
  zero-padded to 64, no hashing; the report comes from the firmware with VMPL 0 and the body is
  ``{"attestation_report": <sev crate rendering>, "cert_chain": [...] | null}``.

The "firmware" is the test's :class:`~attestation.simulated.SimulatedTee` (a report signed by the
simulated AMD chain). :func:`render_report` writes a raw report the way the sev crate's serde
derive renders ``AttestationReport`` (v6 line: fields in struct order, byte arrays as arrays of
numbers, TCB versions as objects, no reserved bytes), written here independently of the parser
in :mod:`attestation.snp.agent_evidence`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.server
import ipaddress
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from attestation.simulated import SimulatedTee

__all__ = ["FakeAttestationAgent", "render_report", "running_agent"]

_MAX_RUNTIME_DATA_BYTES = 64
_URL_SAFE_NO_PAD = re.compile(r"[A-Za-z0-9_-]*")


def _u(raw: bytes, offset: int, size: int) -> int:
    return int.from_bytes(raw[offset : offset + size], "little")


def _tcb(raw: bytes, offset: int, *, turin: bool) -> dict[str, Any]:
    b = raw[offset : offset + 8]
    if turin:
        return {"fmc": b[0], "bootloader": b[1], "tee": b[2], "snp": b[3], "microcode": b[7]}
    return {"fmc": None, "bootloader": b[0], "tee": b[1], "snp": b[6], "microcode": b[7]}


def render_report(raw: bytes) -> dict[str, Any]:
    """The sev crate's JSON rendering of the 1184-byte report ``raw`` (``from_bytes`` + serde)."""
    version = _u(raw, 0, 4)
    v3 = version >= 3
    turin = v3 and raw[0x188] >= 0x1A

    def arr(lo: int, size: int) -> list[int]:
        return list(raw[lo : lo + size])

    return {
        "version": version,
        "guest_svn": _u(raw, 0x04, 4),
        "policy": _u(raw, 0x08, 8),
        "family_id": arr(0x10, 16),
        "image_id": arr(0x20, 16),
        "vmpl": _u(raw, 0x30, 4),
        "sig_algo": _u(raw, 0x34, 4),
        "current_tcb": _tcb(raw, 0x38, turin=turin),
        "plat_info": _u(raw, 0x40, 8),
        "key_info": _u(raw, 0x48, 4),
        "report_data": arr(0x50, 64),
        "measurement": arr(0x90, 48),
        "host_data": arr(0xC0, 32),
        "id_key_digest": arr(0xE0, 48),
        "author_key_digest": arr(0x110, 48),
        "report_id": arr(0x140, 32),
        "report_id_ma": arr(0x160, 32),
        "reported_tcb": _tcb(raw, 0x180, turin=turin),
        "cpuid_fam_id": raw[0x188] if v3 else None,
        "cpuid_mod_id": raw[0x189] if v3 else None,
        "cpuid_step": raw[0x18A] if v3 else None,
        "chip_id": arr(0x1A0, 64),
        "committed_tcb": _tcb(raw, 0x1E0, turin=turin),
        "current": {"major": raw[0x1EA], "minor": raw[0x1E9], "build": raw[0x1E8]},
        "committed": {"major": raw[0x1EE], "minor": raw[0x1ED], "build": raw[0x1EC]},
        "launch_tcb": _tcb(raw, 0x1F0, turin=turin),
        "signature": {"r": arr(0x2A0, 72), "s": arr(0x2E8, 72)},
    }


class _AttesterError(Exception):
    pass


@dataclass
class FakeAttestationAgent:
    """The fake agent's state: the simulated TEE behind it and what it was asked.

    ``host_data`` is what the (fake) host set at launch; ``cert_chain`` names the certificates
    the host's table carries (None: the host supplied none, so the agent sends ``null``).
    ``runtime_data_seen`` records the bytes each request handed to the attester.
    """

    tee: SimulatedTee
    host_data: bytes = bytes(32)
    cert_chain: tuple[str, ...] | None = ("VCEK", "ASK", "ARK")
    runtime_data_seen: list[bytes] = field(default_factory=list)
    url: str = ""

    def snp_evidence(self, runtime_data: bytes) -> bytes:
        """The SNP attester's ``get_evidence``: the body the agent returns, or raise."""
        if len(runtime_data) > _MAX_RUNTIME_DATA_BYTES:
            raise _AttesterError("SNP Attester: Report data must be no more than 64 bytes")
        report_data = runtime_data.ljust(_MAX_RUNTIME_DATA_BYTES, b"\0")
        report_id = hashlib.sha256(b"fake agent report id\0" + report_data).digest()
        raw = self.tee.report(
            report_data=report_data, host_data=self.host_data, report_id=report_id
        )
        names = {"VCEK": "vcek", "ASK": "ask", "ARK": "ark"}
        chain = (
            None
            if self.cert_chain is None
            else [
                {"cert_type": kind, "data": list(self.tee.chain.der(names[kind]))}
                for kind in self.cert_chain
            ]
        )
        body = {"attestation_report": render_report(raw), "cert_chain": chain}
        return json.dumps(body, separators=(",", ":")).encode()


def _runtime_data(params: dict[str, str]) -> bytes | None:
    """``decode_runtime_data``: None stands for the API server's 400."""
    value = params.get("runtime_data")
    if value is None:
        return None
    encoding = params.get("encoding")
    if encoding is None:
        return value.encode("utf-8")
    if encoding != "base64" or not _URL_SAFE_NO_PAD.fullmatch(value) or len(value) % 4 == 1:
        return None  # the Rust decoder refuses padding and characters outside the alphabet
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - excluded by the checks above
        return None


class _Handler(http.server.BaseHTTPRequestHandler):
    agent: FakeAttestationAgent

    def _send(self, status: int, body: bytes, content_type: str | None = None) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self, method: str) -> None:
        if not ipaddress.ip_address(self.client_address[0]).is_loopback:
            self._send(403, b"Forbidden")
            return
        url = urllib.parse.urlsplit(self.path)
        if method != "GET" or url.path != "/aa/evidence":
            self._send(404, b"URL NOT FOUND")
            return
        params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True, errors="replace"))
        runtime_data = _runtime_data(params)
        if runtime_data is None:
            self._send(400, b"BAD REQUEST")
            return
        self.agent.runtime_data_seen.append(runtime_data)
        try:
            body = self.agent.snp_evidence(runtime_data)
        except _AttesterError as exc:
            self._send(500, str(exc).encode())
            return
        self._send(200, body, "application/octet-stream")

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def running_agent(agent: FakeAttestationAgent) -> Iterator[FakeAttestationAgent]:
    """Serve ``agent`` on 127.0.0.1 (an ephemeral port, in ``agent.url``) until the block ends."""
    handler = type("Handler", (_Handler,), {"agent": agent})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    agent.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield agent
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
