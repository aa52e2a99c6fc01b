"""The simulated PSP: framing, the evidence it signs, and the request limit."""

from __future__ import annotations

import asyncio
import base64
import json
import socket

import pytest

from attestation.evidence import EvidenceType
from attestation.simulated import SimulatedChain, SimulatedTee
from attestation.snp.abi import parse_report
from dvm.node.local.psp import MAX_REQUESTS, answer, serve

MEASUREMENT = bytes(range(48))


def _decode(frame: bytes) -> object:
    size = int.from_bytes(frame[:4], "big")
    assert len(frame) == 4 + size
    return json.loads(frame[4:])


def test_answer_is_one_simulated_item_with_our_measurement(simulated_chain: SimulatedChain) -> None:
    tee = SimulatedTee(chain=simulated_chain, measurement=MEASUREMENT)
    data = bytes(range(64))
    items = _decode(answer(tee, data))
    assert isinstance(items, list)
    assert len(items) == 1
    assert items[0]["type"] == EvidenceType.SIMULATED.value
    report = parse_report(base64.b64decode(items[0]["report"]))
    assert report.report_data == data
    assert report.measurement == MEASUREMENT


def test_wrong_size_gets_an_error_object(simulated_chain: SimulatedChain) -> None:
    tee = SimulatedTee(chain=simulated_chain, measurement=MEASUREMENT)
    assert _decode(answer(tee, b"short")) == {"error": "REPORT_DATA must be 64 bytes"}


@pytest.mark.asyncio
async def test_serve_answers_at_most_four_requests(simulated_chain: SimulatedChain) -> None:
    tee = SimulatedTee(chain=simulated_chain, measurement=MEASUREMENT)
    ours, theirs = socket.socketpair()
    task = asyncio.create_task(serve(tee, ours, job_id="j"))
    theirs.settimeout(30)

    def exchange() -> int:
        answered = 0
        for _ in range(MAX_REQUESTS + 1):
            try:
                theirs.sendall(bytes(64))
                header = theirs.recv(4)
            except OSError:
                break
            if not header:
                break
            size = int.from_bytes(header, "big")
            body = b""
            while len(body) < size:
                body += theirs.recv(size - len(body))
            answered += 1
        return answered

    assert await asyncio.to_thread(exchange) == MAX_REQUESTS
    await asyncio.wait_for(task, timeout=10)
    theirs.close()
