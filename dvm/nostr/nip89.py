"""NIP-89 handler information (kind 31990), the cdvm/1 provider announcement (DESIGN §3.1).

NIP-89: https://github.com/nostr-protocol/nips/blob/master/89.md
NIP-90 appendix 2 (DVM discoverability): https://github.com/nostr-protocol/nips/blob/master/90.md

Tags: exactly one ``["d", identifier]`` (the event is addressable) and one ``["k", kind]`` per
supported job kind. Content: a JSON object with ``name``, ``about``, the encryption flag,
``nip90Params`` (an object, kept opaque), ``tee`` (list of TEE kinds) and ``models`` (objects
with ``name``, ``runner``, ``sha256``).

The encryption flag is spelled two ways in the wild (``encryptionSupported`` in nostrdvm and
older clients, ``supportsEncryption`` elsewhere): we emit both and accept either when parsing;
if both are present they must agree. ``tee`` and ``models`` default to empty lists so generic
NIP-89 DVM handlers parse too; a cdvm client filters on them. Unknown content keys are ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import CodecError, JsonError
from .event import MAX_KIND, Event, UnsignedEvent
from .hex64 import is_hex64
from .strict_json import parse_json

__all__ = [
    "HANDLER_KIND",
    "Handler",
    "ModelInfo",
    "build_handler",
    "handler_address",
    "parse_handler",
]

HANDLER_KIND = 31990

_KIND = re.compile(r"0|[1-9][0-9]{0,4}")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model the provider serves: its name, the runner that loads it, its file's SHA-256."""

    name: str
    runner: str
    sha256: str

    def __post_init__(self) -> None:
        if not self.name or not self.runner:
            raise CodecError("a model needs a name and a runner")
        if not is_hex64(self.sha256):
            raise CodecError("model sha256 must be 64 lowercase hex characters")

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "runner": self.runner, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class Handler:
    """The typed content and tags of a kind-31990 announcement.

    ``event`` is set by :func:`parse_handler` (the verified original), None before signing.
    """

    identifier: str
    kinds: tuple[int, ...]
    name: str
    about: str = ""
    encryption_supported: bool = True
    nip90_params: Mapping[str, Any] = field(default_factory=dict)
    tee: tuple[str, ...] = ()
    models: tuple[ModelInfo, ...] = ()
    event: Event | None = field(default=None, compare=False)

    @property
    def address(self) -> str | None:
        """``31990:<pubkey>:<d>`` once signed (the NIP-09 ``a`` tag of its deletion)."""
        if self.event is None:
            return None
        return handler_address(self.event.pubkey, self.identifier)

    def content_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "about": self.about,
            "encryptionSupported": self.encryption_supported,
            "supportsEncryption": self.encryption_supported,
            "nip90Params": dict(self.nip90_params),
            "tee": list(self.tee),
            "models": [m.to_dict() for m in self.models],
        }


def handler_address(pubkey_hex: str, identifier: str) -> str:
    """The NIP-01 address of an announcement: ``31990:<pubkey>:<d>``."""
    return f"{HANDLER_KIND}:{pubkey_hex}:{identifier}"


def build_handler(handler: Handler, *, author_hex: str, created_at: int) -> UnsignedEvent:
    """The kind-31990 event announcing ``handler`` for ``author_hex`` (the node key P) to sign."""
    if not handler.kinds:
        raise CodecError("a handler announces at least one kind")
    tags: list[tuple[str, ...]] = [("d", handler.identifier)]
    tags += [("k", str(kind)) for kind in handler.kinds]
    content = json.dumps(handler.content_dict(), ensure_ascii=False, separators=(",", ":"))
    unsigned = UnsignedEvent(author_hex, created_at, HANDLER_KIND, tuple(tags), content)
    _parse_parts(unsigned.tags, unsigned.content)  # what we build must parse back
    return unsigned


def parse_handler(event: Event) -> Handler:
    """Parse a verified kind-31990 event, or raise CodecError."""
    if event.kind != HANDLER_KIND:
        raise CodecError(f"kind {event.kind} is not a handler announcement ({HANDLER_KIND})")
    parsed = _parse_parts(event.tags, event.content)
    return Handler(
        identifier=parsed.identifier,
        kinds=parsed.kinds,
        name=parsed.name,
        about=parsed.about,
        encryption_supported=parsed.encryption_supported,
        nip90_params=parsed.nip90_params,
        tee=parsed.tee,
        models=parsed.models,
        event=event,
    )


def _parse_parts(tags: tuple[tuple[str, ...], ...], content: str) -> Handler:
    d_tags = [t for t in tags if t[0] == "d"]
    if len(d_tags) != 1 or len(d_tags[0]) != 2:
        raise CodecError("a handler needs exactly one ['d', identifier] tag")
    kinds: list[int] = []
    for tag in (t for t in tags if t[0] == "k"):
        if len(tag) != 2 or not _KIND.fullmatch(tag[1]) or int(tag[1]) > MAX_KIND:
            raise CodecError("'k' tag must be ['k', <kind 0-65535>]")
        if int(tag[1]) in kinds:
            raise CodecError(f"kind {tag[1]} announced twice")
        kinds.append(int(tag[1]))
    if not kinds:
        raise CodecError("a handler announces at least one 'k' tag")
    try:
        body = parse_json(content)
    except JsonError as exc:
        raise CodecError(f"handler content is not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise CodecError("handler content must be a JSON object")
    return Handler(
        identifier=d_tags[0][1],
        kinds=tuple(kinds),
        name=_string(body, "name", required=True),
        about=_string(body, "about", required=False),
        encryption_supported=_encryption_flag(body),
        nip90_params=_object(body, "nip90Params"),
        tee=_tee(body),
        models=_models(body),
    )


def _string(body: Mapping[str, Any], key: str, *, required: bool) -> str:
    if key not in body:
        if required:
            raise CodecError(f"handler content lacks {key!r}")
        return ""
    value = body[key]
    if not isinstance(value, str):
        raise CodecError(f"handler {key!r} must be a string")
    return value


def _encryption_flag(body: Mapping[str, Any]) -> bool:
    flags = [body[key] for key in ("encryptionSupported", "supportsEncryption") if key in body]
    if not all(isinstance(flag, bool) for flag in flags):
        raise CodecError("the encryption flag must be a JSON boolean")
    if len(set(flags)) > 1:
        raise CodecError("encryptionSupported and supportsEncryption disagree")
    return bool(flags and flags[0])


def _object(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key, {})
    if not isinstance(value, dict):
        raise CodecError(f"handler {key!r} must be a JSON object")
    return value


def _tee(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("tee", [])
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise CodecError("handler 'tee' must be a list of non-empty strings")
    if len(set(value)) != len(value):
        raise CodecError("handler 'tee' lists a kind twice")
    return tuple(value)


def _models(body: Mapping[str, Any]) -> tuple[ModelInfo, ...]:
    value = body.get("models", [])
    if not isinstance(value, list):
        raise CodecError("handler 'models' must be a list")
    models: list[ModelInfo] = []
    for item in value:
        if not isinstance(item, dict):
            raise CodecError("each model must be a JSON object")
        name, runner, sha256 = (item.get(key) for key in ("name", "runner", "sha256"))
        if not (isinstance(name, str) and isinstance(runner, str) and isinstance(sha256, str)):
            raise CodecError("a model needs string 'name', 'runner' and 'sha256'")
        models.append(ModelInfo(name, runner, sha256))
    return tuple(models)
