"""The simulated PSP: evidence for a job container over an inherited socket (docs/launch.md §4).

AMD's secure processor signs a report for whatever REPORT_DATA the guest asks, but the guest
cannot choose the MEASUREMENT. The local launcher mirrors that: it keeps the simulated TEE's
VCEK key outside the sandbox and answers on one end of a ``socketpair(AF_UNIX, SOCK_STREAM)``
whose other end the container inherits.

Wire: the container writes exactly 64 bytes (its REPORT_DATA); the launcher answers with a
4-byte big-endian length and UTF-8 JSON: an array of evidence items
(:mod:`attestation.evidence`, one ``simulated`` item) or ``{"error": "..."}``. At most
``max_requests`` (4) requests per job; then, or when the job ends, the launcher closes its end.

Contract: :func:`answer` is pure (report data in, framed answer out); :func:`serve` does the
socket I/O. The measurement is the launcher's (:func:`attestation.simulated.measure_runtime`
over the staged runtime it binds), never anything the container says.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket

from attestation.errors import AttestationError
from attestation.evidence import EvidenceType, SnpItem
from attestation.simulated import SimulatedTee

__all__ = ["MAX_REQUESTS", "REPORT_DATA_SIZE", "answer", "serve"]

_log = logging.getLogger(__name__)

REPORT_DATA_SIZE = 64
MAX_REQUESTS = 4
_REPORT_ID_DOMAIN = b"cdvm/1 simulated report id\0"


def _frame(body: object) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return len(data).to_bytes(4, "big") + data


def answer(tee: SimulatedTee, report_data: bytes) -> bytes:
    """The framed answer to one request: ``[simulated item]`` or ``{"error": ...}``."""
    if len(report_data) != REPORT_DATA_SIZE:
        return _frame({"error": f"REPORT_DATA must be {REPORT_DATA_SIZE} bytes"})
    try:
        # REPORT_ID as SimulatedTee.attest derives it: each job's report has its own.
        report_id = hashlib.sha256(_REPORT_ID_DOMAIN + report_data).digest()
        raw = tee.report(report_data=report_data, report_id=report_id)
        item = SnpItem(
            type=EvidenceType.SIMULATED,
            report=raw,
            vek=tee.chain.der("vcek"),
            ask=tee.chain.der("ask"),
            ark=tee.chain.der("ark"),
        )
    except AttestationError as exc:
        return _frame({"error": f"the simulated TEE could not sign: {type(exc).__name__}"})
    return _frame([item.to_json()])


async def _read_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def serve(
    tee: SimulatedTee, sock: socket.socket, *, job_id: str, max_requests: int = MAX_REQUESTS
) -> None:
    """Answer up to ``max_requests`` requests on ``sock`` (non-blocking), then close it."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    try:
        for count in range(max_requests):
            request = await _read_exactly(loop, sock, REPORT_DATA_SIZE)
            if not request:
                return
            if len(request) != REPORT_DATA_SIZE:
                _log.info("job %s: PSP request of %d bytes, closing", job_id, len(request))
                return
            reply = await asyncio.to_thread(answer, tee, request)
            await loop.sock_sendall(sock, reply)
            _log.info("job %s: simulated report %d signed", job_id, count + 1)
        _log.info("job %s: PSP request limit (%d) reached", job_id, max_requests)
    except OSError as exc:
        _log.info("job %s: PSP socket closed (%s)", job_id, type(exc).__name__)
    finally:
        sock.close()
