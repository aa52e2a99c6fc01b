"""NVIDIA's pinned root certificates, shipped as package data and checked against their pins.

* ``nvidia_device_identity_ca.pem``: "NVIDIA Device Identity CA", the root of every GPU
  device-identity chain (leaf GSP FMC LF <- GSP BROM <- Provisioner ICA <- GH100 Identity <- it).
* ``nvidia_corim_signing_root_ca.pem``: "NVIDIA CoRIM signing Root CA", the root of the
  certificate chains in RIM XML signatures.

Both are byte-identical to NVIDIA/nvtrust ``local_gpu_verifier/src/verifier/certs/`` (see
``tests/vectors/gpu/README.md``). The SHA-256 fingerprints below are the pins: a PEM that does
not hash to its pin is refused with :class:`~attestation.errors.ChainError`, so a swapped file in
an installed package cannot widen trust. Reading package data is the only I/O here.
"""

from __future__ import annotations

import functools
from importlib import resources

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from attestation.errors import ChainError

__all__ = [
    "CORIM_SIGNING_ROOT_CA_SHA256",
    "DEVICE_IDENTITY_CA_SHA256",
    "corim_signing_root_ca",
    "device_identity_ca",
]

DEVICE_IDENTITY_CA_SHA256 = bytes.fromhex(
    "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48"
)
CORIM_SIGNING_ROOT_CA_SHA256 = bytes.fromhex(
    "12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1"
)


def _load_pinned(name: str, pin: bytes) -> x509.Certificate:
    pem = resources.files(__name__).joinpath(name).read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    if cert.fingerprint(hashes.SHA256()) != pin:
        raise ChainError(f"bundled root {name} does not match its pinned SHA-256 {pin.hex()}")
    return cert


@functools.cache
def device_identity_ca() -> x509.Certificate:
    """The pinned NVIDIA Device Identity CA (root of GPU device-identity chains)."""
    return _load_pinned("nvidia_device_identity_ca.pem", DEVICE_IDENTITY_CA_SHA256)


@functools.cache
def corim_signing_root_ca() -> x509.Certificate:
    """The pinned NVIDIA CoRIM signing Root CA (root of RIM signing chains)."""
    return _load_pinned("nvidia_corim_signing_root_ca.pem", CORIM_SIGNING_ROOT_CA_SHA256)
