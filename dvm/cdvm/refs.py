"""cdvm/1 kind 37100: reference values a *publisher* vouches for (DESIGN §3.5, §5).

Defined by this project (``docs/protocol.md`` §9); an addressable event (NIP-01 "addressable
events", kinds 30000-39999: https://github.com/nostr-protocol/nips/blob/master/01.md), so a
publisher's newer statement about the same release replaces the older one on relays. 37100 is
not in the NIPs' kinds table; it is 30000 + 7100, the attestation kind it serves.

A publisher (the image's maintainers, an auditor -- not necessarily the provider) signs, for one
release: the TEE kind, the runtime version, the job image digest(s), the launch measurements per
product / vCPU count / vCPU type with the hashes of the inputs they were computed from (OVMF,
kernel, initrd, kernel command line, guest features), the minimum TCB per product, the model
files it vouches for, and the recipe and source commit to recompute all of it. A requester that
trusts the publisher's key pins what the event states (:mod:`dvm.client.pins`).

Tags: ``["d", release]`` and ``["tee", kind]``, each exactly once (the ``tee`` tag repeats the
content's so relays can be asked by it); ``["alt", ...]`` (NIP-31) is written for other clients
and ignored on parsing, like any unknown tag. The content is one JSON object with exactly the
keys ``v`` (1), ``tee``, ``runtime`` {``version``, ``images``}, ``measurements`` (entries of
``measurement``, ``product``, ``vcpus``, ``vcpu_type``, ``inputs``), ``min_tcb`` (by product),
``models``, ``recipe`` and ``source`` {``repository``, ``commit``}, and for a
``sev-snp+nvidia-h100`` release ``gpu`` (expected GPU measurement blocks per architecture /
driver / VBIOS version with the RIMs they came from, :mod:`dvm.cdvm.release_gpu`): the full
schema is in ``docs/protocol.md`` §9 and :meth:`ReferenceValues.to_content` writes it.

The content's values and their rules (strict, per TEE kind) are :mod:`dvm.cdvm.release`, whose
names this module re-exports. Every failure raises :class:`~dvm.nostr.errors.CodecError`;
nothing else escapes (hypothesis-tested).

Pure: the builder returns an :class:`~dvm.nostr.event.UnsignedEvent` for the publisher to sign
(the caller passes ``created_at``); whatever the builder makes, the parser accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

from dvm.nostr.errors import CodecError
from dvm.nostr.event import Event, Tags, UnsignedEvent
from dvm.nostr.keys import PublicKey

from .release import (
    MAX_CONTENT_CHARS,
    REFERENCE_VALUES_VERSION,
    GpuReference,
    LaunchInputs,
    LaunchMeasurement,
    ModelHash,
    ReferenceValues,
    RimRef,
    SourceRef,
    parse_release_content,
)

__all__ = [
    "REFERENCE_VALUES_KIND",
    "REFERENCE_VALUES_VERSION",
    "GpuReference",
    "LaunchInputs",
    "LaunchMeasurement",
    "ModelHash",
    "PublishedReference",
    "ReferenceValues",
    "RimRef",
    "SourceRef",
    "build_reference_event",
    "parse_reference_event",
    "reference_address",
]

REFERENCE_VALUES_KIND = 37100


def reference_address(publisher: str, release: str) -> str:
    """The NIP-01 address ``37100:<publisher hex>:<release>`` of a reference-values event."""
    return f"{REFERENCE_VALUES_KIND}:{publisher}:{release}"


def build_reference_event(
    values: ReferenceValues, *, publisher: PublicKey, created_at: int
) -> UnsignedEvent:
    """The kind-37100 event stating ``values``, for ``publisher`` to sign."""
    tags = (
        ("d", values.release),
        ("tee", values.tee),
        ("alt", f"cdvm reference values: {values.tee} release {values.release}"),
    )
    content = values.to_content()
    if len(content) > MAX_CONTENT_CHARS:
        raise CodecError(f"reference values content is over {MAX_CONTENT_CHARS} characters")
    unsigned = UnsignedEvent(publisher.hex(), created_at, REFERENCE_VALUES_KIND, tags, content)
    _parse_parts(unsigned.tags, unsigned.content)  # must parse back
    return unsigned


@dataclass(frozen=True, slots=True)
class PublishedReference:
    """A parsed kind-37100 event: who vouches (``publisher``, hex) for which ``values``."""

    event: Event
    publisher: str
    values: ReferenceValues

    @property
    def created_at(self) -> int:
        return self.event.created_at

    @property
    def address(self) -> str:
        return reference_address(self.publisher, self.values.release)


def parse_reference_event(event: Event) -> PublishedReference:
    """Parse a verified kind-37100 event, or raise :class:`CodecError` (the only error)."""
    if event.kind != REFERENCE_VALUES_KIND:
        raise CodecError(f"kind {event.kind} is not reference values ({REFERENCE_VALUES_KIND})")
    return PublishedReference(event, event.pubkey, _parse_parts(event.tags, event.content))


def _one(tags: Tags, name: str) -> str:
    found = [t for t in tags if t[0] == name]
    if len(found) != 1 or len(found[0]) < 2:
        raise CodecError(f"expected exactly one {name!r} tag with a value, found {len(found)}")
    return found[0][1]


def _parse_parts(tags: Tags, content: str) -> ReferenceValues:
    return parse_release_content(_one(tags, "d"), _one(tags, "tee"), content)
