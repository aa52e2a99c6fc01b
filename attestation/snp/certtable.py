"""GHCB extended-report certificate table: GUID-tagged certificates after an SNP report.

Spec: AMD 56421 "SEV-ES Guest-Hypervisor Communication Block Standardization", section
"SNP Extended Guest Request" (the table format and the VCEK/VLEK/ASK/ARK GUIDs), cross-read with
google/go-sev-guest ``abi/abi.go`` (``CertTable``). Part of the abi layer: structure only.

Contract: :func:`parse_cert_table` returns the entries or raises
:class:`~attestation.errors.ParseError`; :func:`serialize_cert_table` is its inverse.
"""

from __future__ import annotations

import enum
import struct
import uuid
from dataclasses import dataclass

from attestation.errors import ParseError

__all__ = ["CertKind", "CertTableEntry", "parse_cert_table", "serialize_cert_table"]


class CertKind(enum.StrEnum):
    """The certificate GUIDs the GHCB specification defines."""

    VCEK = "63da758d-e664-4564-adc5-f4b93be8accd"
    VLEK = "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
    ASK = "4ab7b379-bbac-4fe4-a02f-05aef327c782"
    ARK = "c0b406a4-a803-4952-9743-3fb6014cd0ae"


_ENTRY = struct.Struct("<16sII")  # GUID (RFC 4122 byte order), offset, length


@dataclass(frozen=True, slots=True)
class CertTableEntry:
    """One certificate of the table; ``kind`` is None for a GUID this module does not know."""

    guid: uuid.UUID
    data: bytes

    @property
    def kind(self) -> CertKind | None:
        try:
            return CertKind(str(self.guid))
        except ValueError:
            return None


def parse_cert_table(data: bytes) -> tuple[CertTableEntry, ...]:
    """Parse the certificate table: 24-byte entries ended by an all-zero entry; offsets are
    from the table's start and must point past the entries and inside ``data``. An empty
    buffer is an empty table. Duplicate GUIDs are refused."""
    if not isinstance(data, bytes | bytearray):
        raise ParseError("certificate table must be bytes")
    data = bytes(data)
    if not data:
        return ()
    headers: list[tuple[uuid.UUID, int, int]] = []
    pos = 0
    while True:
        if pos + _ENTRY.size > len(data):
            raise ParseError(f"certificate table: entry at {pos} runs past {len(data)} bytes")
        raw_guid, offset, length = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        if not any(raw_guid) and offset == 0 and length == 0:
            break
        headers.append((uuid.UUID(bytes=raw_guid), offset, length))
    entries: list[CertTableEntry] = []
    for guid, offset, length in headers:
        if offset < pos or offset + length > len(data):
            raise ParseError(f"certificate table: {guid} [{offset}, +{length}) outside the data")
        if any(e.guid == guid for e in entries):
            raise ParseError(f"certificate table: {guid} appears twice")
        entries.append(CertTableEntry(guid=guid, data=data[offset : offset + length]))
    return tuple(entries)


def serialize_cert_table(entries: tuple[CertTableEntry, ...] | list[CertTableEntry]) -> bytes:
    """Build a table: headers, the zero terminator, then the certificates in order."""
    pos = _ENTRY.size * (len(entries) + 1)
    headers = bytearray()
    for entry in entries:
        headers += _ENTRY.pack(entry.guid.bytes, pos, len(entry.data))
        pos += len(entry.data)
    return bytes(headers) + bytes(_ENTRY.size) + b"".join(e.data for e in entries)
