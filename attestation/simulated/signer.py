"""The simulated TEE's signer: SNP-ABI reports signed by the minted VCEK (DESIGN §4).

Spec: AMD 56860 "ATTESTATION_REPORT" (the bytes are :func:`attestation.snp.abi.serialize_report`,
byte-for-byte the hardware format; ECDSA P-384 with SHA-384 over bytes [0, 0x2A0), r and s
72-byte little-endian) and DESIGN §3.4 (REPORT_DATA binding, HOST_DATA = SHA-256(initdata)).

Contract: pure. Signing is deterministic ECDSA (RFC 6979), so one set of inputs gives one
report and no randomness is drawn. The report claims a Genoa chip (CPUID 0x19/0x11/0x1) at
:data:`~attestation.simulated.chain.SIMULATED_TCB`, VMPL 0, debug and migration agent off,
signed by the VCEK; what it *measures* is the caller's ``measurement`` (the runtime's files,
:func:`~attestation.simulated.measure.measure_runtime`). None of this is confidential: the
"TEE" is an ordinary process and its key sits in a file. Verifiers label it
``SIMULATED: not confidential``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attestation.binding import host_data_for_initdata, report_data
from attestation.errors import ParseError
from attestation.evidence import EvidenceType, SnpItem
from attestation.snp.abi import (
    SIGNED_SIZE_BYTES,
    Cpuid,
    FirmwareVersion,
    GuestPolicy,
    KeyInfo,
    PlatformInfo,
    Report,
    Signature,
    SigningKey,
    serialize_report,
)

from .chain import SIMULATED_PRODUCT, SIMULATED_TCB, SimulatedChain

__all__ = ["SimulatedTee"]

_CPUID = Cpuid(family=0x19, model=0x11, stepping=0x1)  # Genoa, as SIMULATED_PRODUCT says
_FIRMWARE = FirmwareVersion(major=1, minor=55, build=40)
_MEASUREMENT_SIZE_BYTES = 48


@dataclasses.dataclass(frozen=True, slots=True)
class SimulatedTee:
    """A simulated SEV-SNP guest: the installation's chain and the runtime's measurement."""

    chain: SimulatedChain
    measurement: bytes

    def __post_init__(self) -> None:
        if len(self.measurement) != _MEASUREMENT_SIZE_BYTES:
            raise ParseError(f"measurement is {len(self.measurement)} bytes, wanted 48")

    def report(
        self,
        *,
        report_data: bytes,
        host_data: bytes = bytes(32),
        report_id: bytes = bytes(32),
        policy: GuestPolicy | None = None,
        vmpl: int = 0,
    ) -> bytes:
        """A signed 1184-byte report carrying ``report_data`` (64) and ``host_data`` (32)."""
        unsigned = Report(
            version=3,
            guest_svn=0,
            policy=policy or GuestPolicy(),
            family_id=bytes(16),
            image_id=bytes(16),
            vmpl=vmpl,
            current_tcb=SIMULATED_TCB,
            platform_info=PlatformInfo(smt_enabled=True),
            key_info=KeyInfo(signing_key=SigningKey.VCEK),
            report_data=report_data,
            measurement=self.measurement,
            host_data=host_data,
            id_key_digest=bytes(48),
            author_key_digest=bytes(48),
            report_id=report_id,
            report_id_ma=b"\xff" * 32,  # no migration agent, as firmware reports it
            reported_tcb=SIMULATED_TCB,
            cpuid=_CPUID,
            chip_id=self.chain.chip_id,
            committed_tcb=SIMULATED_TCB,
            current_version=_FIRMWARE,
            committed_version=_FIRMWARE,
            launch_tcb=SIMULATED_TCB,
            signature=Signature(r=0, s=0),
            product=SIMULATED_PRODUCT,
        )
        body = serialize_report(unsigned)[:SIGNED_SIZE_BYTES]
        der = self.chain.vcek_key.sign(body, ec.ECDSA(hashes.SHA384(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return serialize_report(dataclasses.replace(unsigned, signature=Signature(r=r, s=s)))

    def attest(
        self,
        *,
        container_pubkey: bytes,
        claims: Mapping[str, object],
        initdata: bytes | None = None,
        report_id: bytes | None = None,
    ) -> SnpItem:
        """The ``simulated`` evidence item binding ``container_pubkey`` and ``claims``.

        HOST_DATA is SHA-256(initdata) when there is initdata, else zero. REPORT_ID defaults to
        a digest of the REPORT_DATA, so each job's report has its own.
        """
        data = report_data(container_pubkey, claims)
        host = bytes(32) if initdata is None else host_data_for_initdata(initdata)
        rid = hashlib.sha256(b"cdvm/1 simulated report id\0" + data).digest()
        raw = self.report(report_data=data, host_data=host, report_id=report_id or rid)
        return SnpItem(
            type=EvidenceType.SIMULATED,
            report=raw,
            vek=self.chain.der("vcek"),
            ask=self.chain.der("ask"),
            ark=self.chain.der("ark"),
        )
