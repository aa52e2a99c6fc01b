"""Shared fixtures: the vector directory and a fake AMD signer (test-only, named as such).

The fake signer mints an AMD-shaped chain (RSA-PSS ARK and ASK, P-384 VEK carrying the AMD
extensions) and the ARK's CRL, so every verify and revocation branch can be reached with the
real code path; the real vectors in ``tests/vectors/snp`` prove the code agrees with AMD. The
minted ARK, ASK and VEK carry distinct serials (:data:`ARK_SERIAL`, :data:`ASK_SERIAL`,
:data:`VEK_SERIAL`) so a CRL entry names exactly one of them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable, Iterable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from attestation.snp.abi import (
    SIGNED_SIZE_BYTES,
    Cpuid,
    FirmwareVersion,
    GuestPolicy,
    KeyInfo,
    PlatformInfo,
    Product,
    Report,
    Signature,
    SigningKey,
    TcbVersion,
    serialize_report,
)

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
ARK_SERIAL, ASK_SERIAL, VEK_SERIAL = 0x10000, 0x10001, 0x2A


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def der_int(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def der_ia5(text: str) -> bytes:
    return bytes([0x16, len(text)]) + text.encode()


def amd_ext(leaf: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.3704.1." + leaf), value)


def vek_extensions(
    tcb: TcbVersion, *, product: str, hw_id: bytes | None, csp_id: str | None = None
) -> list[x509.UnrecognizedExtension]:
    exts = [amd_ext("1", der_int(1 if tcb.fmc is not None else 0)), amd_ext("2", der_ia5(product))]
    spl = {"3.1": tcb.bl, "3.2": tcb.tee, "3.3": tcb.snp, "3.8": tcb.ucode}
    if tcb.fmc is not None:
        spl["3.9"] = tcb.fmc
    exts += [amd_ext(leaf, der_int(v)) for leaf, v in spl.items()]
    if hw_id is not None:
        exts.append(amd_ext("4", hw_id))
    if csp_id is not None:
        exts.append(amd_ext("5", der_ia5(csp_id)))
    return exts


class FakeAmd:
    """A test CA shaped like AMD's: ARK-<P> (self-signed) -> SEV-<P> -> SEV-VCEK / SEV-VLEK."""

    def __init__(self, product: Product = Product.MILAN) -> None:
        self.product = product
        self.ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.vek_key = ec.generate_private_key(ec.SECP384R1())
        self.not_before = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        self.not_after = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        self.ark = self.cert(
            f"ARK-{product}",
            f"ARK-{product}",
            self.ark_key.public_key(),
            self.ark_key,
            serial=ARK_SERIAL,
        )
        self.ask = self.cert(
            f"SEV-{product}",
            f"ARK-{product}",
            self.ask_key.public_key(),
            self.ark_key,
            serial=ASK_SERIAL,
        )

    def cert(
        self,
        subject: str,
        issuer: str,
        public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        signing_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        *,
        extensions: list[x509.UnrecognizedExtension] | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        pss: bool = True,
        serial: int = 1,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(_name(issuer))
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before or self.not_before)
            .not_valid_after(not_after or self.not_after)
        )
        for ext in extensions or []:
            builder = builder.add_extension(ext, critical=False)
        if isinstance(signing_key, ec.EllipticCurvePrivateKey):
            return builder.sign(signing_key, hashes.SHA384())
        return builder.sign(signing_key, hashes.SHA384(), rsa_padding=PSS if pss else None)

    @property
    def trusted_arks(self) -> dict[Product, frozenset[str]]:
        der = self.ark.public_bytes(serialization.Encoding.DER)
        return {self.product: frozenset({hashlib.sha256(der).hexdigest()})}

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.ask, self.ark))

    def vek_for(self, report: Report, **overrides: object) -> x509.Certificate:
        signer = report.key_info.signing_key
        hw = report.chip_id[:8] if report.reported_tcb.fmc is not None else report.chip_id
        params: dict[str, object] = {
            "product": self.product.value,
            "hw_id": hw if signer == SigningKey.VCEK else None,
            "csp_id": "CN=example-csp" if signer == SigningKey.VLEK else None,
            "tcb": report.reported_tcb,
        }
        params.update(overrides)
        exts = vek_extensions(
            params["tcb"],  # type: ignore[arg-type]
            product=str(params["product"]),
            hw_id=params["hw_id"],  # type: ignore[arg-type]
            csp_id=params["csp_id"],  # type: ignore[arg-type]
        )
        cn = "SEV-VCEK" if signer == SigningKey.VCEK else "SEV-VLEK"
        return self.cert(
            cn,
            f"SEV-{self.product}",
            self.vek_key.public_key(),
            self.ask_key,
            extensions=exts,
            serial=VEK_SERIAL,
        )

    def crl(
        self,
        revoked: Iterable[int | x509.RevokedCertificate] = (),
        *,
        issuer: str | None = None,
        signing_key: rsa.RSAPrivateKey | None = None,
        this_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
        extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
        pss: bool = True,
    ) -> bytes:
        """A CRL (DER) as AMD's KDS serves it: issued and PSS-signed by this ARK, listing the
        ``revoked`` serials (revoked 2024-06-01); every part can be overridden to break it."""
        this_update = this_update or dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(_name(issuer or f"ARK-{self.product}"))
            .last_update(this_update)
            .next_update(next_update or this_update + dt.timedelta(days=7))
        )
        for item in revoked:
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(item)
                .revocation_date(dt.datetime(2024, 6, 1, tzinfo=dt.UTC))
                .build()
                if isinstance(item, int)
                else item
            )
            builder = builder.add_revoked_certificate(entry)
        for ext, critical in extensions:
            builder = builder.add_extension(ext, critical=critical)
        crl = builder.sign(
            signing_key or self.ark_key, hashes.SHA384(), rsa_padding=PSS if pss else None
        )
        return crl.public_bytes(serialization.Encoding.DER)

    def sign(self, report: Report) -> bytes:
        unsigned = serialize_report(dataclasses.replace(report, signature=Signature(0, 0)))
        der = self.vek_key.sign(unsigned[:SIGNED_SIZE_BYTES], ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return serialize_report(dataclasses.replace(report, signature=Signature(r, s)))


def make_report(**overrides: object) -> Report:
    """A plausible v3 Milan report (unsigned) with every field set; override any field."""
    tcb = TcbVersion(bl=3, tee=0, snp=8, ucode=115)
    fields: dict[str, object] = {
        "version": 3,
        "guest_svn": 1,
        "policy": GuestPolicy(abi_major=0, abi_minor=31, smt=True),
        "family_id": bytes(range(16)),
        "image_id": bytes(range(16, 32)),
        "vmpl": 0,
        "current_tcb": tcb,
        "platform_info": PlatformInfo(smt_enabled=True, tsme_enabled=True),
        "key_info": KeyInfo(),
        "report_data": bytes(range(64)),
        "measurement": bytes([0xAB]) * 48,
        "host_data": bytes([0xCD]) * 32,
        "id_key_digest": bytes(48),
        "author_key_digest": bytes(48),
        "report_id": bytes([1]) * 32,
        "report_id_ma": bytes([0xFF]) * 32,
        "reported_tcb": tcb,
        "cpuid": Cpuid(0x19, 0x01, 0x01),
        "chip_id": bytes(range(100, 164)),
        "committed_tcb": tcb,
        "current_version": FirmwareVersion(1, 55, 29),
        "committed_version": FirmwareVersion(1, 55, 29),
        "launch_tcb": tcb,
        "signature": Signature(0, 0),
        "product": Product.MILAN,
    }
    fields.update(overrides)
    return Report(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def fake_amd() -> FakeAmd:
    return FakeAmd(Product.MILAN)


@pytest.fixture(scope="session")
def fake_amd_factory() -> Callable[[Product], FakeAmd]:
    cache: dict[Product, FakeAmd] = {}

    def get(product: Product) -> FakeAmd:
        if product not in cache:
            cache[product] = FakeAmd(product)
        return cache[product]

    return get


@pytest.fixture(name="make_report", scope="session")
def make_report_fixture() -> Callable[..., Report]:
    return make_report


@pytest.fixture(name="fake_cert", scope="session")
def fake_cert_fixture() -> Callable[..., list[x509.UnrecognizedExtension]]:
    """Build VEK extension lists (``vek_extensions``) for hand-made certificates."""
    return vek_extensions
