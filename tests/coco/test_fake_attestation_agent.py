"""The fake attestation agent behaves as the guest-components source read for it
(docs/protocol.md "Binding"): what runtime_data becomes, and what the API server answers."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator

import pytest

from attestation.simulated import SimulatedTee
from attestation.snp.abi import parse_report
from attestation.snp.agent_evidence import parse_agent_evidence

from .fake_attestation_agent import FakeAttestationAgent, render_report, running_agent

# AttestationReport's fields in struct order, as read in virtee/sev
# src/firmware/guest/types/snp.rs (v6 line): the rendering must have exactly these keys.
SEV_CRATE_FIELDS = [
    "version", "guest_svn", "policy", "family_id", "image_id", "vmpl", "sig_algo",
    "current_tcb", "plat_info", "key_info", "report_data", "measurement", "host_data",
    "id_key_digest", "author_key_digest", "report_id", "report_id_ma", "reported_tcb",
    "cpuid_fam_id", "cpuid_mod_id", "cpuid_step", "chip_id", "committed_tcb", "current",
    "committed", "launch_tcb", "signature",
]  # fmt: skip


@pytest.fixture
def agent(agent_tee: SimulatedTee) -> Iterator[FakeAttestationAgent]:
    with running_agent(FakeAttestationAgent(agent_tee)) as running:
        yield running


def get(agent: FakeAttestationAgent, target: str, method: str = "GET") -> tuple[int, bytes, str]:
    url = urllib.parse.urlsplit(agent.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    try:
        conn.request(method, target)
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        conn.close()


def evidence(agent: FakeAttestationAgent, query: str) -> bytes:
    status, body, content_type = get(agent, f"/aa/evidence?{query}")
    assert (status, content_type) == (200, "application/octet-stream"), body
    return parse_report(parse_agent_evidence(json.loads(body)).report).report_data


def test_text_is_taken_as_utf8_and_zero_padded(agent: FakeAttestationAgent) -> None:
    assert evidence(agent, "runtime_data=abc") == b"abc".ljust(64, b"\0")
    assert evidence(agent, "runtime_data=" + "e" * 64) == b"e" * 64
    assert evidence(agent, "runtime_data=a+b%2Bc") == b"a b+c".ljust(64, b"\0")
    assert evidence(agent, "runtime_data=%C3%A9") == "é".encode().ljust(64, b"\0")
    assert evidence(agent, "runtime_data=") == bytes(64)
    assert agent.runtime_data_seen == [b"abc", b"e" * 64, b"a b+c", "é".encode(), b""]


def test_more_than_64_bytes_is_the_attesters_error(agent: FakeAttestationAgent) -> None:
    assert evidence(agent, "runtime_data=" + "%C3%A9" * 32) == "é".encode() * 32  # 64 bytes
    status, body, _ = get(agent, "/aa/evidence?runtime_data=" + "%C3%A9" * 32 + "x")
    assert (status, body) == (500, b"SNP Attester: Report data must be no more than 64 bytes")


def test_base64_encoding_of_newer_api_servers(agent: FakeAttestationAgent) -> None:
    assert evidence(agent, "runtime_data=_wAB&encoding=base64") == b"\xff\x00\x01".ljust(64, b"\0")
    for bad in ("runtime_data=_w%3D%3D&encoding=base64", "runtime_data=!!&encoding=base64"):
        assert get(agent, f"/aa/evidence?{bad}")[:2] == (400, b"BAD REQUEST")
    assert get(agent, "/aa/evidence?runtime_data=00&encoding=hex")[0] == 400


def test_routes(agent: FakeAttestationAgent) -> None:
    assert get(agent, "/aa/evidence")[:2] == (400, b"BAD REQUEST")
    assert get(agent, "/aa/evidence?runtime_data=x", "POST")[0] == 404
    assert get(agent, "/aa/token?token_type=kbs")[0] == 404
    assert agent.runtime_data_seen == []


def test_body_is_snp_evidence_in_the_sev_crate_rendering(agent: FakeAttestationAgent) -> None:
    _, body, _ = get(agent, "/aa/evidence?runtime_data=x")
    document = json.loads(body)
    assert list(document) == ["attestation_report", "cert_chain"]
    assert list(document["attestation_report"]) == SEV_CRATE_FIELDS
    assert [c["cert_type"] for c in document["cert_chain"]] == ["VCEK", "ASK", "ARK"]
    assert bytes(document["cert_chain"][0]["data"]) == agent.tee.chain.der("vcek")


def test_no_host_certificates_is_null(agent_tee: SimulatedTee) -> None:
    with running_agent(FakeAttestationAgent(agent_tee, cert_chain=None)) as agent:
        _, body, _ = get(agent, "/aa/evidence?runtime_data=x")
    assert json.loads(body)["cert_chain"] is None


def test_render_report_is_field_by_field(agent_tee: SimulatedTee) -> None:
    raw = agent_tee.report(report_data=b"r" * 64, host_data=b"h" * 32)
    rendered = render_report(raw)
    assert rendered["report_data"] == [ord("r")] * 64
    assert rendered["host_data"] == [ord("h")] * 32
    assert rendered["current_tcb"]["fmc"] is None  # a Genoa report: the legacy TCB layout
    assert set(rendered["signature"]) == {"r", "s"}
