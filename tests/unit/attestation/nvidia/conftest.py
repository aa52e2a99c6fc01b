"""Shared fixtures: NVIDIA's Hopper sample (tests/vectors/gpu) and a fake SPDM signer.

The fake signer mints its own P-384 root -> intermediate -> leaf chain and signs SPDM reports
built here, so every verifier path is testable without NVIDIA's keys. It is test-only.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

VECTORS = Path(__file__).resolve().parents[3] / "vectors" / "gpu" / "nvidia-hopper"
# Every certificate of the sample chain is valid from 2022-03-01 to 9999-12-31.
SAMPLE_NOW = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)
SAMPLE_NONCE = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")


@pytest.fixture(scope="session")
def sample_report() -> bytes:
    return bytes.fromhex(VECTORS.joinpath("hopperAttestationReport.txt").read_text().strip())


@pytest.fixture(scope="session")
def sample_chain_pem() -> bytes:
    return VECTORS.joinpath("hopperCertChain.txt").read_bytes()


@pytest.fixture(scope="session")
def sample_chain(sample_chain_pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(sample_chain_pem)


@pytest.fixture(scope="session")
def driver_rim_xml() -> bytes:
    return VECTORS.joinpath("Driver_RIM_test_no_gpu.swidtag").read_bytes()


@pytest.fixture(scope="session")
def vbios_rim_xml() -> bytes:
    return VECTORS.joinpath("1010_0200_882_96005E0001_test_no_gpu.swidtag").read_bytes()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    not_after: datetime.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        ).add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(issuer_key, hashes.SHA384())


@dataclass(frozen=True)
class FakeSigner:
    """A fake GPU: its chain (leaf first, root last) and a signer over SPDM transcripts."""

    root: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    leaf_key: ec.EllipticCurvePrivateKey

    def sign(self, transcript: bytes) -> bytes:
        r, s = decode_dss_signature(self.leaf_key.sign(transcript, ec.ECDSA(hashes.SHA384())))
        size = self.leaf_key.curve.key_size // 8 + (self.leaf_key.curve.key_size % 8 > 0)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def make_signer(
    *,
    leaf_curve: ec.EllipticCurve | None = None,
    leaf_not_after: datetime.datetime = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC),
) -> FakeSigner:
    far = datetime.datetime(2040, 1, 1, tzinfo=datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP384R1())
    mid_key = ec.generate_private_key(ec.SECP384R1())
    leaf_key = ec.generate_private_key(leaf_curve or ec.SECP384R1())
    root = _cert("FAKE GPU ROOT", root_key, "FAKE GPU ROOT", root_key, ca=True, not_after=far)
    mid = _cert("FAKE GPU ICA", mid_key, "FAKE GPU ROOT", root_key, ca=True, not_after=far)
    leaf = _cert(
        "FAKE GPU LEAF", leaf_key, "FAKE GPU ICA", mid_key, ca=False, not_after=leaf_not_after
    )
    return FakeSigner(root=root, chain=(leaf, mid, root), leaf_key=leaf_key)


@pytest.fixture(scope="session")
def fake_signer() -> FakeSigner:
    return make_signer()


def spdm_request(nonce: bytes, *, param1: int = 0x01, operation: int = 0xFF) -> bytes:
    return bytes([0x11, 0xE0, param1, operation]) + nonce + b"\x00"


def measurement_block(index: int, value: bytes, *, value_type: int = 0x01) -> bytes:
    dmtf = bytes([value_type]) + len(value).to_bytes(2, "little") + value
    return bytes([index, 0x01]) + len(dmtf).to_bytes(2, "little") + dmtf


def opaque_tlv(field_type: int, value: bytes) -> bytes:
    return field_type.to_bytes(2, "little") + len(value).to_bytes(2, "little") + value


def spdm_response_unsigned(
    blocks: Sequence[bytes],
    *,
    responder_nonce: bytes = b"\x22" * 32,
    opaque: bytes = b"",
) -> bytes:
    record = b"".join(blocks)
    return (
        bytes([0x11, 0x60, 0x00, 0x00, len(blocks)])
        + len(record).to_bytes(3, "little")
        + record
        + responder_nonce
        + len(opaque).to_bytes(2, "little")
        + opaque
    )


def signed_report(
    signer: FakeSigner,
    nonce: bytes,
    blocks: Sequence[bytes],
    *,
    opaque: bytes = b"",
) -> bytes:
    request = spdm_request(nonce)
    unsigned = spdm_response_unsigned(blocks, opaque=opaque)
    return request + unsigned + signer.sign(request + unsigned)


@dataclass(frozen=True)
class SpdmBuilder:
    """The builders above, handed to tests as a fixture (importlib mode: no conftest imports)."""

    request: Callable[..., bytes] = spdm_request
    block: Callable[..., bytes] = measurement_block
    tlv: Callable[..., bytes] = opaque_tlv
    response: Callable[..., bytes] = spdm_response_unsigned
    signed_report: Callable[..., bytes] = signed_report
    make_signer: Callable[..., FakeSigner] = make_signer
    sample_now: datetime.datetime = SAMPLE_NOW
    sample_nonce: bytes = SAMPLE_NONCE


@pytest.fixture(scope="session")
def spdm() -> SpdmBuilder:
    return SpdmBuilder()
