"""The cdvm/1 key binding: REPORT_DATA, the GPU nonce and HOST_DATA (DESIGN §3.4).

Specs: DESIGN.md §3 step 4; AMD SEV-SNP ABI (REPORT_DATA is 64 bytes, HOST_DATA 32 bytes);
Confidential Containers initdata (HOST_DATA = SHA-256 of the initdata document,
https://github.com/confidential-containers/trustee/blob/main/kbs/docs/initdata.md) and the CoCo
convention that the GPU evidence nonce is REPORT_DATA[32:64].

Contract (pure; no I/O, clock or randomness)::

    canonical JSON = json.dumps(claims, sort_keys=True, separators=(",", ":"),
                                ensure_ascii=False, allow_nan=False).encode("utf-8")
    claims_digest  = SHA-256(b"cdvm/1 attestation\\0" || canonical JSON)
    REPORT_DATA    = container x-only pubkey (32 bytes) || claims_digest (32 bytes)
    GPU nonce      = REPORT_DATA[32:64]
    HOST_DATA      = SHA-256(initdata bytes)

This is the one definition of the binding: the container reaches it through
``dvm.cdvm.kind7100.report_data`` (an adapter passing ``Claims.to_dict()``), the verifier calls it
on the claims JSON it received; the known-answer test in ``tests/unit/attestation/test_binding.py``
pins one value.
``allow_nan=False`` only turns NaN/Infinity (which are not JSON) into an error; for every valid
claims object the bytes are those of the plain ``json.dumps`` call. Claims are public, so error
messages may name fields, but never key material other than public keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from attestation.errors import BindingMismatch, ParseError

__all__ = [
    "CLAIMS_DOMAIN",
    "REPORT_DATA_SIZE_BYTES",
    "canonical_claims_json",
    "claims_digest",
    "gpu_nonce",
    "host_data_for_initdata",
    "report_data",
    "verify_binding",
]

CLAIMS_DOMAIN = b"cdvm/1 attestation\0"
REPORT_DATA_SIZE_BYTES = 64
_PUBKEY_SIZE_BYTES = 32


def canonical_claims_json(claims: Mapping[str, object]) -> bytes:
    """The canonical UTF-8 JSON of ``claims`` (sorted keys, no spaces, non-ASCII kept)."""
    try:
        text = json.dumps(
            claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ParseError(f"claims are not canonical JSON: {exc}") from exc
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a hostile str
        raise ParseError("claims contain text that is not valid Unicode") from None


def claims_digest(claims: Mapping[str, object]) -> bytes:
    """SHA-256(b"cdvm/1 attestation\\0" || canonical JSON of ``claims``): 32 bytes."""
    return hashlib.sha256(CLAIMS_DOMAIN + canonical_claims_json(claims)).digest()


def _check_pubkey(container_pubkey_xonly: bytes) -> None:
    if len(container_pubkey_xonly) != _PUBKEY_SIZE_BYTES:
        raise ParseError(
            f"container public key is {len(container_pubkey_xonly)} bytes, wanted 32 (x-only)"
        )


def report_data(container_pubkey_xonly: bytes, claims: Mapping[str, object]) -> bytes:
    """REPORT_DATA (64 bytes) = the container's x-only public key || claims_digest(claims)."""
    _check_pubkey(container_pubkey_xonly)
    return bytes(container_pubkey_xonly) + claims_digest(claims)


def gpu_nonce(report_data: bytes) -> bytes:
    """The nonce the GPU evidence must carry: REPORT_DATA[32:64] (CoCo convention)."""
    if len(report_data) != REPORT_DATA_SIZE_BYTES:
        raise ParseError(f"REPORT_DATA is {len(report_data)} bytes, wanted 64")
    return bytes(report_data[32:64])


def verify_binding(
    report_data: bytes, container_pubkey: bytes, claims: Mapping[str, object]
) -> None:
    """Check that ``report_data`` binds ``container_pubkey`` and ``claims``; raise otherwise.

    Also checks that the claims themselves name that key (``claims["pubkey"]`` is its hex),
    so the key in the report, the key in the claims and the key the requester will talk to
    are one. Raises :class:`BindingMismatch` naming every half that differs.
    """
    if len(report_data) != REPORT_DATA_SIZE_BYTES:
        raise ParseError(f"REPORT_DATA is {len(report_data)} bytes, wanted 64")
    _check_pubkey(container_pubkey)
    reasons: list[str] = []
    if not hmac.compare_digest(report_data[:32], container_pubkey):
        reasons.append(
            f"REPORT_DATA[0:32] is {report_data[:32].hex()}, not the container key "
            f"{container_pubkey.hex()}"
        )
    if not hmac.compare_digest(report_data[32:64], claims_digest(claims)):
        reasons.append("REPORT_DATA[32:64] is not SHA-256 of the domain-separated claims")
    named = claims.get("pubkey")
    if named != container_pubkey.hex():
        reasons.append(f"claims.pubkey is {named!r}, not the container key")
    if reasons:
        raise BindingMismatch("; ".join(reasons))


def host_data_for_initdata(initdata: bytes) -> bytes:
    """HOST_DATA for Confidential Containers: SHA-256 of the exact initdata bytes."""
    return hashlib.sha256(initdata).digest()
