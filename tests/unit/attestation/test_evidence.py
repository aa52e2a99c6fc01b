"""The evidence bundle format: build, parse, round trip, and garbage in -> ParseError only."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from attestation.errors import ParseError
from attestation.evidence import (
    SIMULATED_LABEL,
    Bundle,
    EvidenceType,
    GpuItem,
    SnpItem,
    build_bundle,
    parse_bundle,
)
from attestation.simulated import SimulatedTee, mint_chain
from attestation.snp.abi import Product
from dvm.cdvm.kind7100 import Claims, build_attestation, parse_attestation
from dvm.nostr.keys import SecretKey
from tests.strategies import hostile_json

GPU = Path(__file__).parents[2] / "vectors" / "gpu" / "nvidia-hopper"
SECRET = SecretKey(bytes.fromhex("11" * 32))
CLAIMS: dict[str, Any] = {
    "pubkey": SECRET.public_key.hex(),
    "job": "aa" * 32,
    "nonce": "bb" * 32,
    "provider": SecretKey(bytes.fromhex("22" * 32)).public_key.hex(),
    "model": {"name": "gemma", "sha256": "cc" * 32},
    "runtime": {"version": "0.1.0", "image": "sha256:" + "dd" * 32},
}


@pytest.fixture(scope="module")
def item() -> SnpItem:
    chain = mint_chain(now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    tee = SimulatedTee(chain, hashlib.sha384(b"rt").digest())
    return tee.attest(container_pubkey=bytes.fromhex(CLAIMS["pubkey"]), claims=CLAIMS)


@pytest.fixture(scope="module")
def gpu() -> GpuItem:
    report = bytes.fromhex((GPU / "hopperAttestationReport.txt").read_text().strip())
    certs = x509.load_pem_x509_certificates((GPU / "hopperCertChain.txt").read_bytes())
    return GpuItem(report, tuple(c.public_bytes(serialization.Encoding.DER) for c in certs))


@pytest.fixture(scope="module")
def body(item: SnpItem, gpu: GpuItem) -> dict[str, Any]:
    bundle = build_bundle(claims=CLAIMS, evidence=[item, gpu], initdata=b"init")
    value: dict[str, Any] = json.loads(bundle.to_json())
    return value


def test_round_trip(item: SnpItem, gpu: GpuItem) -> None:
    bundle = build_bundle(claims=CLAIMS, evidence=[gpu, item], initdata=b"\x00init")
    parsed = parse_bundle(bundle.to_json())
    assert parsed == bundle
    assert parsed.claims == CLAIMS
    assert parsed.cpu == item
    assert parsed.gpus == (gpu,)
    assert parsed.initdata == b"\x00init"
    assert parsed.tee == "simulated+nvidia-gpu"
    assert parsed.simulated
    assert parse_bundle(bundle.to_json().encode()) == bundle


def test_claims_copy_cannot_change_the_bundle(item: SnpItem) -> None:
    bundle = build_bundle(claims=CLAIMS, evidence=[item], initdata=None)
    bundle.claims["job"] = "ff" * 32
    assert bundle.claims["job"] == CLAIMS["job"]
    assert bundle.tee == "simulated"


def test_same_content_as_the_kind_7100_codec(item: SnpItem) -> None:
    bundle = build_bundle(claims=CLAIMS, evidence=[item], initdata=b"i")
    event = build_attestation(
        claims=Claims.from_dict(CLAIMS),
        recipient=SECRET.public_key,
        tee="simulated",
        expiration=2_000_000_000,
        evidence=[item.to_json()],
        initdata=b"i",
        created_at=1_900_000_000,
    ).sign(SECRET, aux_rand=bytes(32))
    assert event.content == bundle.to_json()
    assert parse_bundle(parse_attestation(event).event.content) == bundle


def test_item_json_layout(item: SnpItem, gpu: GpuItem) -> None:
    snp = item.to_json()
    assert set(snp) == {"type", "report", "vek", "ask", "ark"}
    assert snp["type"] == "simulated"
    assert base64.b64decode(snp["report"]) == item.report
    hinted = SnpItem(EvidenceType.SEV_SNP, item.report, item.vek, item.ask, item.ark, Product.GENOA)
    assert hinted.to_json()["product"] == "Genoa"
    assert not hinted.simulated
    assert set(gpu.to_json()) == {"type", "report", "certs"}
    assert gpu.to_json()["type"] == "nvidia-gpu"


def test_label_text() -> None:
    assert SIMULATED_LABEL == "SIMULATED: not confidential"


def test_snp_item_checks_its_parts(item: SnpItem) -> None:
    with pytest.raises(ParseError, match="cannot have type"):
        SnpItem(EvidenceType.NVIDIA_GPU, item.report, item.vek, item.ask, item.ark)
    with pytest.raises(ParseError):
        SnpItem(EvidenceType.SIMULATED, item.report[:-1], item.vek, item.ask, item.ark)
    with pytest.raises(ParseError):
        SnpItem(EvidenceType.SIMULATED, item.report, b"not a cert", item.ask, item.ark)


def test_gpu_item_needs_certificates(gpu: GpuItem) -> None:
    with pytest.raises(ParseError, match="empty"):
        GpuItem(gpu.report, ())


def mutate(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> str:
    doc = copy.deepcopy(body)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(doc)


BAD = [
    (("v",), 2, "version"),
    (("v",), True, "version"),
    (("extra",), 1, "keys"),
    (("claims",), KeyError, "keys"),
    (("evidence",), [], "non-empty"),
    (("evidence",), {}, "non-empty"),
    (("evidence", 0), "x", "JSON object"),
    (("evidence", 0, "type"), "tdx", "unknown"),
    (("evidence", 0, "type"), KeyError, "unknown"),
    (("evidence", 0, "extra"), "x", "keys"),
    (("evidence", 0, "product"), "Rome", "product"),
    (("evidence", 0, "report"), "", "non-empty base64"),
    (("evidence", 0, "report"), 7, "non-empty base64"),
    (("evidence", 0, "report"), "@@@@", "not base64"),
    (("evidence", 0, "vek"), "QQ", "not base64"),
    (("evidence", 0, "ark"), "QR==", "canonical"),
    (("evidence", 1, "certs"), "x", "list"),
    (("evidence", 1, "certs"), [], "empty"),
    (("evidence", 1, "report"), "AAAA", "GET_MEASUREMENTS"),
    (("initdata",), "%%", "base64"),
    (("claims", "job"), "AA" * 32, "claims.job"),
    (("claims", "pubkey"), 5, "claims.pubkey"),
    (("claims", "extra"), "x", "claims"),
    (("claims", "model"), "m", "claims.model"),
    (("claims", "model", "name"), "", "claims.model.name"),
    (("claims", "model", "sha256"), "x", "claims.model.sha256"),
    (("claims", "runtime", "image"), 1, "claims.runtime.image"),
    (("claims", "runtime", "version"), "", "claims.runtime.version"),
    (("claims", "runtime", "extra"), "", "claims.runtime"),
    (("claims", "model", "name"), "\ud800", "Unicode"),
]


@pytest.mark.parametrize(("path", "value", "match"), BAD)
def test_malformed_bundles(
    body: dict[str, Any], path: tuple[Any, ...], value: Any, match: str
) -> None:
    with pytest.raises(ParseError, match=match):
        parse_bundle(mutate(body, path, value))


def test_product_hint_is_kept(body: dict[str, Any]) -> None:
    assert (
        parse_bundle(mutate(body, ("evidence", 0, "product"), "Genoa")).cpu.product == Product.GENOA
    )


def test_exactly_one_cpu_report(body: dict[str, Any], item: SnpItem) -> None:
    doc = copy.deepcopy(body)
    doc["evidence"].append(doc["evidence"][0])
    with pytest.raises(ParseError, match="exactly one"):
        parse_bundle(json.dumps(doc))
    with pytest.raises(ParseError, match="found 0"):
        parse_bundle(mutate(body, ("evidence",), [body["evidence"][1]]))
    with pytest.raises(ParseError, match="exactly one"):
        build_bundle(claims=CLAIMS, evidence=[item, item], initdata=None)


@pytest.mark.parametrize("text", [b"\xff\xfe", "nope", "[1]", "1e999999", "[" * 100_000])
def test_not_a_bundle(text: str | bytes) -> None:
    with pytest.raises(ParseError):
        parse_bundle(text)


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ('"v":1', '"v":NaN', "NaN and Infinity"),
        ('"v":1', '"v":1,"v":1', "repeats a key"),
        ('"v":1', '"v":' + "9" * 5000, "not UTF-8 JSON"),
        ('"initdata":"', '"initdata":"\\ud800', "initdata is not base64"),
        ('"report":"', '"report":"\\udfff', "report is not base64"),
        ('"pubkey":"', '"pubkey":"\\ud800', "claims.pubkey must be 64"),
        ('"name":"', '"name":"\\ud800', "not valid Unicode"),
        ('"evidence":', '"evidence":' + "[" * 5000 + "]" * 5000 + ',"x":', "not UTF-8 JSON"),
    ],
)
def test_hostile_json_text_raises_parse_error(
    body: dict[str, Any], old: str, new: str, reason: str
) -> None:
    text = json.dumps(body, separators=(",", ":"))
    assert old in text
    with pytest.raises(ParseError, match=reason):
        parse_bundle(text.replace(old, new, 1))


@given(hostile_json())
def test_hostile_json_raises_parse_error_only(text: str | bytes) -> None:
    with pytest.raises(ParseError):
        parse_bundle(text)


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_garbage_bytes_raise_parse_error_only(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_bundle(data)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.sampled_from(["v", "claims", "evidence", "initdata"]), JSONISH)
def test_structured_garbage_raises_parse_error_only(
    body: dict[str, Any], key: str, value: Any
) -> None:
    doc = copy.deepcopy(body)
    doc[key] = value
    try:
        parsed = parse_bundle(json.dumps(doc))
    except ParseError:
        return
    assert isinstance(parsed, Bundle)


@settings(max_examples=200)
@given(
    st.integers(min_value=0, max_value=3),
    st.sampled_from(["report", "vek", "ask", "ark"]),
    st.binary(min_size=1, max_size=64),
)
def test_garbage_items_raise_parse_error_only(
    body: dict[str, Any], index: int, key: str, blob: bytes
) -> None:
    doc = copy.deepcopy(body)
    items = doc["evidence"]
    target = items[index % len(items)]
    target[key] = base64.b64encode(blob).decode()
    with pytest.raises(ParseError):
        parse_bundle(json.dumps(doc))
