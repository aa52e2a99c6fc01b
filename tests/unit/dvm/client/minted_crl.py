"""TEST ONLY: minted AMD-style CRLs for the simulated chain, and a fetcher that must not be called.

:func:`reroot` re-issues a simulated chain's ARK (self-signed) and ASK under an RSA-4096 key the
test holds, keeping every name, serial, validity and extension and the VCEK untouched (the ASK's
public key is the same, so the VCEK still verifies under it). With that key, :func:`mint_crl`
signs a CRL as AMD's KDS serves it (RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48; AMD 57230
"KDS Interface"), so the client's revocation check runs for real against the test's ARK.
:func:`refuse_fetch` is what a test passes where a default fetcher would reach the network.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from attestation.simulated import SimulatedChain, SimulatedTee
from attestation.snp.crl import CrlMode, CrlPolicy

__all__ = ["crl_policy", "mint_crl", "refuse_fetch", "reroot"]

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


def _reissue(
    cert: x509.Certificate, key: rsa.RSAPrivateKey, public: rsa.RSAPublicKey
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(public)
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return builder.sign(key, hashes.SHA384(), rsa_padding=_PSS)


def reroot(tee: SimulatedTee) -> tuple[SimulatedTee, rsa.RSAPrivateKey]:
    """``tee`` with its ARK and ASK re-issued under a fresh ARK key, and that key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    chain = tee.chain
    ask_public = chain.ask.public_key()
    assert isinstance(ask_public, rsa.RSAPublicKey)
    ark = _reissue(chain.ark, key, key.public_key())
    ask = _reissue(chain.ask, key, ask_public)
    rerooted = SimulatedChain(ark=ark, ask=ask, vcek=chain.vcek, vcek_key=chain.vcek_key)
    return SimulatedTee(rerooted, tee.measurement), key


def mint_crl(
    tee: SimulatedTee,
    ark_key: rsa.RSAPrivateKey,
    revoked: Iterable[int] = (),
    *,
    now: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
) -> bytes:
    """A DER CRL issued and PSS-signed by ``tee``'s ARK listing the ``revoked`` serials,
    current from a day before ``now`` (default: the wall clock) for a week."""
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=1)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(tee.chain.ark.subject)
        .last_update(start)
        .next_update(next_update or start + dt.timedelta(days=7))
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(start - dt.timedelta(days=30))
            .build()
        )
    crl = builder.sign(ark_key, hashes.SHA384(), rsa_padding=_PSS)
    return crl.public_bytes(serialization.Encoding.DER)


def crl_policy(
    tee: SimulatedTee, ark_key: rsa.RSAPrivateKey, revoked: Iterable[int] = ()
) -> CrlPolicy:
    """``require`` exactly one minted CRL (offline: nothing is fetched)."""
    return CrlPolicy(CrlMode.REQUIRE, refuse_fetch, (mint_crl(tee, ark_key, revoked),))


def refuse_fetch(url: str) -> bytes:
    """A fetcher that fails the test: nothing in the tests may reach AMD KDS."""
    raise AssertionError(f"a test tried to fetch {url}")
