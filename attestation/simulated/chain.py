"""The simulated TEE's AMD-shaped certificate chain, minted once per installation.

Spec: AMD 57230 (VCEK certificate and KDS interface: RSASSA-PSS SHA-384 / MGF1-SHA-384 /
salt 48 on every certificate, ARK and ASK RSA-4096, VCEK ECDSA P-384, the VCEK extensions under
1.3.6.1.4.1.3704.1), mirrored as :mod:`attestation.snp.vek` parses them; DESIGN.md §4.

Contract:

- :func:`mint_chain` builds ARK (self-signed) -> ASK -> VCEK at ``now``. Names say SIMULATED:
  ``CN=SEV-SIMULATED ARK (not confidential)``, ``CN=SEV-SIMULATED ASK (not confidential)``;
  the VCEK keeps ``CN=SEV-VCEK`` (the verifier checks that name against KEY_INFO, exactly as
  for hardware) with ``OU=SIMULATED (not confidential)``. The ARK and ASK private keys are
  dropped after minting: nothing, not even this installation, can issue a second VCEK under
  the root. Key generation draws from OpenSSL's CSPRNG (``cryptography`` has no seeded RSA key
  generation); serial numbers and the CHIP_ID are derived from the keys, so nothing else is
  random.
- :func:`load_or_mint` keeps the chain in a directory (default
  ``~/.config/cdvm/simulated-tee/``): ``ark.pem``, ``ask.pem``, ``vcek.pem`` (0644) and
  ``vcek.key`` (PKCS#8, 0600, written with that mode before any byte lands). A second call
  loads what the first minted; concurrent first calls agree on one chain (atomic rename).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from attestation.errors import AttestationError, DeviceError
from attestation.snp.abi import Product, TcbVersion
from attestation.snp.vek import load_certificate

__all__ = [
    "ARK_CN",
    "ASK_CN",
    "DEFAULT_CONFIG_DIR",
    "SIMULATED_PRODUCT",
    "SIMULATED_TCB",
    "SimulatedChain",
    "load_or_mint",
    "mint_chain",
]

ARK_CN = "SEV-SIMULATED ARK (not confidential)"
ASK_CN = "SEV-SIMULATED ASK (not confidential)"
_VCEK_CN = "SEV-VCEK"
_VCEK_OU = "SIMULATED (not confidential)"
DEFAULT_CONFIG_DIR = Path("~/.config/cdvm/simulated-tee")
#: The product the simulated chip claims to be (its reports carry Genoa's CPUID).
SIMULATED_PRODUCT = Product.GENOA
_PRODUCT_NAME = "Genoa-B1"
#: The simulated chip's TCB (certified by the VCEK, reported in every report).
SIMULATED_TCB = TcbVersion(bl=10, tee=0, snp=23, ucode=84)
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_RSA_BITS = 4096
_ROOT_LIFETIME = dt.timedelta(days=25 * 365)
_VCEK_LIFETIME = dt.timedelta(days=7 * 365)
_AMD_ARC = "1.3.6.1.4.1.3704.1."
_FILES = ("ark.pem", "ask.pem", "vcek.pem", "vcek.key")


@dataclass(frozen=True, slots=True)
class SimulatedChain:
    """A minted chain: the three certificates and the VCEK's signing key.

    ``repr`` never shows the key (it is a ``cryptography`` object, which prints no key bytes).
    """

    ark: x509.Certificate
    ask: x509.Certificate
    vcek: x509.Certificate
    vcek_key: ec.EllipticCurvePrivateKey

    @property
    def chip_id(self) -> bytes:
        """The simulated CHIP_ID (64 bytes): SHA-512 of the VCEK's public key (its hwID)."""
        return _chip_id(self.vcek_key.public_key())

    def pem(self, which: str) -> bytes:
        """PEM of ``ark``, ``ask`` or ``vcek``."""
        cert = {"ark": self.ark, "ask": self.ask, "vcek": self.vcek}[which]
        return cert.public_bytes(serialization.Encoding.PEM)

    def der(self, which: str) -> bytes:
        """DER of ``ark``, ``ask`` or ``vcek``."""
        cert = {"ark": self.ark, "ask": self.ask, "vcek": self.vcek}[which]
        return cert.public_bytes(serialization.Encoding.DER)


def _chip_id(key: ec.EllipticCurvePublicKey) -> bytes:
    raw = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha512(raw).digest()


def _serial(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> int:
    raw = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # RFC 5280: positive, at most 20 octets. 152 bits of the key's hash, never zero.
    return int.from_bytes(hashlib.sha256(raw).digest()[:19], "big") | 1


def _name(cn: str, ou: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cdvm simulated TEE"))
    return x509.Name(attrs)


def _der_int(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return bytes([0x02, len(body)]) + body


def _der_ia5(text: str) -> bytes:
    return bytes([0x16, len(text)]) + text.encode("ascii")


def _amd_ext(leaf: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(_AMD_ARC + leaf), value)


def _vcek_extensions(tcb: TcbVersion, hw_id: bytes) -> list[x509.UnrecognizedExtension]:
    # AMD 57230 "VCEK Certificate Extensions": structVersion, productName, the four SPLs,
    # hwID as a DER OCTET STRING (the newer KDS encoding).
    return [
        _amd_ext("1", _der_int(0)),
        _amd_ext("2", _der_ia5(_PRODUCT_NAME)),
        _amd_ext("3.1", _der_int(tcb.bl)),
        _amd_ext("3.2", _der_int(tcb.tee)),
        _amd_ext("3.3", _der_int(tcb.snp)),
        _amd_ext("3.8", _der_int(tcb.ucode)),
        _amd_ext("4", bytes([0x04, len(hw_id)]) + hw_id),
    ]


def _ca_extensions(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    return builder.add_extension(
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


def mint_chain(*, now: dt.datetime) -> SimulatedChain:
    """A fresh ARK -> ASK -> VCEK chain valid from ``now`` (timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    ark_key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    ask_key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    vcek_key = ec.generate_private_key(ec.SECP384R1())
    ark_name, ask_name = _name(ARK_CN), _name(ASK_CN)
    root_until = now + _ROOT_LIFETIME

    def base(
        subject: x509.Name,
        issuer: x509.Name,
        key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        until: dt.datetime,
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key)
            .serial_number(_serial(key))
            .not_valid_before(now)
            .not_valid_after(until)
        )

    ark = _ca_extensions(base(ark_name, ark_name, ark_key.public_key(), root_until)).sign(
        ark_key, hashes.SHA384(), rsa_padding=_PSS
    )
    ask = _ca_extensions(base(ask_name, ark_name, ask_key.public_key(), root_until)).sign(
        ark_key, hashes.SHA384(), rsa_padding=_PSS
    )
    vcek_builder = base(
        _name(_VCEK_CN, _VCEK_OU), ask_name, vcek_key.public_key(), now + _VCEK_LIFETIME
    )
    for ext in _vcek_extensions(SIMULATED_TCB, _chip_id(vcek_key.public_key())):
        vcek_builder = vcek_builder.add_extension(ext, critical=False)
    vcek = vcek_builder.sign(ask_key, hashes.SHA384(), rsa_padding=_PSS)
    return SimulatedChain(ark=ark, ask=ask, vcek=vcek, vcek_key=vcek_key)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _load(directory: Path) -> SimulatedChain:
    try:
        certs = [load_certificate((directory / name).read_bytes()) for name in _FILES[:3]]
        key = serialization.load_pem_private_key((directory / "vcek.key").read_bytes(), None)
    except (OSError, ValueError, TypeError, AttestationError) as exc:
        raise DeviceError(
            f"simulated TEE in {directory} is unreadable or incomplete: {exc}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != certs[2].public_key():
        raise DeviceError(f"simulated TEE in {directory}: vcek.key is not the key of vcek.pem")
    return SimulatedChain(ark=certs[0], ask=certs[1], vcek=certs[2], vcek_key=key)


def load_or_mint(directory: Path = DEFAULT_CONFIG_DIR, *, now: dt.datetime) -> SimulatedChain:
    """The installation's chain under ``directory``, minted there on first use."""
    directory = directory.expanduser()
    if (directory / "vcek.key").exists():
        return _load(directory)
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()  # an empty directory someone made ahead: the rename below replaces it
    chain = mint_chain(now=now)
    staging = Path(tempfile.mkdtemp(prefix=".simulated-tee-", dir=directory.parent))
    key_pem = chain.vcek_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for name in ("ark", "ask", "vcek"):
        _write(staging / f"{name}.pem", chain.pem(name), 0o644)
    _write(staging / "vcek.key", key_pem, 0o600)
    try:
        staging.rename(directory)
    except OSError:
        # Another process minted first (or an empty directory is in the way): keep theirs.
        for name in _FILES:
            (staging / name).unlink()
        staging.rmdir()
        return _load(directory)
    return chain
