"""SEV-SNP ATTESTATION_REPORT: bytes to a typed value and back (structure only, no crypto).

Spec: AMD "SEV Secure Nested Paging Firmware ABI Specification", document 56860,
https://www.amd.com/content/dam/amd/en/documents/epyc-technical-docs/specifications/56860.pdf
(Table "ATTESTATION_REPORT Structure", "TCB_VERSION Structure", "Guest Policy Structure",
"PLATFORM_INFO"), cross-read with google/go-sev-guest ``abi/abi.go``. The extended-report
certificate table (GUID entries) is AMD document 56421 (GHCB), "SNP Extended Guest Request".

Contract: :func:`parse_report` takes exactly 1184 bytes and returns a frozen :class:`Report` or
raises :class:`~attestation.errors.ParseError` naming the offset. It checks every must-be-zero
and reserved range, the reserved-must-be-one policy bit and the signature algorithm; it proves
nothing about authenticity (that is :mod:`attestation.snp.verify`). :func:`serialize_report`
is its inverse (tests and the simulated TEE build reports with it). The certificate table
of an extended report lives in :mod:`attestation.snp.certtable` and is re-exported here.

Why this module is over the ~400-line guide: it is one table (the report's fields, their
offsets and their must-be-zero ranges) read and written in both directions; splitting the parser
from the serializer would put the two halves of each offset in different files, which is how
they drift apart.

Offsets (all little-endian)::

    0x000 VERSION u32 (2, 3, 5)       0x0C0 HOST_DATA 32         0x1E0 COMMITTED_TCB u64
    0x004 GUEST_SVN u32               0x0E0 ID_KEY_DIGEST 48     0x1E8 CURRENT build/minor/major,
    0x008 POLICY u64                  0x110 AUTHOR_KEY_DIGEST 48       0x1EB MBZ
    0x010 FAMILY_ID 16                0x140 REPORT_ID 32         0x1EC COMMITTED build/minor/major,
    0x020 IMAGE_ID 16                 0x160 REPORT_ID_MA 32            0x1EF MBZ
    0x030 VMPL u32                    0x180 REPORTED_TCB u64     0x1F0 LAUNCH_TCB u64
    0x034 SIGNATURE_ALGO u32          0x188 CPUID fam/model/step 0x1F8 LAUNCH_MIT_VECTOR (v5)
    0x038 CURRENT_TCB u64                   (v3+; MBZ in v2)     0x200 CURRENT_MIT_VECTOR (v5)
    0x040 PLATFORM_INFO u64           0x18B..0x1A0 MBZ           0x208..0x2A0 MBZ (0x1F8.. in v2/3)
    0x048 KEY_INFO u32, 0x04C MBZ     0x1A0 CHIP_ID 64           0x2A0 SIGNATURE: R 72, S 72 (LE),
    0x050 REPORT_DATA 64, 0x090 MEASUREMENT 48                         0x330..0x4A0 MBZ
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from attestation.errors import ParseError

from .certtable import CertKind, CertTableEntry, parse_cert_table, serialize_cert_table

__all__ = [
    "REPORT_SIZE_BYTES",
    "SIGNED_SIZE_BYTES",
    "CertKind",
    "CertTableEntry",
    "Cpuid",
    "FirmwareVersion",
    "GuestPolicy",
    "KeyInfo",
    "PlatformInfo",
    "Product",
    "Report",
    "Signature",
    "SigningKey",
    "TcbVersion",
    "parse_cert_table",
    "parse_report",
    "product_from_cpuid",
    "serialize_cert_table",
    "serialize_report",
]

REPORT_SIZE_BYTES = 0x4A0
SIGNED_SIZE_BYTES = 0x2A0  # the signature covers bytes [0, 0x2A0)
_SIG_COMPONENT_BYTES = 72
_ECDSA_P384_SHA384 = 1
_SUPPORTED_VERSIONS = (2, 3, 5)


class Product(enum.StrEnum):
    """AMD EPYC generation; names as AMD's KDS spells them in URLs."""

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"


class SigningKey(enum.StrEnum):
    """KEY_INFO.SIGNING_KEY: which endorsement key signed the report."""

    VCEK = "VCEK"
    VLEK = "VLEK"
    NONE = "NONE"


_SIGNING_KEY_CODES = {0: SigningKey.VCEK, 1: SigningKey.VLEK, 7: SigningKey.NONE}


@dataclass(frozen=True, slots=True)
class TcbVersion:
    """TCB_VERSION, decoded per product.

    Milan/Genoa: byte 0 BOOT_LOADER, 1 TEE, 2..5 reserved, 6 SNP, 7 MICROCODE.
    Turin:       byte 0 FMC, 1 BOOT_LOADER, 2 TEE, 3 SNP, 4..6 reserved, 7 MICROCODE.
    ``fmc`` is None exactly for the Milan/Genoa layout.
    """

    bl: int
    tee: int
    snp: int
    ucode: int
    fmc: int | None = None

    @classmethod
    def decode(cls, raw: int, *, turin: bool, field: str = "tcb") -> TcbVersion:
        b = raw.to_bytes(8, "little")
        if turin:
            if any(b[4:7]):
                raise ParseError(f"{field}: reserved TCB bytes 4..6 are not zero ({b.hex()})")
            return cls(fmc=b[0], bl=b[1], tee=b[2], snp=b[3], ucode=b[7])
        if any(b[2:6]):
            raise ParseError(f"{field}: reserved TCB bytes 2..5 are not zero ({b.hex()})")
        return cls(bl=b[0], tee=b[1], snp=b[6], ucode=b[7])

    def encode(self) -> int:
        if self.fmc is None:
            b = bytes([self.bl, self.tee, 0, 0, 0, 0, self.snp, self.ucode])
        else:
            b = bytes([self.fmc, self.bl, self.tee, self.snp, 0, 0, 0, self.ucode])
        return int.from_bytes(b, "little")

    def components(self) -> dict[str, int]:
        """Named security patch levels, as the VEK extensions and KDS spell them."""
        named = {"blSPL": self.bl, "teeSPL": self.tee, "snpSPL": self.snp, "ucodeSPL": self.ucode}
        if self.fmc is not None:
            named = {"fmcSPL": self.fmc, **named}
        return named

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.components().items())


_POLICY_BITS = {
    "smt": 16,
    "migrate_ma": 18,
    "debug": 19,
    "single_socket": 20,
    "cxl_allow": 21,
    "mem_aes_256_xts": 22,
    "rapl_dis": 23,
    "ciphertext_hiding": 24,
    "page_swap_disable": 25,
}
_POLICY_RESERVED_ONE_BIT = 17
_POLICY_HIGHEST_BIT = 25


@dataclass(frozen=True, slots=True)
class GuestPolicy:
    """The guest POLICY set at launch (bit 17 is reserved-must-be-one; bits 26..63 are MBZ)."""

    abi_minor: int = 0
    abi_major: int = 0
    smt: bool = True
    migrate_ma: bool = False
    debug: bool = False
    single_socket: bool = False
    cxl_allow: bool = False
    mem_aes_256_xts: bool = False
    rapl_dis: bool = False
    ciphertext_hiding: bool = False
    page_swap_disable: bool = False

    @classmethod
    def decode(cls, raw: int) -> GuestPolicy:
        if not raw >> _POLICY_RESERVED_ONE_BIT & 1:
            raise ParseError(f"policy 0x{raw:x}: reserved bit 17 must be 1")
        if raw >> (_POLICY_HIGHEST_BIT + 1):
            raise ParseError(f"policy 0x{raw:x}: reserved bits 26..63 must be zero")
        flags = {name: bool(raw >> bit & 1) for name, bit in _POLICY_BITS.items()}
        return cls(abi_minor=raw & 0xFF, abi_major=raw >> 8 & 0xFF, **flags)

    def encode(self) -> int:
        raw = self.abi_minor | self.abi_major << 8 | 1 << _POLICY_RESERVED_ONE_BIT
        for name, bit in _POLICY_BITS.items():
            raw |= int(getattr(self, name)) << bit
        return raw


_PLATFORM_BITS = {
    "smt_enabled": 0,
    "tsme_enabled": 1,
    "ecc_enabled": 2,
    "rapl_disabled": 3,
    "ciphertext_hiding_enabled": 4,
    "alias_check_complete": 5,
    "tio_enabled": 7,
}


@dataclass(frozen=True, slots=True)
class PlatformInfo:
    """PLATFORM_INFO: the host's state when the report was made (unknown bits are refused)."""

    smt_enabled: bool = False
    tsme_enabled: bool = False
    ecc_enabled: bool = False
    rapl_disabled: bool = False
    ciphertext_hiding_enabled: bool = False
    alias_check_complete: bool = False
    tio_enabled: bool = False

    @classmethod
    def decode(cls, raw: int) -> PlatformInfo:
        known = sum(1 << bit for bit in _PLATFORM_BITS.values())
        if raw & ~known:
            raise ParseError(f"platform_info 0x{raw:x}: reserved bits set (0x{raw & ~known:x})")
        return cls(**{name: bool(raw >> bit & 1) for name, bit in _PLATFORM_BITS.items()})

    def encode(self) -> int:
        return sum(int(getattr(self, name)) << bit for name, bit in _PLATFORM_BITS.items())


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """KEY_INFO (0x48): bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 2..4 SIGNING_KEY."""

    signing_key: SigningKey = SigningKey.VCEK
    mask_chip_key: bool = False
    author_key_en: bool = False

    @classmethod
    def decode(cls, raw: int) -> KeyInfo:
        if raw >> 5:
            raise ParseError(f"key_info 0x{raw:x}: reserved bits 5..31 must be zero")
        code = raw >> 2 & 7
        if code not in _SIGNING_KEY_CODES:
            raise ParseError(f"key_info: SIGNING_KEY {code} is reserved")
        return cls(
            _SIGNING_KEY_CODES[code], mask_chip_key=bool(raw & 2), author_key_en=bool(raw & 1)
        )

    def encode(self) -> int:
        code = {v: k for k, v in _SIGNING_KEY_CODES.items()}[self.signing_key]
        return code << 2 | int(self.mask_chip_key) << 1 | int(self.author_key_en)


@dataclass(frozen=True, slots=True)
class FirmwareVersion:
    """A firmware version major.minor.build (CURRENT_* / COMMITTED_* bytes)."""

    major: int
    minor: int
    build: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.build}"


@dataclass(frozen=True, slots=True)
class Cpuid:
    """CPUID_FAM_ID / CPUID_MOD_ID / CPUID_STEP (v3+): combined family, model and stepping."""

    family: int
    model: int
    stepping: int

    def __str__(self) -> str:
        return f"0x{self.family:x}/0x{self.model:x}/0x{self.stepping:x}"


@dataclass(frozen=True, slots=True)
class Signature:
    """ECDSA P-384 signature components as integers (stored 72-byte little-endian each)."""

    r: int
    s: int


@dataclass(frozen=True, slots=True)
class Report:
    """One parsed ATTESTATION_REPORT. ``product`` is derived (CPUID on v3+, else a hint)."""

    version: int
    guest_svn: int
    policy: GuestPolicy
    family_id: bytes
    image_id: bytes
    vmpl: int
    current_tcb: TcbVersion
    platform_info: PlatformInfo
    key_info: KeyInfo
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    cpuid: Cpuid | None
    chip_id: bytes
    committed_tcb: TcbVersion
    current_version: FirmwareVersion
    committed_version: FirmwareVersion
    launch_tcb: TcbVersion
    signature: Signature
    launch_mit_vector: int | None = None
    current_mit_vector: int | None = None
    product: Product | None = None


def product_from_cpuid(cpuid: Cpuid) -> Product | None:
    """Map combined family/model to a product: 0x19 models 0x0X Milan, 0x1X/0xAX Genoa
    (Genoa, Bergamo, Siena share the Genoa keys); 0x1A models 0x0X/0x1X Turin."""
    if cpuid.family == 0x19 and cpuid.model >> 4 == 0x0:
        return Product.MILAN
    if cpuid.family == 0x19 and cpuid.model >> 4 in (0x1, 0xA):
        return Product.GENOA
    if cpuid.family == 0x1A and cpuid.model >> 4 in (0x0, 0x1):
        return Product.TURIN
    return None


def _mbz(data: bytes, lo: int, hi: int) -> None:
    if any(data[lo:hi]):
        raise ParseError(f"report bytes [0x{lo:x}, 0x{hi:x}) must be zero: {data[lo:hi].hex()}")


def parse_report(data: bytes, *, product: Product | None = None) -> Report:
    """Parse exactly 1184 bytes. ``product`` is a hint for v2 reports (which carry no CPUID);
    on v3+ the CPUID bytes decide and a contradicting hint is refused."""
    if not isinstance(data, bytes | bytearray) or len(data) != REPORT_SIZE_BYTES:
        size = len(data) if isinstance(data, bytes | bytearray) else "non-bytes"
        raise ParseError(f"report must be {REPORT_SIZE_BYTES} bytes, got {size}")
    data = bytes(data)

    def u32(off: int) -> int:
        return int(struct.unpack_from("<I", data, off)[0])

    def u64(off: int) -> int:
        return int(struct.unpack_from("<Q", data, off)[0])

    version = u32(0x00)
    if version not in _SUPPORTED_VERSIONS:
        raise ParseError(f"report version {version} is not supported (2, 3 or 5)")
    if u32(0x34) != _ECDSA_P384_SHA384:
        raise ParseError(f"signature_algo {u32(0x34)} is not 1 (ECDSA P-384 with SHA-384)")
    _mbz(data, 0x4C, 0x50)
    cpuid = None
    if version >= 3:
        cpuid = Cpuid(data[0x188], data[0x189], data[0x18A])
        _mbz(data, 0x18B, 0x1A0)
        detected = product_from_cpuid(cpuid)
        if detected is not None and product is not None and detected != product:
            raise ParseError(f"product hint {product} contradicts CPUID {cpuid} ({detected})")
        product = detected or product
    else:
        _mbz(data, 0x188, 0x1A0)
    _mbz(data, 0x1EB, 0x1EC)
    _mbz(data, 0x1EF, 0x1F0)
    launch_mit = current_mit = None
    if version >= 5:
        launch_mit, current_mit = u64(0x1F8), u64(0x200)
        _mbz(data, 0x208, SIGNED_SIZE_BYTES)
    else:
        _mbz(data, 0x1F8, SIGNED_SIZE_BYTES)
    sig_end = SIGNED_SIZE_BYTES + 2 * _SIG_COMPONENT_BYTES
    _mbz(data, sig_end, REPORT_SIZE_BYTES)
    turin = product == Product.TURIN
    r = int.from_bytes(data[SIGNED_SIZE_BYTES : SIGNED_SIZE_BYTES + 72], "little")
    s = int.from_bytes(data[SIGNED_SIZE_BYTES + 72 : sig_end], "little")
    return Report(
        version=version,
        guest_svn=u32(0x04),
        policy=GuestPolicy.decode(u64(0x08)),
        family_id=data[0x10:0x20],
        image_id=data[0x20:0x30],
        vmpl=u32(0x30),
        current_tcb=TcbVersion.decode(u64(0x38), turin=turin, field="current_tcb"),
        platform_info=PlatformInfo.decode(u64(0x40)),
        key_info=KeyInfo.decode(u32(0x48)),
        report_data=data[0x50:0x90],
        measurement=data[0x90:0xC0],
        host_data=data[0xC0:0xE0],
        id_key_digest=data[0xE0:0x110],
        author_key_digest=data[0x110:0x140],
        report_id=data[0x140:0x160],
        report_id_ma=data[0x160:0x180],
        reported_tcb=TcbVersion.decode(u64(0x180), turin=turin, field="reported_tcb"),
        cpuid=cpuid,
        chip_id=data[0x1A0:0x1E0],
        committed_tcb=TcbVersion.decode(u64(0x1E0), turin=turin, field="committed_tcb"),
        current_version=FirmwareVersion(data[0x1EA], data[0x1E9], data[0x1E8]),
        committed_version=FirmwareVersion(data[0x1EE], data[0x1ED], data[0x1EC]),
        launch_tcb=TcbVersion.decode(u64(0x1F0), turin=turin, field="launch_tcb"),
        signature=Signature(r=r, s=s),
        launch_mit_vector=launch_mit,
        current_mit_vector=current_mit,
        product=product,
    )


_FIXED_SIZES = {
    "family_id": 16,
    "image_id": 16,
    "report_data": 64,
    "measurement": 48,
    "host_data": 32,
    "id_key_digest": 48,
    "author_key_digest": 48,
    "report_id": 32,
    "report_id_ma": 32,
    "chip_id": 64,
}


def serialize_report(report: Report) -> bytes:
    """The ABI bytes of ``report`` (reserved ranges zero). Inverse of :func:`parse_report`.

    Raises :class:`ParseError` when a field cannot be represented (wrong length, v2 with CPUID,
    mitigation vectors on a report older than v5, a signature component over 72 bytes).
    """
    for name, size in _FIXED_SIZES.items():
        if len(getattr(report, name)) != size:
            raise ParseError(f"{name} must be {size} bytes")
    if (report.cpuid is not None) != (report.version >= 3):
        raise ParseError("cpuid is present exactly on report versions 3 and later")
    has_mit = report.launch_mit_vector is not None or report.current_mit_vector is not None
    if has_mit and report.version < 5:
        raise ParseError("mitigation vectors exist only on report version 5")
    out = bytearray(REPORT_SIZE_BYTES)
    try:
        struct.pack_into(
            "<IIQ16s16sIIQQI",
            out,
            0,
            report.version,
            report.guest_svn,
            report.policy.encode(),
            report.family_id,
            report.image_id,
            report.vmpl,
            _ECDSA_P384_SHA384,
            report.current_tcb.encode(),
            report.platform_info.encode(),
            report.key_info.encode(),
        )
        out[0x50:0x180] = (
            report.report_data
            + report.measurement
            + report.host_data
            + report.id_key_digest
            + report.author_key_digest
            + report.report_id
            + report.report_id_ma
        )
        struct.pack_into("<Q", out, 0x180, report.reported_tcb.encode())
        if report.cpuid is not None:
            out[0x188:0x18B] = bytes(
                [report.cpuid.family, report.cpuid.model, report.cpuid.stepping]
            )
        out[0x1A0:0x1E0] = report.chip_id
        struct.pack_into("<Q", out, 0x1E0, report.committed_tcb.encode())
        cur, com = report.current_version, report.committed_version
        out[0x1E8:0x1F0] = bytes(
            [cur.build, cur.minor, cur.major, 0, com.build, com.minor, com.major, 0]
        )
        struct.pack_into("<Q", out, 0x1F0, report.launch_tcb.encode())
        if report.version >= 5:
            struct.pack_into(
                "<QQ", out, 0x1F8, report.launch_mit_vector or 0, report.current_mit_vector or 0
            )
        sig = report.signature
        out[SIGNED_SIZE_BYTES : SIGNED_SIZE_BYTES + 144] = sig.r.to_bytes(
            72, "little"
        ) + sig.s.to_bytes(72, "little")
    except (struct.error, ValueError, OverflowError) as exc:
        raise ParseError(f"report field out of range: {exc}") from None
    return bytes(out)
