"""Pinned AMD roots: the ARK of each product by SHA-256 fingerprint, and the bundled ASK/ASVK.

Source: the ``ask_ark_*.pem`` files of google/go-sev-guest ``verify/trust/`` (byte-identical to
what AMD's KDS serves at ``https://kdsintf.amd.com/{vcek,vlek}/v1/{product}/cert_chain``; the
ARK fingerprints are the same in virtee/sev and confidential-containers/trustee). Each bundle is
the ASK (VCEK chain) or ASVK (VLEK chain) followed by the ARK.
Provenance: ``docs/attestation-snp.md``.

Contract: :data:`DEFAULT_TRUSTED_ARKS` is data (a mapping product -> allowed ARK fingerprints);
callers may pass their own mapping (e.g. a test root, or the simulated TEE's root) to
:func:`attestation.snp.verify.verify_report`. :func:`bundled_chain` reads package data through
:mod:`importlib.resources` and never touches the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

from cryptography import x509

from attestation.errors import ChainError

from .abi import Product, SigningKey
from .vek import load_certificates

__all__ = ["DEFAULT_TRUSTED_ARKS", "bundled_chain"]

#: SHA-256 of each AMD Root Key certificate's DER encoding (lower-case hex).
DEFAULT_TRUSTED_ARKS: Mapping[Product, frozenset[str]] = MappingProxyType(
    {
        Product.MILAN: frozenset(
            {"69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"}
        ),
        Product.GENOA: frozenset(
            {"4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"}
        ),
        Product.TURIN: frozenset(
            {"1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"}
        ),
    }
)

_BUNDLES = {
    (Product.MILAN, SigningKey.VCEK): "ask_ark_milan.pem",
    (Product.MILAN, SigningKey.VLEK): "ask_ark_milan_vlek.pem",
    (Product.GENOA, SigningKey.VCEK): "ask_ark_genoa.pem",
    (Product.GENOA, SigningKey.VLEK): "ask_ark_genoa_vlek.pem",
    (Product.TURIN, SigningKey.VCEK): "ask_ark_turin_vcek.pem",
    (Product.TURIN, SigningKey.VLEK): "ask_ark_turin_vlek.pem",
}


def bundled_chain(
    product: Product, signer: SigningKey
) -> tuple[x509.Certificate, x509.Certificate]:
    """The bundled (ASK or ASVK, ARK) pair for ``product`` and the VEK type ``signer``."""
    name = _BUNDLES.get((product, signer))
    if name is None:
        raise ChainError(f"no AMD chain for product {product} and signer {signer}")
    data = resources.files("attestation.snp").joinpath("roots", name).read_bytes()
    certs = load_certificates(data)
    return certs[0], certs[1]
