"""Fetch the reference values (kind 37100) that trusted publishers put on the job's relays.

Spec: DESIGN §3.5 and §5, ``docs/protocol.md`` §9, ``docs/client.md`` ("Pins and reference
values"). :func:`fetch_references` asks every relay, once, for kind-37100 events **by the trusted
publishers only** (``authors``: nobody else's events are even read), waits for EOSE (or
``timeout_s``), closes the subscription and returns the parsed events, newest per address
(:func:`dvm.client.pins.latest_references`), with the reasons it skipped the others (events that
do not parse, or that a relay served from another author or kind). The pool is the caller's
(``pool=``, left open) or opened here without an AUTH key and closed.

I/O only; the matching is :func:`dvm.client.pins.match_pins`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dvm.cdvm.refs import REFERENCE_VALUES_KIND, PublishedReference, parse_reference_event
from dvm.nostr.errors import CodecError
from dvm.nostr.filters import Filter
from dvm.relay import RelayPool

from .pins import latest_references

__all__ = ["FetchedReferences", "fetch_references"]


@dataclass(frozen=True, slots=True)
class FetchedReferences:
    """What :func:`fetch_references` found: usable references and why others were skipped."""

    references: tuple[PublishedReference, ...]
    skipped: tuple[str, ...]
    complete: bool  # every relay sent EOSE (or closed) within the timeout


async def _collect(
    pool: RelayPool, publishers: frozenset[str], timeout_s: float
) -> FetchedReferences:
    filters = [Filter(kinds=(REFERENCE_VALUES_KIND,), authors=tuple(sorted(publishers)))]
    sub = await pool.subscribe(filters)
    try:
        complete = await sub.wait_eose(timeout_s=timeout_s)
    finally:
        await sub.close()
    found: list[PublishedReference] = []
    skipped: list[str] = []
    while (event := sub.get_nowait()) is not None:
        if event.pubkey not in publishers or event.kind != REFERENCE_VALUES_KIND:
            skipped.append(f"event {event.id[:16]}… is not a trusted publisher's kind 37100")
            continue
        try:
            found.append(parse_reference_event(event))
        except CodecError as exc:
            skipped.append(f"event {event.id[:16]}… by {event.pubkey[:16]}…: {exc}")
    return FetchedReferences(latest_references(found), tuple(skipped), complete)


async def fetch_references(
    relays: Iterable[str],
    publishers: Iterable[str],
    *,
    timeout_s: float = 10.0,
    pool: RelayPool | None = None,
) -> FetchedReferences:
    """The trusted ``publishers``' (hex keys) reference values on ``relays``; see the module."""
    trusted = frozenset(publishers)
    if not trusted:
        return FetchedReferences((), (), True)
    if pool is not None:
        return await _collect(pool, trusted, timeout_s)
    async with RelayPool(relays) as own:
        return await _collect(own, trusted, timeout_s)
