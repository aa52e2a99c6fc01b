"""AMD certificates: load X.509 (DER or PEM) and decode the VCEK/VLEK extensions.

Spec: AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface Specification",
document 57230, https://www.amd.com/content/dam/amd/en/documents/epyc-technical-docs/specifications/57230.pdf
(table "VCEK Certificate Extensions"); VLEK: the same document's VLEK chapter.

Extensions, under 1.3.6.1.4.1.3704.1: ``.1`` structVersion (INTEGER), ``.2`` productName
(IA5String, e.g. "Milan-B0"), ``.3.1`` blSPL, ``.3.2`` teeSPL, ``.3.3`` snpSPL, ``.3.4``..``.3.7``
spl_4..spl_7, ``.3.8`` ucodeSPL, ``.3.9`` fmcSPL (Turin) (all INTEGER), ``.4`` hwID (VCEK:
64 raw bytes, or the same wrapped in a DER OCTET STRING ``04 40 ..``; Turin: 8 bytes), ``.5``
cspID (VLEK: IA5String naming the cloud provider).

Contract: parsing only. Nothing here checks a signature; :mod:`attestation.snp.verify` does.
Every malformed input raises :class:`~attestation.errors.ParseError`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

from attestation.errors import ParseError

__all__ = ["VekExtensions", "load_certificate", "load_certificates", "parse_vek_extensions"]

_AMD_ARC = "1.3.6.1.4.1.3704.1."
_SPL_NAMES = {
    "3.1": "blSPL",
    "3.2": "teeSPL",
    "3.3": "snpSPL",
    "3.4": "spl_4",
    "3.5": "spl_5",
    "3.6": "spl_6",
    "3.7": "spl_7",
    "3.8": "ucodeSPL",
    "3.9": "fmcSPL",
}
_TAG_INTEGER = 0x02
_TAG_OCTET_STRING = 0x04
_STRING_TAGS = (0x0C, 0x13, 0x16)  # UTF8String, PrintableString, IA5String


def _load_one(der_or_pem: bytes, pem: bool) -> x509.Certificate:
    with warnings.catch_warnings():
        # A certificate that makes `cryptography` warn (malformed name attributes and the like)
        # is refused, not loaded with a note on stderr.
        warnings.simplefilter("error")
        # Except one: AMD issues every VCEK/VLEK with serial number 0, which RFC 5280 forbids
        # and `cryptography` reports with exactly this deprecation warning (an error in a
        # future release; the version is tracked in the docs). The serial carries no meaning
        # in AMD's chain, so this one warning is silenced, for this one call.
        warnings.filterwarnings(
            "ignore", message="Parsed a serial number", category=CryptographyDeprecationWarning
        )
        try:
            if pem:
                cert = x509.load_pem_x509_certificate(der_or_pem)
            else:
                cert = x509.load_der_x509_certificate(der_or_pem)
            # `cryptography` decodes some fields lazily; touch every one the verifier reads so
            # that a malformed certificate fails here, as a ParseError, and nowhere later.
            _ = (cert.issuer, cert.subject, cert.extensions, cert.public_key())
            _ = (cert.not_valid_before_utc, cert.not_valid_after_utc, cert.signature_algorithm_oid)
            _check_signature_algorithms_agree(cert)
        except (
            ValueError,
            # A name attribute whose ASN.1 type contradicts its OID (a BitString on anything but
            # x500UniqueIdentifier) makes `cryptography` raise TypeError while decoding names.
            TypeError,
            UserWarning,
            x509.InvalidVersion,
            x509.DuplicateExtension,
            UnsupportedAlgorithm,
        ) as exc:
            raise ParseError(f"not an X.509 certificate ({len(der_or_pem)} bytes): {exc}") from None
    return cert


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the DER TLV at ``pos`` (definite lengths only)."""
    if pos + 2 > len(data):
        raise ParseError("certificate: truncated DER")
    tag, length, head = data[pos], data[pos + 1], pos + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[head : head + count], "big")
        head += count
    if head + length > len(data):
        raise ParseError("certificate: DER length runs past the data")
    return tag, head, head + length


def _check_signature_algorithms_agree(cert: x509.Certificate) -> None:
    # RFC 5280 4.1.1.2: the outer signatureAlgorithm must equal the TBS "signature" field. Only
    # the inner one is signed, so a certificate whose outer copy differs is refused.
    tbs = cert.tbs_certificate_bytes
    _, pos, _ = _tlv(tbs, 0)
    if tbs[pos] == 0xA0:  # [0] version
        pos = _tlv(tbs, pos)[2]
    pos = _tlv(tbs, pos)[2]  # serialNumber
    inner = tbs[pos : _tlv(tbs, pos)[2]]
    der = cert.public_bytes(serialization.Encoding.DER)
    _, pos, _ = _tlv(der, 0)
    pos = _tlv(der, pos)[2]  # past tbsCertificate
    outer = der[pos : _tlv(der, pos)[2]]
    if inner != outer:
        raise ParseError("certificate: outer signatureAlgorithm differs from the signed one")


def load_certificates(data: bytes) -> tuple[x509.Certificate, ...]:
    """All certificates of a PEM bundle, or the one certificate of a DER blob, in order."""
    if not isinstance(data, bytes | bytearray):
        raise ParseError("certificate must be bytes")
    data = bytes(data)
    marker = b"-----BEGIN CERTIFICATE-----"
    if marker not in data:
        return (_load_one(data, pem=False),)
    parts = data.split(marker)[1:]
    return tuple(_load_one(marker + part, pem=True) for part in parts)


def load_certificate(data: bytes) -> x509.Certificate:
    """Exactly one certificate (DER or PEM); a bundle of several is refused as ambiguous."""
    certs = load_certificates(data)
    if len(certs) != 1:
        raise ParseError(f"expected one certificate, found {len(certs)}")
    return certs[0]


def _der_value(raw: bytes, tags: tuple[int, ...], name: str) -> bytes:
    """The content of a single short- or long-form DER TLV whose tag is one of ``tags``."""
    if len(raw) < 2 or raw[0] not in tags:
        raise ParseError(f"extension {name}: unexpected DER encoding {raw[:4].hex()}")
    length, head = raw[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 2 or len(raw) < 2 + count:
            raise ParseError(f"extension {name}: bad DER length")
        length, head = int.from_bytes(raw[2 : 2 + count], "big"), 2 + count
    if head + length != len(raw):
        raise ParseError(f"extension {name}: DER length {length} disagrees with {len(raw)} bytes")
    return raw[head:]


def _der_uint(raw: bytes, name: str) -> int:
    content = _der_value(raw, (_TAG_INTEGER,), name)
    if not content or content[0] & 0x80:
        raise ParseError(f"extension {name}: not a non-negative INTEGER")
    return int.from_bytes(content, "big")


@dataclass(frozen=True, slots=True)
class VekExtensions:
    """The AMD extensions of a VCEK or VLEK. ``spl`` maps names (blSPL, ..., fmcSPL) to values."""

    struct_version: int | None
    product_name: str | None
    spl: dict[str, int]
    hw_id: bytes | None
    csp_id: str | None

    def __hash__(self) -> int:
        return hash((self.struct_version, self.product_name, tuple(sorted(self.spl.items()))))


def _hw_id(raw: bytes) -> bytes:
    # Older KDS certificates put the 64 hwID bytes directly in the extension value; newer
    # ones wrap them in a DER OCTET STRING (04 40 ..). Turin's hwID is 8 bytes. A raw value is
    # never 2 + its own second byte long at these sizes, so the two forms cannot be confused.
    if len(raw) >= 2 and raw[0] == _TAG_OCTET_STRING and len(raw) == 2 + raw[1]:
        raw = raw[2:]
    if len(raw) not in (8, 64):
        raise ParseError(f"extension hwID: {len(raw)} bytes, expected 64 (or 8 on Turin)")
    return raw


def parse_vek_extensions(cert: x509.Certificate) -> VekExtensions:
    """Decode the AMD extensions of ``cert`` (absent ones are None / missing from ``spl``)."""
    struct_version = product_name = csp_id = None
    hw_id = None
    spl: dict[str, int] = {}
    for ext in cert.extensions:
        dotted = ext.oid.dotted_string
        if not dotted.startswith(_AMD_ARC) or not isinstance(ext.value, x509.UnrecognizedExtension):
            continue
        raw, leaf = ext.value.value, dotted.removeprefix(_AMD_ARC)
        if leaf == "1":
            struct_version = _der_uint(raw, "structVersion")
        elif leaf == "2":
            product_name = _der_value(raw, _STRING_TAGS, "productName").decode("ascii", "replace")
        elif leaf in _SPL_NAMES:
            spl[_SPL_NAMES[leaf]] = _der_uint(raw, _SPL_NAMES[leaf])
        elif leaf == "4":
            hw_id = _hw_id(raw)
        elif leaf == "5":
            csp_id = _der_value(raw, _STRING_TAGS, "cspID").decode("ascii", "replace")
    return VekExtensions(struct_version, product_name, spl, hw_id, csp_id)
