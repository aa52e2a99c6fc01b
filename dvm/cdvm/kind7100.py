"""cdvm/1 kind 7100: the confidential-job attestation event (DESIGN §3.4).

Defined by this project (docs/protocol.md); builds on NIP-01
(https://github.com/nostr-protocol/nips/blob/master/01.md) and NIP-40 ``expiration``.

Signed by the container's one-time key C. Tags, each exactly once: ``["e", job]``,
``["p", U or S]`` (the key the container will talk to), ``["provider", P]``, ``["tee", kind]``,
``["expiration", t]``. Content, a JSON object with exactly these keys::

    {"v": 1, "claims": {...}, "evidence": [...], "initdata": <base64> | null}

``claims`` has exactly ``pubkey`` (C), ``job``, ``nonce`` (the request's 64-hex nonce),
``provider`` (P), ``model`` {``name``, ``sha256``} and ``runtime`` {``version``, ``image``}:
unknown keys are refused, because a key the binding ignored would be a claim nobody checked.
Evidence items are JSON objects typed by ``type`` (``sev-snp``, ``nvidia-gpu``, ``simulated``)
and stay opaque here; :mod:`attestation` verifies them.

**The binding** ``REPORT_DATA = lowercase hex (64 ASCII bytes) of SHA-256(b"cdvm/1
attestation\\0" || C (32 bytes) || canonical claims JSON)`` (text, so the CoCo attestation agent
can carry it) is defined once, in :mod:`attestation.binding` (the container builds it from
:meth:`Claims.to_dict` through :func:`report_data`, the verifier recomputes it from the received
JSON); every claims value is a string, so there are no number-formatting questions.

The parser also checks the event is self-consistent: the signer is ``claims.pubkey``, the
``e`` tag is ``claims.job`` and the ``provider`` tag is ``claims.provider``. Comparing them with
the request (nonce, provider, job) is the requester's verification step, not parsing.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attestation import binding
from attestation.errors import AttestationError
from attestation.evidence import EvidenceType
from dvm.nostr.errors import CodecError, JsonError, NostrError
from dvm.nostr.event import Event, Tags, UnsignedEvent
from dvm.nostr.hex64 import is_hex64
from dvm.nostr.keys import PublicKey
from dvm.nostr.strict_json import parse_json

__all__ = [
    "ATTESTATION_KIND",
    "ATTESTATION_VERSION",
    "Attestation",
    "Claims",
    "ModelClaim",
    "RuntimeClaim",
    "build_attestation",
    "parse_attestation",
    "report_data",
]

ATTESTATION_KIND = 7100
ATTESTATION_VERSION = 1

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_CONTENT_KEYS = frozenset({"v", "claims", "evidence", "initdata"})
_CLAIM_KEYS = frozenset({"pubkey", "job", "nonce", "provider", "model", "runtime"})


def _hex_field(value: object, what: str) -> str:
    if not is_hex64(value):
        raise CodecError(f"{what} must be 64 lowercase hex characters")
    return str(value)


def _pubkey(value: object, what: str) -> str:
    _hex_field(value, what)
    try:
        return PublicKey.from_hex(str(value)).hex()
    except NostrError:
        raise CodecError(f"{what} is not a valid public key") from None


def _exact_object(value: object, keys: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CodecError(f"{what} must be a JSON object")
    if set(value) != keys:
        raise CodecError(f"{what} must have exactly the keys {sorted(keys)}")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise CodecError(f"{what} must be a non-empty string")
    return value


@dataclass(frozen=True, slots=True)
class ModelClaim:
    name: str
    sha256: str

    def __post_init__(self) -> None:
        _text(self.name, "claims.model.name")
        _hex_field(self.sha256, "claims.model.sha256")


@dataclass(frozen=True, slots=True)
class RuntimeClaim:
    version: str
    image: str

    def __post_init__(self) -> None:
        _text(self.version, "claims.runtime.version")
        _text(self.image, "claims.runtime.image")


@dataclass(frozen=True, slots=True)
class Claims:
    """What the container asserts; bound into the TEE report through :func:`report_data`."""

    pubkey: str
    job: str
    nonce: str
    provider: str
    model: ModelClaim
    runtime: RuntimeClaim

    def __post_init__(self) -> None:
        _pubkey(self.pubkey, "claims.pubkey")
        _hex_field(self.job, "claims.job")
        _hex_field(self.nonce, "claims.nonce")
        _pubkey(self.provider, "claims.provider")

    def to_dict(self) -> dict[str, Any]:
        return {
            "pubkey": self.pubkey,
            "job": self.job,
            "nonce": self.nonce,
            "provider": self.provider,
            "model": {"name": self.model.name, "sha256": self.model.sha256},
            "runtime": {"version": self.runtime.version, "image": self.runtime.image},
        }

    @classmethod
    def from_dict(cls, value: object) -> Claims:
        body = _exact_object(value, _CLAIM_KEYS, "claims")
        model = _exact_object(body["model"], frozenset({"name", "sha256"}), "claims.model")
        runtime = _exact_object(body["runtime"], frozenset({"version", "image"}), "claims.runtime")
        return cls(
            pubkey=_pubkey(body["pubkey"], "claims.pubkey"),
            job=_hex_field(body["job"], "claims.job"),
            nonce=_hex_field(body["nonce"], "claims.nonce"),
            provider=_pubkey(body["provider"], "claims.provider"),
            model=ModelClaim(
                _text(model["name"], "claims.model.name"),
                _hex_field(model["sha256"], "claims.model.sha256"),
            ),
            runtime=RuntimeClaim(
                _text(runtime["version"], "claims.runtime.version"),
                _text(runtime["image"], "claims.runtime.image"),
            ),
        )


def report_data(claims: Claims) -> bytes:
    """The 64-byte REPORT_DATA (ASCII hex) binding C's key to the claims (DESIGN §3.4).

    An adapter: :func:`attestation.binding.report_data` of ``claims.pubkey`` and
    :meth:`Claims.to_dict`, so the container and the verifier share one definition. Raises
    :class:`CodecError` for claims that have no canonical JSON (a lone surrogate in a name).
    """
    try:
        return binding.report_data(bytes.fromhex(claims.pubkey), claims.to_dict())
    except AttestationError as exc:
        raise CodecError(f"claims cannot be bound: {exc}") from None


@dataclass(frozen=True, slots=True)
class Attestation:
    """A parsed kind-7100 event. Evidence items are opaque, typed JSON objects."""

    event: Event
    job_id: str
    recipient: str
    provider: str
    tee: str
    expiration: int
    claims: Claims
    evidence: tuple[Mapping[str, Any], ...]
    initdata: bytes | None

    @property
    def container(self) -> str:
        """The one-time container key C (hex), the signer of this event."""
        return self.event.pubkey


def _evidence(value: object) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list):
        raise CodecError("evidence must be a list")
    if not value:
        raise CodecError("evidence must not be empty")
    for item in value:
        if not isinstance(item, dict):
            raise CodecError("each evidence item must be a JSON object")
        kind = item.get("type")
        if not isinstance(kind, str) or kind not in {t.value for t in EvidenceType}:
            raise CodecError("evidence item has an unknown or missing 'type'")
    return tuple(value)


def _initdata(value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise CodecError("initdata must be base64 text or null")
    try:
        decoded = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise CodecError("initdata is not canonical base64") from None
    if binascii.b2a_base64(decoded, newline=False).decode("ascii") != value:
        raise CodecError("initdata is not canonical base64")
    return decoded


def _one(tags: Tags, name: str) -> str:
    found = [t for t in tags if t[0] == name]
    if len(found) != 1 or len(found[0]) < 2:
        raise CodecError(f"expected exactly one {name!r} tag with a value, found {len(found)}")
    return found[0][1]


def _expiration(value: str) -> int:
    if not _DECIMAL.fullmatch(value):
        raise CodecError("'expiration' must be a non-negative decimal integer")
    return int(value)


def build_attestation(
    *,
    claims: Claims,
    recipient: PublicKey,
    tee: str,
    expiration: int,
    evidence: Sequence[Mapping[str, Any]],
    initdata: bytes | None,
    created_at: int,
) -> UnsignedEvent:
    """The kind-7100 event for the container key ``claims.pubkey`` to sign."""
    body = {
        "v": ATTESTATION_VERSION,
        "claims": claims.to_dict(),
        "evidence": [dict(item) for item in evidence],
        "initdata": None
        if initdata is None
        else binascii.b2a_base64(initdata, newline=False).decode("ascii"),
    }
    tags = (
        ("e", claims.job),
        ("p", recipient.hex()),
        ("provider", claims.provider),
        ("tee", tee),
        ("expiration", str(expiration)),
    )
    try:
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        raise CodecError("evidence must be plain JSON (strings, numbers, lists, objects)") from None
    unsigned = UnsignedEvent(claims.pubkey, created_at, ATTESTATION_KIND, tags, content)
    _parse_parts(unsigned.pubkey, unsigned.tags, unsigned.content)  # must parse back
    return unsigned


def parse_attestation(event: Event) -> Attestation:
    """Parse a verified kind-7100 event (structure and self-consistency), or raise CodecError."""
    if event.kind != ATTESTATION_KIND:
        raise CodecError(f"kind {event.kind} is not an attestation ({ATTESTATION_KIND})")
    parts = _parse_parts(event.pubkey, event.tags, event.content)
    return Attestation(
        event=event,
        job_id=parts.job_id,
        recipient=parts.recipient,
        provider=parts.provider,
        tee=parts.tee,
        expiration=parts.expiration,
        claims=parts.claims,
        evidence=parts.evidence,
        initdata=parts.initdata,
    )


@dataclass(frozen=True, slots=True)
class _Parts:
    job_id: str
    recipient: str
    provider: str
    tee: str
    expiration: int
    claims: Claims
    evidence: tuple[dict[str, Any], ...]
    initdata: bytes | None


def _parse_parts(signer: str, tags: Tags, content: str) -> _Parts:
    job_id = _hex_field(_one(tags, "e"), "'e' tag")
    recipient = _pubkey(_one(tags, "p"), "'p' tag")
    provider = _pubkey(_one(tags, "provider"), "'provider' tag")
    tee = _text(_one(tags, "tee"), "'tee' tag")
    expiration = _expiration(_one(tags, "expiration"))
    try:
        body = parse_json(content)
    except JsonError as exc:
        raise CodecError(f"attestation content is not JSON ({exc})") from None
    body = _exact_object(body, _CONTENT_KEYS, "attestation content")
    version = body["v"]
    if type(version) is not int or version != ATTESTATION_VERSION:
        raise CodecError("attestation content version must be 1")
    claims = Claims.from_dict(body["claims"])
    if claims.pubkey != signer:
        raise CodecError("claims.pubkey is not the key that signed the attestation")
    if claims.job != job_id:
        raise CodecError("claims.job differs from the 'e' tag")
    if claims.provider != provider:
        raise CodecError("claims.provider differs from the 'provider' tag")
    return _Parts(
        job_id=job_id,
        recipient=recipient,
        provider=provider,
        tee=tee,
        expiration=expiration,
        claims=claims,
        evidence=_evidence(body["evidence"]),
        initdata=_initdata(body["initdata"]),
    )
