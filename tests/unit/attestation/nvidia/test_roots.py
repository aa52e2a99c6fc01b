"""attestation.nvidia.roots: the bundled roots hash to their pins; a swapped file is refused."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization

from attestation.errors import ChainError
from attestation.nvidia import roots


def test_device_identity_ca_is_pinned(sample_chain) -> None:
    ca = roots.device_identity_ca()
    der = ca.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest() == (
        "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48"
    )
    assert ca == sample_chain[-1]
    assert ca.subject.rfc4514_string() == "O=NVIDIA,CN=NVIDIA Device Identity CA"


def test_corim_root_is_pinned() -> None:
    ca = roots.corim_signing_root_ca()
    der = ca.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest() == (
        "12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1"
    )


def test_file_that_does_not_match_its_pin_is_refused() -> None:
    with pytest.raises(ChainError, match="does not match its pinned SHA-256"):
        roots._load_pinned("nvidia_corim_signing_root_ca.pem", roots.DEVICE_IDENTITY_CA_SHA256)
