"""attestation.snp.trust and the package surface: pinned ARKs are the bundled files' ARKs."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from cryptography.hazmat.primitives import serialization

import attestation.snp
from attestation.snp.abi import Product
from attestation.snp.trust import DEFAULT_TRUSTED_ARKS
from attestation.snp.vek import load_certificates

VECTORS = Path(__file__).parents[3] / "vectors" / "snp"
SOURCES = {  # the fingerprints the research notes give (SOURCES.md), independent of the code
    Product.MILAN: "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    Product.GENOA: "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    Product.TURIN: "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
}


def test_pins_equal_the_published_fingerprints_and_the_manifest() -> None:
    manifest = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))
    assert {p: next(iter(f)) for p, f in DEFAULT_TRUSTED_ARKS.items()} == SOURCES
    assert {Product(k): v for k, v in manifest["ark_sha256"].items()} == SOURCES


def test_every_bundled_file_ends_in_its_products_pinned_ark() -> None:
    roots = resources.files("attestation.snp").joinpath("roots")
    names = sorted(p.name for p in roots.iterdir() if p.name.endswith(".pem"))
    assert len(names) == 6
    for name in names:
        data = roots.joinpath(name).read_bytes()
        assert data == (VECTORS / "amd-roots" / name).read_bytes()  # package data == test vectors
        ask, ark = load_certificates(data)
        product = Product(name.split("_")[2].removesuffix(".pem").capitalize())
        digest = hashlib.sha256(ark.public_bytes(serialization.Encoding.DER)).hexdigest()
        assert digest == SOURCES[product], name
        assert ask.issuer == ark.subject


def test_public_surface() -> None:
    assert sorted(attestation.snp.__all__) == sorted(set(attestation.snp.__all__))
    for name in attestation.snp.__all__:
        assert hasattr(attestation.snp, name), name
    assert {"parse_report", "verify_report", "validate", "load_policy", "warnings"} <= set(
        attestation.snp.__all__
    )
