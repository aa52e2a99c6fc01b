"""Confidential Containers initdata: the TOML document, its pod annotation and HOST_DATA.

Specs: CoCo initdata (https://github.com/confidential-containers/trustee/blob/main/kbs/docs/initdata.md:
``version`` "0.1.0", ``algorithm`` one of sha256/sha384/sha512, ``[data]`` a string→string map);
the Kata Containers implementation, which is what runs and so what we follow where it is more
precise than the spec (``src/libs/kata-types/src/initdata.rs`` and ``src/agent/src/initdata.rs``:
the runtime takes the pod annotation ``io.katacontainers.config.hypervisor.cc_init_data`` = base64
of gzip of the TOML, hashes the **exact TOML bytes** with ``algorithm`` and truncates or zero-pads
the digest to the TEE field, 32 bytes for SEV-SNP ``HOST_DATA``; the agent in the guest hashes the
same bytes and reads ``policy.rego`` from ``[data]``).

Contract (pure: no I/O, clock or randomness). Generic: what a document *says* is the caller's
business (cdvm/1's per-job document and agent policy are ``dvm.cdvm.pod_contract``, which this
package may not import). :func:`expected_host_data` is the one place HOST_DATA is derived; with
``algorithm = "sha256"`` it equals :func:`attestation.binding.host_data_for_initdata` (DESIGN
§3.4: HOST_DATA = SHA-256(initdata)). :func:`verify_initdata` compares a document with the one
the caller expects, byte for byte. :func:`parse_initdata` and :func:`decode_initdata_annotation`
are parsers of untrusted input: they raise :class:`~attestation.errors.ParseError` only.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import hmac
import tomllib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from attestation.binding import host_data_for_initdata
from attestation.errors import BindingMismatch, ParseError

__all__ = [
    "ANNOTATION",
    "HOST_DATA_SIZE_BYTES",
    "INITDATA_VERSION",
    "MAX_INITDATA_BYTES",
    "Initdata",
    "decode_initdata_annotation",
    "encode_initdata_annotation",
    "expected_host_data",
    "parse_initdata",
    "verify_initdata",
]

ANNOTATION = "io.katacontainers.config.hypervisor.cc_init_data"
INITDATA_VERSION = "0.1.0"
HOST_DATA_SIZE_BYTES = 32
#: Kubernetes caps all annotations of an object at 256 KiB; the document is far smaller.
MAX_INITDATA_BYTES = 128 * 1024
_ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


@dataclass(frozen=True, slots=True)
class Initdata:
    """A parsed initdata document: its metadata and its ``[data]`` map."""

    version: str
    algorithm: str
    data: Mapping[str, str]

    @property
    def policy(self) -> str | None:
        """The Kata agent policy the document carries (``[data]`` key ``policy.rego``)."""
        return self.data.get("policy.rego")


def parse_initdata(document: bytes) -> Initdata:
    """Parse an initdata TOML document (structure only: version, algorithm, string data)."""
    if not isinstance(document, bytes | bytearray):
        raise ParseError("initdata must be bytes")
    if len(document) > MAX_INITDATA_BYTES:
        raise ParseError(f"initdata is {len(document)} bytes (max {MAX_INITDATA_BYTES})")
    try:
        table = tomllib.loads(bytes(document).decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ParseError(f"initdata is not UTF-8 TOML: {type(exc).__name__}") from None
    version = table.get("version")
    if version != INITDATA_VERSION:
        raise ParseError(f"initdata version must be {INITDATA_VERSION!r}")
    algorithm = table.get("algorithm")
    if not isinstance(algorithm, str) or algorithm not in _ALGORITHMS:
        raise ParseError(f"initdata algorithm must be one of {sorted(_ALGORITHMS)}")
    data = table.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ParseError("initdata [data] must map strings to strings")
    unknown = set(table) - {"version", "algorithm", "data"}
    if unknown:
        raise ParseError(f"initdata has unknown top-level keys: {sorted(unknown)}")
    return Initdata(version=version, algorithm=algorithm, data=dict(data))


def expected_host_data(document: bytes) -> bytes:
    """SEV-SNP HOST_DATA for ``document``: its ``algorithm`` digest fitted to 32 bytes.

    Kata hashes the exact TOML bytes (not a canonical form) and truncates longer digests or
    zero-pads shorter ones to the field size; for sha256 this is SHA-256(document).
    """
    parsed = parse_initdata(document)
    if parsed.algorithm == "sha256":
        return host_data_for_initdata(bytes(document))
    digest = _ALGORITHMS[parsed.algorithm](bytes(document)).digest()
    return digest[:HOST_DATA_SIZE_BYTES].ljust(HOST_DATA_SIZE_BYTES, b"\0")


def encode_initdata_annotation(document: bytes) -> str:
    """The pod annotation value: standard base64 of gzip (mtime 0, so it is reproducible)."""
    parse_initdata(document)
    return base64.b64encode(gzip.compress(bytes(document), compresslevel=9, mtime=0)).decode()


def decode_initdata_annotation(value: str) -> bytes:
    """The TOML bytes inside an annotation value (whitespace ignored, as Kata does)."""
    if not isinstance(value, str):
        raise ParseError("initdata annotation must be a string")
    compact = "".join(value.split())
    if len(compact) > 4 * MAX_INITDATA_BYTES:
        raise ParseError("initdata annotation is too long")
    try:
        packed = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("initdata annotation is not standard base64") from None
    try:
        inflater = zlib.decompressobj(wbits=31)  # gzip framing
        document = inflater.decompress(packed, MAX_INITDATA_BYTES + 1)
    except zlib.error:
        raise ParseError("initdata annotation is not gzip") from None
    if len(document) > MAX_INITDATA_BYTES or inflater.unconsumed_tail:
        raise ParseError(f"initdata annotation inflates past {MAX_INITDATA_BYTES} bytes")
    if not inflater.eof:
        raise ParseError("initdata annotation is truncated gzip")
    parse_initdata(document)
    return document


def verify_initdata(document: bytes, *, expected: bytes) -> None:
    """Check that ``document`` is byte for byte ``expected``; raise BindingMismatch otherwise.

    Byte equality, not equal data: HOST_DATA is the digest of the exact bytes. The error names
    the ``[data]`` keys whose values differ (values are not printed: a policy is long).
    """
    if hmac.compare_digest(bytes(document), bytes(expected)):
        return
    ours, theirs = parse_initdata(expected).data, parse_initdata(document).data
    keys = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    detail = f" ([data] keys that differ: {keys})" if keys else ""
    raise BindingMismatch("initdata differs from the expected document" + detail)
