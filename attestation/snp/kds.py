"""AMD Key Distribution Service (KDS): URLs (pure), a fetcher seam, and an on-disk cache.

Spec: AMD 57230 "VCEK Certificate and KDS Interface Specification", section "KDS Interface":
``GET https://kdsintf.amd.com/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..``
(DER VCEK; hwid = CHIP_ID as lower-case hex, 64 bytes; Turin: the first 8 bytes and an extra
``fmcSPL``), ``GET https://kdsintf.amd.com/{vcek,vlek}/v1/{product}/cert_chain`` (PEM: ASK or
ASVK, then ARK), ``GET https://kdsintf.amd.com/{vcek,vlek}/v1/{product}/crl`` (DER X.509 CRL
signed by the ARK; the URL is the CRL distribution point of AMD's ASK/ASVK certificates).
VLEKs are not served by KDS: the host hands them to the guest.

Contract: URL building is pure. The one network call is a :class:`Fetcher` the caller injects
(:func:`fetch_https` is the real one, :func:`cached` wraps any fetcher in a cache directory
keyed by the SHA-256 of the URL; a cached CRL is served only until its nextUpdate). Tests
plug in a fake fetcher that serves vector files. Fetch failures raise
:class:`~attestation.errors.FetchError`.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cryptography import x509

from attestation.errors import FetchError

from .abi import Product, SigningKey, TcbVersion

__all__ = [
    "DEFAULT_CACHE_DIR",
    "KDS_BASE_URL",
    "Fetcher",
    "cached",
    "cert_chain_url",
    "crl_url",
    "fetch_https",
    "vcek_url",
]

KDS_BASE_URL = "https://kdsintf.amd.com"
#: Where callers keep the KDS cache unless told otherwise (expand ``~`` before use).
DEFAULT_CACHE_DIR = Path("~/.cache/cdvm/kds")
_MAX_RESPONSE_BYTES = 64 * 1024


class Fetcher(Protocol):
    """Fetch one URL's body or raise :class:`FetchError`."""

    def __call__(self, url: str) -> bytes: ...


def vcek_url(product: Product, chip_id: bytes, tcb: TcbVersion) -> str:
    """The KDS URL of the VCEK for ``chip_id`` at ``tcb`` (the report's REPORTED_TCB)."""
    if len(chip_id) != 64:
        raise FetchError(f"CHIP_ID must be 64 bytes, got {len(chip_id)}")
    if not any(chip_id):
        raise FetchError("CHIP_ID is all zero (masked by MASK_CHIP_KEY?): no VCEK can be fetched")
    if product == Product.TURIN:
        if tcb.fmc is None:
            raise FetchError("Turin VCEKs need the fmcSPL of a Turin-layout TCB")
        hwid = chip_id[:8].hex()
        query = f"fmcSPL={tcb.fmc}&blSPL={tcb.bl}&teeSPL={tcb.tee}"
        query += f"&snpSPL={tcb.snp}&ucodeSPL={tcb.ucode}"
    else:
        hwid = chip_id.hex()
        query = f"blSPL={tcb.bl}&teeSPL={tcb.tee}&snpSPL={tcb.snp}&ucodeSPL={tcb.ucode}"
    return f"{KDS_BASE_URL}/vcek/v1/{product.value}/{hwid}?{query}"


def cert_chain_url(product: Product, signer: SigningKey = SigningKey.VCEK) -> str:
    """The KDS URL of the ASK+ARK (VCEK) or ASVK+ARK (VLEK) PEM bundle."""
    if signer == SigningKey.NONE:
        raise FetchError("an unsigned report has no certificate chain")
    return f"{KDS_BASE_URL}/{signer.value.lower()}/v1/{product.value}/cert_chain"


def crl_url(product: Product, signer: SigningKey = SigningKey.VCEK) -> str:
    """The KDS URL of the ARK-signed CRL for the VCEK chain (ASK) or the VLEK chain (ASVK)."""
    if signer == SigningKey.NONE:
        raise FetchError("an unsigned report has no certificate chain to revoke")
    return f"{KDS_BASE_URL}/{signer.value.lower()}/v1/{product.value}/crl"


def fetch_https(url: str, *, timeout_s: float = 10.0) -> bytes:
    """The real fetcher: one HTTPS GET to AMD's KDS (and nowhere else)."""
    if not url.startswith(KDS_BASE_URL + "/"):
        raise FetchError(f"refusing to fetch outside {KDS_BASE_URL}: {url}")
    request = urllib.request.Request(url, headers={"Accept": "application/octet-stream"})  # noqa: S310 - https to the fixed KDS host, checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - as above
            body = bytes(response.read(_MAX_RESPONSE_BYTES + 1))
    except OSError as exc:
        raise FetchError(f"KDS fetch failed for {url}: {exc}") from None
    if len(body) > _MAX_RESPONSE_BYTES:
        raise FetchError(f"KDS response for {url} exceeds {_MAX_RESPONSE_BYTES} bytes")
    return body


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _crl_current(body: bytes, now: datetime) -> bool:
    """Whether a stored CRL may still be served: it parses and ``now`` is before nextUpdate.

    Only timing is read here; the signature is checked by :mod:`attestation.snp.crl` on every
    use, so a forged file in the cache is refused there, not trusted here.
    """
    try:
        next_update = x509.load_der_x509_crl(body).next_update_utc
    except (ValueError, x509.InvalidVersion):
        return False
    return next_update is not None and now <= next_update


def cached(fetch: Fetcher, cache_dir: Path, *, clock: Callable[[], datetime] = _utc_now) -> Fetcher:
    """Wrap ``fetch``: answers are stored as ``cache_dir/<sha256(url)>``, written atomically.

    VCEKs are immutable per (chip, TCB) and the chains change only with AMD's roots, so they
    never expire; delete the directory to refresh. A CRL (a URL ending in ``/crl``) is served
    from the cache only while ``clock()`` is not past its nextUpdate; after that, or when the
    stored bytes are not a DER CRL, it is fetched again and replaced. Only successful fetches
    are stored.
    """

    def fetch_cached(url: str) -> bytes:
        path = cache_dir / hashlib.sha256(url.encode()).hexdigest()
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise FetchError(f"KDS cache unreadable at {path}: {exc}") from None
        else:
            if not url.endswith("/crl") or _crl_current(body, clock()):
                return body
        body = fetch(url)
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(body)
            tmp.replace(path)
        except OSError as exc:
            raise FetchError(f"KDS cache not writable at {cache_dir}: {exc}") from None
        return body

    return fetch_cached
