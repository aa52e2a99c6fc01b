"""A cache of verified AMD chains (VEK <- ASK/ASVK <- ARK), keyed by certificate fingerprints.

Spec: AMD 57230 (the chain), :func:`attestation.snp.verify.verify_chain` (the check cached).

Why: every report a machine makes is signed by the same VEK under the same ASK and ARK; the
three RSA-PSS certificate signatures need checking once, not per job. Only the *signature*
result is cached: on every lookup the ARK is checked against the caller's pins for the product
again, and ``now`` must lie inside all three certificates' validity, else the full
:func:`~attestation.snp.verify.verify_chain` runs and says precisely what is wrong.

Contract: :meth:`ChainCache.verify_chain` has the signature and the result of
:func:`~attestation.snp.verify.verify_chain` (the ARK's SHA-256, or the same errors);
:meth:`ChainCache.certificate` that of :func:`~attestation.snp.vek.load_certificate` (parsing a
certificate costs about as much as checking a report signature). The cache holds public
certificates and fingerprints only; it is bounded (oldest entry evicted first) and not
thread-safe (one per event loop or per thread). Revocation is not cached here: a chain found
here is still checked against AMD's CRL on every verification that asks for it
(:func:`attestation.snp.crl.check_revocation`; the CRL itself is kept by
:func:`attestation.snp.kds.cached` until its nextUpdate).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attestation.snp.abi import Product
from attestation.snp.trust import DEFAULT_TRUSTED_ARKS
from attestation.snp.vek import load_certificate
from attestation.snp.verify import verify_chain

__all__ = ["ChainCache"]

_Key = tuple[str, str, str, Product]


def _fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


class ChainCache:
    """Remembers chains whose signatures verified, with the window all three are valid in."""

    def __init__(self, max_entries: int = 256) -> None:
        self._entries: OrderedDict[_Key, tuple[datetime, datetime]] = OrderedDict()
        self._certs: OrderedDict[bytes, x509.Certificate] = OrderedDict()
        self._max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def certificate(self, der: bytes) -> x509.Certificate:
        """:func:`attestation.snp.vek.load_certificate`, remembered by the bytes' SHA-256."""
        key = hashlib.sha256(der).digest()
        cert = self._certs.get(key)
        if cert is None:
            cert = self._certs[key] = load_certificate(der)
            while len(self._certs) > 3 * self._max_entries:
                self._certs.popitem(last=False)
        return cert

    def verify_chain(
        self,
        vek: x509.Certificate,
        ask: x509.Certificate,
        ark: x509.Certificate,
        *,
        product: Product,
        now: datetime,
        trusted_arks: Mapping[Product, frozenset[str]] = DEFAULT_TRUSTED_ARKS,
    ) -> str:
        """:func:`attestation.snp.verify.verify_chain`, skipping signatures already checked."""
        key = (_fingerprint(vek), _fingerprint(ask), _fingerprint(ark), product)
        window = self._entries.get(key)
        if (
            window is not None
            and now.tzinfo is not None
            and key[2] in trusted_arks.get(product, frozenset())
            and window[0] <= now <= window[1]
        ):
            self.hits += 1
            return key[2]
        self.misses += 1
        fingerprint = verify_chain(
            vek, ask, ark, product=product, now=now, trusted_arks=trusted_arks
        )
        certs = (vek, ask, ark)
        self._entries[key] = (
            max(c.not_valid_before_utc for c in certs),
            min(c.not_valid_after_utc for c in certs),
        )
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return fingerprint
