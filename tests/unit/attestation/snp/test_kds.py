"""attestation.snp.kds: URL building, the fetcher seam, the on-disk cache (no network)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from attestation.errors import FetchError
from attestation.snp.abi import Product, SigningKey, TcbVersion, parse_report
from attestation.snp.kds import cached, cert_chain_url, crl_url, fetch_https, vcek_url
from attestation.snp.vek import load_certificates
from attestation.snp.verify import verify_report

VECTORS = Path(__file__).parents[3] / "vectors" / "snp"
GENOA = VECTORS / "trustee-azure-genoa-v3"


def test_vcek_url_milan_genoa() -> None:
    tcb = TcbVersion(bl=10, tee=0, snp=23, ucode=84)
    chip = bytes(range(64))
    assert vcek_url(Product.GENOA, chip, tcb) == (
        f"https://kdsintf.amd.com/vcek/v1/Genoa/{chip.hex()}?blSPL=10&teeSPL=0&snpSPL=23&ucodeSPL=84"
    )


def test_vcek_url_turin_uses_8_bytes_and_fmc() -> None:
    tcb = TcbVersion(fmc=1, bl=2, tee=3, snp=4, ucode=5)
    chip = bytes(range(1, 9)) + bytes(56)
    assert vcek_url(Product.TURIN, chip, tcb) == (
        "https://kdsintf.amd.com/vcek/v1/Turin/0102030405060708?fmcSPL=1&blSPL=2&teeSPL=3&snpSPL=4&ucodeSPL=5"
    )
    with pytest.raises(FetchError, match="fmcSPL"):
        vcek_url(Product.TURIN, chip, TcbVersion(bl=2, tee=3, snp=4, ucode=5))


def test_vcek_url_refuses_masked_or_short_chip_ids() -> None:
    tcb = TcbVersion(bl=1, tee=0, snp=1, ucode=1)
    with pytest.raises(FetchError, match="all zero"):
        vcek_url(Product.MILAN, bytes(64), tcb)
    with pytest.raises(FetchError, match="64 bytes"):
        vcek_url(Product.MILAN, bytes(8), tcb)


def test_cert_chain_urls() -> None:
    assert cert_chain_url(Product.MILAN) == "https://kdsintf.amd.com/vcek/v1/Milan/cert_chain"
    assert (
        cert_chain_url(Product.TURIN, SigningKey.VLEK)
        == "https://kdsintf.amd.com/vlek/v1/Turin/cert_chain"
    )
    with pytest.raises(FetchError, match="unsigned"):
        cert_chain_url(Product.GENOA, SigningKey.NONE)


def test_crl_urls() -> None:
    assert crl_url(Product.MILAN) == "https://kdsintf.amd.com/vcek/v1/Milan/crl"
    assert crl_url(Product.GENOA, SigningKey.VLEK) == "https://kdsintf.amd.com/vlek/v1/Genoa/crl"
    with pytest.raises(FetchError, match="unsigned"):
        crl_url(Product.TURIN, SigningKey.NONE)


def test_fetch_https_only_talks_to_kds() -> None:
    with pytest.raises(FetchError, match="refusing to fetch outside"):
        fetch_https("https://example.com/vcek/v1/Milan/cert_chain")
    with pytest.raises(FetchError, match="refusing"):
        fetch_https("https://kdsintf.amd.com.evil.example/x")


def fake_kds() -> tuple[dict[str, bytes], list[str]]:
    """Serves the Genoa vector's VCEK (as DER, like KDS) and AMD's chain at their real URLs."""
    report = parse_report((GENOA / "hcl-report.bin").read_bytes()[32 : 32 + 1184])
    vcek = load_certificates((GENOA / "vcek-genoa.pem").read_bytes())[0]
    assert report.product is not None
    files = {
        vcek_url(report.product, report.chip_id, report.reported_tcb): vcek.public_bytes(
            serialization.Encoding.DER
        ),
        cert_chain_url(Product.GENOA): (VECTORS / "amd-roots" / "ask_ark_genoa.pem").read_bytes(),
    }
    return files, []


def test_verify_fetches_the_vcek_through_the_cache(tmp_path: Path) -> None:
    files, log = fake_kds()

    def fetch(url: str) -> bytes:
        log.append(url)
        if url not in files:
            raise FetchError(f"404 {url}")
        return files[url]

    fetcher = cached(fetch, tmp_path / "kds")
    raw = (GENOA / "hcl-report.bin").read_bytes()[32 : 32 + 1184]
    now = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    chain = fetcher(cert_chain_url(Product.GENOA))
    first = verify_report(raw, fetch=fetcher, chain=chain, now=now)
    second = verify_report(raw, fetch=fetcher, chain=chain, now=now)
    assert first == second
    assert len(log) == 2  # the chain once, the VCEK once: the second run came from disk
    cached_files = sorted(p.name for p in (tmp_path / "kds").iterdir())
    assert cached_files == sorted(hashlib.sha256(u.encode()).hexdigest() for u in files)


def test_cache_does_not_store_failures(tmp_path: Path) -> None:
    def fetch(url: str) -> bytes:
        raise FetchError("KDS said 429")

    fetcher = cached(fetch, tmp_path / "kds")
    with pytest.raises(FetchError, match="429"):
        fetcher("https://kdsintf.amd.com/vcek/v1/Milan/cert_chain")
    assert not (tmp_path / "kds").exists()


def test_cache_errors_are_fetch_errors(tmp_path: Path) -> None:
    url = "https://kdsintf.amd.com/x"
    name = hashlib.sha256(url.encode()).hexdigest()
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    with pytest.raises(FetchError, match="unreadable"):
        cached(lambda url: b"body", blocker)(url)
    cache = tmp_path / "cache"
    (cache / f"{name}.tmp{os.getpid()}").mkdir(parents=True)  # the temporary file cannot be made
    with pytest.raises(FetchError, match="not writable"):
        cached(lambda url: b"body", cache)(url)


def test_a_cached_crl_is_refetched_when_stale_or_unreadable(fake_amd: Any, tmp_path: Path) -> None:
    url = crl_url(Product.MILAN)
    log: list[str] = []
    fresh: bytes = fake_amd.crl(next_update=dt.datetime(2999, 1, 1, tzinfo=dt.UTC))

    def fetch(url: str) -> bytes:
        log.append(url)
        return fresh

    (tmp_path / hashlib.sha256(url.encode()).hexdigest()).write_bytes(b"<html>not a CRL")
    fetcher = cached(fetch, tmp_path)  # the real clock: nextUpdate in 2999 is not reached
    assert fetcher(url) == fresh
    assert fetcher(url) == fresh
    assert log == [url]  # the garbage was replaced once, then the CRL came from disk
    old = fake_amd.crl()  # nextUpdate 2025-01-08
    (tmp_path / hashlib.sha256(url.encode()).hexdigest()).write_bytes(old)
    assert fetcher(url) == fresh
    assert log == [url, url]
    version_0 = bytearray(fresh)  # a CRL claiming version 0, which no CRL may carry
    version_0[fresh.index(b"\x02\x01\x01") + 2] = 0
    (tmp_path / hashlib.sha256(url.encode()).hexdigest()).write_bytes(bytes(version_0))
    assert fetcher(url) == fresh
    assert log == [url, url, url]
    # a VCEK or a chain is never considered stale, whatever the clock says
    chain_url = cert_chain_url(Product.MILAN)
    (tmp_path / hashlib.sha256(chain_url.encode()).hexdigest()).write_bytes(b"chain")
    later = cached(fetch, tmp_path, clock=lambda: dt.datetime(9999, 1, 1, tzinfo=dt.UTC))
    assert later(chain_url) == b"chain"


class FakeResponse:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def read(self, limit: int) -> bytes:
        return self.body[:limit]


def test_fetch_https_through_a_fake_urlopen(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, float]] = []

    def urlopen(request: urllib.request.Request, timeout: float) -> FakeResponse:
        seen.append((request.full_url, timeout))
        if "big" in request.full_url:
            return FakeResponse(bytes(70_000))
        if "down" in request.full_url:
            raise OSError("connection refused")
        return FakeResponse(b"DER")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    assert fetch_https("https://kdsintf.amd.com/vcek/v1/Milan/cert_chain", timeout_s=3) == b"DER"
    assert seen == [("https://kdsintf.amd.com/vcek/v1/Milan/cert_chain", 3)]
    with pytest.raises(FetchError, match="exceeds"):
        fetch_https("https://kdsintf.amd.com/big")
    with pytest.raises(FetchError, match="connection refused"):
        fetch_https("https://kdsintf.amd.com/down")
