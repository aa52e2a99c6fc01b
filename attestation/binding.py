"""The cdvm/1 key binding: REPORT_DATA, the GPU nonce and HOST_DATA (DESIGN §3.4).

Specs: DESIGN.md §3 step 4; AMD SEV-SNP ABI (REPORT_DATA is 64 bytes, HOST_DATA 32 bytes);
Confidential Containers initdata (HOST_DATA = SHA-256 of the initdata document,
https://github.com/confidential-containers/trustee/blob/main/kbs/docs/initdata.md); the CoCo
attestation agent's ``/aa/evidence?runtime_data=`` (docs/protocol.md "Binding": the agent puts
the UTF-8 bytes of the text it is given into REPORT_DATA, zero-padded to 64 bytes).

Contract (pure; no I/O, clock or randomness)::

    canonical JSON = json.dumps(claims, sort_keys=True, separators=(",", ":"),
                                ensure_ascii=False, allow_nan=False).encode("utf-8")
    binding digest = SHA-256(b"cdvm/1 attestation\\0" || C (32-byte x-only key) || canonical JSON)
    REPORT_DATA    = the 64 ASCII bytes of the lowercase hex of the binding digest
    GPU nonce      = the binding digest (32 bytes) = bytes.fromhex(REPORT_DATA)
    HOST_DATA      = SHA-256(initdata bytes)

Why hex text: inside a CoCo pod the container asks the attestation agent, which takes
``runtime_data`` as text; 64 lowercase hex characters are text that fills REPORT_DATA exactly,
so the agent, configfs-tsm and ``/dev/sev-guest`` all carry the same 64 bytes (no padding, no
second encoding). C is the fixed-length first input of the digest, so (C, claims) pairs cannot
collide by moving bytes between them; the domain string keeps the digest from meaning anything
else.

This is the one definition of the binding: the container reaches it through
``dvm.cdvm.kind7100.report_data`` (an adapter passing ``Claims.to_dict()``), the verifier calls it
on the claims JSON it received; the known-answer test in ``tests/unit/attestation/test_binding.py``
pins one value, computed there with ``hashlib`` by hand.
``allow_nan=False`` only turns NaN/Infinity (which are not JSON) into an error; for every valid
claims object the bytes are those of the plain ``json.dumps`` call. Claims are public, so error
messages may name fields, but never key material other than public keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping

from attestation.errors import BindingMismatch, ParseError

__all__ = [
    "BINDING_DOMAIN",
    "REPORT_DATA_SIZE_BYTES",
    "binding_digest",
    "canonical_claims_json",
    "gpu_nonce",
    "host_data_for_initdata",
    "report_data",
    "verify_binding",
]

BINDING_DOMAIN = b"cdvm/1 attestation\0"
REPORT_DATA_SIZE_BYTES = 64
_PUBKEY_SIZE_BYTES = 32
_REPORT_DATA_FORM = re.compile(rb"[0-9a-f]{64}")


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


def _check_pubkey(container_pubkey_xonly: bytes) -> None:
    if len(container_pubkey_xonly) != _PUBKEY_SIZE_BYTES:
        raise ParseError(
            f"container public key is {len(container_pubkey_xonly)} bytes, wanted 32 (x-only)"
        )


def binding_digest(container_pubkey_xonly: bytes, claims: Mapping[str, object]) -> bytes:
    """SHA-256(b"cdvm/1 attestation\\0" || C || canonical JSON of ``claims``): 32 bytes."""
    _check_pubkey(container_pubkey_xonly)
    body = canonical_claims_json(claims)
    return hashlib.sha256(BINDING_DOMAIN + bytes(container_pubkey_xonly) + body).digest()


def report_data(container_pubkey_xonly: bytes, claims: Mapping[str, object]) -> bytes:
    """REPORT_DATA (64 bytes): the ASCII lowercase hex of :func:`binding_digest`."""
    return binding_digest(container_pubkey_xonly, claims).hex().encode("ascii")


def _parse_report_data(report_data: bytes) -> bytes:
    """The 32-byte digest REPORT_DATA spells; :class:`ParseError` if it is not the cdvm/1 form."""
    if len(report_data) != REPORT_DATA_SIZE_BYTES:
        raise ParseError(f"REPORT_DATA is {len(report_data)} bytes, wanted 64")
    if _REPORT_DATA_FORM.fullmatch(bytes(report_data)) is None:
        raise ParseError("REPORT_DATA is not 64 lowercase hex characters (not the cdvm/1 form)")
    return bytes.fromhex(bytes(report_data).decode("ascii"))


def gpu_nonce(report_data: bytes) -> bytes:
    """The nonce the GPU evidence must carry: the binding digest REPORT_DATA spells (32 bytes)."""
    return _parse_report_data(report_data)


def verify_binding(
    report_data: bytes, container_pubkey: bytes, claims: Mapping[str, object]
) -> None:
    """Check that ``report_data`` binds ``container_pubkey`` and ``claims``; raise otherwise.

    Also checks that the claims themselves name that key (``claims["pubkey"]`` is its hex),
    so the key in the report, the key in the claims and the key the requester will talk to
    are one. Raises :class:`ParseError` for REPORT_DATA that is not 64 bytes or a key that is
    not 32, and :class:`BindingMismatch` naming every failure otherwise (REPORT_DATA not of the
    cdvm/1 form included: a genuine report for something else). One digest covers C and the
    claims, so a mismatch cannot say which of them differs: the message says so.
    """
    if len(report_data) != REPORT_DATA_SIZE_BYTES:
        raise ParseError(f"REPORT_DATA is {len(report_data)} bytes, wanted 64")
    expected = binding_digest(container_pubkey, claims).hex().encode("ascii")
    reasons: list[str] = []
    if _REPORT_DATA_FORM.fullmatch(bytes(report_data)) is None:
        reasons.append("REPORT_DATA is not 64 lowercase hex characters (not the cdvm/1 form)")
    elif not hmac.compare_digest(bytes(report_data), expected):
        reasons.append(
            f"REPORT_DATA is not the binding of the container key {container_pubkey.hex()} "
            "and these claims (another key, other claims, or both)"
        )
    named = claims.get("pubkey")
    if named != container_pubkey.hex():
        reasons.append(f"claims.pubkey is {named!r}, not the container key")
    if reasons:
        raise BindingMismatch("; ".join(reasons))


def host_data_for_initdata(initdata: bytes) -> bytes:
    """HOST_DATA for Confidential Containers: SHA-256 of the exact initdata bytes."""
    return hashlib.sha256(initdata).digest()
