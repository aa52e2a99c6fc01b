"""A fake H100 for the client tests (TEST ONLY): a minted P-384 root -> leaf chain and SPDM reports.

Minted here with ``cryptography``; the report layout is DSP0274 1.1 GET_MEASUREMENTS request ||
MEASUREMENTS response (blocks as DMTF measurement blocks, NVIDIA opaque TLVs 3 = driver version
and 6 = VBIOS version, as ``attestation.nvidia.opaque`` reads them) || ECDSA-P384 signature. The
verifier trusts the minted root only where a test passes it as ``Trust.nvidia_roots``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from attestation.evidence import GpuItem
from attestation.nvidia.spdm import parse_gpu_report
from attestation.nvidia.verify import VerifiedGpuReport, verify_gpu_report

DRIVER = "550.90.07"
VBIOS = "96.00.9f.00.01"
NOW = dt.datetime.now(dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    cn: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    ca = cn == issuer
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        ).add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    return builder.sign(signer, hashes.SHA384())


def _tlv(field_type: int, value: bytes) -> bytes:
    return field_type.to_bytes(2, "little") + len(value).to_bytes(2, "little") + value


def _vbios_bytes(version: str) -> bytes:
    parts = [int(p, 16) for p in version.split(".")]
    low = (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]
    return low.to_bytes(4, "little") + bytes([parts[4], 0, 0, 0])


def _block(index: int, value: bytes) -> bytes:
    dmtf = bytes([0x01]) + len(value).to_bytes(2, "little") + value
    return bytes([index, 0x01]) + len(dmtf).to_bytes(2, "little") + dmtf


@dataclass(frozen=True)
class FakeGpu:
    """One minted GPU: its root (to trust), leaf key and chain (leaf first, DER)."""

    root: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    certs: tuple[bytes, ...]

    def item(
        self,
        nonce: bytes,
        blocks: Mapping[int, bytes],
        *,
        driver: str = DRIVER,
        vbios: str = VBIOS,
    ) -> GpuItem:
        """An ``nvidia-gpu`` evidence item answering ``nonce`` with these measurement blocks."""
        request = bytes([0x11, 0xE0, 0x01, 0xFF]) + nonce + b"\x00"
        record = b"".join(_block(i, v) for i, v in sorted(blocks.items()))
        opaque = _tlv(3, driver.encode() + b"\x00") + _tlv(6, _vbios_bytes(vbios))
        response = (
            bytes([0x11, 0x60, 0, 0, len(blocks)])
            + len(record).to_bytes(3, "little")
            + record
            + b"\x22" * 32
            + len(opaque).to_bytes(2, "little")
            + opaque
        )
        r, s = decode_dss_signature(
            self.leaf_key.sign(request + response, ec.ECDSA(hashes.SHA384()))
        )
        report = request + response + r.to_bytes(48, "big") + s.to_bytes(48, "big")
        return GpuItem(report, self.certs)

    def verified(self, nonce: bytes, blocks: Mapping[int, bytes], **kw: str) -> VerifiedGpuReport:
        """The same report, through the real verifier (chain, signature, nonce, mode)."""
        item = self.item(nonce, blocks, **kw)
        return verify_gpu_report(
            parse_gpu_report(item.report),
            [x509.load_der_x509_certificate(c) for c in item.certs],
            expected_nonce=nonce,
            now=NOW,
            trusted_roots=[self.root],
        )


def mint_gpu() -> FakeGpu:
    """A fresh fake GPU (two P-384 keys, minted now)."""
    root_key = ec.generate_private_key(ec.SECP384R1())
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    root = _cert("FAKE GPU ROOT", root_key, "FAKE GPU ROOT", root_key)
    leaf = _cert("FAKE GPU LEAF", leaf_key, "FAKE GPU ROOT", root_key)
    der = serialization.Encoding.DER
    return FakeGpu(root, leaf_key, (leaf.public_bytes(der), root.public_bytes(der)))
